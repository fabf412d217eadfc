"""Patches: views, validity, gap filling, model input, folding to cells (geoseg.patches)."""

import numpy as np
import pytest

from geoseg.contract import Scaling
from geoseg.patches import fill_invalid, fold_to_cells, patch_valid_fraction


def test_patch_views_positions():
    from geoseg.patches import gather_patches, patch_views

    a = np.arange(2 * 12 * 12).reshape(2, 12, 12)
    valid = np.ones((12, 12), bool)
    pix, val = patch_views(a, valid, 4, 4)
    assert pix.shape == (2, 3, 3, 4, 4) and val.shape == (3, 3, 4, 4)
    p, v = gather_patches(pix, val, np.array([1]), np.array([2]))
    assert p.shape == (1, 2, 4, 4) and (p[0, 0] == a[0, 4:8, 8:12]).all() and v.all()
    assert (p[0, 1] == a[1, 4:8, 8:12]).all()
    pix, _ = patch_views(a, valid, 4, 2)
    assert pix.shape == (2, 5, 5, 4, 4)
    assert (pix[1, 1, 3] == a[1, 2:6, 6:10]).all()


@pytest.mark.parametrize("size,stride", [(8, 4), (8, 8), (8, 2)])
def test_valid_fraction_matches_loops(size, stride):
    """With every pixel inside the scene, the fraction is the patch's valid
    pixel count (a box sum) over size², whatever the overlap."""
    rng = np.random.default_rng(0)
    m = rng.random((20, 24)) > 0.3
    inside = np.ones(m.shape, bool)
    s = patch_valid_fraction(m, inside, size, stride) * size * size
    assert s.shape == ((20 - size) // stride + 1, (24 - size) // stride + 1)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            assert s[i, j] == m[i * stride : i * stride + size, j * stride : j * stride + size].sum()  # exact: size² is a power of 2
    assert (patch_valid_fraction(inside, inside, size, stride) == 1.0).all()  # the gap-free shortcut
    with pytest.raises(ValueError, match="stride must divide size"):
        patch_valid_fraction(m, inside, 8, 3)


def test_padding_counts_neither_way():
    valid = np.zeros((8, 8), bool)
    inside = np.zeros((8, 8), bool)
    valid[:, :2] = inside[:, :2] = True  # only 2 columns lie in the scene, all valid
    assert patch_valid_fraction(valid, inside, 8, 8)[0, 0] == 1.0
    valid[:4, :2] = False
    assert patch_valid_fraction(valid, inside, 8, 8)[0, 0] == 0.5


def test_fill_invalid_repeats_the_valid_pixels():
    p = np.zeros((2, 3, 2, 2), np.float32)
    p[0, :, 0, 0] = [10, 20, 30]
    p[0, :, 0, 1] = [30, 40, 50]
    p[1] = 7  # no valid pixel: zeros
    v = np.array([[[True, True], [False, False]], [[False, False], [False, False]]])
    out = fill_invalid(p, v)
    # the bottom row repeats the top row, pixel for pixel; valid pixels untouched
    assert np.array_equal(out[0, :, 1], out[0, :, 0])
    assert np.allclose(out[0, :, 0, 0], [10, 20, 30]) and np.allclose(out[0, :, 0, 1], [30, 40, 50])
    assert not out[1].any()
    assert p[0, :, 1].sum() == 0  # the input is not modified


def test_fill_invalid_keeps_the_grain():
    """A textured patch with its right half missing: the filled half has the
    valid half's spread, not a flat mean (which a model reads as water)."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 255, (1, 3, 8, 8)).astype(np.float32)
    v = np.ones((1, 8, 8), bool)
    v[:, :, 4:] = False
    out = fill_invalid(p, v)
    assert np.array_equal(out[0, :, :, :4], p[0, :, :, :4])
    assert out[0, :, :, 4:].std() > 0.5 * p[0, :, :, :4].std()
    assert set(np.unique(out[0, 0, :, 4:])) <= set(np.unique(p[0, 0, :, :4]))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_to_model_input_layouts_and_dtypes(layout, dtype):
    from geoseg.contract import Scaling
    from geoseg.patches import to_model_input

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (5, 3, 4, 4)).astype(np.uint8)  # (n, band, p, p)
    valid = np.ones((5, 4, 4), bool)
    want = raw.transpose(0, 2, 3, 1) if layout == "NHWC" else raw
    x = to_model_input(raw, valid, Scaling("identity"), (0, 255), None, layout, dtype)
    assert x.dtype == np.dtype(dtype) and x.flags.c_contiguous
    assert np.array_equal(x, want.astype(dtype))
    # a gap: filled with the patch's first valid pixel (fill_invalid), then converted
    valid[0, 0, 0] = False
    x = to_model_input(raw, valid, Scaling("identity"), (0, 255), None, layout, dtype)
    got = x[0, 0, 0] if layout == "NHWC" else x[0, :, 0, 0]
    assert np.array_equal(got, raw[0, :, 0, 1].astype(dtype))
    assert np.array_equal(np.delete(x.reshape(5, -1), 0, axis=0), np.delete(want.astype(dtype).reshape(5, -1), 0, axis=0))
    # 16-bit pixels with linear scaling into 0..255, rounded and clipped for uint8 models
    raw16 = (raw.astype(np.uint16) * 16)
    x = to_model_input(raw16, np.ones((5, 4, 4), bool), Scaling("linear", scale=1 / 16), (0, 255), None, layout, dtype)
    assert np.allclose(x.astype(np.float32), want.astype(np.float32), atol=0.51)


def test_fold_to_cells_averages_covering_patches():
    # 3x3 patches, overlap 2: cell (1,1) is covered by patches (0,0),(0,1),(1,0),(1,1)
    probs = np.zeros((3, 3, 2), np.float32)
    probs[..., 0] = np.arange(9).reshape(3, 3)
    probs[..., 1] = 1
    ok = np.ones((3, 3), bool)
    mean, cnt = fold_to_cells(probs, ok, 2, (0, 3), (0, 3), (0, 0), (4, 4))
    assert cnt[0, 0] == 1 and cnt[1, 1] == 4 and cnt[3, 3] == 1
    assert mean[0, 1, 1] == pytest.approx((0 + 1 + 3 + 4) / 4)
    ok[0, 0] = False
    mean, cnt = fold_to_cells(probs, ok, 2, (0, 3), (0, 3), (0, 0), (4, 4))
    assert cnt[0, 0] == 0 and mean[0, 1, 1] == pytest.approx((1 + 3 + 4) / 3)


def test_percentile_scaling_band_first_and_last_agree():
    from geoseg.contract import Scaling
    from geoseg.patches import percentile_stats, scale_pixels

    rng = np.random.default_rng(0)
    a = rng.integers(0, 20000, (3, 30, 30)).astype(np.uint16)
    st = percentile_stats(a, np.ones((30, 30), bool), 2, 98)
    s = Scaling("percentile", low=2, high=98)
    first = scale_pixels(a, s, (0, 255), st)
    last = scale_pixels(np.moveaxis(a, 0, -1), s, (0, 255), st, band_axis=-1)
    assert np.allclose(np.moveaxis(first, 0, -1), last)
    assert first.min() == 0 and first.max() == 255
    assert 0.01 < (first == 0).mean() < 0.03  # ~2% clipped low per band


def test_percentile_scaling_to_per_band_targets():
    from geoseg.contract import Scaling
    from geoseg.patches import scale_pixels, to_model_input

    # band 0: p-low 100, p-high 300 -> 20..220; band 1: 1000..2000 -> 50..150
    a = np.array([[[100, 200, 300, 500]], [[1000, 1500, 2000, 0]]], np.uint16)  # (band, 1, 4)
    stats = np.array([[100.0, 300.0], [1000.0, 2000.0]])
    s = Scaling("percentile", targets=((20.0, 220.0), (50.0, 150.0)))
    y = scale_pixels(a, s, (0.0, 255.0), stats)
    np.testing.assert_allclose(y[0, 0], [20, 120, 220, 255])  # clipped to the input range
    np.testing.assert_allclose(y[1, 0], [50, 100, 150, 0])
    # without targets: the input range, as before
    np.testing.assert_allclose(scale_pixels(a, Scaling("percentile"), (0.0, 255.0), stats)[0, 0],
                               [0, 127.5, 255, 255])
    # patches (n, band, p, p) through the runtime's conversion
    x = to_model_input(a[None].reshape(1, 2, 2, 2), None, s, (0.0, 255.0), stats, "NCHW", "uint8")
    assert x.dtype == np.uint8 and x.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(x[0, 0].ravel(), [20, 120, 220, 255])
    with pytest.raises(ValueError, match="targets"):
        scale_pixels(a, Scaling("percentile", targets=((0.0, 255.0),)), (0.0, 255.0), stats)


def test_footprint_valid():
    from geoseg.patches import footprint_valid

    v = np.ones((8, 8), bool)
    assert footprint_valid(v, (4, 4)).all()
    v[0, 0] = v[7, 5] = False
    out = footprint_valid(v, (4, 4))  # 2 x 2 footprints: a model pixel needs all of its source pixels
    assert out.sum() == 14 and not out[0, 0] and not out[3, 2]
    up = footprint_valid(v, (16, 16))  # enlarging: the source pixel each model pixel lies in
    assert not up[:2, :2].any() and up[2:, :2].all() and not up[14:, 10:12].any()
    odd = footprint_valid(v, (3, 3))  # 8/3: footprints start at 0, 2, 5
    assert odd.tolist() == [[False, True, True], [True, True, True], [True, True, False]]


@pytest.mark.parametrize("dtype,scale,offset", [
    ("uint8", 0.4 / 255, 0.0),  # the multispectral model's uint8 rule: the clip can be skipped
    ("uint8", 0.9 / 100, 0.0),  # 255 x 0.009 = 2.3: the clip is needed
    ("uint16", 1e-4, -0.1),
    ("int16", -1e-4, 0.5),
    ("float32", 1e-4, 0.0),
])
def test_linear_scaling_in_place_equals_the_clipped_expression(dtype, scale, offset):
    from geoseg.patches import scale_pixels

    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if dtype != "float32" else None
    a = (rng.integers(info.min, info.max, (3, 4, 9, 9), endpoint=True) if info else
         rng.normal(5000, 9000, (3, 4, 9, 9))).astype(dtype)
    before = a.copy()
    y = scale_pixels(a, Scaling("linear", scale=scale, offset=offset), (0.0, 1.5), band_axis=1)
    want = np.clip(a.astype(np.float32) * np.float32(scale) + np.float32(offset), 0.0, 1.5)
    assert y.dtype == np.float32 and y.flags.c_contiguous and np.array_equal(y, want)
    assert np.array_equal(a, before)  # the input is left as it was


@pytest.mark.parametrize("dtype,scale,offset,within", [
    ("uint8", 0.4 / 255, 0.0, True),
    ("uint8", 1.5 / 255, 0.0, True),
    ("uint8", 1.6 / 255, 0.0, False),
    ("uint8", 0.4 / 255, -0.1, False),
    ("uint16", 1e-4, 0.0, False),
    ("float32", 1e-9, 0.0, False),  # float values have no bounds
])
def test_clip_is_skipped_only_where_no_value_can_leave_the_range(dtype, scale, offset, within):
    from geoseg.patches import _within

    assert _within(np.dtype(dtype), np.float32(scale), np.float32(offset), 0.0, 1.5) is within


@pytest.mark.parametrize("scaling", [Scaling("linear", scale=1000.0), Scaling("percentile", low=2, high=98)],
                         ids=["linear", "percentile"])
def test_values_beyond_float32_saturate_without_a_warning(scaling):
    # a float scene of values near float32's limits: the products overflow to inf, then the clip bounds them
    from geoseg.patches import scale_pixels

    a = np.array([[[3e38, -3e38], [0.1, 0.2]]] * 3, np.float32)
    stats = np.array([[-1e38, 1e38]] * 3) if scaling.method == "percentile" else None
    y = scale_pixels(a, scaling, (0.0, 255.0), stats)  # warnings are errors in the tests
    assert np.isfinite(y).all() and y.min() >= 0 and y.max() <= 255
    if scaling.method == "linear":
        assert (y[:, 0, 0] == 255).all() and (y[:, 0, 1] == 0).all()
