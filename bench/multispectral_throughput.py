"""Throughput of the multispectral model against the RGB default (issue 24:
within 10 %), model alone: one onnxruntime session each (one thread), the
same 64-patch batch fed repeatedly, alternating models; per-batch times, the
best and the 10th percentile (the figures least moved by other processes on
a shared machine).

    python bench/multispectral_throughput.py [--runs 150] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from geoseg.export.graph import feed  # noqa: E402
from geoseg.model import new_session  # noqa: E402


def patches_per_s(path: str, runs: int, batch: int = 64) -> tuple[float, float]:
    s = new_session(path, 1)
    inp = s.get_inputs()[0]
    bands = int(inp.shape[1])
    dtype = "uint8" if "uint8" in inp.type else "float32"
    top = 255.0 if dtype == "uint8" else 0.4
    x = feed(np.random.default_rng(0).uniform(0, top, (batch, 64, 64, bands)).astype(np.float32), "NCHW", dtype)
    s.run(None, {inp.name: x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {inp.name: x})
        ts.append(time.perf_counter() - t)
    ts = np.sort(ts)
    return batch / ts[0], batch / ts[len(ts) // 10]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    models = os.path.join(ROOT, "geoseg", "models")
    for r in range(a.rounds):
        d = patches_per_s(os.path.join(models, "default.onnx"), a.runs)
        m = patches_per_s(os.path.join(models, "multispectral.onnx"), a.runs)
        print(f"round {r + 1}: default best {d[0]:.0f} p10 {d[1]:.0f} patches/s | multispectral best {m[0]:.0f} "
              f"p10 {m[1]:.0f} | ratio best {m[0] / d[0]:.3f} p10 {m[1] / d[1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
