"""A/B: geoseg end to end at another revision against the working tree, on
the same scene, alternated in one run (so the machine's drift hits both).

    python bench/ab.py --base REV [--repeat 3] [--size 8192]

Each run is a fresh process (bench/run_all.py's RUN_CLASSIFY, every output);
the base revision runs from a git worktree in bench/out/ab-REV.  Prints each
pair and the median ratio working tree / base of patches/s and of the
inference share of wall (inference seconds summed over tasks / (threads x
tiles wall), free of the drift).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run_all import OUT, PY, ROOT, RUN_CLASSIFY  # noqa: E402
from scenes import make_large  # noqa: E402

# the base may predate geoseg.pipeline (it was geoseg.tiler)
SCRIPT = RUN_CLASSIFY.replace(
    "from geoseg.pipeline import ClassifyOptions",
    "try:\n    from geoseg.pipeline import ClassifyOptions\nexcept ImportError:\n    from geoseg.tiler import ClassifyOptions",
)


def run(tree: str, scene: str, model: str, out: str) -> dict:
    args = {"scene": scene, "model": model, "out": out, "scheduler": "threads"}
    p = subprocess.run([PY, "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True, cwd=tree,
                       env={**os.environ, "PYTHONPATH": tree})
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    r = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    t = r["timings"]
    return {"patches_per_s": r["patches"] / r["wall"], "share": t["infer"] / (2 * t["tiles_wall"])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=8192)
    a = ap.parse_args()
    base_tree = os.path.join(OUT, f"ab-{a.base}")
    if not os.path.isdir(base_tree):
        subprocess.run(["git", "worktree", "add", "--detach", base_tree, a.base], cwd=ROOT, check=True,
                       capture_output=True)
    scene = make_large(os.path.join(OUT, f"scene_{a.size}.tif"), a.size)
    model = os.path.join(ROOT, "geoseg", "models", "default.onnx")  # the same model file for both
    ratios, shares = [], []
    for i in range(a.repeat):
        order = [("base", base_tree), ("work", ROOT)] if i % 2 == 0 else [("work", ROOT), ("base", base_tree)]
        res = {name: run(tree, scene, model, os.path.join(OUT, f"ab-out-{name}")) for name, tree in order}
        ratios.append(res["work"]["patches_per_s"] / res["base"]["patches_per_s"])
        shares.append(res["work"]["share"] / res["base"]["share"])
        print(f"pair {i + 1}: base {res['base']['patches_per_s']:7.0f} patches/s (share {res['base']['share']:.3f})  "
              f"work {res['work']['patches_per_s']:7.0f} (share {res['work']['share']:.3f})  "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"median ratio work/base: patches/s {statistics.median(ratios):.3f}, "
          f"inference share {statistics.median(shares):.3f} ({a.repeat} pairs, {a.size}² scene)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
