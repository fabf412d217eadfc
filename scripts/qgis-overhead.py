#!/usr/bin/env python3
"""What a run through QGIS Processing costs over the geoseg CLI.

Runs ``geoseg classify SCENE`` N times from the shell and N times as
``geoseg:classify`` in one headless QGIS (tests/qgis_plugin_probe.py under
the system Python, the plugin from dist/geoseg-qgis.zip, outputs loaded
into the project and styled as in the desktop), alternating, with
--overwrite so every run computes, and prints the medians as a Markdown
table (docs/qgis.md quotes it).  Needs PyQGIS (scripts/install-qgis.sh)
and `make qgis-plugin`.

    .venv/bin/python scripts/qgis-overhead.py SCENE.tif [-m MODEL] [-n 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene")
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--geoseg", default=os.path.join(os.path.dirname(sys.executable), "geoseg"))
    ap.add_argument("--python", default="/usr/bin/python3", help="the Python with PyQGIS")
    args = ap.parse_args(argv)
    zip_path = os.path.join(ROOT, "dist", "geoseg-qgis.zip")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build-qgis-plugin.py"), "-o", zip_path],
                   check=True, capture_output=True)
    tmp = tempfile.mkdtemp(prefix="geoseg-qgis-overhead-")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "GEOSEG_EXECUTABLE": args.geoseg, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    params = {"INPUT": os.path.abspath(args.scene), "OUTPUT_FOLDER": os.path.join(tmp, "qgis"), "OVERWRITE": True}
    if args.model:
        params["MODEL"] = args.model
    cli, qgis, starts, plugin = [], [], [], []
    try:
        for _ in range(args.n):
            cmd = [args.geoseg, "classify", args.scene, "-o", os.path.join(tmp, "cli"), "--overwrite", "-q"]
            if args.model:
                cmd += ["-m", args.model]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            cli.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = subprocess.run([args.python, os.path.join(ROOT, "tests", "qgis_plugin_probe.py"), "--zip", zip_path,
                                "--plugins", os.path.join(tmp, "plugins"), "--alg", "geoseg:classify",
                                "--params", json.dumps(params)], env=env, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            run = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])["runs"][0]
            if "exception" in run:
                raise SystemExit(run["exception"])
            qgis.append(run["seconds"])
            plugin.append(run["seconds"] - run["geoseg_seconds"])  # Processing's own share of the run
            starts.append(wall - run["seconds"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c, q, s, p = (statistics.median(v) for v in (cli, qgis, starts, plugin))
    print("| scene | CLI | through Processing | of which Processing's own (not the geoseg process) | QGIS start-up |")
    print("|---|---|---|---|---|")
    print(f"| {os.path.basename(args.scene)} | {c:.2f} s | {q:.2f} s | {p:.2f} s ({100 * p / q:.0f} %) | {s:.1f} s |")
    print(f"(medians of {args.n}: CLI {', '.join(f'{v:.2f}' for v in cli)}; "
          f"Processing {', '.join(f'{v:.2f}' for v in qgis)}; own {', '.join(f'{v:.2f}' for v in plugin)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
