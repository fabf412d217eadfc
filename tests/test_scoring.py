"""geoseg.scoring: confusion matrices and figures, checked against hand-computed values."""

import numpy as np
import pytest

from geoseg.scoring import (
    balanced_accuracy, class_scores, cohen_kappa, collapse, confusion_matrix, one_vs_rest, one_vs_rest_groups,
    overall_accuracy, scores,
)


def test_confusion_matrix_counts_weights_and_ignores_left_out():
    ref = np.array([[0, 0, 1], [1, 2, -1]])
    mod = np.array([[0, 1, 1], [2, 2, 0]])
    cm = confusion_matrix(ref, mod, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    w = np.array([[0.5, 2.0, 1.0], [3.0, 0.25, 9.0]])
    cmw = confusion_matrix(ref, mod, 3, weights=w)
    assert cmw.tolist() == [[0.5, 2.0, 0.0], [0.0, 1.0, 3.0], [0.0, 0.0, 0.25]]
    # labels out of range on either side are ignored, not wrapped
    assert confusion_matrix(np.array([0, 5, 1]), np.array([0, 0, 7]), 2).tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros(3), np.zeros(4), 2)


def test_two_class_figures_by_hand():
    cm = np.array([[50, 10], [5, 35]])
    s = scores(cm, ["water", "other"])
    assert s.total == 100
    assert s.overall_accuracy == pytest.approx(0.85)
    # p_e = (60 * 55 + 40 * 45) / 100^2 = 0.51
    assert s.kappa == pytest.approx((0.85 - 0.51) / (1 - 0.51))
    assert s.balanced_accuracy == pytest.approx((50 / 60 + 35 / 40) / 2)
    w = s.per_class["water"]
    assert w.precision == pytest.approx(50 / 55)
    assert w.recall == pytest.approx(50 / 60)
    assert w.f1 == pytest.approx(2 * 50 / (2 * 50 + 5 + 10))
    assert w.iou == pytest.approx(50 / 65)
    assert (w.reference, w.model) == (60, 55)
    o = s.per_class["other"]
    assert o.iou == pytest.approx(35 / 50)
    # F1 is the harmonic mean of precision and recall
    assert w.f1 == pytest.approx(2 * w.precision * w.recall / (w.precision + w.recall))


def test_three_classes_and_undefined_figures():
    cm = np.array([[4, 1, 0], [2, 3, 0], [0, 0, 0]])  # class 2 absent from both maps
    s = scores(cm, ["a", "b", "c"])
    assert s.overall_accuracy == pytest.approx(0.7)
    assert s.balanced_accuracy == pytest.approx((0.8 + 0.6) / 2)  # class c has no reference cells
    c = s.per_class["c"]
    assert (c.precision, c.recall, c.f1, c.iou) == (None, None, None, None)
    # a class predicted but absent from the reference: recall undefined, precision 0
    cm2 = np.array([[3, 2], [0, 0]])
    b = class_scores(cm2, 1)
    assert b.recall is None and b.precision == 0.0 and b.iou == 0.0
    assert balanced_accuracy(cm2) == pytest.approx(0.6)


def test_kappa_edge_cases():
    assert cohen_kappa(np.zeros((2, 2))) is None
    assert overall_accuracy(np.zeros((2, 2))) is None
    assert cohen_kappa(np.array([[7, 0], [0, 0]])) is None  # one class only: chance agreement is total
    assert cohen_kappa(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)
    assert cohen_kappa(np.array([[0, 5], [5, 0]])) == pytest.approx(-1.0)


def test_collapse_and_one_vs_rest():
    labels = ["cloudy", "desert", "green_area", "water"]
    cm = np.arange(16, dtype=float).reshape(4, 4)
    m, new = one_vs_rest(cm, labels, ["water"])
    assert new == ["water", "other"]
    assert m.tolist() == [[15, 12 + 13 + 14], [3 + 7 + 11, cm[:3, :3].sum()]]
    assert m.sum() == cm.sum()
    groups, new = one_vs_rest_groups(labels, ["water", "desert"])
    assert groups == [2, 1, 2, 0] and new == ["water", "desert", "other"]
    assert collapse(cm, groups, 3)[0, 1] == cm[3, 1]
    assert one_vs_rest_groups(labels, ["water"], other="rest")[1] == ["water", "rest"]
    with pytest.raises(ValueError, match="unknown class"):
        one_vs_rest(cm, labels, ["lake"])
    with pytest.raises(ValueError):
        collapse(cm, [0, 1], 2)
