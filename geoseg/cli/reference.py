"""``geoseg reference``: build reference class maps from a scene (``ndwi``)."""

from __future__ import annotations

import click

from ..errors import GeosegError
from .options import fail, quiet_opt, setup_logging, verbose_opt


@click.group("reference", short_help="Build reference class maps from a scene (NDWI water).")
def reference():
    """Build reference class maps from a scene, to score class maps against
    with `geoseg evaluate-scene`."""


@reference.command("ndwi", short_help="Water / not-water from NDWI = (green - NIR) / (green + NIR).")
@click.argument("scene", type=click.Path(dir_okay=False))
@click.option("--green", required=True, metavar="BAND|FILE",
              help="Green band: a band number of SCENE, or a single-band raster on the same grid.")
@click.option("--nir", required=True, metavar="BAND|FILE",
              help="Near-infrared band: a band number of SCENE, or a single-band raster on the same grid.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Output class raster (GeoTIFF).")
@click.option("--threshold", type=float, default=0.0, show_default=True, help="Water where NDWI > THRESHOLD.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@verbose_opt
@quiet_opt
def ndwi(scene, green, nir, output, threshold, overwrite, verbose, quiet):
    """Water where NDWI = (green - NIR) / (green + NIR) > THRESHOLD
    (McFeeters 1996), on SCENE's grid.

    \b
    Output: uint8, 0 = not_water, 1 = water, 255 = nodata (nodata or masked
    in either band, or green + NIR = 0); tag CLASS_NAMES=not_water,water,
    colour table, category names (.aux.xml) and a QGIS style (.qml).
    \b
    geoseg reference ndwi naip.tif --green 2 --nir 4 -o water.tif
    geoseg reference ndwi B03.tif --green 1 --nir B08.tif -o water.tif
    """
    setup_logging(verbose, quiet)
    from ..ndwi import ndwi_reference, parse_band

    try:
        r = ndwi_reference(scene, parse_band(green, scene), parse_band(nir, scene), output, threshold, overwrite)
    except GeosegError as exc:
        fail(exc)
    if not quiet:
        valid = r.water + r.not_water
        share = 100.0 * r.water / valid if valid else 0.0
        click.echo(f"{r.path}: water {r.water:,} px ({share:.1f}% of {valid:,} valid), not_water {r.not_water:,} px, "
                   f"nodata {r.nodata:,} px (NDWI > {r.threshold:g}; green = {r.green}, NIR = {r.nir})")
