"""Renderings of an evaluate-scene report (the dictionary written as
``report.json``): ``report.md``, ``confusion.png`` and the summary the
command prints (the report in, text or an image out; nothing is computed
here)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["DISAGREEMENT_CODES", "draw_confusion", "report_markdown", "summary_lines"]

DISAGREEMENT_CODES = ("0 agree, 1 disagree, 2 left out (reference coverage), 3 left out (unmapped reference class), "
                      "4 left out (class map value without a class name), 255 nodata in the class map")


def _f(x, nd: int = 3, none: str = "–") -> str:
    return none if x is None else f"{x:.{nd}f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def report_markdown(rep: dict) -> str:
    """``report.md`` from the report dictionary."""
    labels = rep["labels"]
    g = rep["grid"]
    lines = [f"# Evaluation of `{os.path.basename(rep['class_map'])}`", "",
             f"- class map: `{rep['class_map']}` ({g['width']} x {g['height']} cells of "
             f"{g['cell_size'][0]:.6g} x {g['cell_size'][1]:.6g}, {g['crs']})",
             f"- reference: `{rep['reference']}` ({rep['reference_kind']}"
             + (f", field `{rep['reference_field']}`" if rep["reference_field"] else "") + ")",
             f"- scored: {rep['mode']}" + (f" ({', '.join(rep['options']['classes'])} against the rest)"
                                           if rep["options"]["classes"] else ""),
             f"- minimum reference coverage of a cell: {rep['options']['min_coverage']:g}", ""]
    lines += ["## Figures", "", _table(["figure", "value"], [
        ["overall accuracy", _f(rep["overall_accuracy"])],
        ["Cohen's kappa", _f(rep["kappa"])],
        ["balanced accuracy", _f(rep["balanced_accuracy"])],
        ["cells scored", f"{rep['n_cells']:,}"],
        ["area scored (km², ellipsoidal)", _f(rep["area_km2"], 4)],
        ["overall accuracy by area", _f(rep["by_area"]["overall_accuracy"])],
    ]), ""]
    rows = [[n, _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), _f(v["iou"]), f"{v['reference_cells']:,}",
             f"{v['model_cells']:,}", _f(v["reference_km2"], 4), _f(v["model_km2"], 4)]
            for n, v in rep["per_class"].items()]
    lines += ["## Per class", "", "Precision = user's accuracy, recall = producer's accuracy.", "",
              _table(["class", "precision", "recall", "F1", "IoU", "reference cells", "map cells",
                      "reference km²", "map km²"], rows), ""]
    for unit, key, fmt in (("cells", "cells", lambda v: f"{int(v):,}"), ("km²", "km2", lambda v: _f(v, 4))):
        m = rep["confusion"][key]
        rows = [[f"**{labels[i]}**"] + [fmt(v) for v in row] + [fmt(sum(row))] for i, row in enumerate(m)]
        rows.append(["**total**"] + [fmt(sum(r[j] for r in m)) for j in range(len(labels))]
                    + [fmt(sum(map(sum, m)))])
        lines += [f"## Confusion matrix ({unit})", "", "Rows: reference; columns: class map.", "",
                  _table(["reference \\ map"] + labels + ["total"], rows), ""]
    lo = rep["left_out"]
    lines += ["## Left out", "", _table(["reason", "cells", "km²"], [
        [v["why"], f"{v['cells']:,}", _f(v["km2"], 4)] for v in lo.values()]), ""]
    if rep["reference_classes"]:
        rows = [[n, v["scored_as"] or "**unmapped: left out**", v["how"] or "", f"{v['cells']:,}", _f(v["share"])]
                for n, v in rep["reference_classes"].items()]
        lines += ["## Reference classes", "",
                  "Majority reference class of the covered cells, and the class it is scored as.", "",
                  _table(["reference class", "scored as", "how", "cells", "share"], rows), ""]
    lines += [f"`disagreement.tif`: {DISAGREEMENT_CODES}.", ""]
    return "\n".join(lines)


def draw_confusion(path: str, rep: dict) -> None:
    """The confusion matrix as a PNG (Pillow): cells shaded by the share of
    their reference row, with the cell count and km² in each (ASCII text
    only: Pillow's built-in font has no ² or arrows)."""
    from PIL import Image, ImageDraw, ImageFont

    labels = rep["labels"]
    cells = np.asarray(rep["confusion"]["cells"], dtype=np.float64)
    km2 = rep["confusion"]["km2"]
    k = len(labels)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    cw, ch = 112, 52
    left = 24 + max(int(font.getlength(n)) for n in labels + ["reference"]) + 12
    top = 96
    w = left + cw * k + 80
    h = top + ch * k + 62
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    title = (f"OA {_f(rep['overall_accuracy'], none='n/a')}   kappa {_f(rep['kappa'], none='n/a')}   "
             f"balanced {_f(rep['balanced_accuracy'], none='n/a')}"
             f"   n = {rep['n_cells']:,} cells")
    d.text((12, 10), os.path.basename(rep["class_map"])[:60], fill="black", font=font)
    d.text((12, 30), title, fill="black", font=font)
    d.text((left, top - 38), "columns: class map", fill=(90, 90, 90), font=small)
    d.text((12, top - 20), "rows: reference", fill=(90, 90, 90), font=small)
    rows = cells.sum(axis=1)
    for j, n in enumerate(labels + ["recall"]):
        d.text((left + j * cw + 6, top - 20), n[:14], fill="black", font=font)
    for i in range(k):
        y = top + i * ch
        d.text((12, y + ch // 2 - 8), labels[i], fill="black", font=font)
        for j in range(k):
            x = left + j * cw
            share = cells[i, j] / rows[i] if rows[i] > 0 else 0.0
            base = np.array((31, 95, 191) if i == j else (215, 48, 31), float)
            col = tuple(int(v) for v in 255 - share * (255 - base))
            d.rectangle([x, y, x + cw - 2, y + ch - 2], fill=col, outline=(200, 200, 200))
            txt = "white" if share > 0.55 else "black"
            d.text((x + 6, y + 6), f"{int(cells[i, j]):,}", fill=txt, font=font)
            d.text((x + 6, y + 26), f"{km2[i][j]:.3g} km2", fill=txt, font=small)
        rec = rep["per_class"][labels[i]]["recall"]
        d.text((left + k * cw + 6, y + ch // 2 - 8), _f(rec, none="n/a"), fill="black", font=font)
    y = top + k * ch + 6
    d.text((12, y), "precision", fill="black", font=font)
    for j in range(k):
        d.text((left + j * cw + 6, y), _f(rep["per_class"][labels[j]]["precision"], none="n/a"), fill="black",
               font=font)
    d.text((12, y + 26), "shade: share of the reference row; blue = agreement, red = confusion", fill=(90, 90, 90),
           font=small)
    img.save(path, format="PNG")


def summary_lines(rep: dict, outdir: str) -> list[str]:
    """The one-screen summary printed by the command."""
    lines = [f"{os.path.basename(rep['class_map'])} vs {os.path.basename(rep['reference'])} ({rep['mode']}): "
             f"{rep['n_cells']:,} cells, {_f(rep['area_km2'], 3)} km²",
             f"overall accuracy {_f(rep['overall_accuracy'])}   kappa {_f(rep['kappa'])}   "
             f"balanced accuracy {_f(rep['balanced_accuracy'])}", ""]
    head = ("class", "precision", "recall", "F1", "IoU", "ref cells", "map cells")
    rows = [head] + [(n, _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), _f(v["iou"]), str(v["reference_cells"]),
                      str(v["model_cells"])) for n, v in rep["per_class"].items()]
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines += ["  ".join(r[i].ljust(w[i]) if i == 0 else r[i].rjust(w[i]) for i in range(len(head))) for r in rows]
    left = [(k, v) for k, v in rep["left_out"].items() if v["cells"]]
    if left:
        lines.append("")
        lines.append("left out: " + "; ".join(f"{v['cells']:,} cells {k.replace('_', ' ')}" for k, v in left))
    um = rep["left_out"]["unmapped_reference"]["classes"]
    if um:
        lines.append("unmapped reference classes (use --map REF=CLASS): "
                     + ", ".join(f"{n} ({v['cells']} cells, {100 * (v['share'] or 0):.1f}%)" for n, v in um.items()))
    lines.append(f"reports: {os.path.join(outdir, 'report.md')}, report.json, confusion.png, disagreement.tif")
    return lines
