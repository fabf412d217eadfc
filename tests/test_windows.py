import numpy as np
import pytest
from affine import Affine

from geoseg.patches import _box_sum, fill_invalid, fold_to_cells, patch_valid_fraction
from geoseg.windows import PatchGrid, choose_block_cells, is_north_up, plan_blocks


def test_grid_sizes_and_edges():
    g = PatchGrid(width=100, height=70, patch=32, stride=32)
    assert g.n_cells == (3, 4)  # ceil(70/32), ceil(100/32)
    assert g.n_patches == (3, 4)  # last ones padded
    g2 = PatchGrid(width=100, height=70, patch=32, stride=16)
    assert g2.overlap == 2
    assert g2.n_cells == (5, 7)
    assert g2.n_patches == (4, 6)


def test_stride_must_divide_patch():
    with pytest.raises(ValueError, match="must divide"):
        PatchGrid(100, 100, 32, 12)


def test_cell_transform_scales_source():
    t = Affine(10, 0, 1000, 0, -10, 5000)
    g = PatchGrid(100, 100, 32, 16)
    assert g.cell_transform(t) == Affine(160, 0, 1000, 0, -160, 5000)


@pytest.mark.parametrize("stride", [32, 16, 8])
@pytest.mark.parametrize("bc", [1, 2, 3, 50])
def test_blocks_cover_every_cell_once(stride, bc):
    g = PatchGrid(200, 130, 32, stride)
    blocks = plan_blocks(g, bc)
    cover = np.zeros(g.n_cells, int)
    for b in blocks:
        cover[b.row_off : b.row_off + b.height, b.col_off : b.col_off + b.width] += 1
        w = b.read_window(g)
        # the read window holds every covering patch and the cells themselves
        assert w.row_off <= b.row_off * stride and w.col_off <= b.col_off * stride
        assert w.row_off + w.height >= (b.row_off + b.height) * stride
    assert (cover == 1).all()


def test_block_choice_aligned_and_enough_blocks():
    g = PatchGrid(20000, 20000, 64, 64)
    b = choose_block_cells(g, 2048, source_tile=512)
    assert (b * 64) % 512 == 0
    small = PatchGrid(300, 300, 32, 32)
    assert len(plan_blocks(small, choose_block_cells(small, 2048, min_blocks=4))) >= 4


def test_north_up():
    assert is_north_up(Affine(10, 0, 0, 0, -10, 0))
    assert not is_north_up(Affine(10, 1, 0, 0, -10, 0))
    assert not is_north_up(Affine(10, 0, 0, 0, 10, 0))


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


def test_box_sum_matches_loops():
    rng = np.random.default_rng(0)
    m = rng.random((20, 24)) > 0.3
    s = _box_sum(m, 8, 4)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            assert s[i, j] == m[i * 4 : i * 4 + 8, j * 4 : j * 4 + 8].sum()


def test_padding_counts_neither_way():
    valid = np.zeros((8, 8), bool)
    inside = np.zeros((8, 8), bool)
    valid[:, :2] = inside[:, :2] = True  # only 2 columns lie in the scene, all valid
    assert patch_valid_fraction(valid, inside, 8, 8)[0, 0] == 1.0
    valid[:4, :2] = False
    assert patch_valid_fraction(valid, inside, 8, 8)[0, 0] == 0.5


def test_fill_invalid_uses_patch_mean():
    p = np.zeros((1, 3, 2, 2), np.float32)
    p[0, :, 0, 0] = [10, 20, 30]
    p[0, :, 0, 1] = [30, 40, 50]
    v = np.array([[[True, True], [False, False]]])
    out = fill_invalid(p, v)
    assert np.allclose(out[0, :, 1, 1], [20, 30, 40])
    assert np.allclose(out[0, :, 0, 0], [10, 20, 30])


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
    # a gap: filled with the patch's mean colour, then converted (rounded for uint8)
    valid[0, 0, 0] = False
    x = to_model_input(raw, valid, Scaling("identity"), (0, 255), None, layout, dtype)
    mean = raw[0].reshape(3, -1)[:, 1:].mean(axis=1)
    got = x[0, 0, 0] if layout == "NHWC" else x[0, :, 0, 0]
    assert np.allclose(got, np.round(mean) if dtype == "uint8" else mean, atol=1e-4)
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
