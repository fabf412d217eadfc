#!/usr/bin/env python3
"""Build the QGIS plugin zip: dist/geoseg-qgis.zip with top folder geoseg_qgis.

A standard QGIS plugin archive (Plugins > Manage and Install Plugins >
Install from ZIP): qgis_plugin/geoseg_qgis/ without caches, files sorted
and dated 1980-01-01 so the same sources give the same bytes.
Standard library only; run with any Python 3 (`make qgis-plugin`).
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "qgis_plugin", "geoseg_qgis")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIP_EXT = (".pyc", ".pyo")


def build(out: str) -> list[str]:
    names = []
    for root, dirs, files in os.walk(SRC):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for f in sorted(files):
            if f.endswith(SKIP_EXT) or f.startswith("."):
                continue
            names.append(os.path.relpath(os.path.join(root, f), os.path.dirname(SRC)))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            info = zipfile.ZipInfo(name.replace(os.sep, "/"), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(os.path.join(os.path.dirname(SRC), name), "rb") as fh:
                z.writestr(info, fh.read())
    os.replace(tmp, out)
    return names


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "dist", "geoseg-qgis.zip"))
    args = ap.parse_args(argv)
    names = build(args.output)
    print(f"{args.output}: {len(names)} files ({', '.join(n.split(os.sep)[-1] for n in names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
