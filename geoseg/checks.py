"""The one home of input checks: where a file enters geoseg, these decide
whether it can be used, with one :class:`~geoseg.errors.InputError` line
each (the file, what was found, what was expected, the fix).

The rule: every entry point (a command, an API function, a server route)
calls these on what it opens, once; inner code trusts the typed objects it
is given and checks nothing again.

- :func:`check_georeferenced` - a raster's CRS and geotransform (any role:
  scene, class map, reference, labels, a band file).
- :func:`check_earth_crs` - a CRS (raster or vector) that can be placed on
  the Earth: not a local (engineering) system.
- :func:`check_vector_crs` - a vector file's CRS: present, readable, on the Earth.
- :func:`check_nodata_value` - a ``--nodata`` value a dtype can hold.
- :func:`check_pixel_dtype` - real-valued bands (no complex SAR data).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
from affine import Affine

from .errors import InputError
from .windows import is_north_up

__all__ = ["check_earth_crs", "check_georeferenced", "check_nodata_value", "check_pixel_dtype", "check_vector_crs"]


def check_earth_crs(crs: Any, path: str) -> None:
    """Refuse a local (engineering) CRS: it has no transformation to
    longitude and latitude, which areas, reprojection, web maps and STAC
    items need (PROJ would print a many-line error first).  ``crs``: a
    rasterio or pyproj CRS, or None (accepted: see :func:`check_georeferenced`)."""
    if crs is not None and not (crs.is_geographic or crs.is_projected):
        name = re.search(r'"([^"]*)"', crs.to_wkt())
        raise InputError(f"{path}: the CRS {name.group(1) if name else crs.to_string()[:60]!r} is a local "
                         "(engineering) system that cannot be placed on the Earth; expected a geographic or "
                         "projected CRS: assign the right one (`rio edit-info --crs EPSG:XXXX`)")


def check_georeferenced(src: Any, path: str, role: str = "scene", north_up: bool = False) -> None:
    """Refuse an open raster ``src`` that cannot be placed on the Earth:
    georeferenced by ground control points only, no CRS, a local
    (engineering) CRS, no geotransform, a grid in degrees beyond the Earth
    (a geotransform in metres under a geographic CRS) and, with
    ``north_up``, a rotated, sheared or flipped grid.  ``role`` names the
    file in the message (scene, class map, reference, label raster...)."""
    gcps, gcp_crs = src.gcps
    if src.crs is None and gcps and gcp_crs is not None:
        raise InputError(f"{path}: the {role} is georeferenced by {len(gcps)} ground control points only; "
                         "expected a north-up grid with a CRS: warp it first (`gdalwarp -r bilinear in.tif out.tif`)")
    driver = str(getattr(src, "driver", "GTiff") or "GTiff")
    if src.crs is None and driver not in ("GTiff", "COG", "VRT"):  # a photo renamed .tif, a PNG export...
        lacks = "no CRS or geotransform" if src.transform == Affine.identity() else "no CRS"
        raise InputError(f"{path}: the {role} is a {driver} image, not a GeoTIFF, and has {lacks}; expected a "
                         f"georeferenced GeoTIFF {role}: georeference it "
                         "(`gdal_translate -a_srs EPSG:XXXX -a_ullr ULX ULY LRX LRY in out.tif`) or use the "
                         "original GeoTIFF")
    if src.crs is None:
        raise InputError(f"{path}: the {role} has no CRS; expected a georeferenced {role}: assign one "
                         "(e.g. `rio edit-info --crs EPSG:XXXX`)")
    check_earth_crs(src.crs, path)
    t = src.transform
    if t == Affine.identity() and not gcps:
        raise InputError(f"{path}: the {role} has no geotransform; expected a georeferenced {role}: assign one "
                         "(`rio edit-info --transform`) or warp it (`gdalwarp`)")
    if north_up and not is_north_up(t):
        raise InputError(f"{path}: transform is rotated, sheared or flipped ({tuple(round(v, 6) for v in t[:6])}); "
                         "expected a north-up grid: warp it first (`gdalwarp` or `rio warp`)")
    if src.crs.is_geographic:
        left, bottom, right, top = src.bounds
        if bottom < -90.001 or top > 90.001 or left < -540 or right > 540:
            raise InputError(
                f"{path}: in degrees ({src.crs.to_string()}) the {role} spans longitude {left:g}..{right:g}, "
                f"latitude {bottom:g}..{top:g}, beyond the Earth; expected latitudes within -90..90: fix its "
                "geotransform or CRS (`rio edit-info --transform` / `--crs`)")


def check_vector_crs(crs: Any, path: str, role: str = "reference") -> str:
    """The WKT of a vector file's CRS (``crs``: what the reader reports: a
    WKT, an authority string, a pyproj CRS or None); refuse none, one that
    cannot be read, or a local (engineering) one."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    fix = f"`ogr2ogr -a_srs EPSG:XXXX fixed.gpkg {os.path.basename(path)}`"
    if crs is None or (isinstance(crs, str) and not crs.strip()):
        raise InputError(f"{path}: no CRS (unknown coordinate system) in the {role}; set one, e.g. {fix}")
    try:
        parsed = CRS.from_user_input(crs)
    except CRSError:
        raise InputError(f"{path}: cannot read the CRS of the {role} ({str(crs)[:60]}); set one, e.g. {fix}") from None
    if not (parsed.is_geographic or parsed.is_projected):
        name = parsed.name or str(crs)[:60]
        raise InputError(f"{path}: the CRS {name!r} is a local (engineering) system that cannot be placed on the "
                         f"Earth; expected a geographic or projected CRS: assign the right one, e.g. {fix}")
    return str(parsed.to_wkt())


def check_nodata_value(path: str, nodata: float | None, dtype: str, option: str = "--nodata") -> None:
    """Refuse a nodata value that cannot occur in a raster of ``dtype``
    (300, 0.5 or NaN for uint8: NaN only matches floats); None passes."""
    if nodata is None or np.dtype(dtype).kind not in "ui":
        return
    info = np.iinfo(np.dtype(dtype))
    if not (info.min <= nodata <= info.max and float(nodata).is_integer()):
        raise InputError(f"{path}: {option} {nodata:g} cannot occur in a {dtype} scene ({info.min}..{info.max}, "
                         f"whole numbers); expected one of its pixel values, e.g. {option} 0")


def check_pixel_dtype(path: str, dtype: str, role: str = "scene") -> None:
    """Refuse bands of complex values (SAR single-look complex, interferograms:
    ``complex64``, ``complex128``, rasterio's ``complex_int16``...), which no
    scaling rule reads (numpy does not even know ``complex_int16``)."""
    if str(dtype).startswith("complex"):
        raise InputError(f"{path}: the {role}'s bands are {dtype} (complex values, e.g. SAR); expected real-valued "
                         "optical bands (uint8, uint16, int16, float32...): classify an optical scene, or convert "
                         "this one to real values first (e.g. its amplitude)")
