"""Scenes of ``geoseg chips``: opened and checked at the entry
(:func:`open_chip_scene`), the invalid pixels of their windows, and the
chip files cut from them (:func:`write_chips`: each under a temporary
name, renamed when complete; on a failure every chip of the run is removed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import check_georeferenced
from .chipgrid import window_sums
from .chipmanifest import band_name
from .classmap import grid_bounds
from .errors import InputError, OutputError, first_line

__all__ = ["Candidate", "Scene", "invalid_windows", "open_chip_scene", "write_chips"]


@dataclass(frozen=True)
class Scene:
    """A scene chips are cut from: its grid and the bands kept."""

    path: str
    stem: str
    width: int
    height: int
    transform: Any
    crs_wkt: str
    crs_text: str
    res: tuple[float, float]
    is_geographic: bool
    bidx: tuple[int, ...]
    dtype: str
    band_names: tuple[str, ...]
    nodata: float | None


def open_chip_scene(path: str, bands: tuple[int, ...] | None) -> Scene:
    """Open and check a scene (georeferenced, north-up, bands of one real
    or integer dtype): one-line :class:`InputError` otherwise."""
    from rasterio.enums import ColorInterp

    from .naming import scene_stem
    from .raster import open_raster

    with open_raster(path, "scene") as src:
        check_georeferenced(src, path, "scene", north_up=True)
        ci = list(src.colorinterp)
        if bands:
            bad = [b for b in bands if b < 1 or b > src.count]
            if bad:
                raise InputError(f"{path}: --bands {','.join(map(str, bands))} names band(s) {bad} but the scene "
                                 f"has {src.count}")
            bidx = tuple(bands)
        else:
            bidx = tuple(i + 1 for i in range(src.count) if ci[i] != ColorInterp.alpha)
        dtype = _one_dtype(path, {src.dtypes[b - 1] for b in bidx})
        names = tuple(band_name(ci[b - 1], src.descriptions[b - 1], b) for b in bidx)
        epsg = src.crs.to_epsg()
        return Scene(path, scene_stem(path), src.width, src.height, src.transform, src.crs.to_wkt(),
                     f"EPSG:{epsg}" if epsg else src.crs.to_wkt(), src.res, bool(src.crs.is_geographic), bidx,
                     dtype, names, src.nodata)


def _one_dtype(path: str, dtypes: set[str]) -> str:
    if len(dtypes) != 1:
        raise InputError(f"{path}: the chosen bands have mixed dtypes {sorted(dtypes)}; choose bands of one "
                         "dtype with --bands")
    dtype = dtypes.pop()
    if np.dtype(dtype).kind not in "uif":
        raise InputError(f"{path}: the bands are {dtype}; expected integer or real pixel values: "
                         "take the amplitude first (e.g. gdal_calc or rio calc)")
    return dtype


def scene_bounds(scene: Scene) -> tuple[float, float, float, float]:
    return grid_bounds(scene.transform, scene.width, scene.height)


def invalid_windows(scene: Scene, r0: int, r1: int, size: int, stride: int) -> np.ndarray:
    """(n_rows, n_cols) number of invalid pixels (masked in any chosen band,
    or non-finite) in each window of rows ``r0:r1``."""
    import rasterio
    from rasterio.windows import Window

    win = Window(0, r0, scene.width, r1 - r0)
    with rasterio.open(scene.path) as src:
        try:
            masks = src.read_masks(scene.bidx, window=win)
            bad = np.any(masks == 0, axis=0)
            if np.dtype(scene.dtype).kind == "f":
                bad |= ~np.all(np.isfinite(src.read(scene.bidx, window=win)), axis=0)
        except rasterio.errors.RasterioError as exc:
            from .raster import raise_unreadable

            raise_unreadable(scene.path, 0, r0, exc)
    return window_sums(bad, size, stride)


@dataclass
class Candidate:
    """A window chosen as a chip."""

    scene: int
    row_off: int
    col_off: int
    label: int
    purity: float
    group: str


def write_chips(opened: list[Scene], stems: list[str], cands: list[Candidate], names: list[str], out_dir: str,
                 size: int) -> list[dict]:
    rows: list[dict] = []
    try:
        _write_each(opened, stems, cands, names, out_dir, size, rows)
    except BaseException:  # no chips without their manifest: remove what this run wrote
        for r in rows:
            p = os.path.join(out_dir, r["chip"])
            if os.path.isfile(p):
                os.remove(p)
        raise
    rows.sort(key=lambda r: (r["class"], r["chip"]))
    return rows


def _write_each(opened: list[Scene], stems: list[str], cands: list[Candidate], names: list[str], out_dir: str,
                size: int, rows: list[dict]) -> None:
    """Write each chip (temporary name, then renamed), appending its manifest
    row to ``rows`` as soon as its file is in place."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    by_scene: dict[int, list[int]] = {}
    for k, c in enumerate(cands):
        by_scene.setdefault(c.scene, []).append(k)
    for si in sorted(by_scene):
        sc = opened[si]
        with rasterio.open(sc.path) as src:
            ci = [src.colorinterp[b - 1] for b in sc.bidx]
            desc = [src.descriptions[b - 1] for b in sc.bidx]
            for k in by_scene[si]:
                c, cls = cands[k], names[k]
                win = Window(c.col_off, c.row_off, size, size)
                try:
                    data = src.read(sc.bidx, window=win)
                except rasterio.errors.RasterioError as exc:
                    from .raster import raise_unreadable

                    raise_unreadable(sc.path, c.col_off, c.row_off, exc)
                t = src.transform @ Affine.translation(c.col_off, c.row_off)
                rel = os.path.join(cls, f"{stems[si]}_r{c.row_off:06d}_c{c.col_off:06d}.tif")
                final = os.path.join(out_dir, rel)
                os.makedirs(os.path.dirname(final), exist_ok=True)
                tmp = final[:-4] + ".tmp.tif"
                try:
                    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=len(sc.bidx),
                                       dtype=sc.dtype, crs=src.crs, transform=t, nodata=sc.nodata,
                                       compress="deflate") as dst:
                        dst.write(data)
                        dst.colorinterp = ci
                        for b, d in enumerate(desc, 1):
                            if d:
                                dst.set_band_description(b, d)
                        dst.update_tags(CLASS=cls, SCENE=os.path.basename(sc.path))
                    os.replace(tmp, final)
                except (OSError, rasterio.errors.RasterioError) as exc:
                    if os.path.exists(tmp):
                        os.remove(tmp)
                    raise OutputError(f"{final}: cannot write the chip ({first_line(exc)})") from None
                left, top = t @ (0, 0)
                right, bottom = t @ (size, size)
                rows.append({"chip": rel.replace(os.sep, "/"), "class": cls, "scene": os.path.abspath(sc.path),
                             "col_off": c.col_off, "row_off": c.row_off, "width": size, "height": size,
                             "left": left, "bottom": min(bottom, top), "right": right, "top": max(bottom, top),
                             "crs": sc.crs_text, "pixel_size_x": abs(sc.res[0]), "pixel_size_y": abs(sc.res[1]),
                             "purity": round(c.purity, 6), "group": c.group})
