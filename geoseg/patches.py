"""Pure array functions: cut patches from a window, fill gaps, scale pixels,
and fold patch probabilities onto the cell grid.

Arrays are (band, row, col) as read by rasterio; patch batches are
(n, band, row, col) (NCHW) until the model's layout is applied.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .contract import InputDtype, InputLayout, Scaling


def patch_views(data: np.ndarray, valid: np.ndarray, patch: int, stride: int):
    """Zero-copy views of every patch of a window: pixels (band, n_rows, n_cols,
    patch, patch) and validity (n_rows, n_cols, patch, patch)."""
    pix = sliding_window_view(data, (patch, patch), axis=(1, 2))[:, ::stride, ::stride]
    val = sliding_window_view(valid, (patch, patch))[::stride, ::stride]
    return pix, val


def gather_patches(pix: np.ndarray, val: np.ndarray | None, rows: np.ndarray, cols: np.ndarray):
    """Copy the patches at (rows, cols) out of :func:`patch_views`: (n, band, p, p)
    pixels in the source dtype and (n, p, p) validity (None if ``val`` is None:
    every pixel valid).

    Band-first (NCHW) because that copy moves whole patch rows; an NHWC model
    gets one transposing copy later (:func:`to_model_input`)."""
    v = None if val is None else val[rows, cols]
    return np.ascontiguousarray(np.swapaxes(pix[:, rows, cols], 0, 1)), v


def to_model_input(
    raw: np.ndarray,
    valid: np.ndarray | None,
    scaling: Scaling,
    in_range: tuple[float, float],
    stats: np.ndarray | None,
    layout: InputLayout,
    dtype: InputDtype,
) -> np.ndarray:
    """Turn gathered patches (n, band, p, p) into the model's input batch.

    Scales pixels into ``in_range``, fills invalid pixels (:func:`fill_invalid`),
    converts to the model's ``dtype`` (``float32`` or ``uint8``, rounding) and
    ``layout`` (``NCHW`` or ``NHWC``).  uint8 pixels for a uint8 model with
    identity scaling and no gaps pass through untouched: no float copy at all.
    ``valid`` (n, p, p) bool, or None when every pixel is valid.
    """
    all_valid = valid is None or bool(valid.all())
    order = (0, 2, 3, 1) if layout == "NHWC" else (0, 1, 2, 3)
    if scaling.method == "identity" and all_valid:
        if dtype == "uint8" and raw.dtype == np.uint8:
            return np.ascontiguousarray(raw.transpose(order))
        if dtype == "float32":  # one copy: transpose and convert together
            return np.ascontiguousarray(raw.transpose(order), dtype=np.float32)
    x = scale_pixels(raw, scaling, in_range, stats, band_axis=1)
    if valid is not None and not all_valid:  # (not all_valid implies valid is not None)
        x = fill_invalid(x, valid)
    if dtype == "uint8":
        x = np.round(np.clip(x, 0, 255)).astype(np.uint8)
    return np.ascontiguousarray(x.transpose(order))


def patch_valid_fraction(
    valid: np.ndarray, inside: np.ndarray, patch: int, stride: int
) -> np.ndarray:
    """Fraction of a patch's in-scene pixels that hold data, per patch.

    ``valid`` and ``inside`` are (h, w) booleans over the read window:
    ``inside`` is False where the window runs past the scene (padding), which
    counts neither for nor against a patch.
    """
    vs = _box_sum(valid, patch, stride)
    ins = _box_sum(inside, patch, stride)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ins > 0, vs / np.maximum(ins, 1), 0.0)


def _box_sum(mask: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Sum of ``mask`` over ``size`` x ``size`` squares every ``stride`` pixels.

    Sums per ``stride`` cell first (a reshape), then adds the ``size // stride``
    cells of each square: linear in the window, no cumulative sums.
    """
    if size % stride:
        raise ValueError("stride must divide size")
    k = size // stride
    nr = (mask.shape[0] - size) // stride + 1
    nc = (mask.shape[1] - size) // stride + 1
    if mask.dtype == bool and mask.all():  # the common gap-free window: no arithmetic
        return np.full((nr, nc), size * size, np.int32)
    h, w = (nr + k - 1) * stride, (nc + k - 1) * stride
    cells = mask[:h, :w].reshape(h // stride, stride, w // stride, stride).sum(axis=(1, 3), dtype=np.int32)
    if k == 1:
        return cells
    out = np.zeros((nr, nc), np.int32)
    for dy in range(k):
        for dx in range(k):
            out += cells[dy : dy + nr, dx : dx + nc]
    return out


def cell_valid_counts(valid: np.ndarray, stride: int) -> np.ndarray:
    """Valid pixels per ``stride`` x ``stride`` cell of an (h, w) mask whose
    sides are multiples of ``stride``."""
    h, w = valid.shape
    if valid.all():
        return np.full((h // stride, w // stride), stride * stride, np.int32)
    return valid.reshape(h // stride, stride, w // stride, stride).sum(axis=(1, 3), dtype=np.int32)


def footprint_valid(valid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Validity of a resampled window: model pixel (i, j) of an (h, w) ->
    ``shape`` resampling is valid when every source pixel of its footprint is.

    The footprint of model row ``i`` is source rows ``floor(i * h / rows)``
    up to the next model row's first one (the last: up to ``h``): exact for
    integer factors; for others a partly covered source pixel belongs to the
    model pixel where it starts.  Enlarging (fewer source than model pixels),
    a model pixel takes the validity of the source pixel it lies in.
    """
    rows, cols = shape
    if valid.all():
        return np.ones(shape, dtype=bool)
    h, w = valid.shape
    r0 = np.minimum(np.floor(np.arange(rows) * (h / rows)).astype(np.intp), h - 1)
    c0 = np.minimum(np.floor(np.arange(cols) * (w / cols)).astype(np.intp), w - 1)
    out = np.logical_and.reduceat(valid, r0, axis=0)
    return np.logical_and.reduceat(out, c0, axis=1)


def fill_invalid(patches: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels (nodata, padding) of each patch by the patch's own
    valid pixels, repeated in raster order, so the model sees only the data's
    own colours and texture.

    The k-th invalid pixel of a patch (raster order) takes the value of its
    ``k mod n_valid``-th valid pixel: runs of valid pixels are copied as runs,
    so the filled part keeps the data's grain.  A flat fill (the valid mean)
    made a smooth, texture-free area that a model reads as water: at the
    nodata edge of a Sentinel-2 footprint it turned city cells into water.

    ``patches`` is (n, band, p, p) float32, ``valid`` (n, p, p) bool.  Patches
    with no valid pixel are returned as zeros.
    """
    if valid.all():
        return patches
    out = patches.copy()
    n, bands = patches.shape[:2]
    flat = out.reshape(n, bands, -1)
    vflat = valid.reshape(n, -1)
    for i in np.flatnonzero(~vflat.all(axis=1)):
        good = np.flatnonzero(vflat[i])
        bad = np.flatnonzero(~vflat[i])
        if good.size == 0:
            flat[i] = 0
            continue
        flat[i][:, bad] = flat[i][:, good[np.arange(bad.size) % good.size]]
    return out


def scale_pixels(
    arr: np.ndarray,
    scaling: Scaling,
    out_range: tuple[float, float],
    stats: np.ndarray | None = None,
    band_axis: int = 0,
) -> np.ndarray:
    """Scale raw pixels into the model's input range (float32); bands on axis
    ``band_axis`` (0 for a (band, h, w) window, 1 for (n, band, p, p) patches).

    ``stats`` is a (band, 2) array of (low, high) values for percentile
    scaling, computed once per scene (see :func:`percentile_stats`).

    One float32 copy of ``arr``, then every step in place on it (the same
    float32 operations, in the same order, as the expression they replace:
    bit for bit the same values); the clip is skipped where the rule cannot
    leave ``out_range`` for any value of an integer dtype (:func:`_within`).
    """
    x = np.array(arr, dtype=np.float32, order="C", copy=True)  # the one copy: the steps below work in place
    if scaling.method == "identity":
        return x
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 (1e38s) saturate, then are clipped
        return _scale_in_place(x, arr.dtype, scaling, out_range, stats, band_axis)


def _scale_in_place(x: np.ndarray, dtype: np.dtype, scaling: Scaling, out_range: tuple[float, float],
                    stats: np.ndarray | None, band_axis: int) -> np.ndarray:
    """:func:`scale_pixels`'s steps on its float32 copy ``x`` of pixels of ``dtype``."""
    lo_out, hi_out = out_range
    if scaling.method == "linear":
        s32, o32 = np.float32(scaling.scale), np.float32(scaling.offset)
        np.multiply(x, s32, out=x)
        if o32 != 0 or s32 < 0 or dtype.kind not in "ui":  # + 0 changes nothing else (no -0.0 to turn +0.0)
            np.add(x, o32, out=x)
        if _within(dtype, s32, o32, lo_out, hi_out):
            return x
    else:
        if stats is None:
            raise ValueError("percentile scaling needs per-band statistics")
        shape = [1] * x.ndim
        shape[band_axis] = -1
        lo = stats[:, 0].astype(np.float32).reshape(shape)
        hi = stats[:, 1].astype(np.float32).reshape(shape)
        span = np.maximum(hi - lo, np.float32(1e-6))
        if scaling.targets:  # per-band output targets (the training data's range), then clipped
            if len(scaling.targets) != stats.shape[0]:
                raise ValueError(f"percentile scaling has {len(scaling.targets)} targets for "
                                 f"{stats.shape[0]} band(s)")
            t = np.asarray(scaling.targets, dtype=np.float32)
            t_lo, t_hi = t[:, 0].reshape(shape), t[:, 1].reshape(shape)
            gain, base = t_hi - t_lo, t_lo
        else:
            gain, base = np.float32(hi_out - lo_out), np.float32(lo_out)
        # (x - lo) / span * gain + base, step by step in place
        np.subtract(x, lo, out=x)
        np.divide(x, span, out=x)
        np.multiply(x, gain, out=x)
        np.add(x, base, out=x)
    return np.clip(x, lo_out, hi_out, out=x)


def _within(dtype: np.dtype, scale: np.float32, offset: np.float32, lo: float, hi: float) -> bool:
    """Whether value x ``scale`` + ``offset`` (float32) lies in [lo, hi] for
    every value of the integer ``dtype``: float32 multiplication and addition
    by constants are monotone, so the dtype's extremes bound every result."""
    if dtype.kind not in "ui" or not (np.isfinite(scale) and np.isfinite(offset)):
        return False
    info = np.iinfo(dtype)
    ends = np.array([info.min, info.max], dtype=np.float32) * scale + offset
    return bool(ends.min() >= np.float32(lo) and ends.max() <= np.float32(hi))


def percentile_stats(sample: np.ndarray, valid: np.ndarray, low: float, high: float) -> np.ndarray:
    """(band, 2) low/high percentiles of the valid pixels of a (band, h, w) sample."""
    return band_percentiles(sample, valid, (low, high))


def band_percentiles(sample: np.ndarray, valid: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """(band, len(qs)) percentiles ``qs`` of the valid pixels of a (band, h, w)
    sample (zeros for a band without valid pixels)."""
    out = np.zeros((sample.shape[0], len(qs)), dtype=np.float64)
    for b in range(sample.shape[0]):
        v = sample[b][valid]
        if v.size:
            out[b] = np.percentile(v, list(qs))
    return out


def fold_to_cells(
    probs: np.ndarray, classified: np.ndarray, overlap: int, block_rows: tuple[int, int],
    block_cols: tuple[int, int], cell_off: tuple[int, int], shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Average patch probabilities onto the cells of one block.

    Parameters
    ----------
    probs
        (n_prow, n_pcol, n_class) probabilities of the covering patches.
    classified
        (n_prow, n_pcol) bool, False for patches that were not classified.
    overlap
        ``patch // stride``: patch ``q`` covers cells ``q .. q + overlap - 1``.
    block_rows, block_cols
        First patch row / col index of ``probs`` in the scene's patch grid.
    cell_off
        First cell (row, col) of the block.
    shape
        Block shape in cells.

    Returns
    -------
    mean
        (n_class, rows, cols) float32 mean probabilities (0 where no patch).
    count
        (rows, cols) number of classified patches per cell.

    The sum runs over patch offsets in a fixed order, so a cell's value does
    not depend on how the scene was cut into blocks.
    """
    rows, cols = shape
    ncls = probs.shape[-1]
    acc = np.zeros((rows, cols, ncls), dtype=np.float64)
    cnt = np.zeros((rows, cols), dtype=np.int32)
    pr0, pc0 = block_rows[0], block_cols[0]
    r_cell, c_cell = cell_off
    for dy in range(overlap):
        for dx in range(overlap):
            # cell (r, c) <- patch (r - dy, c - dx)
            pr = np.arange(rows) + r_cell - dy - pr0
            pc = np.arange(cols) + c_cell - dx - pc0
            okr = (pr >= 0) & (pr < probs.shape[0])
            okc = (pc >= 0) & (pc < probs.shape[1])
            if not okr.any() or not okc.any():
                continue
            sub_p = probs[np.ix_(pr[okr], pc[okc])]
            sub_k = classified[np.ix_(pr[okr], pc[okc])]
            ix = np.ix_(np.flatnonzero(okr), np.flatnonzero(okc))
            acc[ix] += np.where(sub_k[..., None], sub_p, 0.0)
            cnt[ix] += sub_k
    mean = acc / np.maximum(cnt, 1)[..., None]
    return np.moveaxis(mean, -1, 0).astype(np.float32), cnt


def block_thumbnail(data: np.ndarray, valid: np.ndarray, stride: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample a block's cell region (band, h*stride, w*stride) at ``k`` pixels per
    cell side, for the quicklook: (band, h*k, w*k) and the validity there.
    Nearest sampling (pixel centres of the quicklook grid): the quicklook is a
    picture to look at, and sampling costs nothing next to averaging the block."""
    f = stride // k
    o = f // 2
    return data[:, o::f, o::f].astype(np.float32), valid[o::f, o::f].copy()


def stretch_to_uint8(canvas: np.ndarray, valid: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """Per-band percentile stretch of a (band, h, w) image to uint8 for display."""
    out = np.zeros(canvas.shape, np.uint8)
    step = max(1, int(valid.sum()) // 200_000)  # percentiles of a regular sample: plenty for display
    for b in range(canvas.shape[0]):
        v = canvas[b][valid][::step]
        lo, hi = (np.percentile(v, [low, high]) if v.size else (0.0, 1.0))
        out[b] = np.clip((canvas[b] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return out
