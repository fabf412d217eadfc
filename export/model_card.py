"""The model card of an exported model, written from the run's own reports
(so every figure in it was produced by the pipeline, not typed in)."""

from __future__ import annotations

import json
import os


def _ordinal(v: float) -> str:
    n = int(v)
    if n != v:
        return f"{v:g}th"
    return f"{n}" + ("th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th"))


def _scaling_sentence(c) -> str:
    """What the contract does with each source dtype, in words (dtypes with
    the same rule named together)."""
    groups: dict[str, list[str]] = {}
    for dtype, s in c.scaling.items():
        if s.method == "identity":
            text = "used as they are"
        elif s.method == "percentile" and s.targets:
            text = (f"stretched per band from their {_ordinal(s.low)}-{_ordinal(s.high)} percentiles to the "
                    f"training images' own per-band range (`{s.describe()}`)")
        elif s.method == "percentile":
            text = f"stretched per band from their {_ordinal(s.low)}-{_ordinal(s.high)} percentiles to 0-255"
        else:
            text = f"scaled by `{s.describe()}`"
        groups.setdefault(text, []).append(dtype)
    parts = [f"{' and '.join(sorted(d))} scenes are {t}" for t, d in groups.items()]
    return "; ".join(parts) + " (the contract says so; `--scaling` overrides it)."


def _scene_rows(scene_eval: list[dict]) -> list[str]:
    """Rows of the scene-evaluation table (``bench/scene_eval.py --json``)."""
    rows = []
    for r in scene_eval:
        label = os.path.basename(r["model"]) if r["model"] != "default" else "shipped before"
        cells = []
        for k in ("naip", "amsterdam"):
            v = r[k]
            cells.append(" / ".join("-" if v[f] is None else f"{v[f]:.3f}" for f in ("iou", "precision", "recall")))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def write_model_card(onnx_path: str, out_md: str, commands: list[str], extra_runs: dict[str, str] | None = None,
                     weaknesses: list[str] | None = None, int8: dict | None = None,
                     notes: list[str] | None = None, classes_doc: list[str] | None = None,
                     scene_eval: list[dict] | None = None) -> str:
    """Write ``out_md`` for ``onnx_path``; ``extra_runs`` maps a label to another
    run folder (e.g. the scratch baseline) for a side-by-side table;
    ``classes_doc`` defines the classes; ``scene_eval`` holds the results of
    ``bench/scene_eval.py --json`` (water against NDWI references)."""
    from geoseg.model import load_model

    info = load_model(onnx_path)
    c = info.contract
    m = c.extra.get("metrics", {})
    par = c.extra.get("parity", {})
    L = [f"# Model card: {c.name}", "",
         f"File: `{os.path.basename(onnx_path)}` ({info.size_bytes / 1e6:.2f} MB), sha256 `{info.sha256}`.", "",
         "## What it does", "",
         f"Classifies {c.patch_size} x {c.patch_size} px RGB patches into {', '.join(c.class_names)}. "
         f"Input: raw pixels, {c.input_layout} {c.input_dtype}, range {list(c.input_range)}; the model "
         "does its own preprocessing.  " + _scaling_sentence(c), "",
         f"Intended resolution: {c.training_resolution_m or 'unknown'} m per pixel (the EuroSAT half of "
         "the training data is Sentinel-2 at 10 m; the cloudy and desert images come from another, "
         "undocumented source).  Far from that, results degrade.", "",
         "## Training data and provenance", "",
         f"{c.extra.get('training_data', 'unknown')}.", ""]
    if classes_doc:
        L += ["## Classes", ""] + [f"- {d}" for d in classes_doc] + [""]
    if m:
        L += ["## Test metrics (held-out test split, never trained on)", "",
              f"Accuracy **{m['test_accuracy']:.4f}** on {m.get('n_test')} images; macro F1 {m['macro']['f1']:.4f}.", "",
              "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for k, v in m["per_class"].items():
            L.append(f"| {k} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |")
        L += ["", "Confusion matrix (rows: true, columns: predicted):", "",
              "| | " + " | ".join(c.class_names) + " |", "|---" * (c.n_classes + 1) + "|"]
        for n, row in zip(c.class_names, m["confusion"]):
            L.append(f"| **{n}** | " + " | ".join(map(str, row)) + " |")
    if notes:
        L += [""] + notes
    if extra_runs:
        L += ["", "## Compared with", "", "| model | test accuracy | macro F1 | min class recall |", "|---|---|---|---|"]
        if m:
            L.append(f"| this model | {m['test_accuracy']:.4f} | {m['macro']['f1']:.4f} | "
                     f"{min(v['recall'] for v in m['per_class'].values()):.4f} |")
        for label, run in extra_runs.items():
            rep = json.load(open(os.path.join(run, "report.json")))
            L.append(f"| {label} | {rep['accuracy']:.4f} | {rep['macro']['f1']:.4f} | "
                     f"{min(v['recall'] for v in rep['per_class'].values()):.4f} |")
    if par:
        L += ["", "## Export", "",
              f"tf2onnx, opset {c.extra.get('export', {}).get('opset')}; parity with Keras on {par['n']} images "
              f"({par['source']}): max |p_keras - p_onnx| = {par['max_abs_diff']:.2e}, argmax agreement "
              f"{100 * par['argmax_agreement']:.2f}%.  Versions: "
              + ", ".join(f"{k} {v}" for k, v in c.extra.get("export", {}).items() if k != "opset") + "."]
    if int8:
        L += ["", f"An int8 variant (static QDQ, per-channel) measured: accuracy {int8['accuracy_int8']:.4f} "
              f"(float {int8['accuracy_float']:.4f}), {int8['patches_per_s_int8']:.0f} patches/s "
              f"(float {int8['patches_per_s_float']:.0f}), {int8['size_bytes'] / 1e6:.2f} MB "
              f"(float {int8['float_size_bytes'] / 1e6:.2f} MB)."]
    if scene_eval:
        L += ["", "## Real scenes from other sensors: water against an NDWI reference", "",
              "Each scene's own green and near-infrared bands give a water reference, NDWI = (green - NIR) / "
              "(green + NIR) > 0 (`geoseg reference ndwi`); the model classifies the RGB bands with the "
              "contract's rules and default options (`geoseg classify`), and `geoseg evaluate-scene "
              "--classes water` scores its water cells against the cells where the reference is mostly "
              "water (cell = one 64 px patch).  NAIP: aerial, North Dakota, 5 m, uint8 RGB+NIR; "
              "Amsterdam: Sentinel-2 L1C, uint16 B04/B03/B02 with B03/B08 for the reference, about 6 m.  "
              "Run by `bench/scene_eval.py`; docs/evaluation.md.", "",
              "| model | NAIP water IoU / precision / recall | Amsterdam water IoU / precision / recall |",
              "|---|---|---|"] + _scene_rows(scene_eval)
    if weaknesses:
        L += ["", "## Known weaknesses", ""] + [f"- {w}" for w in weaknesses]
    L += ["", "## How it was produced", "", "```"] + commands + ["```", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(L))
    return out_md


WEAKNESSES = [
    "Water that does not look like water in RGB: the algae-green prairie ponds of the NAIP scene are "
    "brighter and greener than the fields around them, and the model calls most of them green_area "
    "(water recall 0.21 there; what it calls water is water: precision 0.92).  Its water probability "
    "ranks that scene's water cells above the rest with an AUC of 0.80 (0.69 before the mixed-cell "
    "augmentation); the best possible threshold on it would give a water IoU of 0.48.  With a "
    "near-infrared band, NDWI (`geoseg reference ndwi`) is the better water map.  A model trained on a few "
    "hundred labelled chips of the target sensor did far better in the measurement of docs/training.md (NAIP "
    "0.55-0.70 on a held-out half of the scene, against 0.17-0.23 for this model on the same cells): "
    "`geoseg chips`, docs/chips.md.",
    "Dark vegetation and partly-water cells read as water: of the 30 false water cells on the "
    "Amsterdam Sentinel-2 scene, 15 hold less than 5 % water (dark parks, sports fields, the "
    "footprint edge) and 15 hold 5-50 % (quays, harbour basins, canals); mixed-cell training cut "
    "the second kind from 19 cells and the first hardly (16).",
    "Four classes only: towns, industry and roads are desert by definition (bare or built-up "
    "land); snow, bare rock and salt flats fall into desert or cloudy.  Read the probabilities, "
    "not only the class.",
    "Scenes far from 10 m: on the 300 m Landsat products in ../shared, dark deep ocean and brown "
    "winter forest come out desert or green_area (RGB.byte.tif: 45 % desert, 35 % green_area, 20 % "
    "water for a scene that is mostly ocean; mosaic_cog1.tif: 100 % desert); on the 60 m "
    "Landsat-8 Grenada scene hazy sea comes out cloudy (rgb8.tif, 54 % of the cells).  "
    "`--resample auto` does not rescue 60-300 m scenes (it enlarges them).",
    "Clouds are confused with bright land (desert, snow, salt flats, bright roofs): the cloudy class "
    "was learnt from one source of 256 px images.",
    "uint16 and float scenes are stretched per scene (2nd-98th percentile of each band to the "
    "training images' range): a scene that is almost all cloud or all water gets a misleading "
    "stretch.  Pass --scaling linear:SCALE for calibrated reflectance.",
]


def main(argv=None) -> int:
    import argparse
    import json as _json

    ap = argparse.ArgumentParser(description="Write the model card of an exported model.")
    ap.add_argument("onnx")
    ap.add_argument("out_md")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=RUN_DIR")
    ap.add_argument("--commands", required=True, help="file with the commands that produced the model")
    ap.add_argument("--int8-report", default=None, help="JSON of the int8 export (from `geoseg export --quantize int8`)")
    ap.add_argument("--note", action="append", default=[], help="a paragraph for the metrics section")
    ap.add_argument("--classes-doc", action="append", default=[], help="a class definition (repeatable)")
    ap.add_argument("--scene-eval", default=None, help="JSON from bench/scene_eval.py --json")
    a = ap.parse_args(argv)
    extra = dict(c.split("=", 1) for c in a.compare)
    cmds = [ln.rstrip() for ln in open(a.commands) if ln.strip()]
    int8 = _json.load(open(a.int8_report)).get("int8") if a.int8_report else None
    scenes = _json.load(open(a.scene_eval)) if a.scene_eval else None
    write_model_card(a.onnx, a.out_md, cmds, extra, WEAKNESSES, int8, a.note, a.classes_doc, scenes)
    print(f"wrote {a.out_md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
