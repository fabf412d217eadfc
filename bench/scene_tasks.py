"""Whole-scene tasks (``classify --scene-tasks``): a folder of scenes on a
local cluster of N worker processes against N x one worker's throughput.

    python bench/scene_tasks.py [--scenes 4] [--size 4096] [--workers 2] [--repeat 2]

Each configuration runs in a fresh process (cluster start included, every
output but polygons), alternated ``--repeat`` times; prints patches/s and
the ratio N workers / (N x 1 worker) per repeat and their median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run_all import OUT, PY, ROOT  # noqa: E402
from scenes import make_large  # noqa: E402

RUN = r"""
import json, sys, time
from geoseg.batch import classify_many
from geoseg.pipeline import ClassifyOptions
from geoseg.scheduling import Runner
a = json.loads(sys.argv[1])
if __name__ == "__main__":
    t0 = time.perf_counter()
    with Runner("processes", a["workers"], ort_threads=1) as r:  # one core per worker
        run = classify_many([a["folder"]], a["out"], a["model"], ClassifyOptions(overwrite=True, polygons=False),
                            runner=r, scene_tasks=True, progress=False)
    wall = time.perf_counter() - t0
    assert run.ok, [s.error for s in run.scenes]
    print("RESULT " + json.dumps({"wall": wall, "patches": sum(s.n_patches for s in run.scenes)}))
"""


def once(folder: str, model: str, workers: int) -> float:
    out = os.path.join(OUT, f"scene-tasks-out-{workers}")
    shutil.rmtree(out, ignore_errors=True)
    args = {"folder": folder, "model": model, "out": out, "workers": workers}
    p = subprocess.run([PY, "-c", RUN, json.dumps(args)], capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    r = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    return r["patches"] / r["wall"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    src = make_large(os.path.join(OUT, f"scene_{a.size}.tif"), a.size)
    folder = os.path.join(OUT, f"scene-tasks-{a.scenes}x{a.size}")
    os.makedirs(folder, exist_ok=True)
    for i in range(a.scenes):
        dst = os.path.join(folder, f"s{i}.tif")
        if not os.path.exists(dst):
            os.link(src, dst) if hasattr(os, "link") else shutil.copy(src, dst)
    model = os.path.join(ROOT, "geoseg", "models", "default.onnx")
    ratios = []
    for i in range(a.repeat):
        order = (1, a.workers) if i % 2 == 0 else (a.workers, 1)
        res = {w: once(folder, model, w) for w in order}
        ratios.append(res[a.workers] / (a.workers * res[1]))
        print(f"repeat {i + 1}: 1 worker {res[1]:7.0f} patches/s, {a.workers} workers {res[a.workers]:7.0f}; "
              f"ratio to {a.workers} x one worker {ratios[-1]:.3f}", flush=True)
    print(f"median ratio {statistics.median(ratios):.3f} ({a.scenes} scenes of {a.size}², {a.repeat} repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
