"""The ``geoseg`` command line (click).

Heavy modules are imported inside command bodies so ``geoseg --help`` is
instant and never imports TensorFlow.  A command parses options, builds an
options object, calls one library function and turns geoseg errors into a
one-line message and exit code 1 (usage errors exit 2).
"""

from __future__ import annotations

import logging
import os
import sys

import click

from . import __version__
from .cli_options import _bidx, _fail, _nodata, _scaling, _setup_logging, quiet_opt, verbose_opt
from .errors import GeosegError

log = logging.getLogger("geoseg")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoseg")
def main() -> None:
    """Classify satellite scenes patch by patch into landscape classes.

    \b
    geoseg classify SCENE.tif -o out/          classify with the default model
    geoseg info MODEL.onnx                     print a model's contract
    geoseg train / evaluate / export           (need the `train` extra)
    """


@main.command(short_help="Classify GeoTIFF scenes into class rasters and polygons.")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False), help="Output folder (created if needed).")
@click.option("-m", "--model", type=click.Path(dir_okay=False), default=None, help="ONNX model with a geoseg contract [default: the shipped model].")
@click.option("--stride", type=click.IntRange(1), default=None, help="Pixels between patches; must divide the patch size [default: patch size]. Smaller = finer map, overlapping patches averaged.")
@click.option("--nodata", callback=_nodata, default=None, metavar="NUMBER|nan", help="Treat this value as nodata (overrides the file's nodata, alpha and masks).")
@click.option("-b", "--bidx", callback=_bidx, default=None, metavar="1,2,3", help="Source bands in the model's band order [default: by colour interpretation, else the first bands].")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Patches per onnxruntime call (fixed: the last batch of a block is padded).")
@click.option("--scheduler", default=None, metavar="threads|processes|synchronous|tcp://HOST:PORT", help="Where block tasks run [default: threads; processes when --workers is given].")
@click.option("--workers", type=click.IntRange(1), default=None, help="Workers of the local Dask cluster: N worker processes, or N threads with --scheduler threads [default: cores].")
@click.option("--ort-threads", type=click.IntRange(1), default=None, help="onnxruntime threads per task [default: cores // workers].")
@click.option("--scaling", callback=_scaling, default=None, metavar="identity|linear:S[,O]|percentile:LO,HI", help="How raw pixels become model input [default: the model contract's for the scene dtype].")
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
    _setup_logging(verbose, quiet)
    from .scheduling import validate_scheduler

    if scheduler is None:
        scheduler = "processes" if workers else "threads"
    try:
        validate_scheduler(scheduler)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduler") from None
    from .batch import classify_many
    from .tiler import ClassifyOptions

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
        _fail(exc)
    if not run.scenes:
        _fail(GeosegError(f"{', '.join(inputs)}: no scene found; expected GeoTIFF files or folders holding them"))
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


@main.command(short_help="Print the contract of an ONNX model.")
@click.argument("model", type=click.Path(dir_okay=False), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the contract as JSON.")
def info(model, as_json):
    """Print MODEL's contract: classes and colours, patch size, bands,
    scaling, training resolution and metrics [default: the shipped model]."""
    import json

    from .model import load_model, resolve_model_path

    try:
        m = load_model(resolve_model_path(model))
    except GeosegError as exc:
        _fail(exc)
    c = m.contract
    if as_json:
        click.echo(json.dumps({"path": m.path, "sha256": m.sha256, "contract": c.to_dict()}, indent=2))
        return
    click.echo(f"model:      {m.path}")
    click.echo(f"sha256:     {m.sha256}")
    click.echo(f"size:       {m.size_bytes / 1e6:.2f} MB")
    click.echo(f"name:       {c.name}")
    click.echo(f"input:      {c.input_name} {list(m.input_shape)} {c.input_layout} {c.input_dtype}, range {list(c.input_range)}")
    click.echo(f"patch size: {c.patch_size} px")
    click.echo(f"bands:      {', '.join(c.bands)}")
    click.echo("scaling:    " + "; ".join(f"{k}: {v.to_dict()}" for k, v in c.scaling.items()))
    click.echo(f"min valid:  {c.min_valid_fraction}")
    res = f"{c.training_resolution_m} m" if c.training_resolution_m else "unknown"
    click.echo(f"trained at: {res}")
    click.echo("classes:")
    for i, (n, col) in enumerate(zip(c.class_names, c.class_colors)):
        click.echo(f"  {i:3d}  {col}  {n}")
    for k, v in sorted(c.extra.items()):
        txt = json.dumps(v) if not isinstance(v, str) else v
        click.echo(f"{k + ':':11s} {txt if len(txt) < 300 else txt[:297] + '...'}")


TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx", "sklearn", "matplotlib")


def train_extra_installed() -> bool:
    """True when the ``train`` extra's packages are importable (checked without importing them)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in TRAIN_MODULES)


def register_train_commands(group: click.Group, installed: bool | None = None) -> None:
    """Training and export commands live in `training/` and `export/`; without
    the `train` extra they answer with what to install."""
    if installed is None:
        installed = train_extra_installed()
    if installed:
        from export.cli import register as reg_export
        from training.cli import register as reg_train

        reg_train(group)
        reg_export(group)
    else:
        for name in ("train", "evaluate", "export", "prepare", "pretrain"):
            group.add_command(_missing(name))


def _missing(name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   short_help="(needs the train extra)", add_help_option=False)
    def cmd():
        _fail(GeosegError(f"`geoseg {name}` needs the train extra: pip install 'geoseg[train]'"))

    return cmd


register_train_commands(main)

if __name__ == "__main__":  # pragma: no cover
    main()
