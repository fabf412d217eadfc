"""Large benchmark scenes, made by tiling a real scene of ../shared/scenes
(mirrored so tiles join without seams) or, where that is absent, the
synthetic demo scene.  Written window by window: bounded memory."""

from __future__ import annotations

import os
import sys

import numpy as np
import rasterio
from affine import Affine

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("GEOSEG_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))


def source_tile() -> tuple[np.ndarray, str]:
    p = os.path.join(SHARED, "scenes", "rgb8.tif")
    if os.path.exists(p):
        with rasterio.open(p) as s:
            return s.read(), "tiles of ../shared/scenes/rgb8.tif (Landsat-8, Grenada), mirrored"
    sys.path.insert(0, ROOT)
    from geoseg.demo import make_scene

    tmp = os.path.join(HERE, "out", "_demo_tile.tif")
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    make_scene(tmp, size=512, border=0)
    with rasterio.open(tmp) as s:
        return s.read(), "tiles of the synthetic demo scene"


def make_large(path: str, size: int, block: int = 512, compress: str | None = "deflate") -> str:
    """A size x size RGB uint8 GeoTIFF, tiled 512, deflate + predictor 2 (like a
    real product; ``compress=None`` for an uncompressed copy, a diagnostic of
    what decoding costs); reused if it exists."""
    if os.path.exists(path):
        return path
    tile, _ = source_tile()
    # mirror tile: seamless 2x2 mosaic
    top = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
    mosaic = np.concatenate([top, top[:, ::-1, :]], axis=1)
    mh, mw = mosaic.shape[1:]
    tmp = path + ".tmp.tif"
    prof = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32620",
                transform=Affine(60.0, 0, 300000.0, 0, -60.0, 1400000.0), tiled=True, blockxsize=block,
                blockysize=block, BIGTIFF="IF_SAFER", photometric="RGB")
    if compress:
        prof.update(compress=compress, predictor=2)
    rows = 1024
    cols_idx = np.arange(size) % mw
    with rasterio.open(tmp, "w", **prof) as dst:
        for r0 in range(0, size, rows):
            r1 = min(size, r0 + rows)
            ridx = np.arange(r0, r1) % mh
            dst.write(mosaic[:, ridx][:, :, cols_idx], window=rasterio.windows.Window(0, r0, size, r1 - r0))
    os.replace(tmp, path)
    return path
