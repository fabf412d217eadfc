"""Class maps and references on the class grid (file I/O), and the NDWI
water reference.

- :func:`open_class_map` describes a class raster (grid, CRS, class names).
- :func:`open_reference` opens a reference, a class raster in any CRS, grid
  or resolution, or a vector file with a class field, and checks it against
  the class map; :func:`reference_on_grid` then yields, row chunk by row
  chunk of the class grid, the majority reference class of each cell and the
  share of the cell the reference covers.
- :func:`ndwi_reference` thresholds NDWI = (green - NIR) / (green + NIR)
  (McFeeters 1996) into a water / not-water class raster, block by block.

Memory is bounded by a chunk of the class grid (and the reference pixels or
sub-cells under it), never by the whole reference.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from xml.etree import ElementTree

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from . import styles
from .errors import GeosegWarning, InputError, OutputError, OutputExistsError, first_line, ignoring
from .raster import check_earth_crs, open_raster, raise_unreadable

log = logging.getLogger(__name__)

NODATA = 255
VECTOR_EXTENSIONS = (".gpkg", ".geojson", ".json", ".shp", ".parquet", ".geoparquet", ".fgb", ".gml", ".kml",
                     ".geojsonl", ".geojsons", ".sqlite")
PARQUET_EXTENSIONS = (".parquet", ".geoparquet")
SOURCE_BUDGET = 8_000_000  # reference pixels (raster) or sub-cells (vector) per chunk


def norm_name(name: str) -> str:
    """How class names are compared: case, spaces and hyphens do not matter
    (``Green area`` == ``green_area``)."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


# --- vector files -----------------------------------------------------------------
def vector_layer(path: str) -> str | None:
    """The layer of a vector file to read: its only layer with geometries
    (a GeoPackage's ``layer_styles`` table, e.g. in geoseg's own
    ``NAME_polygons.gpkg``, is not one); where there are several, the first,
    with a :class:`GeosegWarning` naming the others.  None for a file of one
    layer (or one pyogrio cannot list)."""
    import pyogrio

    try:
        layers = pyogrio.list_layers(path)
    except Exception:  # noqa: BLE001 - the caller's read_info reports an unreadable file
        return None
    if len(layers) <= 1:
        return None
    spatial = [str(name) for name, geom in layers if geom is not None]
    if len(spatial) > 1:
        warnings.warn(f"{path}: {len(spatial)} layers with geometries ({', '.join(spatial)}); reading the first, "
                      f"{spatial[0]!r}: to use another, save it alone (ogr2ogr out.gpkg {os.path.basename(path)} "
                      "LAYER)", GeosegWarning, stacklevel=3)
    return spatial[0] if spatial else None


# --- class names of a raster ---------------------------------------------------
def raster_class_names(src, path: str) -> dict[int, str]:
    """``{value: name}`` of band 1 of an open raster: its ``CLASS_NAMES`` tag
    (geoseg), else its ``CLASS_<i>`` band tags, else the category names or
    raster attribute table of its ``.aux.xml`` (GDAL/QGIS).  Empty when it has none."""
    tag = src.tags().get("CLASS_NAMES")
    if tag:
        return {i: n.strip() for i, n in enumerate(tag.split(",")) if n.strip()}
    btags = src.tags(1)
    named = {int(k[6:]): v.strip() for k, v in btags.items() if re.fullmatch(r"CLASS_\d+", k) and v.strip()}
    if named:
        return named
    return _aux_names(path + ".aux.xml", src.nodata)


def _aux_names(aux: str, nodata) -> dict[int, str]:
    if not os.path.isfile(aux):
        return {}
    try:
        root = ElementTree.parse(aux).getroot()
    except (ElementTree.ParseError, OSError):
        return {}
    band = next((b for b in root.iter("PAMRasterBand") if b.get("band", "1") == "1"), None)
    if band is None:
        return {}
    cats = band.find("CategoryNames")
    if cats is not None:
        out = {i: (c.text or "").strip() for i, c in enumerate(cats.findall("Category"))}
        return {i: n for i, n in out.items() if n and not (nodata is not None and i == nodata)}
    rat = band.find("GDALRasterAttributeTable")
    if rat is None:
        return {}
    # a raster attribute table: the value column (usage MinMax=5, or named
    # value) and the name column (usage Name=2, or named class/name)
    defs = [(f.findtext("Name", "").strip().lower(), f.findtext("Usage", "")) for f in rat.findall("FieldDefn")]
    val_col = next((i for i, (n, u) in enumerate(defs) if u == "5" or n in ("value", "pixel_value")), None)
    name_col = next((i for i, (n, u) in enumerate(defs) if u == "2"), None)
    if name_col is None:
        name_col = next((i for i, (n, _) in enumerate(defs) if n in ("class_name", "class", "name", "label")), None)
    if name_col is None:
        return {}
    out = {}
    for r, row in enumerate(rat.findall("Row")):
        f = [(x.text or "").strip() for x in row.findall("F")]
        try:
            v = int(float(f[val_col])) if val_col is not None else int(row.get("index", r))
        except (ValueError, IndexError):
            continue
        if name_col < len(f) and f[name_col] and not (nodata is not None and v == nodata):
            out[v] = f[name_col]
    return out


def _check_georef(src, path: str, what: str) -> None:
    if src.crs is None:
        raise InputError(f"{path}: the {what} has no CRS; assign one (e.g. `rio edit-info --crs EPSG:XXXX`)")
    check_earth_crs(src.crs, path)
    if src.transform == Affine.identity():
        raise InputError(f"{path}: the {what} has no geotransform; expected a georeferenced raster")


# --- the class map -------------------------------------------------------------
@dataclass(frozen=True)
class ClassGrid:
    """A class map: its grid, CRS, nodata and class names (no open handles)."""

    path: str
    width: int
    height: int
    transform: Affine
    crs_wkt: str
    nodata: int
    names: dict[int, str]
    dtype: str = "uint8"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        xs, ys = zip(*[self.transform @ (c, r) for c in (0, self.width) for r in (0, self.height)])
        return min(xs), min(ys), max(xs), max(ys)

    def rows_transform(self, r0: int) -> Affine:
        return self.transform @ Affine.translation(0, r0)

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` of band 1."""
        try:
            with rasterio.open(self.path) as src:
                return src.read(1, window=Window(0, r0, self.width, r1 - r0))
        except RasterioError as exc:
            raise InputError(f"{self.path}: cannot read rows {r0}-{r1} ({first_line(exc)}); "
                             "the file may be truncated or corrupt") from None


def open_class_map(path: str | os.PathLike) -> ClassGrid:
    """Describe a class raster; refuse one without class names or CRS."""
    path = str(path)
    src = open_raster(path, "class map")
    with src:
        _check_georef(src, path, "class map")
        dtype = src.dtypes[0]
        if not np.issubdtype(np.dtype(dtype), np.integer):
            raise InputError(f"{path}: the class map is {dtype}; expected an integer class raster "
                             "(e.g. NAME_classes.tif of `geoseg classify`)")
        names = raster_class_names(src, path)
        if not names:
            raise InputError(f"{path}: the class map has no class names (no CLASS_NAMES tag, no category "
                             "names in its .aux.xml); expected a geoseg class raster (NAME_classes.tif)")
        nodata = int(src.nodata) if src.nodata is not None and float(src.nodata).is_integer() else NODATA
        names = {v: n for v, n in names.items() if v != nodata}
        return ClassGrid(path, src.width, src.height, src.transform, src.crs.to_wkt(), nodata, names, dtype)


# --- references ------------------------------------------------------------------
@dataclass(frozen=True)
class RasterReference:
    """A class raster used as reference; labels are its raw values."""

    path: str
    width: int
    height: int
    transform: Affine
    crs_wkt: str
    names: dict[int, str]  # from its metadata; values without a name are called by their number
    kind: str = "raster"

    def name_of(self, value: int) -> str:
        return self.names.get(int(value), str(int(value)))


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


def is_vector_path(path: str) -> bool:
    return path.lower().endswith(VECTOR_EXTENSIONS) or path.lower().endswith(".shp.zip")


def open_reference(path: str | os.PathLike, grid: ClassGrid, field: str | None = None) -> RasterReference | VectorReference:
    """Open ``path`` as a raster or vector reference and check that it
    overlaps ``grid``.  One-line :class:`InputError` otherwise."""
    path = str(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; check the path of the reference")
    if is_vector_path(path):
        return _open_vector(path, grid, field)
    try:
        with ignoring(NotGeoreferencedWarning):
            src = rasterio.open(path)
    except RasterioError as exc:
        # not a raster: maybe a vector file with an unusual extension
        try:
            import pyogrio

            pyogrio.read_info(path)
        except Exception:  # noqa: BLE001 - neither a raster nor a vector file
            raise InputError(
                f"{path}: not a readable raster or vector file ({first_line(exc)}); expected a class raster "
                "(GeoTIFF) or polygons (GeoPackage, GeoJSON, Shapefile, GeoParquet)") from None
        return _open_vector(path, grid, field)
    with src:
        _check_georef(src, path, "reference")
        if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            raise InputError(f"{path}: the reference raster is {src.dtypes[0]}; expected an integer class raster "
                             "(threshold an index first, e.g. `geoseg reference ndwi`)")
        if field:
            log.warning("%s: --field applies to vector references; ignored for a raster", path)
        ref = RasterReference(path, src.width, src.height, src.transform, src.crs.to_wkt(),
                              raster_class_names(src, path))
        xs, ys = zip(*[src.transform @ (c, r) for c in (0, src.width) for r in (0, src.height)])
        rb = (min(xs), min(ys), max(xs), max(ys))
    _check_overlap(path, _to_grid_bounds(rb, ref.crs_wkt, grid), grid)
    return ref


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


def _open_vector(path: str, grid: ClassGrid, field_name: str | None) -> VectorReference:
    import shapely
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    is_parquet = path.lower().endswith(PARQUET_EXTENSIONS)
    layer = None
    try:
        if is_parquet:
            try:
                import geopandas as gpd

                gdf = gpd.read_parquet(path)
            except ImportError:
                raise InputError(f"{path}: reading GeoParquet needs pyarrow; `pip install pyarrow`, or convert "
                                 "the file to a GeoPackage") from None
            fields = [c for c in gdf.columns if c != gdf.geometry.name]
            dtypes = [str(gdf[c].dtype) for c in fields]
            crs = gdf.crs.to_wkt() if gdf.crs is not None else None
        else:
            import pyogrio

            layer = vector_layer(path)
            info = pyogrio.read_info(path, layer=layer)
            fields = [str(f) for f in info["fields"]]
            dtypes = [str(d) for d in info["dtypes"]]
            crs = info.get("crs")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyogrio/pyarrow errors of many kinds
        raise InputError(f"{path}: not a readable vector file ({first_line(exc)}); expected a GeoPackage, "
                         "GeoJSON, Shapefile or GeoParquet with polygons") from None
    if not crs:
        raise InputError(f"{path}: the reference has no CRS; set one (e.g. `ogr2ogr -a_srs EPSG:XXXX out.gpkg {os.path.basename(path)}`)")
    fname = choose_field(path, fields, dtypes, field_name)
    try:
        crs_wkt = CRS.from_user_input(crs).to_wkt()
    except CRSError:
        raise InputError(f"{path}: the reference's CRS cannot be read ({str(crs)[:60]}); set one (e.g. "
                         f"`ogr2ogr -a_srs EPSG:XXXX out.gpkg {os.path.basename(path)}`)") from None
    # read only what lies over the class map (bbox in the file's CRS)
    bbox = None
    try:
        from rasterio.warp import transform_bounds

        bbox = tuple(transform_bounds(grid.crs_wkt, crs_wkt, *grid.bounds, densify_pts=21))
        if not all(np.isfinite(bbox)):
            bbox = None
    except Exception:  # noqa: BLE001 - read everything instead
        bbox = None
    try:
        if not is_parquet:
            import geopandas as gpd

            gdf = gpd.read_file(path, engine="pyogrio", layer=layer, columns=[fname], bbox=bbox)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read features ({first_line(exc)}); the file may be corrupt") from None
    if gdf.crs is None:
        gdf = gdf.set_crs(crs_wkt, allow_override=True)
    if len(gdf) == 0:
        raise InputError(f"{path}: the reference does not overlap the class map {os.path.basename(grid.path)} "
                         "(no feature within its bounds); use a reference of the same area")
    gdf = gdf.to_crs(grid.crs_wkt)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    vals = gdf[fname]
    dropped = {}
    has_val = ~vals.isna().to_numpy()
    ok_geom = np.array([g is not None and not g.is_empty for g in geoms], bool)
    poly = ok_geom & np.isin(shapely.get_type_id(geoms), [3, 6])  # Polygon, MultiPolygon (None: -1)
    if (~has_val).sum():
        dropped["no class value"] = int((~has_val & ok_geom).sum())
    if (ok_geom & ~poly).sum():
        dropped["not a polygon"] = int((ok_geom & ~poly).sum())
        log.warning("%s: %d feature(s) are not polygons and were left out", path, dropped["not a polygon"])
    keep = has_val & poly
    if not keep.any():
        raise InputError(f"{path}: no polygon with a value in field {fname!r} over the class map; expected "
                         "polygons with a class name")
    geoms = geoms[keep]
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    names = np.array([_value_name(v) for v in vals.to_numpy()[keep]], dtype=object)
    classes = sorted(set(names.tolist()))
    code_of = {n: i for i, n in enumerate(classes)}
    codes = np.array([code_of[n] for n in names], dtype=np.int32)
    _check_overlap(path, tuple(shapely.total_bounds(geoms)), grid)
    return VectorReference(path, fname, classes, geoms, codes, dropped)


def _value_name(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def choose_field(path: str, fields: list[str], dtypes: list[str], field_name: str | None) -> str:
    """The class field: ``field_name`` (any case), else the only text field,
    else ``class`` / ``class_name``; a one-line :class:`InputError` listing the
    fields otherwise."""
    listed = ", ".join(fields) or "none"
    if field_name:
        if field_name in fields:
            return field_name
        close = [f for f in fields if f.lower() == field_name.lower()]
        if close:
            return close[0]
        raise InputError(f"{path}: no field {field_name!r}; the fields are: {listed}; pass --field NAME")
    strings = [f for f, d in zip(fields, dtypes) if d in ("object", "str", "string", "large_string") or d.startswith("str")]
    if len(strings) == 1:
        return strings[0]
    for cand in ("class", "class_name"):
        for f in fields:
            if f.lower() == cand:
                return f
    raise InputError(f"{path}: cannot tell which field holds the class (fields: {listed}); pass --field NAME")


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
    t = grid.rows_transform(r0)
    xs, ys = zip(*[t @ (c, r) for c in (0, grid.width) for r in (0, r1 - r0)])
    return min(xs), min(ys), max(xs), max(ys)


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
                with ignoring(NotGeoreferencedWarning):  # in-memory datasets (see outputs._shapes)
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
        with ignoring(NotGeoreferencedWarning):  # in-memory datasets (see outputs._shapes)
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


# --- styled class rasters (NDWI, disagreement) -------------------------------
def _hex(c) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in c[:3])


def write_category_styles(aux_path: str, qml_path: str, categories: dict[int, str], colours: dict[int, tuple],
                          description: str) -> None:
    """The GDAL PAM sidecar (category names, a colour table of the categories
    only) and the QGIS style of a categorical raster (:mod:`geoseg.styles`)."""
    values = sorted(categories)
    labels = [categories[v] for v in values]
    hexes = [_hex(colours[v]) for v in values]
    with open(aux_path, "w", encoding="utf-8") as f:
        f.write(styles.categories_aux_xml(values, labels, hexes, description))
    with open(qml_path, "w", encoding="utf-8") as f:
        f.write(styles.categories_qml(values, labels, hexes))


def tile_size(h: int, w: int) -> int:
    """Internal tile side: 256, or the smallest multiple of 16 holding a small grid."""
    return 256 if min(h, w) > 256 else 16 * max(1, min(16, -(-min(h, w) // 16)))


class StyledOutput:
    """A uint8 class raster written under temporary names (the ``.tif``, its
    ``.aux.xml`` and ``.qml``) and renamed by :meth:`commit` once complete."""

    def __init__(self, final: str, overwrite: bool) -> None:
        self.final = os.path.abspath(final)
        stem = os.path.splitext(self.final)[0]
        self.finals = {"tif": self.final, "aux": self.final + ".aux.xml", "qml": stem + ".qml"}
        if not overwrite and os.path.exists(self.final):
            raise OutputExistsError(f"{self.final}: output exists; pass --overwrite to replace it or choose another name")
        d = os.path.dirname(self.final)
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{d}: cannot create output folder ({exc.strerror})") from None
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        base = os.path.join(d, f".{os.path.basename(stem)}.{token}.tmp")
        self.tmps = {"tif": base + ".tif", "aux": base + ".aux.xml.tmp", "qml": base + ".qml"}

    def open(self, width: int, height: int, transform: Affine, crs, colormap: dict[int, tuple]):
        bs = tile_size(height, width)
        try:
            ds = rasterio.open(self.tmps["tif"], "w", driver="GTiff", width=width, height=height, count=1,
                               dtype="uint8", nodata=NODATA, crs=crs, transform=transform, tiled=True,
                               blockxsize=bs, blockysize=bs, compress="deflate", BIGTIFF="IF_SAFER")
        except (RasterioError, OSError) as exc:
            raise OutputError(f"{self.final}: cannot create output ({first_line(exc)})") from None
        ds.write_colormap(1, colormap)
        return ds

    def style(self, categories: dict[int, str], colours: dict[int, tuple], description: str) -> None:
        write_category_styles(self.tmps["aux"], self.tmps["qml"], categories, colours, description)

    def commit(self) -> None:
        # GDAL may leave its own PAM file beside the temporary tif
        stray = self.tmps["tif"] + ".aux.xml"
        if os.path.exists(stray):
            os.remove(stray)
        for k in ("tif", "aux", "qml"):
            if os.path.exists(self.tmps[k]):
                os.replace(self.tmps[k], self.finals[k])

    def cleanup(self) -> None:
        for p in (*self.tmps.values(), self.tmps["tif"] + ".aux.xml"):
            if os.path.exists(p):
                try:
                    os.remove(p)
                except OSError:
                    pass


# --- NDWI ------------------------------------------------------------------------
WATER_NAMES = {0: "not_water", 1: "water"}
WATER_COLOURS = {0: (230, 220, 190), 1: (31, 95, 191)}


@dataclass(frozen=True)
class BandSpec:
    """One band: a file and a band number in it."""

    path: str
    band: int

    def describe(self) -> str:
        return f"{os.path.basename(self.path)} band {self.band}"


def parse_band(value: str | int, scene: str) -> BandSpec:
    """``2`` -> band 2 of ``scene``; ``B08.tif`` -> band 1 of that file."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return BandSpec(str(scene), int(text))
    return BandSpec(text, 1)


@dataclass(frozen=True)
class NdwiResult:
    path: str
    water: int
    not_water: int
    nodata: int
    green: str
    nir: str
    threshold: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def ndwi_reference(scene: str | os.PathLike, green: BandSpec, nir: BandSpec, out: str | os.PathLike,
                   threshold: float = 0.0, overwrite: bool = False, block: int = 1024) -> NdwiResult:
    """Water where NDWI = (green - NIR) / (green + NIR) > ``threshold``.

    Output: uint8, 0 = not_water, 1 = water, 255 = nodata (masked or nodata
    in either band, not finite, or green + NIR = 0), on the grid and CRS of
    ``scene``; tag ``CLASS_NAMES=not_water,water``, colour table, category
    names (``.aux.xml``) and a QGIS style (``.qml``).  Read and written in
    ``block`` x ``block`` windows.
    """
    scene = str(scene)
    out = str(out)
    if not (np.isfinite(threshold) and -1 <= threshold < 1):
        raise InputError(f"--threshold {threshold}: NDWI lies in -1..1; expected a threshold from -1 to below 1 "
                         "(0 is McFeeters' water line)")
    if (os.path.abspath(green.path), green.band) == (os.path.abspath(nir.path), nir.band):
        raise InputError(f"{green.path}: --green and --nir are the same band ({green.describe()}); expected the "
                         "green and the near-infrared band (e.g. NAIP: --green 2 --nir 4)")
    if not out.lower().endswith((".tif", ".tiff")):
        raise InputError(f"{out}: the reference is written as a GeoTIFF; expected an output name ending in .tif")
    src = open_raster(scene, "scene")
    with src:
        _check_georef(src, scene, "scene")
        H, W, T, crs = src.height, src.width, src.transform, src.crs
    for spec, what in ((green, "--green"), (nir, "--nir")):
        _check_band(spec, what, scene, (H, W), T, crs)
    if os.path.abspath(out) in {os.path.abspath(scene), os.path.abspath(green.path), os.path.abspath(nir.path)}:
        raise InputError(f"{out}: the output would overwrite an input; choose another -o name")
    o = StyledOutput(out, overwrite)
    counts = np.zeros(3, np.int64)  # not_water, water, nodata
    ds = None
    try:
        ds = o.open(W, H, T, crs, {0: (*WATER_COLOURS[0], 255), 1: (*WATER_COLOURS[1], 255), 255: (0, 0, 0, 0)})
        with rasterio.open(green.path) as gs, rasterio.open(nir.path) as ns:
            for r in range(0, H, block):
                for c in range(0, W, block):
                    win = Window(c, r, min(block, W - c), min(block, H - r))
                    g, gv = _read_band(gs, green, win)
                    n, nv = _read_band(ns, nir, win)
                    s = g + n
                    ok = gv & nv & (s != 0)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        idx = np.where(ok, (g - n) / np.where(ok, s, 1.0), 0.0)
                    res = np.where(ok, (idx > threshold).astype(np.uint8), np.uint8(NODATA)).astype(np.uint8)
                    counts += [int(((res == 0)).sum()), int((res == 1).sum()), int((res == NODATA).sum())]
                    ds.write(res[None], window=win)
        ds.set_band_description(1, "class")
        ds.update_tags(CLASS_NAMES="not_water,water", GEOSEG_REFERENCE="ndwi",
                       NDWI=f"(green - nir) / (green + nir) > {threshold:g} (McFeeters 1996)",
                       NDWI_GREEN=green.describe(), NDWI_NIR=nir.describe())
        ds.update_tags(1, CLASS_0="not_water", CLASS_1="water")
        ds.close()
        o.style(WATER_NAMES, WATER_COLOURS, "class")
        o.commit()
    except BaseException:
        if ds is not None and not ds.closed:
            ds.close()
        o.cleanup()
        raise
    return NdwiResult(o.final, int(counts[1]), int(counts[0]), int(counts[2]), green.describe(), nir.describe(),
                      float(threshold))


def _check_band(spec: BandSpec, what: str, scene: str, shape, transform: Affine, crs) -> None:
    src = open_raster(spec.path, f"{what} band")
    with src:
        if spec.path != scene:
            _check_georef(src, spec.path, f"{what} band")
            if src.count != 1:
                raise InputError(f"{spec.path}: {what} file has {src.count} bands; expected a single-band raster "
                                 f"(or give a band number of the scene: {what} 2)")
            same = (src.height, src.width) == tuple(shape) and src.transform.almost_equals(transform, 1e-9) \
                and src.crs == crs
            if not same:
                raise InputError(f"{spec.path}: {what} raster is not on the scene's grid ({src.width}x{src.height}, "
                                 f"{src.crs}) vs {os.path.basename(scene)} ({shape[1]}x{shape[0]}, {crs}); "
                                 "resample it onto the scene's grid first (`rio warp --like`)")
        if not 1 <= spec.band <= src.count:
            raise InputError(f"{spec.path}: {what} {spec.band} names a band the raster does not have "
                             f"(it has {src.count}); choose 1..{src.count}")
        dtype = src.dtypes[spec.band - 1]
        if not (np.issubdtype(np.dtype(dtype), np.integer) or np.issubdtype(np.dtype(dtype), np.floating)):
            raise InputError(f"{spec.path}: {what} band {spec.band} is {dtype}; expected integer or real "
                             "reflectance values: take the amplitude first (e.g. gdal_calc or rio calc)")


def _read_band(src, spec: BandSpec, win: Window) -> tuple[np.ndarray, np.ndarray]:
    try:
        a = src.read(spec.band, window=win).astype(np.float64)
        v = src.read_masks(spec.band, window=win) > 0
    except RasterioError as exc:
        raise_unreadable(spec.path, int(win.col_off), int(win.row_off), exc)
    v &= np.isfinite(a)
    return np.where(v, a, 0.0), v


__all__ = [
    "BandSpec", "ClassGrid", "NdwiResult", "RasterReference", "ReferenceChunk", "StyledOutput", "VectorReference",
    "ndwi_reference", "norm_name", "open_class_map", "open_reference", "parse_band", "raster_class_names",
    "reference_on_grid", "reference_values", "write_category_styles",
]
