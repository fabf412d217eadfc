"""The model card of an exported model, written from the run's own reports
(so every figure in it was produced by the pipeline, not typed in)."""

from __future__ import annotations

import json
import os


def write_model_card(onnx_path: str, out_md: str, commands: list[str], extra_runs: dict[str, str] | None = None,
                     weaknesses: list[str] | None = None, int8: dict | None = None,
                     notes: list[str] | None = None) -> str:
    """Write ``out_md`` for ``onnx_path``; ``extra_runs`` maps a label to another
    run folder (e.g. the scratch baseline) for a side-by-side table."""
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
         "does its own preprocessing.  uint8 scenes are used as they are; uint16 and float scenes are "
         "stretched per band between their 2nd and 98th percentiles (the contract says so; "
         "`--scaling` overrides it).", "",
         f"Intended resolution: {c.training_resolution_m or 'unknown'} m per pixel (the EuroSAT half of "
         "the training data is Sentinel-2 at 10 m; the cloudy and desert images come from another, "
         "undocumented source).  Far from that, results degrade.", "",
         "## Training data and provenance", "",
         f"{c.extra.get('training_data', 'unknown')}.", ""]
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
    if weaknesses:
        L += ["", "## Known weaknesses", ""] + [f"- {w}" for w in weaknesses]
    L += ["", "## How it was produced", "", "```"] + commands + ["```", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(L))
    return out_md


WEAKNESSES = [
    "Clouds are confused with bright land (desert, snow, salt flats, bright roofs): the cloudy "
    "class was learnt from one source of 256 px images, and a patch of thin cloud over land "
    "is neither class cleanly.",
    "green_area and water have almost the same mean colour in the training data (dark "
    "blue-green EuroSAT Forest and SeaLake tiles); the model separates them by texture, which "
    "fails on turbid or shallow water and on smooth, dark vegetation.",
    "Four classes only: cities, cropland, roads, snow, bare rock and so on are forced into one of "
    "them (usually desert or green_area).  Read the probabilities, not only the class.",
    "Trained on 64 px patches from images of different sources and resolutions; scenes far "
    "from about 10 m per pixel (e.g. 0.5 m aerial or 300 m Landsat products) are out of "
    "distribution.",
    "It reads texture: with every test patch blurred (Gaussian, 1 px) green_area recall falls to "
    "about 0.65 (forest turns into water) while the other classes hold; hazy, soft or resampled "
    "imagery is classified worse.",
    "uint16 scenes are stretched per scene (2nd-98th percentile); a scene that is almost all "
    "cloud or all water gets a misleading stretch.  Pass --scaling linear:SCALE for calibrated "
    "reflectance.",
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
    a = ap.parse_args(argv)
    extra = dict(c.split("=", 1) for c in a.compare)
    cmds = [ln.rstrip() for ln in open(a.commands) if ln.strip()]
    int8 = _json.load(open(a.int8_report)).get("int8") if a.int8_report else None
    write_model_card(a.onnx, a.out_md, cmds, extra, WEAKNESSES, int8, a.note)
    print(f"wrote {a.out_md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
