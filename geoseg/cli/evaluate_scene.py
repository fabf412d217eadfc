"""``geoseg evaluate-scene``: score a class map against a reference map."""

from __future__ import annotations

import click

from ..errors import GeosegError
from .options import fail, quiet_opt, setup_logging, verbose_opt


def _parse_map(ctx, param, value):
    from ..evaluation import parse_mapping

    try:
        return parse_mapping(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_classes(ctx, param, value):
    if not value:
        return None
    out = tuple(v.strip() for v in value.split(",") if v.strip())
    if not out:
        raise click.BadParameter("expected class names, e.g. --classes water")
    return out


@click.command("evaluate-scene", short_help="Score a class map against a reference (raster or polygons).")
@click.argument("class_map", metavar="CLASSES.tif", type=click.Path(dir_okay=False))
@click.option("--reference", "reference", required=True, metavar="REF",
              help="Reference: a class raster (any CRS, grid, resolution) or polygons (GeoPackage, GeoJSON, "
                   "Shapefile, GeoParquet) with a class field.")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Output folder for report.json, report.md, confusion.png, disagreement.tif.")
@click.option("--field", default=None, metavar="NAME",
              help="Class field of a vector reference [default: its only field, else its only text field, else class or class_name].")
@click.option("--layer", default=None, metavar="NAME",
              help="Layer of a vector reference [default: its only layer with geometries, else the first].")
@click.option("--map", "mapping", callback=_parse_map, default=None, metavar="REF=CLASS,...",
              help="Score reference classes as class-map classes (several onto one allowed), e.g. "
                   "--map wetland=water,sea=water or raw values --map 1=water.")
@click.option("--min-coverage", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Leave out cells the reference covers less than this share of.")
@click.option("--classes", callback=_parse_classes, default=None, metavar="NAME,...",
              help="Score only these class-map classes, each against the rest (everything else = other).")
@click.option("--overwrite", is_flag=True, help="Replace existing reports in the output folder.")
@verbose_opt
@quiet_opt
def evaluate_scene(class_map, reference, outdir, field, layer, mapping, min_coverage, classes, overwrite, verbose, quiet):
    """Score CLASSES.tif (a geoseg class raster) against REF.

    \b
    The reference is brought onto the class grid: each cell takes the
    majority reference class inside it, and cells the reference covers less
    than --min-coverage of are left out (and counted), as are nodata cells
    and cells of reference classes that match no class (by name or --map).
    Writes OUTDIR/report.json, report.md (confusion matrix in cells and km²,
    precision, recall, F1, IoU per class, overall and balanced accuracy,
    Cohen's kappa), confusion.png and disagreement.tif.
    """
    setup_logging(verbose, quiet)
    from ..evalreport import summary_lines
    from ..evaluation import EvaluateOptions, evaluate_scene as run

    opts = EvaluateOptions(field=field, mapping=mapping or (), min_coverage=min_coverage, classes=classes,
                           overwrite=overwrite, layer=layer)
    try:
        ev = run(class_map, reference, outdir, opts)
    except GeosegError as exc:
        fail(exc)
    if not quiet:
        for line in summary_lines(ev.report, outdir):
            click.echo(line)
