"""The one reader of class features: polygons (or points) with a class
field, for ``geoseg evaluate-scene`` references and ``geoseg chips`` labels.

:func:`read_class_features` reads GeoPackage, GeoJSON, Shapefile, any other
OGR format, and GeoParquet (through pyarrow), and applies one set of rules:

- layer: ``layer`` if given, else the file's only layer with geometries (a
  GeoPackage's ``layer_styles`` table is none), else the first, with a
  :class:`~geoseg.errors.GeosegWarning` naming the others;
- field: :func:`choose_field` (``--field``, else the only field, the only
  text field, ``class`` or ``class_name``);
- CRS: the file must have one that lies on the Earth
  (:func:`geoseg.checks.check_vector_crs`); callers reproject the features
  to their grid with :meth:`ClassFeatures.to_crs`;
- ``bbox`` (bounds and their CRS): only features that reach into it;
- geometries: polygons (invalid ones made valid) or, where the caller
  accepts them (``points=True``), points when the file has no polygon;
  features without a class value or of another kind are counted in
  ``dropped`` (and named in a warning);
- names: :func:`value_name` (``1.0`` and ``1`` are both class ``"1"``).

Every failure is one :class:`~geoseg.errors.InputError` line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any

import numpy as np

from .checks import check_vector_crs
from .errors import GeosegWarning, InputError, first_line

__all__ = ["ClassFeatures", "PARQUET_EXTENSIONS", "VECTOR_EXTENSIONS", "choose_field", "choose_layer",
           "is_vector_path", "read_class_features", "value_name"]

VECTOR_EXTENSIONS = (".gpkg", ".geojson", ".json", ".shp", ".parquet", ".geoparquet", ".fgb", ".gml", ".kml",
                     ".geojsonl", ".geojsons", ".sqlite")
PARQUET_EXTENSIONS = (".parquet", ".geoparquet")
_POLYGON, _POINT = (3, 6), (0, 4)  # shapely type ids: Polygon, MultiPolygon; Point, MultiPoint
_FORMATS = "GeoPackage, GeoJSON, Shapefile or GeoParquet"


def is_vector_path(path: str) -> bool:
    """Whether ``path`` names a vector file by its extension."""
    p = path.lower()
    return p.endswith(VECTOR_EXTENSIONS) or p.endswith(".shp.zip")


def value_name(v: Any) -> str:
    """A class value's name, the same in every command: a whole number
    stored as a float (``1.0``, float32 or float64) is ``"1"``; text is
    stripped."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


@dataclass(frozen=True)
class ClassFeatures:
    """Class features of one layer, in ``crs_wkt``."""

    path: str
    field: str
    layer: str | None
    kind: str  # "polygon" or "point"
    classes: list[str]  # sorted names
    geoms: np.ndarray  # shapely geometries
    codes: np.ndarray  # int64 index into classes, per geometry
    crs_wkt: str
    dropped: dict[str, int] = dc_field(default_factory=dict)

    @property
    def names(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    def name_of(self, value: int) -> str:
        return self.classes[int(value)]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        import shapely

        return tuple(float(v) for v in shapely.total_bounds(self.geoms))  # type: ignore[return-value]

    def to_crs(self, crs_wkt: str) -> ClassFeatures:
        """The same features in ``crs_wkt`` (itself where the CRS is the same)."""
        if crs_wkt == self.crs_wkt:
            return self
        import geopandas as gpd

        geoms = gpd.GeoSeries(self.geoms, crs=self.crs_wkt).to_crs(crs_wkt).values
        return replace(self, geoms=np.asarray(geoms, dtype=object), crs_wkt=crs_wkt)


def choose_layer(path: str, layer: str | None = None) -> str | None:
    """The layer to read: ``layer`` (refused, listing the layers, where the
    file has none of that name), else the only layer with geometries, else
    the first, with a :class:`GeosegWarning` naming the others.  None for a
    file of one layer (or one pyogrio cannot list: the read reports it)."""
    import pyogrio

    try:
        layers = pyogrio.list_layers(path)
    except Exception:  # noqa: BLE001 - the read that follows reports an unreadable file
        layers = np.empty((0, 2), dtype=object)
    names = [str(n) for n, _ in layers]
    if layer is not None:
        if layer not in names:
            raise InputError(f"{path}: no layer {layer!r}; the layers are: {', '.join(names) or 'none'}; "
                             "pass --layer NAME")
        return layer
    if len(layers) <= 1:
        return None
    spatial = [str(n) for n, geom in layers if geom is not None]
    if len(spatial) > 1:
        warnings.warn(f"{path}: {len(spatial)} layers with geometries ({', '.join(spatial)}); reading the first, "
                      f"{spatial[0]!r}: to use another, pass --layer NAME", GeosegWarning, stacklevel=3)
    return spatial[0] if spatial else None


def choose_field(path: str, fields: list[str], dtypes: list[str], field_name: str | None) -> str:
    """The class field: ``field_name`` (any case), else the only field, the
    only text field, ``class`` or ``class_name``; a one-line
    :class:`InputError` listing the fields otherwise."""
    listed = ", ".join(fields) or "none"
    if field_name:
        if field_name in fields:
            return field_name
        close = [f for f in fields if f.lower() == field_name.lower()]
        if close:
            return close[0]
        raise InputError(f"{path}: no field {field_name!r}; the fields are: {listed}; pass --field NAME")
    if len(fields) == 1:
        return fields[0]
    strings = [f for f, d in zip(fields, dtypes) if d in ("object", "str", "string", "large_string")
               or d.startswith("str")]
    if len(strings) == 1:
        return strings[0]
    for cand in ("class", "class_name"):
        for f in fields:
            if f.lower() == cand:
                return f
    raise InputError(f"{path}: cannot tell which field holds the class (fields: {listed}); pass --field NAME")


def read_class_features(path: str, field_name: str | None = None, *, layer: str | None = None,
                        bbox: tuple[tuple[float, float, float, float], str, str] | None = None,
                        points: bool = False, role: str = "reference") -> ClassFeatures:
    """Read the class features of ``path`` (see the module's rules).

    ``bbox``: ``((left, bottom, right, top), crs_wkt, what)``; only features
    that reach into it are read, and none is "does not overlap ``what``".
    ``points``: accept a file of points (where it has no polygon).  ``role``
    names the file in messages."""
    path = str(path)
    gdf, fname, layer = _read_frame(path, field_name, layer, bbox, role)
    if len(gdf) == 0 and bbox is not None:
        raise InputError(f"{path}: the {role} does not overlap {bbox[2]} (no feature within its bounds); use a "
                         f"{role} of the same area")
    return _features(path, gdf, fname, layer, points)


def _read_frame(path: str, field_name: str | None, layer: str | None, bbox, role: str):
    """(GeoDataFrame of the class field, its name, the layer read)."""
    if path.lower().endswith(PARQUET_EXTENSIONS):
        gdf = _read_parquet(path)
        fname = choose_field(path, [c for c in gdf.columns if c != gdf.geometry.name],
                             [str(gdf[c].dtype) for c in gdf.columns if c != gdf.geometry.name], field_name)
        crs_wkt = check_vector_crs(gdf.crs, path, role)
        gdf = gdf[[fname, gdf.geometry.name]]
        if bbox is not None:
            import shapely

            box = _bbox_in(bbox, crs_wkt)
            if box is not None:
                gdf = gdf[shapely.intersects(gdf.geometry.values, shapely.box(*box))]
        return gdf.set_crs(crs_wkt, allow_override=True), fname, None
    import pyogrio

    layer = choose_layer(path, layer)
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:  # noqa: BLE001 - GDAL/OGR errors of many kinds
        raise InputError(f"{path}: not a readable vector file ({first_line(exc)}); expected a {_FORMATS} "
                         "with a class field") from None
    if info.get("features") == 0:
        raise InputError(f"{path}: layer {info.get('layer_name') or layer!r} of the {role} holds no features; "
                         "expected polygons (or points) with a class field: check the file, or choose another "
                         "layer with --layer")
    crs_wkt = check_vector_crs(info.get("crs"), path, role)
    fname = choose_field(path, [str(f) for f in info["fields"]], [str(d) for d in info["dtypes"]], field_name)
    try:
        gdf = pyogrio.read_dataframe(path, layer=layer, columns=[fname], bbox=_bbox_in(bbox, crs_wkt))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: cannot read features ({first_line(exc)}); the file may be corrupt") from None
    return gdf.set_crs(crs_wkt, allow_override=True), fname, layer


def _read_parquet(path: str):
    try:
        import geopandas as gpd

        return gpd.read_parquet(path)
    except ImportError:
        raise InputError(f"{path}: reading GeoParquet needs pyarrow; `pip install pyarrow`, or convert the file "
                         "to a GeoPackage") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow and geopandas errors of many kinds
        raise InputError(f"{path}: not a readable GeoParquet file ({first_line(exc)}); expected a {_FORMATS} "
                         "with a class field") from None


def _bbox_in(bbox, crs_wkt: str) -> tuple[float, float, float, float] | None:
    """``bbox`` (bounds, their CRS) in ``crs_wkt``; None (read everything)
    where there is none or it cannot be transformed."""
    if bbox is None:
        return None
    bounds, bbox_crs, _ = bbox
    if bbox_crs == crs_wkt:
        return tuple(bounds)
    from rasterio.warp import transform_bounds

    try:
        out = tuple(transform_bounds(bbox_crs, crs_wkt, *bounds, densify_pts=21))
    except Exception:  # noqa: BLE001 - no transformation: read everything
        return None
    return out if all(np.isfinite(out)) else None


def _features(path: str, gdf, fname: str, layer: str | None, points: bool) -> ClassFeatures:
    import shapely

    geoms = np.asarray(gdf.geometry.values, dtype=object)
    has_val = ~gdf[fname].isna().to_numpy()
    ok_geom = ~np.asarray(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    tid = np.asarray(shapely.get_type_id(geoms))
    poly, pts = ok_geom & np.isin(tid, _POLYGON), ok_geom & np.isin(tid, _POINT)
    kind = "point" if points and not (poly & has_val).any() and (pts & has_val).any() else "polygon"
    keep = has_val & (pts if kind == "point" else poly)
    dropped = {k: int(n) for k, n in (("no class value", (~has_val & ok_geom).sum()),
                                      (f"not a {kind}", (has_val & ok_geom & ~keep).sum())) if n}
    if not keep.any():
        n_pts = int((pts & has_val).sum())
        found = f"{n_pts} point(s) and no polygon" if n_pts else "no polygon"
        raise InputError(f"{path}: {found} with a value in field {fname!r}; expected polygons"
                         f"{' or points' if points else ''} with a class name")
    n_other = dropped.get(f"not a {kind}", 0)
    if n_other:
        only_points = kind == "polygon" and int((has_val & pts).sum()) == n_other
        what = f"{n_other} point(s) among the polygons" if only_points else f"{n_other} feature(s) that are not {kind}s"
        warnings.warn(f"{path}: {what} were left out (use one geometry type per file)", GeosegWarning, stacklevel=4)
    geoms, values = geoms[keep], gdf[fname].to_numpy()[keep]
    if kind == "polygon":
        invalid = ~shapely.is_valid(geoms)
        if invalid.any():
            geoms[invalid] = shapely.make_valid(geoms[invalid])
    else:  # a MultiPoint is its points
        geoms, idx = shapely.get_parts(geoms, return_index=True)
        values = values[idx]
    names = [value_name(v) for v in values]
    classes = sorted(set(names))
    code_of = {n: i for i, n in enumerate(classes)}
    return ClassFeatures(path, fname, layer, kind, classes, np.asarray(geoms, dtype=object),
                         np.array([code_of[n] for n in names], np.int64), str(gdf.crs.to_wkt()), dropped)
