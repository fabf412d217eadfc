"""geoseg.chipgrid: the pure window arithmetic of chips."""

import numpy as np

from geoseg.chipgrid import (block_of, point_counts, points_to_labels, row_chunks, sample_per_class, window_grid,
                             window_labels, window_sums)
from geoseg.chips import BlockSize


def test_window_grid_and_sums():
    r, c = window_grid(10, 7, 4, 3)
    assert r.tolist() == [0, 3] and c.tolist() == [0, 3, 6]
    m = np.arange(70).reshape(7, 10)
    s = window_sums(m, 4, 3)
    assert s.shape == (2, 3) and s[1, 2] == m[3:7, 6:10].sum() and s[0, 0] == m[:4, :4].sum()


def test_window_labels_purity_and_ties():
    lab = np.full((4, 8), -1)
    lab[:, :4] = 2
    lab[:2, 4:] = 5
    lab[2:, 4:] = 1
    best, pur = window_labels(lab, 4, 4)
    assert best.tolist() == [[2, 1]] and pur.tolist() == [[1.0, 0.5]]  # tie 5 vs 1 (8 px each): lowest
    best, pur = window_labels(np.full((4, 4), -1), 4, 4)
    assert best.tolist() == [[-1]] and pur.tolist() == [[0.0]]


def test_point_counts_and_blocks():
    counts = point_counts(np.array([1.5, 5.5, 5.5]), np.array([1.5, 1.5, 6.5]), np.array([0, 1, 1]), 2, 4, 2, 3, 3)
    lab, pur = points_to_labels(counts)
    # the point at row 5.5 lies in window rows 1 (2-6) and 2 (4-8)
    assert counts[1, :, 0].tolist() == [0, 1, 1] and lab[0, 0] == 0 and lab[2, 2] == 1 and lab[0, 2] == -1
    assert pur[1, 0] == 1.0
    br, bc = block_of(np.array([0, 16, 32]), np.array([48, 0, 16]), 16, 32)
    assert br.tolist() == [0, 0, 1] and bc.tolist() == [1, 0, 0]
    assert BlockSize.parse("640").pixels(10, False, "s") == 64 and BlockSize.parse("20px").pixels(10, False, "s") == 20


def test_sample_per_class_is_seeded():
    labels = ["a"] * 10 + ["b"] * 3
    k1, k2 = sample_per_class(labels, 4, seed=3), sample_per_class(labels, 4, seed=3)
    assert k1.tolist() == k2.tolist() and len(k1) == 7 and set(range(10, 13)) <= set(k1.tolist())


def test_row_chunks_cover_every_window_row_once():
    rows, _ = window_grid(10, 40, 8, 4)
    chunks = list(row_chunks(10, 40, 8, 4, 1, budget=10 * 16))
    assert [m for _, m, _, _ in chunks] and sum(m for _, m, _, _ in chunks) == len(rows)
    for i0, m, r0, r1 in chunks:
        assert r0 == rows[i0] and r1 == rows[i0 + m - 1] + 8
        assert m == 1 or (r1 - r0) * 10 <= 10 * 16
