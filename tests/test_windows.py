"""The patch grid and its blocks (geoseg.windows)."""

import numpy as np
import pytest
from affine import Affine

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


# --- --resample auto: the grid arithmetic ------------------------------------
def test_plan_resample_integer_factors():
    from geoseg.windows import plan_resample

    rs = plan_resample(64, 64, 5.0, 10.0)  # NAIP 5 m, a 10 m model
    assert (rs.src_patch, rs.src_stride, rs.factor, rs.resolution_m) == (128, 128, 2.0, 10.0)
    assert rs.reducing
    rs = plan_resample(8, 4, 2.5, 10.0)  # stride 4 model px = 16 source px; patch 32
    assert (rs.src_patch, rs.src_stride, rs.factor) == (32, 16, 4.0)
    assert rs.model_shape(48, 64) == (12, 16)
    with pytest.raises(ValueError, match="not a multiple of the source stride 16"):
        rs.model_shape(40, 64)
    rs = plan_resample(64, 32, 0.5, 10.0)  # aerial 0.5 m: 1280 source px per patch
    assert (rs.src_patch, rs.src_stride) == (1280, 640)


def test_plan_resample_rounding_is_reported():
    from geoseg.windows import plan_resample

    # 60 m scene, 10 m model: f = 1/6; the source stride is rounded, the source
    # patch is (patch // stride) of them, and the resolution used says so
    rs = plan_resample(64, 64, 60.0, 10.0)
    assert (rs.src_patch, rs.src_stride) == (11, 11)
    assert rs.resolution_m == pytest.approx(60 * 11 / 64) and not rs.reducing
    rs = plan_resample(64, 16, 60.0, 10.0)
    assert (rs.src_patch, rs.src_stride, rs.resolution_m) == (12, 3, 11.25)
    assert rs.src_patch % rs.src_stride == 0
    rs = plan_resample(64, 64, 3.0, 10.0)  # 213.3 -> 213 source px
    assert rs.src_patch == 213 and rs.resolution_m == pytest.approx(3 * 213 / 64)


@pytest.mark.parametrize("source", [9.5, 10.0, 10.9, 9.1])
def test_plan_resample_none_within_ten_percent(source):
    from geoseg.windows import plan_resample

    assert plan_resample(64, 64, source, 10.0) is None


def test_resampled_grid_cells_lie_on_source_pixels():
    from geoseg.windows import PatchGrid, plan_resample

    rs = plan_resample(8, 4, 2.5, 10.0)
    g = PatchGrid(100, 70, rs.src_patch, rs.src_stride)
    t = Affine(2.5, 0, 500000.0, 0, -2.5, 6000000.0)
    ct = g.cell_transform(t)
    assert ct == t @ Affine.scale(16) and ct.a == 40.0
    for b in plan_blocks(g, 2):
        w = b.read_window(g)
        assert w.width % rs.src_stride == 0 and w.height % rs.src_stride == 0
        assert w.col_off % rs.src_stride == 0  # every window starts on a cell edge
        h, ww = rs.model_shape(int(w.height), int(w.width))
        # the model sees (patches - 1) strides + one patch, in model pixels
        assert ww == (b.pcol1 - b.pcol0 - 1) * rs.stride + rs.patch
        assert h == (b.prow1 - b.prow0 - 1) * rs.stride + rs.patch
