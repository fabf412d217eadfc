"""Score a model's water cells on the two shared scenes that carry a
near-infrared band, the way docs/evaluation.md does it:

- NAIP, North Dakota (uint8 RGB+NIR, 5 m), reference NDWI of bands 2 and 4;
- Sentinel-2 L1C Amsterdam (uint16 B04/B03/B02 stacked as a user would,
  ``--nodata 0``), reference NDWI of B03 and B08.

Runs the real CLI (``geoseg reference ndwi``, ``geoseg classify
--no-polygons --no-quicklook``, ``geoseg evaluate-scene --classes water``)
and prints water IoU / precision / recall and the share of the scored cells
the model gives each class.

    .venv/bin/python bench/scene_eval.py [MODEL.onnx ...] [-o runs/scene_eval] [--json OUT.json] [--resample auto]

Without a model: the shipped default.  References and the Amsterdam stack
are built once under the output folder.  Needs ../shared (GEOSEG_SHARED).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("GEOSEG_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
GEOSEG = os.path.join(os.path.dirname(sys.executable), "geoseg")
NAIP = os.path.join(SHARED, "scenes", "naip_m_4709963_se_14_1_20200831.tif")
AMS = os.path.join(SHARED, "scenes", "s2_amsterdam", "s2_amsterdam_")


def _run(*args: str) -> None:
    r = subprocess.run([GEOSEG, *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"geoseg {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


def ams_stack(out: str) -> str:
    """B04, B03, B02 stacked into one RGB GeoTIFF (docs/evaluation.md)."""
    path = os.path.join(out, "s2_amsterdam_rgb.tif")
    if os.path.exists(path):
        return path
    import rasterio
    from rasterio.enums import ColorInterp

    srcs = [rasterio.open(f"{AMS}{b}.tif") for b in ("B04", "B03", "B02")]
    prof = srcs[0].profile | {"count": 3, "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(path + ".tmp.tif", "w", **prof) as dst:
        for i, s in enumerate(srcs, 1):
            dst.write(s.read(1), i)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    for s in srcs:
        s.close()
    os.replace(path + ".tmp.tif", path)
    return path


def references(out: str) -> dict[str, tuple[str, str, list[str]]]:
    """scene name -> (scene path, reference path, extra classify args)."""
    naip_ref = os.path.join(out, "naip_water.tif")
    if not os.path.exists(naip_ref):
        _run("reference", "ndwi", NAIP, "--green", "2", "--nir", "4", "-o", naip_ref)
    ams_ref = os.path.join(out, "ams_water.tif")
    if not os.path.exists(ams_ref):
        _run("reference", "ndwi", f"{AMS}B03.tif", "--green", "1", "--nir", f"{AMS}B08.tif", "-o", ams_ref)
    return {"naip": (NAIP, naip_ref, []), "amsterdam": (ams_stack(out), ams_ref, ["--nodata", "0"])}


def classify_and_score(scene: str, ref: str, model: str | None, d: str, extra: list[str]) -> tuple[dict, dict, str]:
    """``geoseg classify`` ``scene`` into ``d``_map (no polygons, quicklook or
    probabilities) and ``geoseg evaluate-scene --classes water`` against
    ``ref`` into ``d``_eval; returns the evaluation report, the map's stats
    (class shares over its classified cells) and the class map's path."""
    args = ["classify", scene, "-o", d + "_map", "--no-polygons", "--no-quicklook", "--no-probs", "--overwrite",
            *extra]
    if model:
        args += ["-m", model]
    _run(*args)
    stem = os.path.splitext(os.path.basename(scene))[0]
    class_map = os.path.join(d + "_map", f"{stem}_classes.tif")
    _run("evaluate-scene", class_map, "--reference", ref, "--classes", "water", "-o", d + "_eval", "--overwrite")
    with open(os.path.join(d + "_eval", "report.json")) as f:
        rep = json.load(f)
    with open(os.path.join(d + "_map", f"{stem}_stats.json")) as f:
        st = json.load(f)
    return rep, st, class_map


def evaluate(model: str | None, out: str, scaling: str | None = None, resample: str | None = None) -> dict:
    """``scaling``: a ``--scaling`` for the uint16 Amsterdam scene instead of
    the contract's (the NAIP scene is uint8 and always uses the contract's).
    ``resample``: ``--resample`` of both scenes' classify calls."""
    import hashlib

    refs = references(out)
    key = hashlib.sha1(f"{os.path.abspath(model) if model else ''}|{scaling}".encode()).hexdigest()[:8]
    if resample and resample != "off":  # (the key of the runs without --resample is unchanged)
        key += f"_resample-{resample}"
    tag = ("default" if model is None else os.path.splitext(os.path.basename(model))[0]) + "_" + key
    res = {"model": model or "default", "scaling_uint16": scaling, "resample": resample or "off"}
    for name, (scene, ref, extra) in refs.items():
        if scaling and name == "amsterdam":
            extra = [*extra, "--scaling", scaling]
        if resample:
            extra = [*extra, "--resample", resample]
        rep, st, _ = classify_and_score(scene, ref, model, os.path.join(out, tag, name), extra)
        w = rep["per_class"]["water"]
        res[name] = {"iou": w["iou"], "precision": w["precision"], "recall": w["recall"],
                     "oa": rep["overall_accuracy"], "shares": _shares(st), "cells": st["grid"]["cells"],
                     "resolution_m": st["options"].get("resample_resolution_m")}
    return res


def _shares(st: dict) -> dict[str, float]:
    """Share of the classified cells per class (NAME_stats.json ``classes``)."""
    return {c["name"]: round(float(c["fraction"]), 3) for c in st.get("classes", [])}


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="ONNX models [default: the shipped one]")
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "runs", "scene_eval"))
    ap.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    ap.add_argument("--scaling", default=None,
                    help="--scaling for the uint16 Amsterdam scene [default: the model contract's].")
    ap.add_argument("--resample", choices=("off", "auto"), default=None,
                    help="--resample for both scenes' classify calls [default: not passed, i.e. off].")
    a = ap.parse_args(argv)
    os.makedirs(a.output, exist_ok=True)
    results = [evaluate(m, a.output, a.scaling, a.resample) for m in (a.models or [None])]
    for r in results:
        print(r["model"] + (f"  (uint16 scaling {a.scaling})" if a.scaling else "")
              + (f"  (--resample {a.resample})" if a.resample else ""))
        for name in ("naip", "amsterdam"):
            s = r[name]
            shares = ", ".join(f"{k} {v:.2f}" for k, v in s["shares"].items())
            print(f"  {name:9s} water IoU {fmt(s['iou'])}  P {fmt(s['precision'])}  R {fmt(s['recall'])}  "
                  f"OA {fmt(s['oa'])}  cells {s['cells'][0]}x{s['cells'][1]}  | {shares}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
