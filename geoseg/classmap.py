"""Class maps: a class raster's grid, CRS, nodata and class names.

- :func:`raster_class_names` reads the names of band 1 (geoseg's
  ``CLASS_NAMES`` tag, ``CLASS_<i>`` band tags, or the category names /
  raster attribute table of a GDAL/QGIS ``.aux.xml``).
- :func:`open_class_map` checks a class map at its entry (georeferenced,
  integer, named classes) and describes it as a :class:`ClassGrid`.
- :func:`describe_class_raster` does the same for a class raster used as
  a reference or as labels (:class:`ClassRaster`: names optional).
- :func:`norm_name` is how class names are compared.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .checks import check_georeferenced
from .errors import InputError
from .raster import open_raster, raise_unreadable

NODATA = 255

__all__ = ["NODATA", "ClassGrid", "ClassRaster", "RasterGrid", "describe_class_raster", "grid_bounds", "norm_name", "open_class_map",
           "raster_class_names"]


def norm_name(name: str) -> str:
    """How class names are compared: case, spaces and hyphens do not matter
    (``Green area`` == ``green_area``)."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())



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



def grid_bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a ``width`` x ``height`` grid: the
    bounding box of its four corners (any transform, rotated too)."""
    xs, ys = zip(*[transform @ (c, r) for c in (0, width) for r in (0, height)])
    return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class RasterGrid:
    """A raster's file, grid and CRS (no open handles)."""

    path: str
    width: int
    height: int
    transform: Affine
    crs_wkt: str

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in its CRS."""
        return grid_bounds(self.transform, self.width, self.height)


@dataclass(frozen=True)
class ClassGrid(RasterGrid):
    """A class map: its grid, CRS, nodata and class names."""

    nodata: int
    names: dict[int, str]
    dtype: str = "uint8"

    def rows_transform(self, r0: int) -> Affine:
        return self.transform @ Affine.translation(0, r0)

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` of band 1."""
        with rasterio.open(self.path) as src:
            try:
                return src.read(1, window=Window(0, r0, self.width, r1 - r0))
            except RasterioError as exc:
                raise_unreadable(self.path, 0, r0, exc)


def open_class_map(path: str | os.PathLike) -> ClassGrid:
    """Describe a class raster; refuse one without class names or CRS."""
    path = str(path)
    src = open_raster(path, "class map")
    with src:
        _check_class_raster(src, path, "class map", "(e.g. NAME_classes.tif of `geoseg classify`)")
        dtype = src.dtypes[0]
        names = raster_class_names(src, path)
        if not names:
            raise InputError(f"{path}: the class map has no class names (no CLASS_NAMES tag, no category "
                             "names in its .aux.xml); expected a geoseg class raster (NAME_classes.tif)")
        nodata = int(src.nodata) if src.nodata is not None and float(src.nodata).is_integer() else NODATA
        names = {v: n for v, n in names.items() if v != nodata}
        return ClassGrid(path, src.width, src.height, src.transform, src.crs.to_wkt(), nodata, names, dtype)


@dataclass(frozen=True)
class ClassRaster(RasterGrid):
    """An integer class raster used as a reference or as labels: its grid
    and class names; a value without a name goes by its number."""

    names: dict[int, str]
    kind: str = "raster"
    field: str | None = None  # (vector files have one)

    def name_of(self, value: int) -> str:
        return self.names.get(int(value), str(int(value)))


def describe_class_raster(src: Any, path: str, role: str) -> ClassRaster:
    """Check an open raster used as a ``role`` (reference, label raster) at
    its entry (georeferenced, integer) and describe it."""
    _check_class_raster(src, path, role, "(threshold an index first, e.g. `geoseg reference ndwi`)")
    names = raster_class_names(src, path)
    if src.nodata is not None and float(src.nodata).is_integer():
        names.pop(int(src.nodata), None)
    return ClassRaster(path, src.width, src.height, src.transform, src.crs.to_wkt(), names)


def _check_class_raster(src: Any, path: str, role: str, fix: str) -> None:
    check_georeferenced(src, path, role)
    if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
        raise InputError(f"{path}: the {role} is {src.dtypes[0]}; expected an integer class raster {fix}")
