"""The chip grid, pure arithmetic (no I/O): windows of a scene, their
majority label and purity, points per window, spatial blocks, per-class
sampling and chunks of window rows (TorchGeo's samplers are the model)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["block_of", "point_counts", "points_to_labels", "row_chunks", "sample_per_class", "window_grid",
           "window_labels", "window_sums"]


def window_grid(width: int, height: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of every ``size`` px window that lies wholly
    inside a ``width`` x ``height`` grid, every ``stride`` px."""
    nr = (height - size) // stride + 1 if height >= size else 0
    nc = (width - size) // stride + 1 if width >= size else 0
    return np.arange(nr) * stride, np.arange(nc) * stride


def window_sums(mask: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Sum of ``mask`` (h, w) over ``size`` x ``size`` windows every ``stride``
    cells: (n_rows, n_cols) int64, by an integral image (any stride)."""
    h, w = mask.shape
    nr = (h - size) // stride + 1 if h >= size else 0
    nc = (w - size) // stride + 1 if w >= size else 0
    if nr == 0 or nc == 0:
        return np.zeros((max(nr, 0), max(nc, 0)), np.int64)
    ii = np.zeros((h + 1, w + 1), np.int64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1, out=ii[1:, 1:])
    r = np.arange(nr) * stride
    c = np.arange(nc) * stride
    r1, c1 = r + size, c + size
    return ii[np.ix_(r1, c1)] - ii[np.ix_(r, c1)] - ii[np.ix_(r1, c)] + ii[np.ix_(r, c)]


def window_labels(labels: np.ndarray, size: int, stride: int, unlabelled: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Majority label and its fraction (purity) of every window of a label grid.

    ``labels`` (h, w) integer, ``unlabelled`` where no class is known (counts
    against purity).  Returns (n_rows, n_cols) labels (``unlabelled`` where a
    window holds no label at all) and float64 purities in [0, 1].  Ties go to
    the lowest label.
    """
    present = np.unique(labels)
    present = present[present != unlabelled]
    sums = window_sums(np.zeros(labels.shape, bool), size, stride)
    best = np.full(sums.shape, unlabelled, np.int64)
    best_n = np.zeros(sums.shape, np.int64)
    for v in present:  # ascending: a later, larger label wins only when strictly more
        n = window_sums(labels == v, size, stride)
        better = n > best_n
        best[better] = v
        best_n[better] = n[better]
    return best, best_n / float(size * size)


def point_counts(rows: np.ndarray, cols: np.ndarray, codes: np.ndarray, n_classes: int, size: int, stride: int,
                 n_rows: int, n_cols: int) -> np.ndarray:
    """(n_classes, n_rows, n_cols) number of points of each class in each window.

    ``rows``/``cols`` are fractional pixel coordinates (row 0.5 is the centre
    of the first pixel row); window (i, j) covers ``[i*stride, i*stride+size)``
    rows and the same for columns.
    """
    out = np.zeros((n_classes, n_rows, n_cols), np.int64)
    for r, c, k in zip(rows, cols, codes):
        i0, i1 = int(max(0, np.floor((r - size) / stride) + 1)), int(min(n_rows - 1, np.floor(r / stride)))
        j0, j1 = int(max(0, np.floor((c - size) / stride) + 1)), int(min(n_cols - 1, np.floor(c / stride)))
        if i1 >= i0 and j1 >= j0:
            out[int(k), i0 : i1 + 1, j0 : j1 + 1] += 1
    return out


def points_to_labels(counts: np.ndarray, unlabelled: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Majority class and its share of the points, per window, from :func:`point_counts`."""
    total = counts.sum(axis=0)
    lab = np.where(total > 0, counts.argmax(axis=0), unlabelled)
    purity = np.where(total > 0, counts.max(axis=0) / np.maximum(total, 1), 0.0)
    return lab.astype(np.int64), purity


def block_of(row_off: np.ndarray, col_off: np.ndarray, size: int, block_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Spatial block (row, col) of windows: the block holding the window's centre."""
    half = size / 2.0
    return (np.floor((np.asarray(row_off) + half) / block_px).astype(np.int64),
            np.floor((np.asarray(col_off) + half) / block_px).astype(np.int64))


def sample_per_class(labels: list[str], n: int | None, seed: int = 0) -> np.ndarray:
    """Indices (ascending) keeping at most ``n`` items of each label: a seeded
    random sample, the same for the same labels, ``n`` and ``seed``."""
    idx = np.arange(len(labels))
    if n is None:
        return idx
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels, dtype=object)
    keep = []
    for c in sorted(set(labels)):
        ii = idx[lab == c]
        keep.append(ii if len(ii) <= n else np.sort(rng.choice(ii, n, replace=False)))
    return np.sort(np.concatenate(keep)) if keep else idx[:0]


def row_chunks(width: int, height: int, size: int, stride: int, cells_per_px: int,
               budget: int) -> Iterator[tuple[int, int, int, int]]:
    """Chunks of window rows holding at most about ``budget`` label cells
    (``cells_per_px`` a pixel): (first window row, window rows, pixel rows r0, r1)."""
    rows, _ = window_grid(width, height, size, stride)
    n = len(rows)
    per_row = max(1, width * cells_per_px)
    k = max(1, int((budget // per_row - size) // stride) + 1)
    for i0 in range(0, n, k):
        m = min(k, n - i0)
        r0 = int(rows[i0])
        yield i0, m, r0, r0 + (m - 1) * stride + size
