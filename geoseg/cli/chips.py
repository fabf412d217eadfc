"""``geoseg chips``: labelled training chips from scenes and labels."""

from __future__ import annotations

import click

from .options import fail, parse_bidx, quiet_opt, setup_logging, verbose_opt


def _parse_block(ctx, param, value):
    if value is None:
        return None
    from ..chips import BlockSize

    try:
        return BlockSize.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("chips", short_help="Cut labelled training chips from scenes and labels.")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--labels", "labels", required=True, type=click.Path(),
              help="Polygons or points with a class field (GeoPackage, GeoJSON, Shapefile, GeoParquet; any CRS) or a class raster.")
@click.option("--field", default=None, help="Class field of vector labels [default: the only field, else the only text field, else class / class_name].")
@click.option("--layer", default=None, metavar="NAME",
              help="Layer of vector labels [default: its only layer with geometries, else the first].")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="DATA_DIR: chips go to DATA_DIR/<class>/, the manifest to DATA_DIR/chips.csv.")
@click.option("--size", type=click.IntRange(2), default=64, show_default=True, help="Chip side (px).")
@click.option("--stride", type=click.IntRange(1), default=None, help="Step between windows (px) [default: --size].")
@click.option("--min-purity", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True,
              help="Share of a window its class must cover (area for polygons, pixels for a raster, points for points).")
@click.option("--bands", callback=parse_bidx, default=None, help="Bands to keep, e.g. 1,2,3,4 [default: all but alpha].")
@click.option("--max-per-class", type=click.IntRange(1), default=None, help="Keep a seeded random sample of at most N chips per class.")
@click.option("--block-size", callback=_parse_block, default=None,
              help="Side of the spatial blocks chips are grouped by for the split: metres (640, 640m) or pixels (512px) [default: 8 chips].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --max-per-class sampling.")
@click.option("--supersample", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Sub-pixels per pixel side when rasterising polygons (area fractions).")
@click.option("--overwrite", is_flag=True, help="Replace the chips of an earlier run in DATA_DIR.")
@verbose_opt
@quiet_opt
def chips(scenes, labels, field, layer, out_dir, size, stride, min_purity, bands, max_per_class, block_size, seed,
          supersample, overwrite, verbose, quiet):
    """Cut SCENES into --size px chips labelled by --labels, into DATA_DIR/<class>/
    (georeferenced GeoTIFFs, source dtype) with DATA_DIR/chips.csv, ready for
    `geoseg prepare` / `geoseg train`."""
    setup_logging(verbose, quiet)
    from ..chips import ChipConfig, make_chips
    from ..errors import GeosegError

    cfg = ChipConfig(size=size, stride=stride, min_purity=min_purity, bands=bands, max_per_class=max_per_class,
                     block_size=block_size, field=field, seed=seed, supersample=supersample, overwrite=overwrite,
                     layer=layer)
    try:
        res = make_chips(list(scenes), labels, out_dir, cfg)
    except (GeosegError, ValueError, OSError) as exc:
        fail(exc)
    per = ", ".join(f"{k}: {v}" for k, v in res.counts.items())
    click.echo(f"{res.n} chips ({per}) in {res.n_groups} spatial groups of {res.sidecar['block_size']}; "
               f"bands {', '.join(res.band_names)} ({res.dtype}); manifest {res.manifest}")
