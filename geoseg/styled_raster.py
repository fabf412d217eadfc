"""Styled categorical rasters (the NDWI reference, evaluate-scene's
disagreement map): a uint8 GeoTIFF with a colour table, its GDAL PAM
sidecar (category names) and a QGIS style, written under temporary names
and renamed together once complete (:class:`StyledOutput`)."""

from __future__ import annotations

import os
import uuid

import rasterio
from affine import Affine
from rasterio.errors import RasterioError

from . import styles
from .errors import OutputError, OutputExistsError, first_line

NODATA = 255

__all__ = ["NODATA", "StyledOutput", "tile_size", "write_category_styles"]


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
