"""Agreement between a class map and a reference: confusion matrices and the
figures drawn from them (pure: arrays in, numbers out; nothing opens a file).

Conventions
-----------
A confusion matrix ``cm`` is square, ``cm[i, j]`` = the weight (cells, km²...)
of the places whose **reference** class is ``i`` and whose **model** class is
``j`` (rows: reference, columns: model).  Classes are indices ``0..K-1``; the
caller keeps their names.

- overall accuracy  = trace / total
- Cohen's kappa     = (p_o - p_e) / (1 - p_e), p_e = sum_k rowsum_k colsum_k / total²
- recall (producer's accuracy) of k  = cm[k, k] / rowsum_k
- precision (user's accuracy) of k   = cm[k, k] / colsum_k
- F1  = 2 TP / (2 TP + FP + FN);  IoU (Jaccard) = TP / (TP + FP + FN)
- balanced accuracy = mean recall over the classes present in the reference

A figure whose denominator is zero (a class absent from both maps, an empty
matrix) is ``None``, never 0 or NaN, so reports say "undefined" plainly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OTHER = "other"


def confusion_matrix(reference: np.ndarray, model: np.ndarray, n_classes: int,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """Confusion matrix (``n_classes`` x ``n_classes``, float64) of two label
    arrays of the same shape.  Labels outside ``0..n_classes-1`` (e.g. -1 for
    "left out") are ignored; ``weights`` (same shape) weighs each place
    (default 1: a count)."""
    ref = np.asarray(reference).ravel()
    mod = np.asarray(model).ravel()
    if ref.shape != mod.shape:
        raise ValueError(f"reference and model labels differ in size ({ref.size} vs {mod.size})")
    ok = (ref >= 0) & (ref < n_classes) & (mod >= 0) & (mod < n_classes)
    idx = ref[ok].astype(np.int64) * n_classes + mod[ok].astype(np.int64)
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != ref.shape:
            raise ValueError("weights must have the shape of the labels")
        w = w[ok]
    cm = np.bincount(idx, weights=w, minlength=n_classes * n_classes).astype(np.float64)
    return cm.reshape(n_classes, n_classes)


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


@dataclass(frozen=True)
class ClassScores:
    """Figures of one class (see the module's conventions)."""

    precision: float | None
    recall: float | None
    f1: float | None
    iou: float | None
    reference: float  # row sum: weight of the class in the reference
    model: float  # column sum: weight of the class in the model map

    def to_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "iou": self.iou}


@dataclass(frozen=True)
class Scores:
    """Every figure of one confusion matrix."""

    labels: tuple[str, ...]
    matrix: np.ndarray
    total: float
    overall_accuracy: float | None
    kappa: float | None
    balanced_accuracy: float | None
    per_class: dict[str, ClassScores]


def class_scores(cm: np.ndarray, k: int) -> ClassScores:
    """Precision, recall, F1 and IoU of class ``k`` of ``cm``."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = cm[k, k]
    ref = cm[k, :].sum()
    mod = cm[:, k].sum()
    fn, fp = ref - tp, mod - tp
    return ClassScores(
        precision=_ratio(tp, mod), recall=_ratio(tp, ref), f1=_ratio(2 * tp, 2 * tp + fp + fn),
        iou=_ratio(tp, tp + fp + fn), reference=float(ref), model=float(mod),
    )


def overall_accuracy(cm: np.ndarray) -> float | None:
    cm = np.asarray(cm, dtype=np.float64)
    return _ratio(np.trace(cm), cm.sum())


def cohen_kappa(cm: np.ndarray) -> float | None:
    """Cohen's kappa; ``None`` when chance agreement is total (p_e = 1, e.g.
    both maps hold one and the same class only) or the matrix is empty."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n <= 0:
        return None
    po = np.trace(cm) / n
    pe = float((cm.sum(axis=1) * cm.sum(axis=0)).sum()) / (n * n)
    if 1.0 - pe <= 1e-15:
        return None
    return float((po - pe) / (1.0 - pe))


def balanced_accuracy(cm: np.ndarray) -> float | None:
    """Mean recall over the classes present in the reference (rows with weight)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1)
    present = rows > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(cm)[present] / rows[present]))


def scores(cm: np.ndarray, labels: Sequence[str]) -> Scores:
    """Every figure of ``cm`` whose classes are named ``labels``."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix {cm.shape} does not match {len(labels)} labels")
    return Scores(
        labels=tuple(labels), matrix=cm, total=float(cm.sum()),
        overall_accuracy=overall_accuracy(cm), kappa=cohen_kappa(cm),
        balanced_accuracy=balanced_accuracy(cm),
        per_class={n: class_scores(cm, k) for k, n in enumerate(labels)},
    )


def collapse(cm: np.ndarray, groups: Sequence[int], n_out: int) -> np.ndarray:
    """Merge classes: class ``k`` of ``cm`` becomes class ``groups[k]`` of the
    result (``n_out`` x ``n_out``), on both axes."""
    cm = np.asarray(cm, dtype=np.float64)
    g = np.asarray(groups, dtype=np.int64)
    if g.shape != (cm.shape[0],) or (g < 0).any() or (g >= n_out).any():
        raise ValueError("groups must give every class a target in 0..n_out-1")
    m = np.zeros((cm.shape[0], n_out))
    m[np.arange(cm.shape[0]), g] = 1.0
    return m.T @ cm @ m


def one_vs_rest_groups(labels: Sequence[str], positives: Sequence[str],
                       other: str = OTHER) -> tuple[list[int], list[str]]:
    """The grouping of :func:`collapse` that keeps ``positives`` (in their
    order) and merges every other class into one class named ``other`` (last).

    Returns ``(groups, new_labels)``.
    """
    labels = list(labels)
    unknown = [p for p in positives if p not in labels]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}; known: {', '.join(labels)}")
    pos = list(dict.fromkeys(positives))
    rest = len(pos)
    groups = [pos.index(n) if n in pos else rest for n in labels]
    return groups, pos + [other]


def one_vs_rest(cm: np.ndarray, labels: Sequence[str], positives: Sequence[str],
                other: str = OTHER) -> tuple[np.ndarray, list[str]]:
    """``cm`` with every class not in ``positives`` merged into ``other``."""
    groups, new = one_vs_rest_groups(labels, positives, other)
    return collapse(cm, groups, len(new)), new


__all__ = [
    "OTHER", "ClassScores", "Scores", "balanced_accuracy", "class_scores", "cohen_kappa", "collapse",
    "confusion_matrix", "one_vs_rest", "one_vs_rest_groups", "overall_accuracy", "scores",
]
