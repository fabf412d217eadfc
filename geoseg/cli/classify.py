"""``geoseg classify``: GeoTIFF scenes into class rasters, probabilities,
polygons, statistics and a quicklook."""

from __future__ import annotations

import os
import sys

import click

from ..errors import GeosegError
from ..providers import PROVIDER_NAMES
from .options import fail, parse_bidx, parse_nodata, parse_scaling, quiet_opt, setup_logging, verbose_opt


@click.command("classify", short_help="Classify GeoTIFF scenes into class rasters and polygons.")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False), help="Output folder (created if needed).")
@click.option("-m", "--model", type=click.Path(dir_okay=False), default=None, metavar="NAME|MODEL.onnx", help="A built-in model (default, multispectral: `geoseg models`) or an ONNX model with a geoseg contract [default: default].")
@click.option("--stride", type=click.IntRange(1), default=None, help="Pixels between patches; must divide the patch size [default: patch size]. Smaller = finer map, overlapping patches averaged.")
@click.option("--nodata", callback=parse_nodata, default=None, metavar="NUMBER|nan", help="Treat this value as nodata (overrides the file's nodata, alpha and masks).")
@click.option("-b", "--bidx", callback=parse_bidx, default=None, metavar="1,2,3", help="Source bands in the model's band order (`geoseg info`: e.g. blue,green,red,nir for multispectral) [default: by band names (descriptions such as B02/blue/nir) or colour interpretation, else, for an RGB model, the first bands].")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Patches per onnxruntime call (fixed: the last batch of a block is padded; at most 64 MiB of model input, 1365 patches of 64 px RGB).")
@click.option("--scheduler", default=None, metavar="threads|processes|synchronous|tcp://HOST:PORT", help="Where block tasks run [default: threads; processes when --workers is given].")
@click.option("--scene-tasks", is_flag=True, help="Run each scene whole as one task on a worker, which writes its outputs itself (folders of many scenes on a cluster; workers must see OUTDIR).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Workers of the local Dask cluster: N worker processes, or N threads with --scheduler threads [default: cores].")
@click.option("--ort-threads", type=click.IntRange(1), default=None, help="onnxruntime threads per task [default: cores // workers].")
@click.option("--provider", type=click.Choice(PROVIDER_NAMES, case_sensitive=False), default="auto", show_default=True, help="onnxruntime execution provider: auto = the best this onnxruntime offers (cuda, rocm, directml, coreml, openvino), else cpu. GPU providers need another onnxruntime package, e.g. onnxruntime-gpu for cuda/tensorrt (docs/providers.md).")
@click.option("--scaling", callback=parse_scaling, default=None, metavar="identity|linear:S[,O]|percentile:LO,HI", help="How raw pixels become model input [default: the model contract's for the scene dtype].")
@click.option("--reflectance-scale", type=float, default=None, metavar="S", help="Reflectance models: reflectance = pixel value x S + O [default: --sensor, else the file's band scale/offset, the STAC item's raster:bands, float values as they are, uint8 by the model's rule, else x 0.0001 with a warning].")
@click.option("--reflectance-offset", type=float, default=None, metavar="O", help="Reflectance models: the O of --reflectance-scale [default: 0].")
@click.option("--sensor", default=None, metavar="PRESET", help="Reflectance models: the scene's calibration and band numbering by preset: sentinel2-l1c, sentinel2-l2a (x 0.0001; the -1000 offset of baseline 04.00 where the file's metadata says so), sentinel2-l1c-pb04, sentinel2-l2a-pb04 (that offset always), landsat-c2-l1 (x 2e-5 - 0.1), landsat-c2-l2 (x 2.75e-5 - 0.2), naip (8-bit, the model's uint8 rule).")
@click.option("--resample", type=click.Choice(["off", "auto"]), default="off", show_default=True, help="auto: read each patch at the model's training resolution (average when reducing, bilinear when enlarging); the class grid stays aligned to the source pixels. off: the scene's own pixel size.")
@click.option("--min-valid", type=click.FloatRange(0, 1), default=None, help="Minimum valid-pixel fraction of a patch [default: the contract's, usually 0.5].")
@click.option("--no-polygons", is_flag=True, help="Do not write NAME_polygons.gpkg.")
@click.option("--no-probs", is_flag=True, help="Do not write NAME_probs.tif.")
@click.option("--no-quicklook", is_flag=True, help="Do not write NAME_quicklook.png.")
@click.option("--min-area", type=click.FloatRange(0), default=0.0, show_default=True, help="Drop polygon parts smaller than this ground area (m²).")
@click.option("--simplify", type=click.FloatRange(0), default=0.0, show_default=True, help="Simplify polygons by this tolerance (CRS units), keeping classes edge-matched.")
@click.option("--block-size", "block_px", type=click.IntRange(64), default=2048, show_default=True, help="Target side of a task's block in source pixels.")
@click.option("-r", "--recursive", is_flag=True, help="Search folders recursively.")
@click.option("--pattern", default=None, help="File pattern inside folders [default: *.tif, *.tiff].")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs and redo finished scenes.")
@click.option("--gdal-config", "gdal_config", multiple=True, metavar="KEY=VALUE", help="A GDAL configuration option for the reads (repeatable), e.g. GDAL_HTTP_MAX_RETRY=5 or AWS_S3_ENDPOINT=host:port; overrides the remote defaults (docs/cloud.md). Credentials go in environment variables.")
@click.option("--assets", default=None, metavar="red,green,blue", help="STAC item inputs: the asset keys holding the model's bands in its order (3 for red,green,blue; 4 for blue,green,red,nir), or one asset holding them all [default: by eo:bands common names, else asset keys named like the bands, or visual for RGB].")
@click.option("--dashboard", is_flag=True, help="Print the link of the Dask dashboard of the cluster in use.")
@click.option("--performance-report", "performance_report", type=click.Path(dir_okay=False), default=None, metavar="FILE.html", help="Write Dask's performance report of the run (cluster runs: --workers N or tcp://; needs bokeh).")
@click.option("--progress-json", is_flag=True, help="Report progress as JSON lines on stderr, for tools (the QGIS plugin): {\"progress\": {\"desc\", \"unit\", \"n\", \"total\"}}.")
@verbose_opt
@quiet_opt
def classify(inputs, outdir, model, stride, nodata, bidx, batch_size, scheduler, scene_tasks, workers, ort_threads,
             scaling, reflectance_scale, reflectance_offset, sensor, resample, min_valid, no_polygons, no_probs, no_quicklook, min_area, simplify, block_px,
             recursive, pattern, overwrite, gdal_config, assets, dashboard, performance_report, verbose, quiet,
             provider="auto", progress_json=False):
    """Classify INPUT scenes (GeoTIFF files, folders of them, .txt lists of
    paths or URLs, https:// and s3:// URLs, s3:// prefixes ending with /, STAC
    item .json files) into OUTDIR.

    \b
    For a scene NAME.tif, OUTDIR gets:
      NAME_classes.tif    class index per cell (255 = nodata), COG, colour table
      NAME_probs.tif      one probability band per class
      NAME_polygons.gpkg  polygons dissolved per class, with area
      NAME_stats.json     cells, fractions and km² per class; model; timings
      NAME_quicklook.png  the scene with the class map and a legend
      NAME_manifest.json  what was done (a rerun skips matching scenes)
    and OUTDIR/run.json lists every scene.  Exit code 1 if any scene failed.
    """
    setup_logging(verbose, quiet)
    scheduler, config, asset_keys = _run_settings(scheduler, workers, gdal_config, assets)
    from ..batch import classify_many
    from ..pipeline import ClassifyOptions
    from ..scheduling import Runner

    try:
        opts = ClassifyOptions(
            stride=stride, nodata=nodata, bidx=bidx, batch_size=batch_size, min_valid=min_valid,
            scaling=scaling, polygons=not no_polygons, probs=not no_probs,
            quicklook=not no_quicklook, min_area=min_area, simplify=simplify,
            overwrite=overwrite, block_px=block_px, gdal_config=config, assets=asset_keys, resample=resample,
            provider=provider, reflectance_scale=reflectance_scale, reflectance_offset=reflectance_offset,
            sensor=sensor,
        )
    except GeosegError as exc:
        fail(exc)
    progress = False if quiet else None
    if progress_json:
        from .. import scheduling

        scheduling.PROGRESS_JSON = True
    try:
        with Runner(scheduler, workers, ort_threads) as runner:
            if dashboard:
                _echo_dashboard(runner)
            report = _report(runner, performance_report)
            with report:
                run = classify_many(list(inputs), outdir, model, opts, runner=runner, scene_tasks=scene_tasks,
                                    recursive=recursive,
                                    pattern=pattern, progress=progress)
    except GeosegError as exc:
        fail(exc)
    except KeyboardInterrupt:  # Ctrl-C: say what is left, not click's bare "Aborted!"
        fail(f"interrupted; {outdir}: the scenes finished before are complete, the scene in progress wrote nothing "
             "under its final names (earlier outputs stay as they were): run the command again to finish (without "
             "--overwrite, finished scenes are skipped)")
    if performance_report and not quiet:
        click.echo(f"performance report: {performance_report}", err=True)
    if not run.scenes:
        fail(GeosegError(f"{', '.join(inputs)}: no scene found; expected GeoTIFF files or folders holding them"))
    if not quiet:
        _print_table(run)
    sys.exit(0 if run.ok else 1)


def _run_settings(scheduler, workers, gdal_config, assets):
    """``--scheduler`` (its default: processes with --workers, else threads),
    ``--gdal-config`` and ``--assets`` checked: (scheduler, config, asset keys)."""
    from ..scheduling import validate_scheduler

    if scheduler is None:
        scheduler = "processes" if workers else "threads"
    try:
        validate_scheduler(scheduler)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduler") from None
    from ..sources import normalize_config, parse_gdal_config

    try:
        config = normalize_config(parse_gdal_config(gdal_config))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gdal-config") from None
    asset_keys = tuple(a.strip() for a in assets.split(",") if a.strip()) if assets else None
    if asset_keys is not None and not asset_keys:
        raise click.BadParameter(f"{assets!r}: expected the asset keys of the model's bands, comma-separated "
                                 "(red,green,blue), or 1", param_hint="--assets")
    return scheduler, config, asset_keys


def _echo_dashboard(runner) -> None:
    """``--dashboard``: the link of the cluster's Dask dashboard, or why there is none."""
    link = runner.dashboard_link
    click.echo(f"dashboard: {link}" if link else
               f"dashboard: none (the {runner.scheduler} scheduler has no Dask dashboard; use --workers N "
               "or --scheduler tcp://HOST:PORT)", err=True)


def _report(runner, filename):
    """Dask's performance report around the run, or nothing."""
    import contextlib

    if not filename:
        return contextlib.nullcontext()
    from ..errors import NotInstalledError

    if runner.client is None:
        raise click.BadParameter(f"{filename}: a performance report needs a Dask cluster (--workers N or "
                                 f"--scheduler tcp://HOST:PORT), not the {runner.scheduler} scheduler",
                                 param_hint="--performance-report")
    try:
        import bokeh  # noqa: F401 - the report is drawn with bokeh
    except ImportError:
        fail(NotInstalledError(f"{filename}: Dask's performance report needs bokeh; pip install bokeh"))
    return runner.performance_report(filename)


def _print_table(run) -> None:
    rows = [("scene", "status", "seconds", "patches/s", "main class", "message")]
    names = [s.name for s in run.scenes]
    same_names = len(set(names)) < len(names)  # e.g. a/scene.tif and b/scene.tif: show paths
    for s in run.scenes:
        main_cls = ""
        if s.stats.get("classes"):
            top = max(s.stats["classes"], key=lambda c: c["area_km2"])
            if top["area_fraction"] > 0:  # not "cloudy 0%" for a scene whose every cell is nodata
                main_cls = f"{top['name']} {100 * top['area_fraction']:.0f}%"
        rows.append((_short_path(s.path) if same_names else s.name, s.status, f"{s.seconds:.1f}", f"{s.patches_per_s:.0f}" if s.patches_per_s else "",
                     main_cls, (s.error or "")[:120]))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(r[i].ljust(w[i]) for i in range(5)) + ("  " + r[5] if r[5] else ""))
    click.echo(f"{len(run.scenes)} scene(s): {sum(s.status == 'done' for s in run.scenes)} done, "
               f"{sum(s.status == 'skipped' for s in run.scenes)} skipped, {run.n_failed} failed "
               f"in {run.seconds:.1f} s" + (f"; report: {run.report}" if run.report else ""))


def _short_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith(os.pardir) else rel
