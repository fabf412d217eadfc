"""Web Mercator tiles: tile bounds and zooms, the mapping from tile pixels to
cells of a scene's class grid, and drawing cells into PNG tiles.

Pure arithmetic and in-memory encoding; nothing here opens a file.

A class tile is drawn by *nearest* sampling: tile pixel ``(i, j)`` shows the
cell under its centre.  The mapping is exact: the centres of a 17 x 17
lattice of tile pixels are projected with the real transformer, the others
are interpolated (bilinear; its error is far below a millionth of a cell at
the zooms a scene is looked at), and every pixel whose centre falls within
``BOUNDARY_EPS`` cells of a cell edge is projected again exactly.  So a tile
shows exactly the cells of the batch class raster, with no seams between
tiles.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable

import numpy as np
from affine import Affine

EARTH_RADIUS = 6378137.0
ORIGIN_SHIFT = math.pi * EARTH_RADIUS  # half the width of the Web Mercator square (m)
TILE_SIZE = 256
MAX_ZOOM = 24
LATTICE_STEP = 16  # tile pixels between exactly projected lattice points
BOUNDARY_EPS = 1e-3  # cells: pixels this close to a cell edge are projected exactly
NODATA = 255

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of tile ``z/x/y`` in EPSG:3857 metres (XYZ scheme, y down)."""
    size = 2 * ORIGIN_SHIFT / (1 << z)
    xmin = -ORIGIN_SHIFT + x * size
    ymax = ORIGIN_SHIFT - y * size
    return xmin, ymax - size, xmin + size, ymax


def tile_transform(z: int, x: int, y: int, size: int = TILE_SIZE) -> Affine:
    """Affine transform of a ``size`` x ``size`` tile image in EPSG:3857."""
    xmin, _, xmax, ymax = tile_bounds(z, x, y)
    res = (xmax - xmin) / size
    return Affine(res, 0.0, xmin, 0.0, -res, ymax)


def valid_tile(z: int, x: int, y: int) -> bool:
    """True when ``z/x/y`` names a tile of the XYZ pyramid (0 <= x, y < 2**z)."""
    return 0 <= z <= MAX_ZOOM and 0 <= x < (1 << z) and 0 <= y < (1 << z)


def lonlat_to_mercator(lon: float, lat: float) -> tuple[float, float]:
    """Longitude and latitude (degrees, WGS 84) to EPSG:3857 metres."""
    lat = max(-85.05112878, min(85.05112878, lat))
    x = math.radians(lon) * EARTH_RADIUS
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * EARTH_RADIUS
    return x, y


def mercator_resolution(z: int, size: int = TILE_SIZE) -> float:
    """Metres per tile pixel at the equator at zoom ``z``."""
    return 2 * ORIGIN_SHIFT / (size * (1 << z))


def native_zoom(pixel_m: float, lat: float, size: int = TILE_SIZE) -> int:
    """The smallest zoom whose tile pixels on the ground at latitude ``lat``
    are no larger than ``pixel_m`` metres (the scene's own pixel size)."""
    lat = max(-85.05112878, min(85.05112878, lat))  # the web map's latitudes
    ground = 2 * ORIGIN_SHIFT * math.cos(math.radians(lat)) / size  # zoom 0
    z = math.ceil(math.log2(ground / pixel_m) - 1e-9) if pixel_m > 0 else MAX_ZOOM
    return int(min(MAX_ZOOM, max(0, z)))


def tiles_covering(bounds: tuple[float, float, float, float], z: int) -> list[tuple[int, int]]:
    """(x, y) of the tiles at zoom ``z`` that meet EPSG:3857 ``bounds``."""
    n = 1 << z
    size = 2 * ORIGIN_SHIFT / n
    x0 = int(math.floor((bounds[0] + ORIGIN_SHIFT) / size))
    x1 = int(math.ceil((bounds[2] + ORIGIN_SHIFT) / size)) - 1
    y0 = int(math.floor((ORIGIN_SHIFT - bounds[3]) / size))
    y1 = int(math.ceil((ORIGIN_SHIFT - bounds[1]) / size)) - 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(n - 1, x1), min(n - 1, y1)
    return [(x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def _interp_index(size: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``size`` pixel centres: the lattice point before it and the
    linear weight of the one after (lattice at pixel centres 0.5, 0.5 + step, ...)."""
    i = np.arange(size)
    return i // step, (i % step) / step


def _upsample(m: np.ndarray, lo: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of the (k, k) lattice values ``m`` onto the pixel
    centres (elementwise; BLAS matrix products of this size cost more in
    thread start-up than in arithmetic)."""
    hi = np.minimum(lo + 1, m.shape[0] - 1)
    rows = m[lo] * (1 - t)[:, None] + m[hi] * t[:, None]  # (size, k)
    return rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]


def _apply(t: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``t`` applied to arrays of column, row positions."""
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def pixel_to_cells(
    to_scene: Transform, tile_affine: Affine, cell_affine: Affine, n_cells: tuple[int, int],
    size: int = TILE_SIZE, step: int = LATTICE_STEP,
) -> tuple[np.ndarray, np.ndarray]:
    """The cell under the centre of every pixel of a tile.

    Parameters
    ----------
    to_scene
        Vectorised transform from EPSG:3857 to the scene's CRS
        (e.g. ``pyproj.Transformer.transform`` with ``always_xy=True``).
    tile_affine
        The tile's transform (:func:`tile_transform`).
    cell_affine
        The class grid's transform (north-up), e.g. ``PatchGrid.cell_transform``.
    n_cells
        Class grid shape (rows, cols).

    Returns
    -------
    rows, cols
        (size, size) int64 arrays of cell indices; -1 where the pixel centre
        lies outside the grid.
    """
    if size % step:
        raise ValueError(f"tile size {size} must be a multiple of the lattice step {step}")
    inv = ~cell_affine
    if inv.b != 0 or inv.d != 0:
        raise ValueError("the class grid must be north-up (no rotation)")
    lcf, lrf = _lattice_cells(to_scene, tile_affine, cell_affine, size, step)
    lo, t = _interp_index(size, step)
    with np.errstate(invalid="ignore"):
        cf = _upsample(lcf, lo, t)  # (size, size) cell column, fractional
        rf = _upsample(lrf, lo, t)
        near = _near_edge(cf) | _near_edge(rf)  # NaN counts as near: projected exactly
    if near.any():
        ii, jj = np.nonzero(near)
        px, py = _apply(tile_affine, jj + 0.5, ii + 0.5)
        ex, ey = to_scene(np.asarray(px, np.float64), np.asarray(py, np.float64))
        cf[ii, jj] = (np.asarray(ex) - cell_affine.c) / cell_affine.a
        rf[ii, jj] = (np.asarray(ey) - cell_affine.f) / cell_affine.e
    rows, cols = n_cells
    with np.errstate(invalid="ignore"):
        # NaN fails every comparison: outside.  In place, a tile is 2 x 65,536 values a pass.
        inside = cf >= 0
        inside &= rf >= 0
        inside &= cf < cols
        inside &= rf < rows
    r = np.floor(rf, out=rf)
    c = np.floor(cf, out=cf)
    r[~inside] = -1
    c[~inside] = -1
    return r.astype(np.int64), c.astype(np.int64)


def _lattice_cells(to_scene: Transform, tile_affine: Affine, cell_affine: Affine, size: int, step: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Fractional cell column and row of the (k, k) lattice of tile pixel
    positions 0.5, 0.5 + step, ... (k = size / step + 1), projected exactly."""
    k = size // step + 1
    lat = 0.5 + step * np.arange(k, dtype=np.float64)
    lx, ly = np.meshgrid(lat, lat)  # (k, k): column, row positions in tile pixels
    mx, my = _apply(tile_affine, lx, ly)
    sx, sy = to_scene(np.asarray(mx, np.float64).ravel(), np.asarray(my, np.float64).ravel())
    with np.errstate(invalid="ignore"):
        cf = (np.asarray(sx).reshape(k, k) - cell_affine.c) / cell_affine.a
        rf = (np.asarray(sy).reshape(k, k) - cell_affine.f) / cell_affine.e
    return cf, rf


def _near_edge(f: np.ndarray) -> np.ndarray:
    """Where ``f`` lies within ``BOUNDARY_EPS`` of an integer (or is not finite)."""
    d = f - np.floor(f)
    return ~((d >= BOUNDARY_EPS) & (d <= 1 - BOUNDARY_EPS))


def blocks_under_tile(
    to_scene: Transform, tile_affine: Affine, cell_affine: Affine, n_cells: tuple[int, int], block_cells: int,
    size: int = TILE_SIZE, step: int = LATTICE_STEP,
) -> list[tuple[int, int]] | None:
    """The blocks a tile's cells can lie in, from the projected lattice of
    :func:`pixel_to_cells` alone (a fraction of its cost): every block of
    the lattice's bounding box in cell space, widened by ``BOUNDARY_EPS``
    (the interpolation error :func:`pixel_to_cells` allows), so a superset
    of the blocks of the tile's pixels.  None where the lattice does not
    project (then only :func:`pixel_to_cells` can tell)."""
    cf, rf = _lattice_cells(to_scene, tile_affine, cell_affine, size, step)
    if not (np.all(np.isfinite(cf)) and np.all(np.isfinite(rf))):
        return None
    rows, cols = n_cells
    c0, c1 = max(cf.min() - BOUNDARY_EPS, 0.0), min(cf.max() + BOUNDARY_EPS, cols - 1e-9)
    r0, r1 = max(rf.min() - BOUNDARY_EPS, 0.0), min(rf.max() + BOUNDARY_EPS, rows - 1e-9)
    if c0 > c1 or r0 > r1:
        return []
    B = block_cells
    return [(br, bc) for br in range(int(r0) // B, int(r1) // B + 1) for bc in range(int(c0) // B, int(c1) // B + 1)]


def blocks_of_cells(rows: np.ndarray, cols: np.ndarray, block_cells: int) -> list[tuple[int, int]]:
    """The (block row, block col) of aligned ``block_cells``-square blocks that
    hold the given cells (entries < 0 are ignored), sorted."""
    ok = rows >= 0
    if not ok.any():
        return []
    br, bc = rows[ok] // block_cells, cols[ok] // block_cells
    r0, c0 = int(br.min()), int(bc.min())
    seen = np.zeros((int(br.max()) - r0 + 1, int(bc.max()) - c0 + 1), bool)  # a few blocks a side
    seen[br - r0, bc - c0] = True
    kr, kc = np.nonzero(seen)
    return [(int(a) + r0, int(b) + c0) for a, b in zip(kr, kc)]


MOSAIC_MAX_CELLS = 1 << 22  # above this a tile's cells are gathered block by block


def gather_cells(
    rows: np.ndarray, cols: np.ndarray, block_cells: int, blocks: dict[tuple[int, int], np.ndarray],
    fill, dtype=np.uint8,
) -> np.ndarray:
    """Values of the cells under each tile pixel from per-block arrays.

    ``blocks`` maps (block row, block col) to a 2-D (cells) or 3-D
    (band, cells) array; pixels outside the grid or in a missing block get
    ``fill``.  Returns (size, size) or (band, size, size).

    The blocks are pasted into one array covering them (a mosaic of the
    class grid), which every pixel then indexes once.
    """
    any_block = next(iter(blocks.values()), None)
    lead = () if any_block is None or any_block.ndim == 2 else any_block.shape[:1]
    if any_block is None:
        return np.full(lead + rows.shape, fill, dtype=dtype)
    B = block_cells
    r0, c0 = min(k[0] for k in blocks), min(k[1] for k in blocks)
    nr, nc = (max(k[0] for k in blocks) - r0 + 1) * B, (max(k[1] for k in blocks) - c0 + 1) * B
    if nr * nc > MOSAIC_MAX_CELLS:
        return _gather_by_block(rows, cols, B, blocks, fill, dtype, lead)
    mosaic = np.full(lead + (nr + 1, nc + 1), fill, dtype=dtype)  # the last row and column: fill
    for (kr, kc), arr in blocks.items():
        h, w = arr.shape[-2:]
        mosaic[..., (kr - r0) * B:(kr - r0) * B + h, (kc - c0) * B:(kc - c0) * B + w] = arr
    rr, cc = rows - r0 * B, cols - c0 * B
    inside = (rows >= 0) & (rr >= 0) & (cc >= 0) & (rr < nr) & (cc < nc)
    return mosaic[..., np.where(inside, rr, nr), np.where(inside, cc, nc)]


def _gather_by_block(rows: np.ndarray, cols: np.ndarray, B: int, blocks: dict[tuple[int, int], np.ndarray],
                     fill, dtype, lead: tuple[int, ...]) -> np.ndarray:
    out = np.full(lead + rows.shape, fill, dtype=dtype)
    ok = rows >= 0
    br = np.where(ok, rows // B, -1)
    bc = np.where(ok, cols // B, -1)
    for (kr, kc), arr in blocks.items():
        m = (br == kr) & (bc == kc)
        if not m.any():
            continue
        rr = rows[m] - kr * B
        cc = cols[m] - kc * B
        if arr.ndim == 2:
            out[m] = arr[rr, cc]
        else:
            out[:, m] = arr[:, rr, cc]
    return out


def class_palette(colors: list[tuple[int, int, int]]) -> tuple[bytes, bytes]:
    """PNG palette (768 bytes) and transparency table (256 bytes) of a class
    map: index ``i`` has class ``i``'s colour, opaque; every other index
    (255 = nodata) is transparent."""
    pal = np.zeros((256, 3), np.uint8)
    alpha = np.zeros(256, np.uint8)
    for i, rgb in enumerate(colors):
        pal[i] = rgb
        alpha[i] = 255
    return pal.tobytes(), alpha.tobytes()


def encode_classes(classes: np.ndarray, colors: list[tuple[int, int, int]]) -> bytes:
    """A palette PNG of a (h, w) uint8 class image: pixel value = class index
    (decode with PIL in mode ``P`` to read the classes back), 255 transparent."""
    from PIL import Image

    pal, alpha = class_palette(colors)
    img = Image.fromarray(np.ascontiguousarray(classes, dtype=np.uint8), mode="P")
    img.putpalette(pal)
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=alpha, compress_level=1)
    return buf.getvalue()


# confidence ramp: low (red) -> middle (yellow) -> high (green)
_RAMP = np.array([[215, 48, 39], [254, 224, 139], [26, 152, 80]], np.float64)


def confidence_rgba(conf: np.ndarray, n_classes: int) -> np.ndarray:
    """(h, w, 4) uint8 colours of the top-class probability: ``1 / n_classes``
    (a guess) is red, 1 is green; NaN (nodata) is transparent."""
    lo = 1.0 / max(1, n_classes)
    with np.errstate(invalid="ignore"):
        t = np.clip((conf - lo) / (1 - lo), 0, 1) * 2
    ok = np.isfinite(t)
    t = np.where(ok, t, 0)
    i = np.minimum(t.astype(np.int64), 1)
    f = (t - i)[..., None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    out = np.zeros(conf.shape + (4,), np.uint8)
    out[..., :3] = np.round(rgb).astype(np.uint8)
    out[..., 3] = np.where(ok, 255, 0)
    return out


def encode_rgba(rgba: np.ndarray) -> bytes:
    """PNG of a (h, w, 4) uint8 image: RGB where every pixel is opaque, else
    RGBA; each row with the PNG "Sub" filter, zlib level 1.

    Written here rather than by Pillow: a tile is the server's commonest
    work, and Pillow's encoder (adaptive filters) took 2.4x as long for
    the same compression (6.7 vs 2.8 ms a 256 px tile, ``bench/serve_load.py``);
    both decode to the same pixels.
    """
    a = np.ascontiguousarray(rgba, dtype=np.uint8)
    px = a[..., :3] if bool((a[..., 3] == 255).all()) else a
    h, w, c = px.shape
    flat = px.reshape(h, w * c)
    raw = np.empty((h, w * c + 1), np.uint8)
    raw[:, 0] = 1  # filter type 1 (Sub): each byte minus the same channel's byte of the pixel to the left
    raw[:, 1:c + 1] = flat[:, :c]
    np.subtract(flat[:, c:], flat[:, :-c], out=raw[:, c + 1:])  # uint8 arithmetic wraps modulo 256, as PNG's
    header = struct.pack(">IIBBBBB", w, h, 8, 2 if c == 3 else 6, 0, 0, 0)  # 8 bits, RGB or RGBA
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + \
        _chunk(b"IEND", b"")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def empty_tile(size: int = TILE_SIZE) -> bytes:
    """A fully transparent PNG tile."""
    return _EMPTY.setdefault(size, encode_rgba(np.zeros((size, size, 4), np.uint8)))


_EMPTY: dict[int, bytes] = {}


def stretch_bands(data: np.ndarray, valid: np.ndarray, lows: np.ndarray | None, highs: np.ndarray | None) -> np.ndarray:
    """(band, h, w) source values to (h, w, 4) uint8 RGBA for display: uint8 as
    is, other types stretched per band from ``lows`` to ``highs``; alpha 255
    where ``valid``.  One band is shown as grey."""
    if lows is None or highs is None:
        rgb = data if data.dtype == np.uint8 else np.clip(data, 0, 255).astype(np.uint8)
    else:
        lo = np.asarray(lows, np.float64)[:, None, None]
        hi = np.asarray(highs, np.float64)[:, None, None]
        span = np.where(hi > lo, hi - lo, 1.0)
        rgb = np.round(np.clip((data.astype(np.float64) - lo) / span, 0, 1) * 255).astype(np.uint8)
    if rgb.shape[0] < 3:
        rgb = np.repeat(rgb[:1], 3, axis=0)
    out = np.empty(rgb.shape[1:] + (4,), np.uint8)
    out[..., :3] = np.moveaxis(rgb[:3], 0, -1)
    out[..., 3] = np.where(valid, 255, 0)
    out[~valid, :3] = 0
    return out
