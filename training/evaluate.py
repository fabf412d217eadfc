"""Evaluation report: accuracy, per-class precision/recall/F1/support, macro
scores, confusion matrix, a shortcut check (does the model read landscape or
image sharpness?), and plots (confusion, training curves, misclassified
samples)."""

from __future__ import annotations

import json
import logging
import os
import warnings

import numpy as np

log = logging.getLogger(__name__)


def _blur(x: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of (n, h, w, band) uint8 images, band by band (any band
    count); float images (reflectance) by SciPy's Gaussian filter."""
    from PIL import Image, ImageFilter

    if not len(x):
        return x
    if x.dtype != np.uint8:
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(x.astype(np.float32), sigma=(0, radius, radius, 0), mode="reflect")
    return np.stack([np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[..., b]))
                                          .filter(ImageFilter.GaussianBlur(radius))) for b in range(a.shape[-1])], -1)
                     for a in x])


def sharpness(x: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of the grey image, per image."""
    g = x.astype(np.float32).mean(-1)
    lap = (-4 * g[:, 1:-1, 1:-1] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:])
    return lap.reshape(len(x), -1).var(1)


def predict(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return model.predict(x.astype(np.float32), batch_size=batch, verbose=0)


def metrics(y: np.ndarray, p: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    pred = p.argmax(1)
    labels = list(range(len(classes)))
    pr, rc, f1, sup = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y, pred, labels=labels, average="macro", zero_division=0)
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "per_class": {c: {"precision": float(pr[i]), "recall": float(rc[i]), "f1": float(f1[i]),
                          "support": int(sup[i])} for i, c in enumerate(classes)},
        "macro": {"precision": float(mp), "recall": float(mr), "f1": float(mf)},
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def evaluate_arrays(model, x, y, records, classes, run_dir, histories=None, extra=None) -> dict:
    """Evaluate on (x, y) and write the report files into ``run_dir``."""
    p = predict(model, x)
    rep = metrics(y, p, classes)
    # shortcut check: the 4-class set mixes 256 px and 64 px sources; a model
    # that keys on sharpness rather than landscape collapses when blurred
    sh = sharpness(x)
    blurred = metrics(y, predict(model, _blur(x, 1.0)), classes)
    rep["shortcut_check"] = {
        "note": "per-class recall on the test split after a Gaussian blur (radius 1 px) of every "
                "image, and mean input sharpness (Laplacian variance) per class",
        "recall_blurred": {c: blurred["per_class"][c]["recall"] for c in classes},
        "accuracy_blurred": blurred["accuracy"],
        "sharpness_mean": {c: float(sh[y == i].mean()) if (y == i).any() else 0.0 for i, c in enumerate(classes)},
    }
    rep["classes"] = classes
    if extra:
        rep.update(extra)
    pred = p.argmax(1)
    wrong = np.flatnonzero(pred != y)
    rep["misclassified"] = [{"file": records[i].file if records else str(i), "true": classes[y[i]],
                             "pred": classes[pred[i]], "p": float(p[i, pred[i]])} for i in wrong]
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "report.json"), "w") as f:
        json.dump(rep, f, indent=2)
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write(report_md(rep))
    with warnings.catch_warnings():
        # class names in scripts the plot font lacks (e.g. CJK): matplotlib draws
        # boxes and warns per glyph; the reports carry the names as text
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        plot_confusion(rep, os.path.join(run_dir, "confusion.png"))
        if histories:
            plot_curves(histories, os.path.join(run_dir, "curves.png"))
        plot_errors(x, y, p, wrong, classes, os.path.join(run_dir, "errors.png"), records)
    return rep


def report_md(rep: dict) -> str:
    cl = rep["classes"]
    lines = ["# Evaluation report", "", f"Test images: {rep['n']}  ", f"**Accuracy: {rep['accuracy']:.4f}**  ",
             f"Macro precision {rep['macro']['precision']:.4f}, recall {rep['macro']['recall']:.4f}, "
             f"F1 {rep['macro']['f1']:.4f}", "",
             "| class | precision | recall | F1 | support | recall after blur | sharpness |",
             "|---|---|---|---|---|---|---|"]
    sc = rep.get("shortcut_check", {})
    for c in cl:
        m = rep["per_class"][c]
        lines.append(f"| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} | "
                     f"{sc.get('recall_blurred', {}).get(c, float('nan')):.4f} | "
                     f"{sc.get('sharpness_mean', {}).get(c, float('nan')):.1f} |")
    lines += ["", "Confusion matrix (rows: true, columns: predicted)", "",
              "| | " + " | ".join(cl) + " |", "|---" * (len(cl) + 1) + "|"]
    for c, row in zip(cl, rep["confusion"]):
        lines.append(f"| **{c}** | " + " | ".join(map(str, row)) + " |")
    lines += ["", f"Misclassified: {len(rep.get('misclassified', []))} (see errors.png)", ""]
    for m in rep.get("misclassified", [])[:30]:
        lines.append(f"- {m['file']}: {m['true']} -> {m['pred']} ({m['p']:.2f})")
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(rep: dict, path: str) -> None:
    plt = _plt()
    cm = np.array(rep["confusion"])
    cl = rep["classes"]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(cl)):
        for j in range(len(cl)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(cl)), cl, rotation=30)
    ax.set_yticks(range(len(cl)), cl)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {rep['accuracy']:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(histories, path: str) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    off = 0
    for phase, h in histories:
        n = len(h.get("loss", []))
        ep = np.arange(off, off + n) + 1
        for ax, key in zip(axes, ("loss", "accuracy")):
            ax.plot(ep, h[key], "-o", ms=3, label=f"train ({phase})")
            ax.plot(ep, h["val_" + key], "--o", ms=3, label=f"validation ({phase})")
        off += n
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_errors(x, y, p, wrong, classes, path, records=None, max_n: int = 32) -> None:
    plt = _plt()
    n = min(max_n, len(wrong))
    cols = 8
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, i in enumerate(wrong[:n]):
        ax = axes.ravel()[k]
        img = x[i][..., :3] if x.shape[-1] >= 3 else x[i][..., 0]  # first 3 bands as RGB
        if x.dtype.kind == "f" and float(np.max(x)) <= 2.0:  # reflectance: brightened, 0-1
            img = np.clip(img * 3.0, 0.0, 1.0)
        ax.imshow(img, cmap="gray")
        ax.set_title(f"T:{classes[y[i]]}\nP:{classes[p[i].argmax()]} {p[i].max():.2f}", fontsize=7)
    fig.suptitle(f"misclassified test images: {len(wrong)}" + ("" if n else " (none)"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_run_config(run_dir: str) -> dict:
    """A run folder's config.json, checked for what evaluation and export read."""
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{run_dir}: not a run folder of `geoseg train` (no config.json); expected the -o folder "
                         "of `geoseg train`") from None
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not readable JSON ({str(exc).splitlines()[0][:100]}); expected the config.json "
                         "`geoseg train` wrote: train the run again") from None
    missing = [k for k in ("classes", "input_size", "data_dir") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise ValueError(f"{path}: lacks {', '.join(missing)}; expected the config.json `geoseg train` wrote: "
                         "train the run again")
    return cfg


def evaluate_run(run_dir: str, data_dir: str | None = None) -> dict:
    """Re-evaluate a run's best model on its test split, or on every image of
    another folder of class folders (``data_dir``)."""
    import keras

    from . import data as D
    from .models import CaffePreprocess  # noqa: F401 - registers the layer

    cfg = load_run_config(run_dir)
    classes, size = cfg["classes"], cfg["input_size"]
    try:
        model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    except (ValueError, OSError) as exc:
        raise ValueError(f"{os.path.join(run_dir, 'model.keras')}: cannot load the model "
                         f"({str(exc).splitlines()[0][:120]}); expected the model.keras `geoseg train` wrote: "
                         "train the run again") from None
    src = data_dir or D.run_data_dir(cfg)
    if not os.path.isdir(src):
        raise ValueError(f"{src}: the run's data folder (config.json data_dir) is not there; pass the data with --data")
    if D.is_chips_dir(src):
        if data_dir is None:
            recs = [r for r in D.read_manifest(os.path.join(run_dir, "manifest.csv")) if r.split == "test"]
            out_dir = run_dir
        else:
            from geoseg.chips import read_chips_manifest

            rows, _ = read_chips_manifest(data_dir)
            unknown = sorted({r["class"] for r in rows} - set(classes))
            if unknown:
                raise ValueError(f"{data_dir}: chip classes {unknown} are not model classes {classes}")
            recs = [D.Record(r["chip"], r["class"]) for r in rows]
            out_dir = os.path.join(run_dir, "eval_" + os.path.basename(os.path.normpath(data_dir)))
        got = D.load_chips_for_run(src, [r.file for r in recs], [r.label for r in recs], cfg)
        if got is None:
            raise ValueError(f"{src}: none of the chips to evaluate could be read")
        x, y, ok = got
        if cfg.get("input_kind") != "reflectance":  # 0-255 model input as 8-bit; reflectance stays float
            x = np.round(x).astype(np.uint8)
        return evaluate_arrays(model, x, y, [recs[i] for i in ok], classes, out_dir,
                               extra={"data": src})
    if data_dir is None:
        recs = [r for r in D.read_manifest(os.path.join(run_dir, "manifest.csv")) if r.split == "test"]
        base = D.run_data_dir(cfg)
        out_dir = run_dir
    else:
        folder_classes = D.class_folders(data_dir)
        unknown = [c for c in folder_classes if c not in classes]
        if unknown:
            raise ValueError(f"{data_dir}: class folders {unknown} are not model classes {classes}")
        recs = [D.Record(os.path.join(c, n), c) for c in folder_classes
                for n in sorted(os.listdir(os.path.join(data_dir, c)))]
        base = data_dir
        out_dir = os.path.join(run_dir, "eval_" + os.path.basename(os.path.normpath(data_dir)))
    xs, ys, kept = [], [], []
    for r in recs:
        try:
            im, _ = D.decode_rgb(os.path.join(base, r.file))
        except (ValueError, OSError):
            continue
        xs.append(D.resize_rgb(im, size))
        ys.append(classes.index(r.label))
        kept.append(r)
    if not xs:
        raise ValueError(f"{base}: none of the {len(recs)} images to evaluate could be read")
    x, y = np.stack(xs), np.array(ys)
    return evaluate_arrays(model, x, y, kept, classes, out_dir, extra={"data": base})
