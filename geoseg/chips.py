"""Training chips from scenes and labels: ``geoseg chips``.

A chip is a ``size`` x ``size`` window of a scene whose label is one class
over at least ``min_purity`` of it.  Labels are

- polygons with a class field (any CRS: reprojected to each scene's CRS),
  rasterised onto the scene grid at ``supersample`` x ``supersample``
  sub-pixels per pixel (a sub-pixel takes the class of the polygon that
  covers its centre; where polygons overlap, the later one): the purity of a
  window is the area fraction of its majority class, unlabelled area
  counting against it;
- points with a class field: a point labels every window that contains it;
  a window's purity is the share of its points that belong to its majority
  class (with the default 0.9, in practice: windows whose points are all of
  one class); windows without a point are not chips;
- a class raster (reference land cover, any CRS and grid): brought onto the
  scene grid with nearest resampling; the purity is the pixel fraction of
  the majority class, nodata counting against it.

Windows with any nodata (masked, or non-finite) pixel in the chosen bands
are skipped.  Chips are grouped by spatial blocks (``block_size``) per
scene: the ``group`` column of ``chips.csv``, which ``geoseg prepare`` /
``geoseg train`` keep on one side of their split.

The window and purity arithmetic (:func:`window_grid`, :func:`window_sums`,
:func:`window_labels`, :func:`point_counts`, :func:`block_of`,
:func:`sample_per_class`) is pure; :func:`make_chips` does the I/O.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GeosegWarning, InputError, OutputError, OutputExistsError, first_line, ignoring

log = logging.getLogger(__name__)

MANIFEST = "chips.csv"
SIDECAR = "chips.json"
COLUMNS = ("chip", "class", "scene", "col_off", "row_off", "width", "height", "left", "bottom", "right", "top",
           "crs", "pixel_size_x", "pixel_size_y", "purity", "group")
CELL_BUDGET = 8_000_000  # label cells (pixels or sub-pixels) per chunk of rows
DEFAULT_BLOCK_CHIPS = 8


class ChipWarning(GeosegWarning):
    """A scene or label gives no chip, or labels were partly left out."""


# --- configuration ---------------------------------------------------------------
@dataclass(frozen=True)
class BlockSize:
    """Side of the spatial blocks chips are grouped by: metres (``m``) or pixels (``px``)."""

    value: float
    unit: str  # "m" or "px"

    @classmethod
    def parse(cls, text: str) -> BlockSize:
        """``640m``, ``640`` (metres) or ``64px``."""
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(m|px)?\s*", str(text))
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"block size {text!r} is not a positive number of metres (640, 640m) or pixels (64px)")
        return cls(float(m.group(1)), m.group(2) or "m")

    def pixels(self, res_x: float, is_geographic: bool, scene: str) -> int:
        if self.unit == "px":
            return max(1, int(round(self.value)))
        if is_geographic:
            raise InputError(f"{scene}: the scene's CRS is geographic (degrees); give --block-size in pixels "
                             f"(e.g. {int(round(self.value))}px) or warp the scene to a projected CRS")
        return max(1, int(round(self.value / abs(res_x))))

    def describe(self) -> str:
        return f"{self.value:g}{self.unit}"


@dataclass(frozen=True)
class ChipConfig:
    """Options of :func:`make_chips` (the ``geoseg chips`` options)."""

    size: int = 64
    stride: int | None = None  # default: size
    min_purity: float = 0.9
    bands: tuple[int, ...] | None = None  # default: every band but alpha
    max_per_class: int | None = None
    block_size: BlockSize | None = None  # default: DEFAULT_BLOCK_CHIPS chips wide
    field: str | None = None
    seed: int = 0
    supersample: int = 4
    overwrite: bool = False

    @property
    def step(self) -> int:
        return self.stride or self.size

    def check(self) -> None:
        if self.size < 2:
            raise ValueError(f"chip size {self.size} must be at least 2 px")
        if self.step < 1:
            raise ValueError(f"stride {self.step} must be at least 1 px")
        if not 0 < self.min_purity <= 1:
            raise ValueError(f"min purity {self.min_purity} must be in (0, 1]")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError("max per class must be at least 1")
        if self.supersample < 1:
            raise ValueError("supersample must be at least 1")


@dataclass
class ChipsResult:
    """What :func:`make_chips` wrote."""

    out_dir: str
    manifest: str
    counts: dict[str, int]
    skipped: dict[str, int]
    n_groups: int
    band_names: list[str]
    dtype: str
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.counts.values())


# --- pure window arithmetic ----------------------------------------------------------
def window_grid(width: int, height: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of every ``size`` px window that lies wholly
    inside a ``width`` x ``height`` grid, every ``stride`` px."""
    nr = (height - size) // stride + 1 if height >= size else 0
    nc = (width - size) // stride + 1 if width >= size else 0
    return np.arange(nr) * stride, np.arange(nc) * stride


def window_sums(mask: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Sum of ``mask`` (h, w) over ``size`` x ``size`` windows every ``stride``
    cells: (n_rows, n_cols) int64, by an integral image (any stride)."""
    h, w = mask.shape
    nr = (h - size) // stride + 1 if h >= size else 0
    nc = (w - size) // stride + 1 if w >= size else 0
    if nr == 0 or nc == 0:
        return np.zeros((max(nr, 0), max(nc, 0)), np.int64)
    ii = np.zeros((h + 1, w + 1), np.int64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1, out=ii[1:, 1:])
    r = np.arange(nr) * stride
    c = np.arange(nc) * stride
    r1, c1 = r + size, c + size
    return ii[np.ix_(r1, c1)] - ii[np.ix_(r, c1)] - ii[np.ix_(r1, c)] + ii[np.ix_(r, c)]


def window_labels(labels: np.ndarray, size: int, stride: int, unlabelled: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Majority label and its fraction (purity) of every window of a label grid.

    ``labels`` (h, w) integer, ``unlabelled`` where no class is known (counts
    against purity).  Returns (n_rows, n_cols) labels (``unlabelled`` where a
    window holds no label at all) and float64 purities in [0, 1].  Ties go to
    the lowest label.
    """
    present = np.unique(labels)
    present = present[present != unlabelled]
    sums = window_sums(np.zeros(labels.shape, bool), size, stride)
    best = np.full(sums.shape, unlabelled, np.int64)
    best_n = np.zeros(sums.shape, np.int64)
    for v in present:  # ascending: a later, larger label wins only when strictly more
        n = window_sums(labels == v, size, stride)
        better = n > best_n
        best[better] = v
        best_n[better] = n[better]
    return best, best_n / float(size * size)


def point_counts(rows: np.ndarray, cols: np.ndarray, codes: np.ndarray, n_classes: int, size: int, stride: int,
                 n_rows: int, n_cols: int) -> np.ndarray:
    """(n_classes, n_rows, n_cols) number of points of each class in each window.

    ``rows``/``cols`` are fractional pixel coordinates (row 0.5 is the centre
    of the first pixel row); window (i, j) covers ``[i*stride, i*stride+size)``
    rows and the same for columns.
    """
    out = np.zeros((n_classes, n_rows, n_cols), np.int64)
    for r, c, k in zip(rows, cols, codes):
        i0, i1 = int(max(0, np.floor((r - size) / stride) + 1)), int(min(n_rows - 1, np.floor(r / stride)))
        j0, j1 = int(max(0, np.floor((c - size) / stride) + 1)), int(min(n_cols - 1, np.floor(c / stride)))
        if i1 >= i0 and j1 >= j0:
            out[int(k), i0 : i1 + 1, j0 : j1 + 1] += 1
    return out


def points_to_labels(counts: np.ndarray, unlabelled: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Majority class and its share of the points, per window, from :func:`point_counts`."""
    total = counts.sum(axis=0)
    lab = np.where(total > 0, counts.argmax(axis=0), unlabelled)
    purity = np.where(total > 0, counts.max(axis=0) / np.maximum(total, 1), 0.0)
    return lab.astype(np.int64), purity


def block_of(row_off: np.ndarray, col_off: np.ndarray, size: int, block_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Spatial block (row, col) of windows: the block holding the window's centre."""
    half = size / 2.0
    return (np.floor((np.asarray(row_off) + half) / block_px).astype(np.int64),
            np.floor((np.asarray(col_off) + half) / block_px).astype(np.int64))


def sample_per_class(labels: list[str], n: int | None, seed: int = 0) -> np.ndarray:
    """Indices (ascending) keeping at most ``n`` items of each label: a seeded
    random sample, the same for the same labels, ``n`` and ``seed``."""
    idx = np.arange(len(labels))
    if n is None:
        return idx
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels, dtype=object)
    keep = []
    for c in sorted(set(labels)):
        ii = idx[lab == c]
        keep.append(ii if len(ii) <= n else np.sort(rng.choice(ii, n, replace=False)))
    return np.sort(np.concatenate(keep)) if keep else idx[:0]


def safe_name(name: str) -> str:
    """A class name usable as a folder name (path separators and control
    characters replaced; never empty, never hidden)."""
    s = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", str(name).strip())
    s = s.lstrip(".") or "_"
    return s


def band_name(colorinterp: Any, description: str | None, index: int) -> str:
    """A band's name: its colour interpretation (red, nir, ...), else its
    description (lower case), else ``band<index>``."""
    ci = getattr(colorinterp, "name", str(colorinterp))
    if ci not in ("undefined", "gray", "grey", "alpha", "palette"):
        return ci.lower()
    if description and description.strip():
        return description.strip().lower()
    return f"band{index}"


# --- labels ------------------------------------------------------------------------------
@dataclass
class VectorLabels:
    """Polygons or points with a class field (in the file's CRS)."""

    path: str
    field: str
    kind: str  # "polygon" or "point"
    classes: list[str]
    gdf: Any  # GeoDataFrame: geometry and a ``code`` column (index into classes)
    crs_wkt: str


@dataclass
class RasterLabels:
    """A class raster; values are named by its metadata, else by their number."""

    path: str
    names: dict[int, str]
    crs_wkt: str
    bounds: tuple[float, float, float, float]
    kind: str = "raster"

    def name_of(self, value: int) -> str:
        return self.names.get(int(value), str(int(value)))


def _value_name(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def open_labels(path: str, field_name: str | None = None) -> VectorLabels | RasterLabels:
    """Open a label file: polygons/points (any OGR format) or a class raster."""
    from .reference import is_vector_path

    path = str(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; check the path of --labels")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file (0 bytes); expected polygons, points or a class raster")
    if is_vector_path(path):
        return _open_vector(path, field_name)
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with ignoring(NotGeoreferencedWarning):
            src = rasterio.open(path)
    except RasterioError:
        return _open_vector(path, field_name)
    with src:
        return _raster_labels(src, path, field_name)


def _raster_labels(src, path: str, field_name: str | None) -> RasterLabels:
    from affine import Affine

    from .reference import raster_class_names

    if src.crs is None:
        raise InputError(f"{path}: the label raster has no CRS; assign one (e.g. `rio edit-info --crs EPSG:XXXX`)")
    if src.transform == Affine.identity():
        raise InputError(f"{path}: the label raster has no geotransform; expected a georeferenced class raster")
    if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
        raise InputError(f"{path}: the label raster is {src.dtypes[0]}; expected an integer class raster")
    if field_name:
        log.warning("%s: --field applies to vector labels; ignored for a raster", path)
    names = raster_class_names(src, path)
    if src.nodata is not None:
        names.pop(int(src.nodata), None)
    return RasterLabels(path, names, src.crs.to_wkt(), tuple(src.bounds))


def _open_vector(path: str, field_name: str | None) -> VectorLabels:
    import pyogrio
    import shapely
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    from .reference import vector_layer

    layer = vector_layer(path)
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:  # noqa: BLE001 - GDAL/OGR errors of many kinds
        raise InputError(f"{path}: not a readable raster or vector file ({first_line(exc)}); expected polygons "
                         "or points (GeoPackage, GeoJSON, Shapefile) or a class raster (GeoTIFF)") from None
    fields = [str(f) for f in info["fields"]]
    dtypes = [str(d) for d in info["dtypes"]]
    crs = info.get("crs")
    if not crs:
        raise InputError(f"{path}: the labels have no CRS (unknown coordinate system); set one, e.g. "
                         f"`ogr2ogr -a_srs EPSG:XXXX fixed.gpkg {os.path.basename(path)}`")
    try:
        crs_wkt = CRS.from_user_input(crs).to_wkt()
    except CRSError:
        raise InputError(f"{path}: the labels' CRS cannot be read ({str(crs)[:60]}); set one, e.g. "
                         f"`ogr2ogr -a_srs EPSG:XXXX fixed.gpkg {os.path.basename(path)}`") from None
    from .reference import choose_field

    fname = choose_field(path, fields, dtypes, field_name)
    try:
        gdf = pyogrio.read_dataframe(path, layer=layer, columns=[fname])
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read features ({first_line(exc)}); the file may be corrupt") from None
    geoms = gdf.geometry.values
    ok = ~(gdf[fname].isna().to_numpy()) & ~np.asarray(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    tid = np.asarray(shapely.get_type_id(geoms))
    poly = ok & np.isin(tid, [3, 6])
    pts = ok & np.isin(tid, [0, 4])
    if poly.any():
        kind, keep = "polygon", poly
        if pts.any():
            warnings.warn(f"{path}: {int(pts.sum())} point(s) among the polygons were left out (use one geometry "
                          "type per label file)", ChipWarning, stacklevel=3)
    elif pts.any():
        kind, keep = "point", pts
    else:
        raise InputError(f"{path}: no polygon or point with a value in field {fname!r}; expected polygons or points "
                         "with a class name")
    other = ok & ~poly & ~pts
    if other.any():
        warnings.warn(f"{path}: {int(other.sum())} feature(s) are neither polygons nor points and were left out",
                      ChipWarning, stacklevel=3)
    gdf = gdf[keep].copy()
    if kind == "polygon":
        bad = ~shapely.is_valid(gdf.geometry.values)
        if bad.any():
            gdf.loc[bad, gdf.geometry.name] = shapely.make_valid(gdf.geometry.values[bad])
    else:
        gdf = gdf.explode(index_parts=False)
    names = [_value_name(v) for v in gdf[fname].to_numpy()]
    classes = sorted(set(names))
    code = {n: i for i, n in enumerate(classes)}
    gdf["code"] = np.array([code[n] for n in names], np.int64)
    return VectorLabels(path, fname, kind, classes, gdf[["code", gdf.geometry.name]], crs_wkt)


# --- scenes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    path: str
    stem: str
    width: int
    height: int
    transform: Any
    crs_wkt: str
    crs_text: str
    res: tuple[float, float]
    is_geographic: bool
    bidx: tuple[int, ...]
    dtype: str
    band_names: tuple[str, ...]
    nodata: float | None


def open_chip_scene(path: str, bands: tuple[int, ...] | None) -> Scene:
    from affine import Affine
    from rasterio.enums import ColorInterp

    from .naming import scene_stem
    from .windows import is_north_up

    from .raster import check_earth_crs, open_raster

    with open_raster(path, "scene") as src:
        if src.crs is None:
            raise InputError(f"{path}: the scene has no CRS (unknown coordinate system); assign one "
                             "(e.g. `rio edit-info --crs EPSG:XXXX`)")
        check_earth_crs(src.crs, path)
        if src.transform == Affine.identity():
            raise InputError(f"{path}: the scene has no geotransform; expected a georeferenced scene")
        if not is_north_up(src.transform):
            raise InputError(f"{path}: transform is rotated, sheared or flipped; expected a north-up grid: "
                             "warp it first (`gdalwarp` or `rio warp`)")
        ci = list(src.colorinterp)
        if bands:
            bad = [b for b in bands if b < 1 or b > src.count]
            if bad:
                raise InputError(f"{path}: --bands {','.join(map(str, bands))} names band(s) {bad} but the scene "
                                 f"has {src.count}")
            bidx = tuple(bands)
        else:
            bidx = tuple(i + 1 for i in range(src.count) if ci[i] != ColorInterp.alpha)
        dtypes = {src.dtypes[b - 1] for b in bidx}
        if len(dtypes) != 1:
            raise InputError(f"{path}: the chosen bands have mixed dtypes {sorted(dtypes)}; choose bands of one "
                             "dtype with --bands")
        if np.dtype(next(iter(dtypes))).kind not in "uif":
            raise InputError(f"{path}: the bands are {next(iter(dtypes))}; expected integer or real pixel values: "
                             "take the amplitude first (e.g. gdal_calc or rio calc)")
        names = tuple(band_name(ci[b - 1], src.descriptions[b - 1], b) for b in bidx)
        epsg = src.crs.to_epsg()
        return Scene(path, scene_stem(path), src.width, src.height, src.transform, src.crs.to_wkt(),
                     f"EPSG:{epsg}" if epsg else src.crs.to_wkt(), src.res, bool(src.crs.is_geographic), bidx,
                     dtypes.pop(), names, src.nodata)


def _scene_bounds(scene: Scene) -> tuple[float, float, float, float]:
    t = scene.transform
    xs, ys = zip(*[t @ (c, r) for c in (0, scene.width) for r in (0, scene.height)])
    return min(xs), min(ys), max(xs), max(ys)


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_bounds_in(labels: VectorLabels | RasterLabels, scene: Scene):
    """The labels' bounds in the scene's CRS (None where they cannot be placed)."""
    from rasterio.warp import transform_bounds

    b = tuple(labels.gdf.total_bounds) if isinstance(labels, VectorLabels) else labels.bounds
    if labels.crs_wkt == scene.crs_wkt:
        return b
    try:
        out = transform_bounds(labels.crs_wkt, scene.crs_wkt, *b, densify_pts=21)
    except Exception:  # noqa: BLE001 - no transformation between the CRSs
        return None
    return out if all(np.isfinite(out)) else None


def _chunks(scene: Scene, size: int, stride: int, cells_per_px: int):
    """Chunks of window rows: (first window row index, n window rows, pixel rows r0, r1)."""
    rows, _ = window_grid(scene.width, scene.height, size, stride)
    n = len(rows)
    per_row = max(1, scene.width * cells_per_px)
    k = max(1, int((CELL_BUDGET // per_row - size) // stride) + 1)
    for i0 in range(0, n, k):
        m = min(k, n - i0)
        r0 = int(rows[i0])
        yield i0, m, r0, r0 + (m - 1) * stride + size


def _labels_chunk(labels, scene: Scene, gdf_scene, r0: int, r1: int, s: int, stride: int, size: int):
    """Majority label and purity of the windows whose rows lie in ``r0:r1``."""
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.features import rasterize
    from rasterio.warp import reproject

    t = scene.transform @ Affine.translation(0, r0)
    h, w = r1 - r0, scene.width
    if isinstance(labels, RasterLabels):
        grid = np.full((h, w), -1, np.int32)
        with rasterio.open(labels.path) as src:
            src_nd = src.nodata
            with ignoring(NotGeoreferencedWarning):  # in-memory datasets (see outputs._shapes)
                reproject(rasterio.band(src, 1), grid, src_nodata=src_nd, dst_transform=t, dst_crs=scene.crs_wkt,
                          dst_nodata=-1, resampling=Resampling.nearest)
        return window_labels(grid, size, stride)
    if labels.kind == "polygon":
        import shapely

        geoms = gdf_scene.geometry.values
        xs, ys = zip(*[t @ (c, r) for c in (0, w) for r in (0, h)])
        hit = shapely.intersects(geoms, shapely.box(min(xs), min(ys), max(xs), max(ys)))
        if not hit.any():
            nr = (h - size) // stride + 1
            nc = (w - size) // stride + 1
            return np.full((nr, nc), -1, np.int64), np.zeros((nr, nc))
        with ignoring(NotGeoreferencedWarning):  # in-memory datasets (see outputs._shapes)
            sub = rasterize(zip(geoms[hit], gdf_scene["code"].to_numpy()[hit].tolist()), out_shape=(h * s, w * s),
                            transform=t @ Affine.scale(1.0 / s), fill=-1, dtype=np.int32)
        return window_labels(sub, size * s, stride * s)
    # points
    g = gdf_scene.geometry.values
    import shapely

    x, y = shapely.get_x(g), shapely.get_y(g)
    cols, rows = ~t @ (x, y)
    nr = (h - size) // stride + 1
    nc = (w - size) // stride + 1
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    counts = point_counts(rows[inside], cols[inside], gdf_scene["code"].to_numpy()[inside], len(labels.classes),
                          size, stride, nr, nc)
    return points_to_labels(counts)


def _invalid_chunk(scene: Scene, r0: int, r1: int, size: int, stride: int) -> np.ndarray:
    """(n_rows, n_cols) number of invalid pixels (masked in any chosen band,
    or non-finite) in each window of rows ``r0:r1``."""
    import rasterio
    from rasterio.windows import Window

    win = Window(0, r0, scene.width, r1 - r0)
    with rasterio.open(scene.path) as src:
        try:
            masks = src.read_masks(scene.bidx, window=win)
            bad = np.any(masks == 0, axis=0)
            if np.dtype(scene.dtype).kind == "f":
                bad |= ~np.all(np.isfinite(src.read(scene.bidx, window=win)), axis=0)
        except rasterio.errors.RasterioError as exc:
            from .raster import raise_unreadable

            raise_unreadable(scene.path, 0, r0, exc)
    return window_sums(bad, size, stride)



@dataclass
class _Candidate:
    scene: int
    row_off: int
    col_off: int
    label: int
    purity: float
    group: str


def make_chips(scenes: list[str], labels_path: str, out_dir: str, cfg: ChipConfig | None = None) -> ChipsResult:
    """Cut labelled chips from ``scenes`` into ``out_dir``/<class>/ and write
    ``out_dir``/chips.csv and chips.json.

    Raises
    ------
    InputError
        A scene or label file that cannot be used, labels that overlap no
        scene, or no window pure enough (one line, with the fix).
    OutputExistsError
        ``out_dir`` holds chips (or other files) and ``cfg.overwrite`` is False.
    """
    cfg = cfg or ChipConfig()
    cfg.check()
    if not scenes:
        raise InputError("no scene given; expected one or more GeoTIFF scenes")
    size, stride = cfg.size, cfg.step
    block = cfg.block_size or BlockSize(DEFAULT_BLOCK_CHIPS * size, "px")
    labels = open_labels(labels_path, cfg.field)
    opened = [open_chip_scene(str(p), cfg.bands) for p in scenes]
    first = opened[0]
    for sc in opened[1:]:
        if len(sc.bidx) != len(first.bidx) or sc.dtype != first.dtype:
            raise InputError(f"{sc.path}: {len(sc.bidx)} {sc.dtype} band(s), but {first.path} gives "
                             f"{len(first.bidx)} {first.dtype}; chips of one set need the same bands "
                             "(choose them with --bands)")
    small = [sc for sc in opened if sc.width < size or sc.height < size]
    if small and len(small) == len(opened):
        sc = small[0]
        raise InputError(f"{sc.path}: the scene is {sc.width} x {sc.height} px, smaller than one {size} px chip; "
                         f"expected scenes of at least {size} x {size} px: lower --size")
    # unique stems for chip names and groups
    stems: list[str] = []
    seen: Counter[str] = Counter()
    for sc in opened:
        seen[sc.stem] += 1
        stems.append(sc.stem if seen[sc.stem] == 1 else f"{sc.stem}_{seen[sc.stem]}")
    _prepare_out(out_dir, cfg.overwrite)

    cands: list[_Candidate] = []
    skipped: Counter[str] = Counter()
    overlapping = 0
    block_px: dict[str, int] = {}
    for si, sc in enumerate(opened):
        lb = _label_bounds_in(labels, sc)
        if lb is None or not _overlaps(lb, _scene_bounds(sc)):
            warnings.warn(f"{sc.path}: the labels {os.path.basename(labels_path)} do not overlap this scene; "
                          "no chip from it", ChipWarning, stacklevel=2)
            continue
        overlapping += 1
        bpx = block.pixels(sc.res[0], sc.is_geographic, sc.path)
        block_px[stems[si]] = bpx
        gdf_scene = None
        if isinstance(labels, VectorLabels):
            gdf_scene = labels.gdf.to_crs(sc.crs_wkt) if labels.crs_wkt != sc.crs_wkt else labels.gdf
        s = cfg.supersample if isinstance(labels, VectorLabels) and labels.kind == "polygon" else 1
        cells = s * s if s > 1 else 1
        for _, m, r0, r1 in _chunks(sc, size, stride, cells):
            lab, pur = _labels_chunk(labels, sc, gdf_scene, r0, r1, s, stride, size)
            bad = _invalid_chunk(sc, r0, r1, size, stride)
            lab, pur, bad = lab[:m], pur[:m], bad[:m]
            labelled = lab >= 0
            pure = labelled & (pur >= cfg.min_purity - 1e-9)
            ok = pure & (bad == 0)
            skipped["unlabelled"] += int((~labelled).sum())
            skipped["impure"] += int((labelled & ~pure).sum())
            skipped["nodata"] += int((pure & (bad > 0)).sum())
            ii, jj = np.nonzero(ok)
            row_off = r0 + ii * stride
            col_off = jj * stride
            br, bc = block_of(row_off, col_off, size, bpx)
            for k in range(len(ii)):
                v = int(lab[ii[k], jj[k]])
                cands.append(_Candidate(si, int(row_off[k]), int(col_off[k]), v, float(pur[ii[k], jj[k]]),
                                        f"{stems[si]}:{int(br[k])}:{int(bc[k])}"))
    if overlapping == 0:
        raise InputError(f"{labels_path}: the labels do not overlap any scene (e.g. {opened[0].path}); use labels "
                         "of the same area (any CRS: they are reprojected)")
    if not cands:
        raise InputError(f"{labels_path}: no {size} px window is at least {cfg.min_purity:.0%} one class with no "
                         f"nodata ({dict(skipped)} windows skipped); lower --min-purity or --size, or label more area")

    def cname(v: int) -> str:
        if isinstance(labels, VectorLabels):
            return safe_name(labels.classes[v])
        return safe_name(labels.name_of(v))

    names = [cname(c.label) for c in cands]
    keep = sample_per_class(names, cfg.max_per_class, cfg.seed)
    skipped["over_max_per_class"] = len(cands) - len(keep)
    rows_out = _write_chips(opened, stems, [cands[i] for i in keep], [names[i] for i in keep], out_dir, size)
    counts = Counter(r["class"] for r in rows_out)
    n_groups = len({r["group"] for r in rows_out})
    sidecar = {
        "size": size, "stride": stride, "min_purity": cfg.min_purity, "bands": list(first.bidx),
        "band_names": list(first.band_names), "dtype": first.dtype, "labels": os.path.abspath(labels_path),
        "label_kind": labels.kind, "field": getattr(labels, "field", None),
        "supersample": cfg.supersample if labels.kind == "polygon" else None,
        "block_size": block.describe(), "block_size_px": block_px, "max_per_class": cfg.max_per_class,
        "seed": cfg.seed, "classes": dict(sorted(counts.items())), "groups": n_groups, "skipped": dict(skipped),
        "nodata_rule": "a window with any nodata pixel is skipped",
        "scenes": [os.path.abspath(s.path) for s in opened],
    }
    _write_json(os.path.join(out_dir, SIDECAR), sidecar)
    manifest = os.path.join(out_dir, MANIFEST)
    _write_csv(manifest, rows_out)
    log.info("%d chips in %d classes (%d spatial groups); skipped %s", len(rows_out), len(counts), n_groups,
             dict(skipped))
    return ChipsResult(out_dir, manifest, dict(sorted(counts.items())), dict(skipped), n_groups,
                       list(first.band_names), first.dtype, sidecar)


def _prepare_out(out_dir: str, overwrite: bool) -> None:
    manifest = os.path.join(out_dir, MANIFEST)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            what = "holds chips (chips.csv)" if os.path.exists(manifest) else "exists and is not empty"
            raise OutputExistsError(f"{out_dir}: {what}; pass --overwrite or choose another folder")
        if os.path.exists(manifest):  # remove the old chips, and only those
            with open(manifest, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    p = os.path.join(out_dir, row["chip"])
                    if os.path.isfile(p):
                        os.remove(p)
            os.remove(manifest)
            if os.path.exists(os.path.join(out_dir, SIDECAR)):
                os.remove(os.path.join(out_dir, SIDECAR))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the folder ({first_line(exc)})") from None


def _write_chips(opened: list[Scene], stems: list[str], cands: list[_Candidate], names: list[str], out_dir: str,
                 size: int) -> list[dict]:
    rows: list[dict] = []
    try:
        _write_each(opened, stems, cands, names, out_dir, size, rows)
    except BaseException:  # no chips without their manifest: remove what this run wrote
        for r in rows:
            p = os.path.join(out_dir, r["chip"])
            if os.path.isfile(p):
                os.remove(p)
        raise
    rows.sort(key=lambda r: (r["class"], r["chip"]))
    return rows


def _write_each(opened: list[Scene], stems: list[str], cands: list[_Candidate], names: list[str], out_dir: str,
                size: int, rows: list[dict]) -> None:
    """Write each chip (temporary name, then renamed), appending its manifest
    row to ``rows`` as soon as its file is in place."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    by_scene: dict[int, list[int]] = {}
    for k, c in enumerate(cands):
        by_scene.setdefault(c.scene, []).append(k)
    for si in sorted(by_scene):
        sc = opened[si]
        with rasterio.open(sc.path) as src:
            ci = [src.colorinterp[b - 1] for b in sc.bidx]
            desc = [src.descriptions[b - 1] for b in sc.bidx]
            for k in by_scene[si]:
                c, cls = cands[k], names[k]
                win = Window(c.col_off, c.row_off, size, size)
                try:
                    data = src.read(sc.bidx, window=win)
                except rasterio.errors.RasterioError as exc:
                    from .raster import raise_unreadable

                    raise_unreadable(sc.path, c.col_off, c.row_off, exc)
                t = src.transform @ Affine.translation(c.col_off, c.row_off)
                rel = os.path.join(cls, f"{stems[si]}_r{c.row_off:06d}_c{c.col_off:06d}.tif")
                final = os.path.join(out_dir, rel)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                tmp = final[:-4] + ".tmp.tif"
                try:
                    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=len(sc.bidx),
                                       dtype=sc.dtype, crs=src.crs, transform=t, nodata=sc.nodata,
                                       compress="deflate") as dst:
                        dst.write(data)
                        dst.colorinterp = ci
                        for b, d in enumerate(desc, 1):
                            if d:
                                dst.set_band_description(b, d)
                        dst.update_tags(CLASS=cls, SCENE=os.path.basename(sc.path))
                    os.replace(tmp, final)
                except (OSError, rasterio.errors.RasterioError) as exc:
                    if os.path.exists(tmp):
                        os.remove(tmp)
                    raise OutputError(f"{final}: cannot write the chip ({first_line(exc)})") from None
                left, top = t @ (0, 0)
                right, bottom = t @ (size, size)
                rows.append({"chip": rel.replace(os.sep, "/"), "class": cls, "scene": os.path.abspath(sc.path),
                             "col_off": c.col_off, "row_off": c.row_off, "width": size, "height": size,
                             "left": left, "bottom": min(bottom, top), "right": right, "top": max(bottom, top),
                             "crs": sc.crs_text, "pixel_size_x": abs(sc.res[0]), "pixel_size_y": abs(sc.res[1]),
                             "purity": round(c.purity, 6), "group": c.group})


def _write_csv(path: str, rows: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _write_json(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


# --- reading chips back (training) ------------------------------------------------------
def is_chips_dir(path: str) -> bool:
    """True when ``path`` is a folder written by :func:`make_chips`."""
    return os.path.isfile(os.path.join(path, MANIFEST))


def read_chips_manifest(data_dir: str) -> tuple[list[dict], dict]:
    """The rows of ``chips.csv`` and the ``chips.json`` parameters (empty if absent)."""
    man = os.path.join(data_dir, MANIFEST)
    try:
        with open(man, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{man}: not a CSV text file ({first_line(exc)}); expected the manifest written by "
                         "`geoseg chips`: cut the chips again") from None
    missing = [c for c in ("chip", "class", "group") if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{man}: lacks column(s) {', '.join(missing)}; "
                         "expected a manifest written by `geoseg chips`")
    outside = [r["chip"] for r in rows if not r["chip"] or os.path.isabs(r["chip"])
               or ".." in r["chip"].replace("\\", "/").split("/")]
    if outside:
        raise InputError(f"{man}: chip path {outside[0]!r} is not inside the chips folder; expected paths relative "
                         "to it (CLASS/NAME.tif), as `geoseg chips` writes them")
    side = {}
    p = os.path.join(data_dir, SIDECAR)
    if os.path.isfile(p):
        with open(p, encoding="utf-8") as f:
            side = json.load(f)
    return rows, side


def read_chip(path: str) -> tuple[np.ndarray, list[str]]:
    """A chip's pixels (band, h, w) in its source dtype, and its band names."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            names = [band_name(c, d, i + 1) for i, (c, d) in enumerate(zip(src.colorinterp, src.descriptions))]
            return src.read(), names
    except RasterioError as exc:
        raise ValueError(f"cannot read chip ({first_line(exc)})") from None


__all__ = ["BlockSize", "ChipConfig", "ChipsResult", "ChipWarning", "make_chips", "window_grid", "window_sums",
           "window_labels", "point_counts", "points_to_labels", "block_of", "sample_per_class"]
