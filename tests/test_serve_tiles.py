"""geoseg.serve.tiles: Web Mercator arithmetic and drawing cells into tiles (pure)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from affine import Affine

pytest.importorskip("PIL")
from geoseg.serve import tiles as T  # noqa: E402

HALF = 20037508.342789244


def test_tile_bounds_known_values():
    assert T.tile_bounds(0, 0, 0) == pytest.approx((-HALF, -HALF, HALF, HALF))
    assert T.tile_bounds(1, 1, 0) == pytest.approx((0.0, 0.0, HALF, HALF))
    assert T.tile_bounds(2, 0, 3) == pytest.approx((-HALF, -HALF, -HALF / 2, -HALF / 2))
    t = T.tile_transform(1, 0, 0)
    assert (t.a, t.e, t.c, t.f) == pytest.approx((HALF / 256, -HALF / 256, -HALF, HALF))


def test_valid_tile():
    assert T.valid_tile(0, 0, 0)
    assert T.valid_tile(3, 7, 7)
    assert not T.valid_tile(3, 8, 0)
    assert not T.valid_tile(3, 0, -1)
    assert not T.valid_tile(-1, 0, 0)
    assert not T.valid_tile(25, 0, 0)


def test_lonlat_to_mercator():
    assert T.lonlat_to_mercator(0, 0) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert T.lonlat_to_mercator(180, 0)[0] == pytest.approx(HALF)
    # EPSG:3857 of (15 E, 54 N), from PROJ
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(15.0, 54.0)
    assert T.lonlat_to_mercator(15.0, 54.0) == pytest.approx((x, y), abs=1e-6)


def test_native_zoom():
    # 10 m at the equator: zoom 14 has 9.55 m pixels, zoom 13 19.1 m
    assert T.native_zoom(10.0, 0.0) == 14
    # at 60 N the ground pixel halves: 10 m needs one zoom less
    assert T.native_zoom(10.0, 60.0) == 13
    assert T.native_zoom(0.6, 45.0) == 18
    assert T.mercator_resolution(0) == pytest.approx(2 * HALF / 256)


def test_tiles_covering():
    assert T.tiles_covering((-1.0, -1.0, 1.0, 1.0), 1) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert T.tiles_covering((1.0, 1.0, 2.0, 2.0), 1) == [(1, 0)]
    assert T.tiles_covering((-HALF, -HALF, HALF, HALF), 0) == [(0, 0)]


def _exact_cells(to_scene, tile_affine, cell_affine, n_cells, size=256):
    jj, ii = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    mx = tile_affine.a * jj + tile_affine.c
    my = tile_affine.e * ii + tile_affine.f
    sx, sy = to_scene(mx.ravel(), my.ravel())
    cf = ((np.asarray(sx) - cell_affine.c) / cell_affine.a).reshape(size, size)
    rf = ((np.asarray(sy) - cell_affine.f) / cell_affine.e).reshape(size, size)
    inside = (cf >= 0) & (rf >= 0) & (cf < n_cells[1]) & (rf < n_cells[0])
    return np.where(inside, np.floor(rf), -1).astype(int), np.where(inside, np.floor(cf), -1).astype(int)


@pytest.mark.parametrize("z", [12, 14, 16])
def test_pixel_to_cells_matches_exact_projection(z):
    """The interpolated mapping with exact refinement at cell edges equals the
    per-pixel projection of every tile pixel centre (UTM 33N scene)."""
    from pyproj import Transformer

    tr = Transformer.from_crs(3857, 32633, always_xy=True)
    cell = Affine(80.0, 0, 500000.0, 0, -80.0, 6000000.0)
    n_cells = (40, 50)
    # the tile holding the scene's top-left corner at zoom z
    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(500000.0 + 1000, 6000000.0 - 1000)
    mx, my = T.lonlat_to_mercator(lon, lat)
    (x, y), = T.tiles_covering((mx, my, mx, my), z)
    ta = T.tile_transform(z, x, y)
    rows, cols = T.pixel_to_cells(tr.transform, ta, cell, n_cells)
    er, ec = _exact_cells(tr.transform, ta, cell, n_cells)
    assert (rows >= 0).sum() > 1000  # the tile meets the grid
    np.testing.assert_array_equal(rows, er)
    np.testing.assert_array_equal(cols, ec)


def test_pixel_to_cells_same_crs_known_cells():
    """Grid in EPSG:3857 aligned with the tile: 256 px tile over a 4 x 4 grid of
    64 px cells: pixel (i, j) is cell (i // 64, j // 64)."""
    ta = T.tile_transform(10, 500, 300)
    cell = Affine(ta.a * 64, 0, ta.c, 0, ta.e * 64, ta.f)
    ident = lambda x, y: (x, y)  # noqa: E731
    rows, cols = T.pixel_to_cells(ident, ta, cell, (4, 4))
    ii, jj = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    np.testing.assert_array_equal(rows, ii // 64)
    np.testing.assert_array_equal(cols, jj // 64)
    # a grid of 3 x 2 cells: the rest of the tile is outside (-1)
    rows, cols = T.pixel_to_cells(ident, ta, cell, (3, 2))
    assert (rows[192:] == -1).all() and (cols[:, 128:] == -1).all()
    assert rows[191, 127] == 2 and cols[191, 127] == 1


def test_blocks_and_gather():
    rows = np.array([[0, 0, 5], [9, -1, 3]])
    cols = np.array([[0, 4, 4], [9, -1, 3]])
    assert T.blocks_of_cells(rows, cols, 4) == [(0, 0), (0, 1), (1, 1), (2, 2)]
    blocks = {(0, 0): np.arange(16, dtype=np.uint8).reshape(4, 4), (0, 1): np.full((4, 4), 20, np.uint8),
              (1, 1): np.full((4, 4), 30, np.uint8)}
    out = T.gather_cells(rows, cols, 4, blocks, 255)
    # (0,0)->block (0,0)[0,0]=0; (0,4)->20; (5,4)->30; (9,9)-> block (2,2) missing: 255; (3,3)-> 15
    np.testing.assert_array_equal(out, [[0, 20, 30], [255, 255, 15]])


def test_encode_classes_round_trip():
    from PIL import Image

    cls = np.array([[0, 1], [3, 255]], np.uint8)
    colors = [(240, 240, 240), (227, 193, 111), (46, 139, 58), (31, 95, 191)]
    img = Image.open(io.BytesIO(T.encode_classes(cls, colors)))
    assert img.mode == "P"
    np.testing.assert_array_equal(np.asarray(img), cls)
    rgba = np.asarray(img.convert("RGBA"))
    assert tuple(rgba[0, 1]) == (227, 193, 111, 255)
    assert tuple(rgba[1, 0]) == (31, 95, 191, 255)
    assert rgba[1, 1, 3] == 0  # nodata transparent


def test_confidence_ramp():
    c = T.confidence_rgba(np.array([[0.25, 1.0], [0.625, np.nan]]), 4)
    assert tuple(c[0, 0]) == (215, 48, 39, 255)  # a guess: red
    assert tuple(c[0, 1]) == (26, 152, 80, 255)  # certain: green
    assert tuple(c[1, 0]) == (254, 224, 139, 255)  # half way: yellow
    assert c[1, 1, 3] == 0


def test_stretch_bands():
    data = np.array([[[0, 100, 200]], [[0, 100, 200]], [[0, 100, 200]]], np.uint16)
    valid = np.array([[True, True, False]])
    out = T.stretch_bands(data, valid, np.array([0, 0, 0]), np.array([200, 200, 200]))
    assert out.shape == (1, 3, 4)
    assert out[0, 0].tolist() == [0, 0, 0, 255]
    assert out[0, 1].tolist() == [128, 128, 128, 255]
    assert out[0, 2].tolist() == [0, 0, 0, 0]
    assert math.isclose(T.ORIGIN_SHIFT, HALF)


@pytest.mark.parametrize("band", [False, True])
def test_gather_mosaic_equals_block_by_block(monkeypatch, band):
    """The one-mosaic gather and the block-by-block one (used above
    MOSAIC_MAX_CELLS) give the same values, edge blocks and gaps included."""
    rng = np.random.default_rng(1)
    rows = rng.integers(-1, 14, size=(64, 64))
    cols = np.where(rows < 0, -1, rng.integers(0, 10, size=(64, 64)))
    blocks = {}
    for kr in range(4):
        for kc in range(3):
            if (kr, kc) == (1, 1):
                continue  # a missing block: fill
            h, w = min(4, 14 - 4 * kr), min(4, 10 - 4 * kc)  # edge blocks are smaller
            shape = (2, h, w) if band else (h, w)
            blocks[(kr, kc)] = rng.integers(0, 200, size=shape).astype(np.uint8)
    out = T.gather_cells(rows, cols, 4, blocks, 255)
    monkeypatch.setattr(T, "MOSAIC_MAX_CELLS", 0)
    np.testing.assert_array_equal(out, T.gather_cells(rows, cols, 4, blocks, 255))
    assert (out[..., rows < 0] == 255).all()


@pytest.mark.parametrize("alpha", ["opaque", "holes"])
def test_encode_rgba_round_trip(alpha):
    from PIL import Image

    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, size=(37, 53, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    if alpha == "holes":
        rgba[3:9, 10:20, 3] = 0
    img = Image.open(io.BytesIO(T.encode_rgba(rgba)))
    assert img.mode == ("RGB" if alpha == "opaque" else "RGBA")
    assert np.array_equal(np.array(img.convert("RGBA")), rgba)


@pytest.mark.parametrize("z", [10, 12, 14, 16])
def test_blocks_under_tile_hold_every_cell_of_the_tile(z):
    """The blocks found from the lattice alone are a superset of the blocks
    of every pixel's cell (UTM 33N scene, tiles over its edges and inside)."""
    from pyproj import Transformer

    tr = Transformer.from_crs(3857, 32633, always_xy=True)
    cell = Affine(80.0, 0, 500000.0, 0, -80.0, 6000000.0)
    n_cells, B = (40, 50), 4
    to_ll = Transformer.from_crs(32633, 4326, always_xy=True)
    w, n = T.lonlat_to_mercator(*to_ll.transform(500000.0, 6000000.0))
    e, s = T.lonlat_to_mercator(*to_ll.transform(500000.0 + 50 * 80, 6000000.0 - 40 * 80))
    checked = 0
    for x, y in T.tiles_covering((w, s, e, n), z)[:60]:
        ta = T.tile_transform(z, x, y)
        rows, cols = T.pixel_to_cells(tr.transform, ta, cell, n_cells)
        exact = set(T.blocks_of_cells(rows, cols, B))
        found = T.blocks_under_tile(tr.transform, ta, cell, n_cells, B)
        assert found is not None and exact <= set(found)
        checked += bool(exact)
    assert checked > 0


def test_blocks_under_tile_outside_the_grid():
    ident = lambda x, y: (x, y)  # noqa: E731 - the scene is in EPSG:3857
    cell = Affine(10.0, 0, 1000.0, 0, -10.0, 2000.0)
    ta = T.tile_transform(18, 0, 0)  # far from the grid
    assert T.blocks_under_tile(ident, ta, cell, (4, 4), 2) == []
