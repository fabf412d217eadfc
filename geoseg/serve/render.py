"""Tiles and clicks of a served scene: the cells under a tile are found
(:func:`geoseg.serve.tiles.pixel_to_cells`), their blocks fetched from the
engine (cached or computed), and the cells drawn; the ``rgb`` layer reads the
scene itself (decimated through its overviews when zoomed out).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import tiles as T
from .cache import LRU, CellBlock
from .engine import BlockEngine
from .scenes import ServedScene

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from rasterio.windows import Window

    from ..raster import SceneInfo

LAYERS = ("rgb", "classes", "confidence")
MAX_BLOCKS_PER_TILE = 64  # above this (zoomed far out), a tile shows only cached blocks


@dataclass(frozen=True)
class Tile:
    png: bytes
    partial: bool = False  # some blocks were not drawn (zoomed out, not cached yet)
    empty: bool = False  # the tile does not meet the scene


def _cells(scene: ServedScene, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    return T.pixel_to_cells(scene.to_scene.transform, T.tile_transform(z, x, y), scene.cell_transform,
                            scene.grid.n_cells)


def _meets(scene: ServedScene, z: int, x: int, y: int) -> bool:
    b = T.tile_bounds(z, x, y)
    s = scene.bounds_3857
    return not (b[2] <= s[0] or b[0] >= s[2] or b[3] <= s[1] or b[1] >= s[3])


@dataclass(frozen=True)
class TileCells:
    """The cell under every pixel of a tile and the blocks holding them."""

    rows: np.ndarray
    cols: np.ndarray
    keys: list[tuple[int, int]]


def tile_cells(scene: ServedScene, z: int, x: int, y: int) -> TileCells | None:
    """The cells and blocks of a tile; None when it does not meet the scene's grid."""
    if not _meets(scene, z, x, y):
        return None
    rows, cols = _cells(scene, z, x, y)
    keys = T.blocks_of_cells(rows, cols, scene.block_cells)
    return TileCells(rows, cols, keys) if keys else None


def tile_blocks(scene: ServedScene, z: int, x: int, y: int) -> list[tuple[int, int]] | None:
    """The blocks a tile may need (a superset, from a few projected points:
    cheap enough for the event loop); None when only :func:`tile_cells` can tell."""
    if not _meets(scene, z, x, y):
        return []
    return T.blocks_under_tile(scene.to_scene.transform, T.tile_transform(z, x, y), scene.cell_transform,
                               scene.grid.n_cells, scene.block_cells)


def cell_tile(scene: ServedScene, engine: BlockEngine, layer: str, z: int, x: int, y: int,
              max_blocks: int | None = None, cells: TileCells | None = None,
              blocks: dict[tuple[int, int], CellBlock] | None = None) -> Tile:
    """A ``classes`` or ``confidence`` tile: nearest cells of the class grid.

    A tile that needs more than ``max_blocks`` blocks (default
    :data:`MAX_BLOCKS_PER_TILE`; zoomed far out) computes nothing: it draws
    the blocks already cached and is marked partial.  ``cells`` and
    ``blocks``: the tile's :func:`tile_cells` and all its blocks, when the
    caller has them; ``blocks`` alone: those of :func:`tile_blocks` (the
    blocks of the cells' bounding box are checked to be there, else the
    missing ones are fetched).
    """
    max_blocks = MAX_BLOCKS_PER_TILE if max_blocks is None else max_blocks
    if cells is None and blocks is not None:  # the blocks of tile_blocks: the pixels' cells are all that is missing
        if not _meets(scene, z, x, y):
            return Tile(T.empty_tile(), empty=True)
        rows, cols = _cells(scene, z, x, y)
        if not (rows >= 0).any():
            return Tile(T.empty_tile(), empty=True)
        if _covers(blocks, rows, cols, scene.block_cells):
            return _draw_cells(engine, layer, rows, cols, scene.block_cells, blocks, False)
        cells, blocks = TileCells(rows, cols, T.blocks_of_cells(rows, cols, scene.block_cells)), None
    cells = cells or tile_cells(scene, z, x, y)
    if cells is None:
        return Tile(T.empty_tile(), empty=True)
    rows, cols, keys = cells.rows, cells.cols, cells.keys
    partial = len(keys) > max_blocks
    if blocks is None or partial:
        blocks = engine.peek(scene, keys) if partial else engine.get(scene, keys)
    return _draw_cells(engine, layer, rows, cols, scene.block_cells, blocks, partial and len(blocks) < len(keys))


def _covers(blocks: dict[tuple[int, int], CellBlock], rows: np.ndarray, cols: np.ndarray, B: int) -> bool:
    """True when ``blocks`` hold every block of the bounding box of the cells (``rows`` >= 0)."""
    ok = rows >= 0
    r, c = rows[ok], cols[ok]
    return all((br, bc) in blocks for br in range(int(r.min()) // B, int(r.max()) // B + 1)
               for bc in range(int(c.min()) // B, int(c.max()) // B + 1))


def _draw_cells(engine: BlockEngine, layer: str, rows: np.ndarray, cols: np.ndarray, B: int,
                blocks: dict[tuple[int, int], CellBlock], partial: bool) -> Tile:
    colors = engine.model.contract.rgb_colors()
    if layer == "classes":
        cls = T.gather_cells(rows, cols, B, {k: b.classes for k, b in blocks.items()}, T.NODATA)
        return Tile(T.encode_classes(cls, colors), partial)
    conf = {k: b.confidence() for k, b in blocks.items()}
    c = T.gather_cells(rows, cols, B, conf, np.nan, np.float32)
    return Tile(T.encode_rgba(T.confidence_rgba(c, len(colors))), partial)


_local = threading.local()
OPEN_PER_THREAD = 8  # scenes a drawing thread keeps open


def _dataset(path: str) -> DatasetReader:
    """The calling thread's open dataset of ``path`` (GDAL handles are not
    shared between threads; opening one costs more than a tile's read)."""
    import rasterio

    cache: OrderedDict[str, DatasetReader] | None = getattr(_local, "datasets", None)
    if cache is None:
        cache = _local.datasets = OrderedDict()
    ds = cache.get(path)
    if ds is None or ds.closed:
        ds = cache[path] = rasterio.open(path)
        while len(cache) > OPEN_PER_THREAD:
            cache.popitem(last=False)[1].close()
    else:
        cache.move_to_end(path)
    return ds


SOURCE_BLOCK_PX = 256  # side of the cached blocks of source pixels (0: read every tile's window)
_SOURCE = LRU(128 << 20)  # (scene cache key, block side, block row, block col) -> (data, valid)


def _read(info: SceneInfo, window: Window, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The scene's bands and validity in ``window``, read (decimated by GDAL) to ``shape``."""
    from rasterio.enums import Resampling

    nb = len(info.bidx)
    src = _dataset(info.path)
    data = src.read(list(info.bidx), window=window, out_shape=(nb, *shape), resampling=Resampling.nearest)
    if info.mask_kind == "none":
        return data, np.ones(shape, bool)
    m = src.read_masks(list(info.bidx), window=window, out_shape=(nb, *shape), resampling=Resampling.nearest)
    return data, np.any(m > 0, axis=0)


def _source_window(scene: ServedScene, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
    """Source pixels [r0, r1) x [c0, c1) at full resolution, from aligned
    blocks of :data:`SOURCE_BLOCK_PX` pixels kept in memory (a map shows
    neighbouring tiles: each block is read once, not once a tile)."""
    from rasterio.windows import Window

    info, B = scene.info, SOURCE_BLOCK_PX
    parts = []
    for br in range(r0 // B, (r1 - 1) // B + 1):
        row = []
        for bc in range(c0 // B, (c1 - 1) // B + 1):
            key = (scene.cache_key, B, br, bc)
            got = _SOURCE.get(key)
            if got is None:
                h, w = min(B, info.height - br * B), min(B, info.width - bc * B)
                got = _read(info, Window(bc * B, br * B, w, h), (h, w))
                _SOURCE.put(key, got, got[0].nbytes + got[1].nbytes)
            row.append(got)
        parts.append(row)
    data = np.concatenate([np.concatenate([d for d, _ in row], axis=2) for row in parts], axis=1)
    valid = np.concatenate([np.concatenate([v for _, v in row], axis=1) for row in parts], axis=0)
    rr, cc = r0 - (r0 // B) * B, c0 - (c0 // B) * B
    return data[:, rr:rr + r1 - r0, cc:cc + c1 - c0], valid[rr:rr + r1 - r0, cc:cc + c1 - c0]


def rgb_tile(scene: ServedScene, z: int, x: int, y: int) -> Tile:
    """The scene's own imagery in a tile (nearest; uint8 as is, other types
    stretched 2-98 %), transparent where it has no data.

    Tile pixels are mapped to source pixels as class tiles are mapped to cells
    (:func:`~geoseg.serve.tiles.pixel_to_cells`); the window they need comes
    from cached blocks of source pixels at the scene's resolution and above,
    and is read once, decimated by GDAL (through overviews), when zoomed out.
    """
    from rasterio.windows import Window

    if not _meets(scene, z, x, y):
        return Tile(T.empty_tile(), empty=True)
    info = scene.info
    rows, cols = T.pixel_to_cells(scene.to_scene.transform, T.tile_transform(z, x, y), info.transform,
                                  (info.height, info.width))
    ok = rows >= 0
    if not ok.any():
        return Tile(T.empty_tile(), empty=True)
    r0, r1 = int(rows[ok].min()), int(rows[ok].max()) + 1
    c0, c1 = int(cols[ok].min()), int(cols[ok].max()) + 1
    h, w = r1 - r0, c1 - c0
    f = max(1, min(h, w) // T.TILE_SIZE)  # source pixels per read pixel (zoomed out: > 1)
    oh, ow = max(1, -(-h // f)), max(1, -(-w // f))
    if f == 1 and SOURCE_BLOCK_PX:
        data, valid = _source_window(scene, r0, r1, c0, c1)
    else:
        data, valid = _read(info, Window(c0, r0, w, h), (oh, ow))
    if data.dtype.kind == "f":
        valid &= np.all(np.isfinite(data), axis=0)
        data = np.where(np.isfinite(data), data, 0)
    if f == 1:  # read pixel = source pixel
        flat = np.where(ok, (rows - r0) * ow + (cols - c0), 0)
    else:
        flat = np.where(ok, np.minimum((rows - r0) * oh // h, oh - 1) * ow + np.minimum((cols - c0) * ow // w, ow - 1),
                        0)
    rng = scene.display_range
    px = np.take(data.reshape(len(data), -1), flat, axis=1)  # (band, size, size): one gather a band
    order = display_order(info.band_names, len(px))
    if order != list(range(len(px))):  # e.g. a blue, green, red, nir model: shown as red, green, blue
        px = px[order]
        rng = None if rng is None else rng[order]
    rgba = T.stretch_bands(px, np.take(valid.ravel(), flat) & ok, None if rng is None else rng[:, 0],
                           None if rng is None else rng[:, 1])
    return Tile(T.encode_rgba(rgba))


def display_order(band_names: tuple[str, ...], n: int) -> list[int]:
    """Which of the model's bands show as red, green and blue: the ones the
    contract names so where it names all three, else the first three."""
    names = list(band_names)
    if all(b in names for b in ("red", "green", "blue")):
        return [names.index(b) for b in ("red", "green", "blue")]
    return list(range(n))


@dataclass(frozen=True)
class PointAnswer:
    inside: bool
    row: int = -1
    col: int = -1
    cls: int | None = None
    probs: np.ndarray | None = None


def point(scene: ServedScene, engine: BlockEngine, lon: float, lat: float) -> PointAnswer:
    """The cell under ``lon``, ``lat`` (WGS 84): its class and probabilities."""
    sx, sy = scene.lonlat_to_scene.transform(lon, lat)
    if not (np.isfinite(sx) and np.isfinite(sy)):
        return PointAnswer(False)
    ct = scene.cell_transform
    cf = (sx - ct.c) / ct.a
    rf = (sy - ct.f) / ct.e
    rows, cols = scene.grid.n_cells
    if not (0 <= cf < cols and 0 <= rf < rows):
        return PointAnswer(False)
    r, c = int(math.floor(rf)), int(math.floor(cf))
    B = scene.block_cells
    blk = engine.get(scene, [(r // B, c // B)])[(r // B, c // B)]
    k = int(blk.classes[r % B, c % B])
    if k == T.NODATA:
        return PointAnswer(True, r, c, None, None)
    return PointAnswer(True, r, c, k, blk.probs[:, r % B, c % B].astype(np.float64))
