"""A chips folder's manifest (``chips.csv``) and parameters (``chips.json``),
with one path-containment rule for reading and for overwriting.

:func:`read_manifest` is the one reader of ``chips.csv``: a text CSV with
the columns ``chip``, ``class`` and ``group``, each ``chip`` a relative path
that stays inside the folder (:func:`chip_file`: no absolute path, no
``..``, no symbolic link leading out).  Training reads chips through it
(:func:`read_chips_manifest`, :func:`read_chip`); ``geoseg chips
--overwrite`` removes an earlier run's chips through it
(:func:`remove_chips`), so a row ``../victim.txt`` is refused before any
file is removed, never deleted.
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Any

import numpy as np

from .errors import InputError, OutputError, first_line

__all__ = ["COLUMNS", "MANIFEST", "SIDECAR", "band_name", "chip_file", "is_chips_dir", "read_chip",
           "read_chips_manifest", "read_manifest", "remove_chips", "safe_name", "write_manifest"]

MANIFEST = "chips.csv"
SIDECAR = "chips.json"
COLUMNS = ("chip", "class", "scene", "col_off", "row_off", "width", "height", "left", "bottom", "right", "top",
           "crs", "pixel_size_x", "pixel_size_y", "purity", "group")
REQUIRED = ("chip", "class", "group")


def is_chips_dir(path: str) -> bool:
    """True when ``path`` is a folder written by ``geoseg chips``."""
    return os.path.isfile(os.path.join(path, MANIFEST))


def chip_file(data_dir: str, rel: str, manifest: str) -> str:
    """The file a manifest row's ``chip`` names, refused (one line) unless
    it is a relative path that stays inside ``data_dir``."""
    parts = rel.replace("\\", "/").split("/")
    path = os.path.join(data_dir, rel)
    root = os.path.realpath(data_dir)
    inside = bool(rel) and not os.path.isabs(rel) and not re.match(r"^[A-Za-z]:", rel) and ".." not in parts
    if not inside or os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise InputError(f"{manifest}: chip path {rel!r} is not inside the chips folder; expected paths relative "
                         "to it (CLASS/NAME.tif), as `geoseg chips` writes them")
    return path


def read_manifest(data_dir: str) -> list[dict]:
    """The rows of ``data_dir``/chips.csv, every chip path checked by
    :func:`chip_file` (one-line :class:`InputError` otherwise)."""
    man = os.path.join(data_dir, MANIFEST)
    try:
        with open(man, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{man}: not a CSV text file ({first_line(exc)}); expected the manifest written by "
                         "`geoseg chips`: cut the chips again") from None
    except OSError as exc:
        raise InputError(f"{man}: cannot read the manifest ({first_line(exc)})") from None
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise InputError(f"{man}: lacks column(s) {', '.join(missing)}; expected a manifest written by "
                         "`geoseg chips`")
    for r in rows:
        chip_file(data_dir, r["chip"] or "", man)
    return rows


def read_chips_manifest(data_dir: str) -> tuple[list[dict], dict]:
    """The rows of ``chips.csv`` and the ``chips.json`` parameters (empty if absent)."""
    rows = read_manifest(data_dir)
    side = {}
    p = os.path.join(data_dir, SIDECAR)
    if os.path.isfile(p):
        with open(p, encoding="utf-8") as f:
            side = json.load(f)
    return rows, side


def remove_chips(data_dir: str) -> None:
    """Remove the chips an earlier run listed in ``data_dir``/chips.csv, its
    manifest and parameters, and nothing else.  Every row is checked first:
    a manifest naming a file outside the folder removes nothing."""
    try:
        files = [os.path.join(data_dir, r["chip"]) for r in read_manifest(data_dir)]
    except InputError as exc:
        raise InputError(f"{exc}; --overwrite removed nothing: clear the folder yourself or choose another "
                         "folder") from None
    try:
        for p in files:
            if os.path.isfile(p):
                os.remove(p)
        for name in (MANIFEST, SIDECAR):
            if os.path.exists(os.path.join(data_dir, name)):
                os.remove(os.path.join(data_dir, name))
    except OSError as exc:
        raise OutputError(f"{data_dir}: cannot remove the earlier chips ({first_line(exc)})") from None


def write_manifest(data_dir: str, rows: list[dict], sidecar: dict[str, Any]) -> str:
    """Write ``chips.json`` then ``chips.csv`` (each under a temporary name,
    renamed when complete); the path of the manifest."""
    side = os.path.join(data_dir, SIDECAR)
    with open(side + ".tmp", "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=2)
    os.replace(side + ".tmp", side)
    man = os.path.join(data_dir, MANIFEST)
    with open(man + ".tmp", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(man + ".tmp", man)
    return man


def safe_name(name: str) -> str:
    """A class name usable as a folder name (path separators and control
    characters replaced; never empty, never hidden)."""
    s = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", str(name).strip())
    return s.lstrip(".") or "_"


def band_name(colorinterp: Any, description: str | None, index: int) -> str:
    """A band's name: its colour interpretation (red, nir, ...), else its
    description (lower case), else ``band<index>``."""
    ci = getattr(colorinterp, "name", str(colorinterp))
    if ci not in ("undefined", "gray", "grey", "alpha", "palette"):
        return ci.lower()
    if description and description.strip():
        return description.strip().lower()
    return f"band{index}"


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
