"""References on the class grid (``geoseg evaluate-scene``).

:func:`open_reference` opens a reference, a class raster in any CRS, grid
or resolution, or class polygons (read by :mod:`geoseg.vectors`), checks it
at the entry (:mod:`geoseg.checks`) and against the class map (overlap);
:func:`reference_on_grid` then yields, row chunk by row chunk of the class
grid, the majority reference class of each cell and the share of the cell
the reference covers.  Memory is bounded by a chunk of the class grid (and
the reference pixels or sub-cells under it), never by the whole reference.

Class maps are described by :mod:`geoseg.classmap`, the NDWI reference is
:mod:`geoseg.ndwi`, styled class rasters are :mod:`geoseg.styled_raster`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from .classmap import ClassGrid, ClassRaster, describe_class_raster, grid_bounds
from .errors import InputError, first_line, ignoring
from .raster import open_raster, raise_unreadable
from .vectors import is_vector_path, read_class_features

log = logging.getLogger(__name__)

SOURCE_BUDGET = 8_000_000  # reference pixels (raster) or sub-cells (vector) per chunk


RasterReference = ClassRaster  # a class raster used as reference; labels are its raw values


@dataclass
class VectorReference:
    """Polygons with a class field, reprojected to the class map's CRS;
    labels are indices into ``classes`` (sorted names)."""

    path: str
    field: str
    classes: list[str]
    geoms: np.ndarray  # shapely geometries in the class map's CRS
    codes: np.ndarray  # index into classes, per geometry
    n_dropped: dict[str, int] = dc_field(default_factory=dict)
    kind: str = "vector"

    @property
    def names(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    def name_of(self, value: int) -> str:
        return self.classes[int(value)]



def open_reference(path: str | os.PathLike, grid: ClassGrid, field: str | None = None,
                   layer: str | None = None) -> RasterReference | VectorReference:
    """Open ``path`` as a raster or vector reference and check that it
    overlaps ``grid``.  One-line :class:`InputError` otherwise."""
    path = str(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; check the path of the reference")
    if is_vector_path(path) or not _is_raster(path):
        return _open_vector(path, grid, field, layer)
    with open_raster(path, "reference") as src:
        ref = describe_class_raster(src, path, "reference raster")
    if field or layer:
        log.warning("%s: --field and --layer apply to vector references; ignored for a raster", path)
    _check_overlap(path, _to_grid_bounds(ref.bounds, ref.crs_wkt, grid), grid)
    return ref


def _is_raster(path: str) -> bool:
    """Whether GDAL opens ``path`` as a raster; where neither GDAL's raster
    nor its vector drivers open it, one line saying so."""
    try:
        with ignoring(NotGeoreferencedWarning):
            rasterio.open(path).close()
        return True
    except RasterioError as exc:
        try:
            import pyogrio

            pyogrio.read_info(path)
        except Exception:  # noqa: BLE001 - neither a raster nor a vector file
            raise InputError(
                f"{path}: not a readable raster or vector file ({first_line(exc)}); expected a class raster "
                "(GeoTIFF) or polygons (GeoPackage, GeoJSON, Shapefile, GeoParquet)") from None
        return False


def _to_grid_bounds(bounds, crs_wkt: str, grid: ClassGrid):
    from rasterio.warp import transform_bounds

    if crs_wkt == grid.crs_wkt:
        return bounds
    try:
        return transform_bounds(crs_wkt, grid.crs_wkt, *bounds, densify_pts=21)
    except Exception:  # noqa: BLE001 - no transformation between the CRSs
        return None


def _check_overlap(path: str, bounds, grid: ClassGrid) -> None:
    gl, gb, gr, gt = grid.bounds
    if bounds is None or not all(np.isfinite(bounds)):
        raise InputError(f"{path}: the reference cannot be placed in the class map's CRS; expected a "
                         f"reference of the same area as {grid.path}")
    left, bottom, right, top = bounds
    if left >= gr or right <= gl or bottom >= gt or top <= gb:
        raise InputError(
            f"{path}: the reference does not overlap the class map {os.path.basename(grid.path)} "
            f"(reference {left:.6g},{bottom:.6g},{right:.6g},{top:.6g} vs class map "
            f"{gl:.6g},{gb:.6g},{gr:.6g},{gt:.6g} in the class map's CRS); use a reference of the same area")



def _open_vector(path: str, grid: ClassGrid, field_name: str | None, layer: str | None) -> VectorReference:
    what = f"the class map {os.path.basename(grid.path)}"
    f = read_class_features(path, field_name, layer=layer, bbox=(grid.bounds, grid.crs_wkt, what))
    f = f.to_crs(grid.crs_wkt)
    _check_overlap(path, f.bounds, grid)
    return VectorReference(path, f.field, f.classes, f.geoms, f.codes.astype(np.int32), dict(f.dropped))


# --- the reference on the class grid --------------------------------------------
@dataclass(frozen=True)
class ReferenceChunk:
    """The reference over rows ``row_off:row_off+labels.shape[0]`` of the class grid."""

    row_off: int
    labels: np.ndarray  # int32: majority reference label of the cell, -1 where it covers nothing
    coverage: np.ndarray  # float32 in [0, 1]: share of the cell the reference covers


def reference_on_grid(ref: RasterReference | VectorReference, grid: ClassGrid, supersample: int = 8,
                      rows_per_chunk: int | None = None) -> Iterator[ReferenceChunk]:
    """Yield the reference on the class grid, chunk of rows by chunk of rows.

    Raster: for each reference class k, the indicator of k (1 where the
    reference pixel is k, 0 elsewhere, in nodata/masked pixels and outside
    the reference) is averaged onto the cells (``Resampling.average``, which
    weighs partly covered pixels); the class with the largest share is the
    cell's label (ties: the lowest value), the sum of the shares its coverage.

    Vector: the polygons are burnt into ``supersample`` x ``supersample``
    sub-cells per cell (a sub-cell takes the class of the polygon that covers
    its centre; where polygons overlap, the later one); the shares of the
    sub-cells give label and coverage the same way.
    """
    if isinstance(ref, VectorReference):
        yield from _vector_chunks(ref, grid, supersample, rows_per_chunk)
    else:
        yield from _raster_chunks(ref, grid, rows_per_chunk)


def _chunk_bounds(grid: ClassGrid, r0: int, r1: int) -> tuple[float, float, float, float]:
    return grid_bounds(grid.rows_transform(r0), grid.width, r1 - r0)


def _source_window(ref: RasterReference, grid: ClassGrid, r0: int, r1: int, pad: int = 2):
    """The reference pixels (row0, col0, row1, col1), maybe past its edges,
    that hold every cell of rows ``r0:r1``, with ``pad`` pixels more."""
    from rasterio.warp import transform_bounds

    b = _chunk_bounds(grid, r0, r1)
    if ref.crs_wkt != grid.crs_wkt:
        b = transform_bounds(grid.crs_wkt, ref.crs_wkt, *b, densify_pts=21)
    inv = ~ref.transform
    cs, rs = zip(*[inv @ (x, y) for x in (b[0], b[2]) for y in (b[1], b[3])])
    return (int(np.floor(min(rs))) - pad, int(np.floor(min(cs))) - pad,
            int(np.ceil(max(rs))) + pad, int(np.ceil(max(cs))) + pad)


def _rows_per_chunk(n_rows: int, work_per_row: float, budget: int) -> int:
    return int(max(1, min(n_rows, budget // max(1.0, work_per_row))))


def _raster_chunks(ref: RasterReference, grid: ClassGrid, rows_per_chunk: int | None) -> Iterator[ReferenceChunk]:
    from rasterio.warp import reproject

    if rows_per_chunk is None:
        r0_, c0_, r1_, c1_ = _source_window(ref, grid, 0, grid.height)
        h = min(r1_, ref.height) - max(r0_, 0)
        w = min(c1_, ref.width) - max(c0_, 0)
        rows_per_chunk = _rows_per_chunk(grid.height, max(h, 1) * max(w, 1) / grid.height, SOURCE_BUDGET)
    try:
        src = rasterio.open(ref.path)
    except RasterioError as exc:
        raise InputError(f"{ref.path}: not a readable raster ({first_line(exc)})") from None
    with src:
        for r0 in range(0, grid.height, rows_per_chunk):
            r1 = min(grid.height, r0 + rows_per_chunk)
            shape = (r1 - r0, grid.width)
            sr0, sc0, sr1, sc1 = _source_window(ref, grid, r0, r1)
            # The average of a cell only counts the source pixels that exist:
            # a border of "not covered" pixels, one cell wide, around the
            # reference makes cells at its edges count what lies outside it.
            # Farther out, cells get no source pixel at all and stay 0.
            pad_r = int(np.ceil((sr1 - sr0) / (r1 - r0))) + 2
            pad_c = int(np.ceil((sc1 - sc0) / grid.width)) + 2
            sr0, sc0 = max(sr0, -pad_r), max(sc0, -pad_c)
            sr1, sc1 = min(sr1, ref.height + pad_r), min(sc1, ref.width + pad_c)
            ir0, ic0, ir1, ic1 = max(sr0, 0), max(sc0, 0), min(sr1, ref.height), min(sc1, ref.width)
            if not (ir1 > ir0 and ic1 > ic0):  # this chunk lies beside the reference
                yield ReferenceChunk(r0, np.full(shape, -1, np.int32), np.zeros(shape, np.float32))
                continue
            vals = np.zeros((sr1 - sr0, sc1 - sc0), dtype=np.int64)
            valid = np.zeros(vals.shape, dtype=bool)
            win = Window(ic0, ir0, ic1 - ic0, ir1 - ir0)
            try:
                a = src.read(1, window=win)
                m = src.read_masks(1, window=win) > 0
            except RasterioError as exc:
                raise_unreadable(ref.path, ic0, ir0, exc)
            sl = (slice(ir0 - sr0, ir1 - sr0), slice(ic0 - sc0, ic1 - sc0))
            vals[sl] = a
            valid[sl] = m
            present = np.unique(vals[valid])
            if present.size == 0:
                yield ReferenceChunk(r0, np.full(shape, -1, np.int32), np.zeros(shape, np.float32))
                continue
            src_t = ref.transform @ Affine.translation(sc0, sr0)
            fr = np.zeros((present.size,) + shape, dtype=np.float32)
            for i, v in enumerate(present):
                ind = (valid & (vals == v)).astype(np.float32)
                with ignoring(NotGeoreferencedWarning, exclusive=True):  # in-memory datasets (see outputs._shapes)
                    reproject(ind, fr[i], src_transform=src_t, src_crs=ref.crs_wkt,
                              dst_transform=grid.rows_transform(r0), dst_crs=grid.crs_wkt,
                              resampling=Resampling.average, src_nodata=None, dst_nodata=None, init_dest_nodata=False)
            yield _majority(r0, fr, present)


def _majority(r0: int, fr: np.ndarray, present: np.ndarray) -> ReferenceChunk:
    np.clip(fr, 0.0, 1.0, out=fr)
    cov = np.minimum(fr.sum(axis=0), 1.0).astype(np.float32)
    lab = present[np.argmax(fr, axis=0)].astype(np.int32)
    lab[cov <= 0] = -1
    return ReferenceChunk(r0, lab, cov)


def _vector_chunks(ref: VectorReference, grid: ClassGrid, s: int, rows_per_chunk: int | None) -> Iterator[ReferenceChunk]:
    import shapely
    from rasterio.features import rasterize

    if s < 1:
        raise ValueError("supersample must be >= 1")
    if rows_per_chunk is None:
        rows_per_chunk = _rows_per_chunk(grid.height, grid.width * s * s, SOURCE_BUDGET)
    tree = shapely.STRtree(ref.geoms)
    dtype = np.uint16 if len(ref.classes) < 65535 else np.int32
    for r0 in range(0, grid.height, rows_per_chunk):
        r1 = min(grid.height, r0 + rows_per_chunk)
        h, w = r1 - r0, grid.width
        idx = np.sort(tree.query(shapely.box(*_chunk_bounds(grid, r0, r1))))
        if idx.size == 0:
            yield ReferenceChunk(r0, np.full((h, w), -1, np.int32), np.zeros((h, w), np.float32))
            continue
        with ignoring(NotGeoreferencedWarning, exclusive=True):  # in-memory datasets (see outputs._shapes)
            sub = rasterize(zip(ref.geoms[idx], (ref.codes[idx] + 1).tolist()), out_shape=(h * s, w * s),
                            transform=grid.rows_transform(r0) @ Affine.scale(1.0 / s), fill=0, dtype=dtype)
        blocks = sub.reshape(h, s, w, s)
        present = np.unique(sub)
        present = present[present > 0]
        if present.size == 0:
            yield ReferenceChunk(r0, np.full((h, w), -1, np.int32), np.zeros((h, w), np.float32))
            continue
        fr = np.stack([(blocks == v).sum(axis=(1, 3)) for v in present]).astype(np.float32) / float(s * s)
        yield _majority(r0, fr, present.astype(np.int64) - 1)


def reference_values(ref: RasterReference, block: int = 2048) -> list[int]:
    """Every value of a raster reference's valid pixels (read block by block)."""
    out: set[int] = set()
    with rasterio.open(ref.path) as src:
        for r in range(0, src.height, block):
            for c in range(0, src.width, block):
                win = Window(c, r, min(block, src.width - c), min(block, src.height - r))
                a = src.read(1, window=win)
                m = src.read_masks(1, window=win) > 0
                out.update(int(v) for v in np.unique(a[m]))
    return sorted(out)


__all__ = ["RasterReference", "ReferenceChunk", "VectorReference", "open_reference", "reference_on_grid",
           "reference_values"]
