"""Ground areas on the ellipsoid, for any CRS (pure: arrays and transforms in,
square metres out)."""

from __future__ import annotations

import functools
import warnings
from typing import Any, cast

import numpy as np
from affine import Affine
from pyproj import CRS, Geod, Proj, Transformer
from pyproj.exceptions import CRSError, ProjError

from .errors import AreaWarning

# what pyproj raises for a CRS it cannot project or invert at some points
_PROJ_ERRORS = (ProjError, CRSError, ValueError, AttributeError)


@functools.lru_cache(maxsize=16)
def _crs(wkt: str) -> CRS:
    return CRS.from_wkt(wkt)


@functools.lru_cache(maxsize=16)
def geod_for(wkt: str) -> Geod:
    """The ellipsoid of a CRS (WGS84, with an :class:`AreaWarning`, if it has none)."""
    crs = _crs(wkt)
    e = crs.ellipsoid
    if e is None:
        warnings.warn(f"CRS {crs.name!r} names no ellipsoid; ground areas are computed on WGS84",
                      AreaWarning, stacklevel=2)
        return Geod(ellps="WGS84")
    if e.inverse_flattening:
        return Geod(a=e.semi_major_metre, rf=e.inverse_flattening)
    return Geod(a=e.semi_major_metre, b=e.semi_minor_metre)


@functools.lru_cache(maxsize=16)
def _to_geographic(wkt: str) -> Transformer:
    crs = _crs(wkt)
    return Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)


@functools.lru_cache(maxsize=16)
def _proj(wkt: str) -> Proj:
    return Proj(_crs(wkt))


def pixel_area_m2(transform: Affine, crs_wkt: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Ground area (m², on the ellipsoid) of one source pixel at fractional
    pixel positions ``rows``, ``cols`` (same-shape arrays).

    Geographic CRS: exact area of the lon/lat pixel rectangle at that latitude.
    Projected CRS: planar pixel area in metres divided by the projection's
    areal scale factor there (so Web Mercator or UTM far from the central
    meridian are right too).
    """
    crs = _crs(crs_wkt)
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    # affine types `@` for float tuples only; it maps arrays element-wise too
    xs: np.ndarray
    ys: np.ndarray
    xs, ys = cast(Any, transform) @ (cols, rows)
    if crs.is_geographic:
        geod = geod_for(crs_wkt)
        # area of a band between two latitudes, per degree of longitude, is
        # exact on the ellipsoid via a thin polygon; compute per distinct row
        dy = abs(transform.e) / 2.0
        dx = abs(transform.a)
        ys = np.asarray(ys)
        uniq, inv = np.unique(np.round(ys, 12), return_inverse=True)
        areas = np.empty(uniq.shape, dtype=np.float64)
        for i, lat in enumerate(uniq):
            lats = [lat - dy, lat - dy, lat + dy, lat + dy]
            lons = [0.0, dx, dx, 0.0]
            a, _ = geod.polygon_area_perimeter(lons, lats)
            areas[i] = abs(a)
        return areas[inv].reshape(rows.shape)
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    planar = abs(transform.a * transform.e - transform.b * transform.d) * unit * unit
    try:
        lon, lat = _to_geographic(crs_wkt).transform(xs, ys)
        f = _proj(crs_wkt).get_factors(lon, lat, errcheck=False)
        scale = np.asarray(f.areal_scale, dtype=np.float64)
    except _PROJ_ERRORS as exc:
        warnings.warn(f"CRS {crs.name!r}: the projection's scale factor cannot be computed ({exc}); "
                      "ground areas are planar areas in the CRS units", AreaWarning, stacklevel=2)
        scale = np.ones(np.shape(xs))
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        warnings.warn(f"CRS {crs.name!r}: the projection's scale factor is undefined at some "
                      "cells (outside the projection's domain?); their ground areas are planar", AreaWarning, stacklevel=2)
        scale = np.where(bad, 1.0, scale)
    return (planar / scale).reshape(rows.shape)


def ground_pixel_size_m(transform: Affine, crs_wkt: str, width: int, height: int) -> float | None:
    """Ground size (m) of a scene's pixel at the scene's centre: the square
    root of its ground area (:func:`pixel_area_m2`), so a geographic pixel,
    narrower east-west than north-south, gets their geometric mean.

    None when the CRS has no ground unit (neither geographic nor projected,
    e.g. a local engineering CRS); where the projection's scale factor is
    undefined, the planar size (with :func:`pixel_area_m2`'s AreaWarning).
    """
    crs = _crs(crs_wkt)
    if not (crs.is_geographic or crs.is_projected):
        return None
    area = pixel_area_m2(transform, crs_wkt, np.array([height / 2.0]), np.array([width / 2.0]))
    size = float(np.sqrt(area[0]))
    return size if np.isfinite(size) and size > 0 else None


def geometry_area_m2(geoms, crs_wkt: str, max_segment: float | None = None, chunk: int = 1024) -> np.ndarray:
    """Ground area (m², on the ellipsoid) of shapely geometries in ``crs_wkt``.

    Vectorised: the geometries' edges are first cut into segments of at most
    ``max_segment`` CRS units (edges are straight in the source CRS, not in
    the next one), then every vertex is projected at once to a Lambert
    azimuthal equal-area projection on the CRS's ellipsoid, centred on the
    geometries, where planar area is ground area.
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    out = np.zeros(len(geoms))
    ok = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
    if not ok.any():
        return out
    crs = _crs(crs_wkt)
    tr = None if crs.is_geographic else _to_geographic(crs_wkt)

    def lonlat(g):
        if tr is None:
            return g
        return shapely.transform(g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    # centre of the projection: the middle of all the geometries' bounds
    x0, y0, x1, y1 = shapely.total_bounds(lonlat(shapely.envelope(geoms[ok])))
    ea = _equal_area(crs_wkt, round((y0 + y1) / 2, 6), round((x0 + x1) / 2, 6))
    idx = np.flatnonzero(ok)
    for i in range(0, len(idx), chunk):  # densified copies of a chunk at a time: bounded memory
        g = geoms[idx[i : i + chunk]]
        if max_segment:
            g = shapely.segmentize(g, max_segment)
        flat = shapely.transform(lonlat(g), lambda xy: np.column_stack(ea.transform(xy[:, 0], xy[:, 1])))
        out[idx[i : i + chunk]] = shapely.area(flat)
    return out


@functools.lru_cache(maxsize=16)
def _equal_area(wkt: str, lat0: float, lon0: float) -> Transformer:
    """lon/lat on the CRS's datum -> Lambert azimuthal equal-area metres."""
    geo = _crs(wkt).geodetic_crs
    e = None if geo is None else geo.ellipsoid
    if geo is None or e is None:  # unreachable from geometry_area_m2: _to_geographic fails first
        raise AttributeError(f"CRS {_crs(wkt).name!r} has no geodetic CRS with an ellipsoid")
    laea = CRS.from_proj4(f"+proj=laea +lat_0={lat0} +lon_0={lon0} +a={e.semi_major_metre} "
                          f"+b={e.semi_minor_metre} +units=m +no_defs")
    return Transformer.from_crs(geo, laea, always_xy=True)
