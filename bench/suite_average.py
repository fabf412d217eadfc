"""The scene suite for models averaged *after* each one's own scaling (issue 23).

``export/ensemble.py`` averages members inside one graph, so they all read
the ensemble's input (reflectance); here every member classifies each suite
scene as it would alone (its own contract: an 8-bit model's per-scene
percentile stretch of a 16-bit scene, a reflectance model's calibration),
the probability rasters are averaged with ``--weights`` and the argmax is
scored by ``geoseg evaluate-scene`` like the suite's own maps.  It measures
what a runtime ensemble of members with different scalings would give
before any such runtime exists (none does; the test split is the same as
the one-graph ensemble's, where 8-bit images reach each member unchanged).

    python bench/suite_average.py default rgb-reflectance --weights 0.5,0.5 -o runs/ens/avg
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_suite as M  # noqa: E402


def _probs(path: str) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as s:
        a = s.read().astype(np.float64)
        return a / 255.0 if s.dtypes[0] == "uint8" else a


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="models (paths or built-in names), two or more")
    ap.add_argument("--weights", required=True, help="comma-separated, one a model")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args(argv)
    import rasterio

    weights = [float(w) for w in a.weights.split(",")]
    if len(weights) != len(a.models) or len(a.models) < 2:
        ap.error("two models or more, and one weight a model")
    weights = [w / sum(weights) for w in weights]
    rows = []
    for sc in M.SUITE:
        parts = sc.build(os.path.join(a.out, "scenes"))
        mats, labels = [], None
        for i, p in enumerate(parts):
            stem = os.path.splitext(os.path.basename(p.scene))[0]
            avg, first_classes = None, None
            for k, m in enumerate(a.models):
                _, path = M.resolve_model(m)
                d = os.path.join(a.out, "runs", f"m{k}", f"{sc.name}_{i}_map")
                if not glob.glob(os.path.join(d, "*_probs.tif")):
                    M.run_geoseg(*M.classify_args(p, path, M.model_contract(path)), "-o", d)
                q = weights[k] * _probs(os.path.join(d, f"{stem}_probs.tif"))
                avg = q if avg is None else avg + q
                first_classes = first_classes or os.path.join(d, f"{stem}_classes.tif")
            assert avg is not None and first_classes is not None
            with rasterio.open(first_classes) as s:
                prof, cl, tags, nodata = s.profile, s.read(1), s.tags(), s.nodata
                cmap = s.colormap(1)
            new = avg.argmax(0).astype(cl.dtype)
            if nodata is not None:
                new[cl == nodata] = nodata
            e = os.path.join(a.out, "runs", "average", f"{sc.name}_{i}")
            os.makedirs(e, exist_ok=True)
            cp = os.path.join(e, f"{stem}_classes.tif")
            with rasterio.open(cp, "w", **prof) as dst:
                dst.write(new, 1)
                dst.update_tags(**tags)
                dst.write_colormap(1, cmap)
            labels, cells = M.evaluate_map(sc, p, cp, e + "_eval")
            mats.append(cells)
        assert labels is not None
        rows.append({"scene": sc.name} | M._pooled(mats, labels, sc.classes))
        print(sc.name, {k: round(v, 3) for k, v in rows[-1].items() if isinstance(v, float)
                        and (k.endswith("_iou") or k in ("accuracy", "kappa"))}, flush=True)
    res = {"model": "average(" + ",".join(f"{m}:{w:.2f}" for m, w in zip(a.models, weights, strict=True)) + ")",
           "figures": M.figures_of(rows), "mean_scene_iou": M.mean_scene_iou(rows), "rows": rows}
    with open(os.path.join(a.out, "average.json"), "w") as f:
        json.dump([res], f, indent=1)
    print("mean over scenes", res["mean_scene_iou"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
