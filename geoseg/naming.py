"""Every name geoseg gives a file, in one place (pure: strings in, strings out).

One stem rule for a scene, whether it is a local path or a URL: the last
path component (without a URL's query), with a known raster extension
removed (``scene.tif`` -> ``scene``; ``x.dat`` keeps ``x.dat``).  Products,
QGIS/GDAL sidecars, the manifest and the temporary names of a scene all
derive from that stem, so they always agree.
"""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlsplit

Product = Literal["classes", "probs", "polygons", "stats", "quicklook"]
PRODUCTS: tuple[Product, ...] = ("classes", "probs", "polygons", "stats", "quicklook")
# files that travel with a product (written and renamed with it)
Sidecar = Literal["classes_qml", "classes_aux", "probs_qml"]

RASTER_EXTENSIONS = (".tif", ".tiff", ".gtiff", ".vrt", ".img", ".jp2")
_EXT: dict[str, str] = {"classes": ".tif", "probs": ".tif", "polygons": ".gpkg", "stats": ".json", "quicklook": ".png"}
RUN_REPORT = "run.json"
TMP_MARK = ".tmp"


def basename(source: str) -> str:
    """The last component of a path or URL (``/vsicurl/https://h/a/b.tif?x=1`` -> ``b.tif``)."""
    s = str(source)
    if "://" in s:
        s = urlsplit(s[s.index("://") - 5 :] if s.startswith("/vsi") else s).path or s
    return os.path.basename(s.rstrip("/"))


def scene_stem(source: str) -> str:
    """The stem every output of a scene is named by."""
    base = basename(source)
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in RASTER_EXTENSIONS and stem else base


def product_name(stem: str, product: str) -> str:
    """``NAME_classes.tif``, ``NAME_polygons.gpkg`` ..."""
    return f"{stem}_{product}{_EXT[product]}"


def sidecar_names(stem: str) -> dict[str, str]:
    """The rasters' QGIS styles and the class raster's GDAL PAM sidecar."""
    cls = product_name(stem, "classes")
    return {"classes_qml": f"{stem}_classes.qml", "classes_aux": cls + ".aux.xml", "probs_qml": f"{stem}_probs.qml"}


def sidecar_product(sidecar: str) -> str:
    """The product a sidecar travels with (``probs_qml`` -> ``probs``)."""
    return sidecar.rsplit("_", 1)[0]


def manifest_name(stem: str) -> str:
    return f"{stem}_manifest.json"


def tmp_prefix(stem: str) -> str:
    """Every temporary file of a scene starts with this (hidden, so a folder
    listing shows only finished outputs)."""
    return f".{stem}_"


def tmp_name(stem: str, product: str, token: str) -> str:
    """``.NAME_classes.PID-XXXXXXXX.tmp.tif``: the token starts with the
    writer's process id, so files of a dead run can be recognised."""
    ext = os.path.splitext(product_name(stem, product))[1] if product in _EXT else ""
    if product in ("classes_qml", "probs_qml"):
        return f"{tmp_prefix(stem)}{sidecar_product(product)}.{token}{TMP_MARK}.qml"
    if product == "classes_aux":  # not "*.tif.aux.xml": GDAL would take it for the temporary raster's own
        return f"{tmp_prefix(stem)}classes.{token}{TMP_MARK}.tif.aux.xml{TMP_MARK}"
    return f"{tmp_prefix(stem)}{product}.{token}{TMP_MARK}{ext}"


def tmp_owner_pid(stem: str, filename: str) -> int | None:
    """The process id recorded in a temporary file name of ``stem``, else None."""
    prefix = tmp_prefix(stem)
    if not (filename.startswith(prefix) and TMP_MARK in filename):
        return None
    parts = filename[len(prefix) :].split(".")
    if len(parts) < 2:
        return None
    pid = parts[1].split("-")[0]
    return int(pid) if pid.isdigit() else None
