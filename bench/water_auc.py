"""How much a model's water probability knows about the water of the two
shared scenes with a near-infrared band, whatever class wins the argmax.

For each scene of ``bench/scene_eval.py`` (NAIP, Amsterdam Sentinel-2) the
model classifies the RGB bands with the real CLI (``geoseg classify``,
probabilities kept, the contract's rules), and each cell's water
probability is compared with the NDWI reference's water share of the cell
(reference water = more than half the cell, as ``geoseg evaluate-scene``
scores it):

- ``auc``: the probability that a reference-water cell gets a higher water
  probability than a reference-other cell (0.5 = no information, 1 = a
  threshold separates them perfectly);
- ``iou``: water IoU of the class map (argmax), all cells with a class;
- ``best_iou``: the highest water IoU any threshold on the water
  probability would give (an oracle: what calibration alone could reach).

    .venv/bin/python bench/water_auc.py [MODEL.onnx ...] [-o runs/scene_eval]

Cells are counted over the whole class grid (partly covered edge cells
too), so ``iou`` can differ a little from ``geoseg evaluate-scene``'s,
which leaves out cells the reference covers less than half.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scene_eval import GEOSEG, ROOT, references  # noqa: E402


def auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Mann-Whitney AUC of ``score`` for the ``positive`` cells (ties: average rank)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if not n_pos or not n_neg:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size)
    ranks[order] = np.arange(1, score.size + 1)
    for v in np.unique(score):  # average ranks of ties
        tie = score == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def scene_figures(model: str | None, scene: str, ref: str, extra: list[str], out: str) -> dict:
    import rasterio
    from rasterio.warp import Resampling, reproject

    args = [GEOSEG, "classify", scene, "-o", out, "--no-polygons", "--no-quicklook", "--overwrite", "-q", *extra]
    if model:
        args += ["-m", model]
    subprocess.run(args, check=True)
    probs = glob.glob(os.path.join(out, "*_probs.tif"))[0]
    classes = glob.glob(os.path.join(out, "*_classes.tif"))[0]
    with rasterio.open(classes) as c:
        cm = c.read(1)
        names = c.tags()["CLASS_NAMES"].split(",")
    w = names.index("water")
    with rasterio.open(probs) as p:
        pw = p.read(w + 1).astype(np.float64)
        scale = 255.0 if p.dtypes[0] == "uint8" else 1.0
        transform, crs = p.transform, p.crs
    with rasterio.open(ref) as r:
        share = np.zeros(cm.shape, np.float32)
        reproject((r.read(1) == 1).astype(np.float32), share, src_transform=r.transform, src_crs=r.crs,
                  dst_transform=transform, dst_crs=crs, resampling=Resampling.average)
    ok = cm != 255
    y, s, pred = share[ok] > 0.5, pw[ok] / scale, cm[ok] == w
    best = max(((s >= t) & y).sum() / max(((s >= t) | y).sum(), 1) for t in np.unique(s))
    return {"auc": auc(s, y), "iou": float((pred & y).sum() / max((pred | y).sum(), 1)),
            "best_iou": float(best), "cells": int(ok.sum()), "water_cells": int(y.sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="ONNX models [default: the shipped one]")
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "runs", "scene_eval"))
    a = ap.parse_args(argv)
    os.makedirs(a.output, exist_ok=True)
    refs = references(a.output)
    for m in a.models or [None]:
        tag = "default" if m is None else os.path.splitext(os.path.basename(m))[0]
        print(m or "default")
        for name, (scene, ref, extra) in refs.items():
            f = scene_figures(m, scene, ref, extra, os.path.join(a.output, f"auc_{tag}_{name}"))
            print(f"  {name:9s} AUC {f['auc']:.3f}  IoU {f['iou']:.3f}  best threshold IoU {f['best_iou']:.3f}  "
                  f"({f['water_cells']} water cells of {f['cells']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
