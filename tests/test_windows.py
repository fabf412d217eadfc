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
