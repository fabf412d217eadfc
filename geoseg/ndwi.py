"""The NDWI water reference (``geoseg reference ndwi``): water where
NDWI = (green - NIR) / (green + NIR) (McFeeters 1996) is above a threshold,
block by block, as a styled class raster on the scene's grid."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .checks import check_georeferenced
from .errors import InputError
from .raster import open_raster, raise_unreadable
from .styled_raster import NODATA, StyledOutput

__all__ = ["BandSpec", "NdwiResult", "ndwi_reference", "parse_band"]

WATER_NAMES = {0: "not_water", 1: "water"}
WATER_COLOURS = {0: (230, 220, 190), 1: (31, 95, 191)}


@dataclass(frozen=True)
class BandSpec:
    """One band: a file and a band number in it."""

    path: str
    band: int

    def describe(self) -> str:
        return f"{os.path.basename(self.path)} band {self.band}"


def parse_band(value: str | int, scene: str) -> BandSpec:
    """``2`` -> band 2 of ``scene``; ``B08.tif`` -> band 1 of that file."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return BandSpec(str(scene), int(text))
    return BandSpec(text, 1)


@dataclass(frozen=True)
class NdwiResult:
    path: str
    water: int
    not_water: int
    nodata: int
    green: str
    nir: str
    threshold: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def ndwi_reference(scene: str | os.PathLike, green: BandSpec, nir: BandSpec, out: str | os.PathLike,
                   threshold: float = 0.0, overwrite: bool = False, block: int = 1024) -> NdwiResult:
    """Water where NDWI = (green - NIR) / (green + NIR) > ``threshold``.

    Output: uint8, 0 = not_water, 1 = water, 255 = nodata (masked or nodata
    in either band, not finite, or green + NIR = 0), on the grid and CRS of
    ``scene``; tag ``CLASS_NAMES=not_water,water``, colour table, category
    names (``.aux.xml``) and a QGIS style (``.qml``).  Read and written in
    ``block`` x ``block`` windows.
    """
    scene, out = str(scene), str(out)
    H, W, T, crs = _check_inputs(scene, green, nir, out, threshold)
    o = StyledOutput(out, overwrite)
    ds = None
    try:
        ds = o.open(W, H, T, crs, {0: (*WATER_COLOURS[0], 255), 1: (*WATER_COLOURS[1], 255), 255: (0, 0, 0, 0)})
        counts = _write_water(ds, green, nir, threshold, block)
        ds.set_band_description(1, "class")
        ds.update_tags(CLASS_NAMES="not_water,water", GEOSEG_REFERENCE="ndwi",
                       NDWI=f"(green - nir) / (green + nir) > {threshold:g} (McFeeters 1996)",
                       NDWI_GREEN=green.describe(), NDWI_NIR=nir.describe())
        ds.update_tags(1, CLASS_0="not_water", CLASS_1="water")
        ds.close()
        o.style(WATER_NAMES, WATER_COLOURS, "class")
        o.commit()
    except BaseException:
        if ds is not None and not ds.closed:
            ds.close()
        o.cleanup()
        raise
    return NdwiResult(o.final, int(counts[1]), int(counts[0]), int(counts[2]), green.describe(), nir.describe(),
                      float(threshold))


def _check_inputs(scene: str, green: BandSpec, nir: BandSpec, out: str, threshold: float):
    """The options and files checked at the entry; the scene's (height, width, transform, crs)."""
    if not (np.isfinite(threshold) and -1 <= threshold < 1):
        raise InputError(f"--threshold {threshold}: NDWI lies in -1..1; expected a threshold from -1 to below 1 "
                         "(0 is McFeeters' water line)")
    if (os.path.abspath(green.path), green.band) == (os.path.abspath(nir.path), nir.band):
        raise InputError(f"{green.path}: --green and --nir are the same band ({green.describe()}); expected the "
                         "green and the near-infrared band (e.g. NAIP: --green 2 --nir 4)")
    if not out.lower().endswith((".tif", ".tiff")):
        raise InputError(f"{out}: the reference is written as a GeoTIFF; expected an output name ending in .tif")
    with open_raster(scene, "scene") as src:
        check_georeferenced(src, scene, "scene")
        H, W, T, crs = src.height, src.width, src.transform, src.crs
    for spec, what in ((green, "--green"), (nir, "--nir")):
        _check_band(spec, what, scene, (H, W), T, crs)
    if os.path.abspath(out) in {os.path.abspath(scene), os.path.abspath(green.path), os.path.abspath(nir.path)}:
        raise InputError(f"{out}: the output would overwrite an input; choose another -o name")
    return H, W, T, crs


def _write_water(ds, green: BandSpec, nir: BandSpec, threshold: float, block: int) -> np.ndarray:
    """Write the water classes block by block; the counts of not_water, water, nodata."""
    counts = np.zeros(3, np.int64)
    H, W = ds.height, ds.width
    with rasterio.open(green.path) as gs, rasterio.open(nir.path) as ns:
        for r in range(0, H, block):
            for c in range(0, W, block):
                win = Window(c, r, min(block, W - c), min(block, H - r))
                g, gv = _read_band(gs, green, win)
                n, nv = _read_band(ns, nir, win)
                s = g + n
                ok = gv & nv & (s != 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    idx = np.where(ok, (g - n) / np.where(ok, s, 1.0), 0.0)
                res = np.where(ok, (idx > threshold).astype(np.uint8), np.uint8(NODATA)).astype(np.uint8)
                counts += [int((res == 0).sum()), int((res == 1).sum()), int((res == NODATA).sum())]
                ds.write(res[None], window=win)
    return counts


def _check_band(spec: BandSpec, what: str, scene: str, shape, transform: Affine, crs) -> None:
    src = open_raster(spec.path, f"{what} band")
    with src:
        if spec.path != scene:
            check_georeferenced(src, spec.path, f"{what} band")
            if src.count != 1:
                raise InputError(f"{spec.path}: {what} file has {src.count} bands; expected a single-band raster "
                                 f"(or give a band number of the scene: {what} 2)")
            same = (src.height, src.width) == tuple(shape) and src.transform.almost_equals(transform, 1e-9) \
                and src.crs == crs
            if not same:
                raise InputError(f"{spec.path}: {what} raster is not on the scene's grid ({src.width}x{src.height}, "
                                 f"{src.crs}) vs {os.path.basename(scene)} ({shape[1]}x{shape[0]}, {crs}); "
                                 "resample it onto the scene's grid first (`rio warp --like`)")
        if not 1 <= spec.band <= src.count:
            raise InputError(f"{spec.path}: {what} {spec.band} names a band the raster does not have "
                             f"(it has {src.count}); choose 1..{src.count}")
        dtype = src.dtypes[spec.band - 1]
        if not (np.issubdtype(np.dtype(dtype), np.integer) or np.issubdtype(np.dtype(dtype), np.floating)):
            raise InputError(f"{spec.path}: {what} band {spec.band} is {dtype}; expected integer or real "
                             "reflectance values: take the amplitude first (e.g. gdal_calc or rio calc)")


def _read_band(src, spec: BandSpec, win: Window) -> tuple[np.ndarray, np.ndarray]:
    try:
        a = src.read(spec.band, window=win).astype(np.float64)
        v = src.read_masks(spec.band, window=win) > 0
    except RasterioError as exc:
        raise_unreadable(spec.path, int(win.col_off), int(win.row_off), exc)
    v &= np.isfinite(a)
    return np.where(v, a, 0.0), v
