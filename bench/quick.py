"""A quick paired measurement while working on speed (not the benchmark of
record, which is run_all.py): the ceiling's best arrangement and geoseg end to
end on the 16384² scene, alternated ``--repeat`` times in one run.

    python bench/quick.py [--repeat 2] [--size 16384] [--scheduler threads]
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run_all import OUT, ROOT, geoseg_run, ort_ceiling  # noqa: E402
from scenes import make_large  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--model", default=os.path.join(ROOT, "geoseg", "models", "default.onnx"))
    ap.add_argument("--scheduler", default="threads")
    ap.add_argument("--raw", action="store_true", help="also run on an uncompressed copy of the scene")
    ap.add_argument("--batches", default="32")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for a second geoseg run per repeat")
    ap.add_argument("--block-px", default="2048", help="comma list: one geoseg run per block size per repeat")
    a = ap.parse_args()
    scene = make_large(os.path.join(OUT, f"scene_{a.size}.tif"), a.size)
    batches = tuple(int(b) for b in a.batches.split(","))
    for _ in range(a.repeat):
        c = ort_ceiling(a.model, scene, batches=batches, seconds=4.0)
        for bp in (int(x) for x in a.block_px.split(",")):
            for env in [None] + a.env:
                if env:
                    k, v = env.split("=", 1)
                    os.environ[k] = v
                r = geoseg_run(scene, a.model, os.path.join(OUT, "quick"), scheduler=a.scheduler, block_px=bp)
                if env:
                    os.environ.pop(k)
                show(c, r, f"{bp} {env or ''}")
        if a.raw:
            raw = make_large(os.path.join(OUT, f"scene_{a.size}_raw.tif"), a.size, compress=None)
            r = geoseg_run(raw, a.model, os.path.join(OUT, "quick"), scheduler=a.scheduler)
            show(c, r, "uncompressed")


def show(c, r, label):
    if True:
        t = r["timings"]
        print(f"{label:30s} ceiling {c['patches_per_s']:7.0f} ({c['best']})  geoseg {r['patches_per_s']:7.0f} "
              f"ratio {r['patches_per_s'] / c['patches_per_s']:.3f}  wall {r['wall']:.2f} start {r['cluster_start']:.2f} "
              f"tiles {t['tiles_wall']:.2f} infer {t['infer']:.2f} read {t['read']:.2f} tasks {t['tasks']:.2f} "
              f"write {t['write']:.2f} poly {t.get('polygons', 0):.2f} ql {t.get('quicklook', 0):.2f} "
              f"rss {r['maxrss_mb']:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
