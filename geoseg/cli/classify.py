"""``geoseg classify``: GeoTIFF scenes into class rasters, probabilities,
polygons, statistics and a quicklook."""

from __future__ import annotations

import os
import sys

import click

from ..errors import GeosegError
from .options import fail, parse_bidx, parse_nodata, parse_scaling, quiet_opt, setup_logging, verbose_opt


@click.command("classify", short_help="Classify GeoTIFF scenes into class rasters and polygons.")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False), help="Output folder (created if needed).")
@click.option("-m", "--model", type=click.Path(dir_okay=False), default=None, help="ONNX model with a geoseg contract [default: the shipped model].")
@click.option("--stride", type=click.IntRange(1), default=None, help="Pixels between patches; must divide the patch size [default: patch size]. Smaller = finer map, overlapping patches averaged.")
@click.option("--nodata", callback=parse_nodata, default=None, metavar="NUMBER|nan", help="Treat this value as nodata (overrides the file's nodata, alpha and masks).")
@click.option("-b", "--bidx", callback=parse_bidx, default=None, metavar="1,2,3", help="Source bands in the model's band order [default: by colour interpretation, else the first bands].")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Patches per onnxruntime call (fixed: the last batch of a block is padded).")
@click.option("--scheduler", default=None, metavar="threads|processes|synchronous|tcp://HOST:PORT", help="Where block tasks run [default: threads; processes when --workers is given].")
@click.option("--workers", type=click.IntRange(1), default=None, help="Workers of the local Dask cluster: N worker processes, or N threads with --scheduler threads [default: cores].")
@click.option("--ort-threads", type=click.IntRange(1), default=None, help="onnxruntime threads per task [default: cores // workers].")
@click.option("--scaling", callback=parse_scaling, default=None, metavar="identity|linear:S[,O]|percentile:LO,HI", help="How raw pixels become model input [default: the model contract's for the scene dtype].")
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
@verbose_opt
@quiet_opt
def classify(inputs, outdir, model, stride, nodata, bidx, batch_size, scheduler, workers, ort_threads,
             scaling, min_valid, no_polygons, no_probs, no_quicklook, min_area, simplify, block_px,
             recursive, pattern, overwrite, verbose, quiet):
    """Classify INPUT scenes (GeoTIFF files, folders of them, or .txt lists of
    paths) into OUTDIR.

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
    from ..scheduling import validate_scheduler

    if scheduler is None:
        scheduler = "processes" if workers else "threads"
    try:
        validate_scheduler(scheduler)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduler") from None
    from ..batch import classify_many
    from ..pipeline import ClassifyOptions

    opts = ClassifyOptions(
        stride=stride, nodata=nodata, bidx=bidx, batch_size=batch_size, min_valid=min_valid,
        scaling=scaling, polygons=not no_polygons, probs=not no_probs,
        quicklook=not no_quicklook, min_area=min_area, simplify=simplify,
        overwrite=overwrite, block_px=block_px,
    )
    progress = False if quiet else None
    try:
        run = classify_many(list(inputs), outdir, model, opts, scheduler=scheduler,
                            workers=workers, ort_threads=ort_threads, recursive=recursive,
                            pattern=pattern, progress=progress)
    except GeosegError as exc:
        fail(exc)
    if not run.scenes:
        fail(GeosegError(f"{', '.join(inputs)}: no scene found; expected GeoTIFF files or folders holding them"))
    if not quiet:
        _print_table(run)
    sys.exit(0 if run.ok else 1)


def _print_table(run) -> None:
    rows = [("scene", "status", "seconds", "patches/s", "main class", "message")]
    names = [s.name for s in run.scenes]
    same_names = len(set(names)) < len(names)  # e.g. a/scene.tif and b/scene.tif: show paths
    for s in run.scenes:
        main_cls = ""
        if s.stats.get("classes"):
            top = max(s.stats["classes"], key=lambda c: c["area_km2"])
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
