"""Labels of ``geoseg chips``: class polygons or points (read by
:mod:`geoseg.vectors`) or a class raster, opened and checked at the entry,
and their majority label and purity over the windows of a chunk of a
scene's rows (the arithmetic is :mod:`geoseg.chipgrid`).

- polygons (any CRS: reprojected to each scene's CRS) are rasterised onto
  the scene grid at ``supersample`` x ``supersample`` sub-pixels per pixel
  (a sub-pixel takes the class of the polygon that covers its centre; where
  polygons overlap, the later one): the purity of a window is the area
  fraction of its majority class, unlabelled area counting against it;
- points label every window that contains them; the purity is the share of
  a window's points that belong to its majority class;
- a class raster (any CRS and grid) is brought onto the scene grid with
  nearest resampling; the purity is the pixel fraction of the majority
  class, nodata counting against it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from .chipgrid import point_counts, points_to_labels, window_labels
from .classmap import ClassRaster, describe_class_raster, grid_bounds
from .errors import InputError, first_line, ignoring
from .vectors import ClassFeatures, is_vector_path, read_class_features

log = logging.getLogger(__name__)

__all__ = ["RasterLabels", "labels_bounds_in", "labels_chunk", "open_labels"]


RasterLabels = ClassRaster  # a class raster used as labels


Labels = ClassFeatures | RasterLabels


def open_labels(path: str, field_name: str | None = None, layer: str | None = None) -> Labels:
    """Open a label file: polygons or points (any OGR format, GeoParquet)
    or a class raster; one-line :class:`InputError` where it cannot be used."""
    path = str(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; check the path of --labels")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file (0 bytes); expected polygons, points or a class raster")
    if is_vector_path(path):
        return read_class_features(path, field_name, layer=layer, points=True, role="labels")
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with ignoring(NotGeoreferencedWarning):
            src = rasterio.open(path)
    except RasterioError as exc:
        try:
            return read_class_features(path, field_name, layer=layer, points=True, role="labels")
        except InputError:
            raise InputError(f"{path}: not a readable raster or vector file ({first_line(exc)}); expected "
                             "polygons or points (GeoPackage, GeoJSON, Shapefile, GeoParquet) or a class raster "
                             "(GeoTIFF)") from None
    with src:
        return _raster_labels(src, path, field_name or layer)


def _raster_labels(src: Any, path: str, vector_option: str | None) -> RasterLabels:
    labels = describe_class_raster(src, path, "label raster")
    if vector_option:
        log.warning("%s: --field and --layer apply to vector labels; ignored for a raster", path)
    return labels


def labels_bounds_in(labels: Labels, crs_wkt: str) -> tuple[float, float, float, float] | None:
    """The labels' bounds in ``crs_wkt`` (None where they cannot be placed)."""
    from rasterio.warp import transform_bounds

    b = labels.bounds
    if labels.crs_wkt == crs_wkt:
        return b
    try:
        out = tuple(transform_bounds(labels.crs_wkt, crs_wkt, *b, densify_pts=21))
    except Exception:  # noqa: BLE001 - no transformation between the CRSs
        return None
    return out if all(np.isfinite(out)) else None


def labels_chunk(labels: Labels, transform: Any, crs_wkt: str, width: int, r0: int, r1: int, s: int, stride: int,
                 size: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority label and purity of the windows whose rows lie in ``r0:r1``
    of a scene grid (``transform``, ``crs_wkt``, ``width``); vector labels
    already in ``crs_wkt``, polygons burnt at ``s`` x ``s`` sub-pixels."""
    from affine import Affine

    t = transform @ Affine.translation(0, r0)
    h = r1 - r0
    if isinstance(labels, RasterLabels):
        return window_labels(_raster_on_grid(labels, t, crs_wkt, h, width), size, stride)
    nr, nc = (h - size) // stride + 1, (width - size) // stride + 1
    if labels.kind == "polygon":
        return _polygon_chunk(labels, t, h, width, s, stride, size, nr, nc)
    import shapely

    x, y = shapely.get_x(labels.geoms), shapely.get_y(labels.geoms)
    cols, rows = ~t @ (x, y)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < width)
    counts = point_counts(rows[inside], cols[inside], labels.codes[inside], len(labels.classes), size, stride, nr, nc)
    return points_to_labels(counts)


def _raster_on_grid(labels: RasterLabels, t: Any, crs_wkt: str, h: int, w: int) -> np.ndarray:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.warp import reproject

    grid = np.full((h, w), -1, np.int32)
    with rasterio.open(labels.path) as src:
        with ignoring(NotGeoreferencedWarning, exclusive=True):  # in-memory datasets (see outputs._shapes)
            reproject(rasterio.band(src, 1), grid, src_nodata=src.nodata, dst_transform=t, dst_crs=crs_wkt,
                      dst_nodata=-1, resampling=Resampling.nearest)
    return grid


def _polygon_chunk(labels: ClassFeatures, t: Any, h: int, w: int, s: int, stride: int, size: int, nr: int,
                   nc: int) -> tuple[np.ndarray, np.ndarray]:
    import shapely
    from affine import Affine
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.features import rasterize

    hit = shapely.intersects(labels.geoms, shapely.box(*grid_bounds(t, w, h)))
    if not hit.any():
        return np.full((nr, nc), -1, np.int64), np.zeros((nr, nc))
    with ignoring(NotGeoreferencedWarning, exclusive=True):  # in-memory datasets (see outputs._shapes)
        sub = rasterize(zip(labels.geoms[hit], labels.codes[hit].tolist()), out_shape=(h * s, w * s),
                        transform=t @ Affine.scale(1.0 / s), fill=-1, dtype=np.int32)
    return window_labels(sub, size * s, stride * s)
