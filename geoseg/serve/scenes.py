"""The scenes a server may show: where they may come from (the roots it was
started with, uploads, URLs), the checks on every path, and what each served
scene needs for tiles (its patch grid, scaling, transforms and cache key).

Safety rules: a path is resolved (symlinks included) before it is checked,
so ``..`` or a symlink leading out of the roots is refused; only files under
a root folder, a file given at start-up, or an upload are served; uploads and
downloads stop at the size limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GeosegError, InputError
from ..model import ModelInfo
from .errors import AccessError, NotFoundError, TooLargeError

if TYPE_CHECKING:  # rasterio, pyproj and the scene modules load only when a scene is prepared
    from affine import Affine
    from pyproj import Transformer
    from rasterio.crs import CRS

    from ..contract import Scaling
    from ..pipeline import BandAffine, ClassifyOptions
    from ..raster import SceneInfo
    from ..sources import GdalConfig
    from ..windows import Block, PatchGrid

log = logging.getLogger(__name__)

SCENE_PATTERNS = ("*.tif", "*.tiff", "*.TIF", "*.TIFF")
DEFAULT_BLOCK_PX = 512  # side of an on-demand block in source pixels (rounded to whole cells)


@dataclass(frozen=True)
class ServeOptions:
    """How the server classifies: the options of ``geoseg classify`` that
    shape results (jobs use the same, so tiles and job outputs agree)."""

    stride: int | None = None
    batch_size: int = 32
    min_valid: float | None = None
    block_px: int = DEFAULT_BLOCK_PX
    provider: str = "auto"  # onnxruntime execution provider (geoseg.providers): the best available


@dataclass
class ServedScene:
    """A scene ready for tiles: plain data plus the transformers it needs."""

    id: str
    name: str
    path: str
    uploaded: bool
    info: SceneInfo
    grid: PatchGrid
    scaling: Scaling
    stats: np.ndarray | None
    batch_size: int
    min_valid: float
    block_cells: int
    cache_key: str
    bounds_lonlat: tuple[float, float, float, float]
    bounds_3857: tuple[float, float, float, float]
    native_zoom: int
    display_range: np.ndarray | None  # (band, 2) stretch of the rgb layer; None for uint8
    crs: CRS = field(repr=False)
    to_scene: Transformer = field(repr=False)  # EPSG:3857 -> scene
    lonlat_to_scene: Transformer = field(repr=False)  # EPSG:4326 -> scene
    gdal_config: GdalConfig = ()  # the GDAL settings of the scene's reads (as geoseg classify)
    band_affine: BandAffine | None = None  # per-band reflectance rules (reflectance models; as geoseg classify)
    provider: str = "cpu"  # the onnxruntime execution provider that computes its blocks
    _blocks: list[Block] = field(repr=False, default_factory=list)

    @property
    def cell_transform(self) -> Affine:
        return self.grid.cell_transform(self.info.transform)

    @property
    def n_block_cols(self) -> int:
        return math.ceil(self.grid.n_cells[1] / self.block_cells)

    def block(self, br: int, bc: int) -> Block:
        """The :class:`geoseg.windows.Block` at block row ``br``, column ``bc``."""
        return self._blocks[br * self.n_block_cols + bc]

    @property
    def n_blocks(self) -> int:
        return len(self._blocks)

    def to_dict(self) -> dict[str, Any]:
        g = self.grid
        return {
            "id": self.id, "name": self.name, "bounds": list(self.bounds_lonlat), "crs": self.crs.to_string(),
            "width": self.info.width, "height": self.info.height, "dtype": self.info.dtype,
            "pixel_size": list(self.info.res), "uploaded": self.uploaded,
            "grid": {"patch": g.patch, "stride": g.stride, "cells": list(g.n_cells),
                     "transform": list(self.cell_transform)[:6], "block_cells": self.block_cells},
            "native_zoom": self.native_zoom,
        }


def scene_id(path: str) -> str:
    """A short id from the scene's identity: real path, size and modification time."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:12]


def block_cells_for(stride: int, block_px: int) -> int:
    """Block side in cells: about ``block_px`` source pixels, at least 4 cells."""
    return max(4, round(block_px / stride))


def classify_options(options: ServeOptions, polygons: bool = False) -> ClassifyOptions:
    """The ``geoseg classify`` options of the server's tiles and jobs (one
    place, so tiles and job outputs are made alike)."""
    from ..pipeline import ClassifyOptions

    return ClassifyOptions(stride=options.stride, batch_size=options.batch_size, min_valid=options.min_valid,
                           provider=options.provider, polygons=polygons, progress=False, overwrite=True)


def prepare_scene(path: str, model: ModelInfo, options: ServeOptions, uploaded: bool = False) -> ServedScene:
    """Open and check a scene as ``geoseg classify`` does (its own
    :func:`geoseg.pipeline.prepare_scene`: bands, scaling, percentiles,
    reflectance rules) and build what its tiles need.

    Raises
    ------
    InputError
        The scene cannot be classified (one line: file, what, expected, fix).
    """
    from pyproj import Transformer
    from rasterio.crs import CRS

    from ..pipeline import prepare_scene as prepare
    from ..providers import provider_name
    from ..raster import scene_percentiles
    from ..windows import plan_blocks
    from .cache import scene_cache_key
    from .tiles import native_zoom

    setup = prepare(path, model, classify_options(options))
    info, scaling, stats = setup.scene, setup.scaling, setup.stats
    display = None
    if info.dtype != "uint8":
        display = stats if (stats is not None and (scaling.low, scaling.high) == (2.0, 98.0)) \
            else scene_percentiles(info, 2.0, 98.0)
    bcells = block_cells_for(setup.grid.stride, options.block_px)
    crs = CRS.from_wkt(info.crs_wkt)
    bounds_lonlat, bounds_3857, px_m = _placement(path, info, crs)
    batch = model.fixed_batch or options.batch_size
    opts: dict[str, Any] = {"stride": setup.grid.stride, "batch_size": batch, "min_valid": setup.min_valid,
                            "scaling": scaling.to_dict(), "bidx": list(info.bidx)}
    if setup.band_affine is not None:  # only then: the keys of other scenes' cached blocks stay valid
        opts["band_affine"] = [list(map(float, t)) for t in setup.band_affine]
    return ServedScene(
        id=scene_id(path), name=info.name, path=os.path.realpath(path), uploaded=uploaded, info=info,
        grid=setup.grid, scaling=scaling, stats=stats, batch_size=batch, min_valid=setup.min_valid,
        block_cells=bcells, cache_key=scene_cache_key(path, model.sha256, opts, bcells),
        bounds_lonlat=bounds_lonlat, bounds_3857=bounds_3857,
        native_zoom=native_zoom(px_m, (bounds_lonlat[1] + bounds_lonlat[3]) / 2), display_range=display, crs=crs,
        to_scene=Transformer.from_crs("EPSG:3857", crs, always_xy=True),
        lonlat_to_scene=Transformer.from_crs("EPSG:4326", crs, always_xy=True),
        gdal_config=setup.gdal_config, band_affine=setup.band_affine, provider=provider_name(options.provider),
        _blocks=plan_blocks(setup.grid, bcells),
    )


Bounds = tuple[float, float, float, float]


def _placement(path: str, info: SceneInfo, crs: CRS) -> tuple[Bounds, Bounds, float]:
    """The scene's bounds in WGS 84 and EPSG:3857, and its pixel size in metres."""
    from rasterio.warp import transform_bounds

    t = info.transform
    left, top = t.c, t.f
    right, bottom = t.c + t.a * info.width, t.f + t.e * info.height  # north-up (checked by open_scene)
    try:
        lonlat = transform_bounds(crs, "EPSG:4326", left, bottom, right, top, densify_pts=21)
        merc = transform_bounds(crs, "EPSG:3857", left, bottom, right, top, densify_pts=21)
    except Exception as exc:  # noqa: BLE001 - PROJ errors have no common type
        raise InputError(f"{path}: cannot place the scene on a web map ({exc}); expected a CRS "
                         "that transforms to WGS 84") from None
    if crs.is_geographic:
        px_m = abs(info.res[1]) * math.pi / 180 * 6378137.0
    else:
        try:
            px_m = abs(info.res[0]) * float(crs.linear_units_factor[1])
        except Exception:  # noqa: BLE001 - unknown units: take metres
            px_m = abs(info.res[0])
    return (float(lonlat[0]), float(lonlat[1]), float(lonlat[2]), float(lonlat[3])), \
        (float(merc[0]), float(merc[1]), float(merc[2]), float(merc[3])), px_m


def _is_under(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


class SceneRegistry:
    """The roots a server was started with and the scenes it serves.

    Parameters
    ----------
    sources
        Scene files and folders given at start-up: folders become roots
        (their ``*.tif`` files are listed at once), files are served by name.
    model, options
        The model and the classification options.
    upload_dir
        Folder for uploads and downloads (also a root).
    upload_limit
        Bytes an upload or download may have.
    allow_url_prefixes
        URLs ``POST /api/scenes`` may download: ``None`` any http(s) URL, an
        empty tuple none, else those under a prefix (:mod:`geoseg.serve.fetch`).
    """

    def __init__(self, sources: list[str], model: ModelInfo, options: ServeOptions, upload_dir: str,
                 upload_limit: int, allow_url_prefixes: tuple[str, ...] | None = None,
                 shared_dir: str | None = None) -> None:
        self.model, self.options = model, options
        self.allow_url_prefixes = allow_url_prefixes
        self.shared_dir = shared_dir
        self._started = False
        self.upload_dir = os.path.realpath(upload_dir)
        os.makedirs(self.upload_dir, exist_ok=True)
        self.upload_limit = int(upload_limit)
        self.root_dirs: list[str] = []
        self.root_files: set[str] = set()
        self.scenes: dict[str, ServedScene] = {}
        self.errors: list[str] = []  # start-up scenes that could not be served
        self._lock = threading.Lock()
        for s in sources:
            real = os.path.realpath(s)
            if os.path.isdir(real):
                self.root_dirs.append(real)
                for p in sorted({str(q) for pat in SCENE_PATTERNS for q in Path(real).glob(pat)}):
                    self._try_add(p, check=True)  # a symlink out of the folder is refused
            elif os.path.isfile(real):
                self.root_files.add(real)
                self._try_add(real, check=False)
            else:
                self.errors.append(f"{s}: no such file or folder")
                log.warning("%s: no such file or folder; not served", s)
        if shared_dir:
            os.makedirs(shared_dir, exist_ok=True)
        self._started = True

    def _try_add(self, path: str, check: bool) -> None:
        try:
            self.add(path, check=check)
        except GeosegError as exc:
            self.errors.append(str(exc))
            log.warning("%s", exc)

    def resolve(self, path: str) -> str:
        """The real path of ``path`` if the server may serve it (a relative path
        is taken from the first root folder); else :class:`AccessError`."""
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            raise InputError(f"{path!r}: not a path; expected a scene file under one of the server's folders")
        p = path.strip()
        if not os.path.isabs(p):
            if not self.root_dirs:
                raise AccessError(f"{p}: relative path but the server has no scene folder; give an absolute path")
            p = os.path.join(self.root_dirs[0], p)
        real = os.path.realpath(p)
        if real in self.root_files or any(_is_under(real, r) for r in self.root_dirs + [self.upload_dir]):
            return real
        raise AccessError(f"{path}: outside the folders this server serves; expected a scene under "
                          f"one of them (start `geoseg serve` with its folder, or upload the file)")

    def add(self, path: str, check: bool = True, uploaded: bool = False, share: bool = True) -> ServedScene:
        """Serve the scene at ``path`` (checked against the roots unless
        ``check`` is False); after start-up, recorded in the shared folder
        (unless ``share`` is False) for the server's other processes."""
        real = self.resolve(path) if check else os.path.realpath(path)
        if not os.path.isfile(real):
            raise NotFoundError(f"{path}: file not found")
        sid = scene_id(real)
        with self._lock:
            if sid in self.scenes:
                return self.scenes[sid]
        sc = prepare_scene(real, self.model, self.options, uploaded=uploaded)
        with self._lock:
            sc = self.scenes.setdefault(sc.id, sc)
        if self.shared_dir and self._started and share:
            from ..outputs import write_json_atomic

            write_json_atomic(os.path.join(self.shared_dir, f"{sc.id}.json"), {"path": sc.path, "uploaded": uploaded})
        return sc

    def get(self, sid: str) -> ServedScene:
        sc = self.scenes.get(sid) or self._adopt(sid)
        if sc is None:
            raise NotFoundError(f"scene {sid!r}: no such scene; GET /api/scenes lists them")
        return sc

    def list(self) -> list[ServedScene]:
        if self.shared_dir:
            for name in sorted(os.listdir(self.shared_dir)):
                if name.endswith(".json") and name[:-5] not in self.scenes:
                    self._adopt(name[:-5])
        return sorted(self.scenes.values(), key=lambda s: (s.name, s.id))

    def _adopt(self, sid: str) -> ServedScene | None:
        """A scene another process of this server added (``--workers N``): its
        record in the shared folder (written after that process checked it)."""
        if not self.shared_dir or not re.fullmatch(r"[0-9a-f]{12}", sid):
            return None
        try:
            with open(os.path.join(self.shared_dir, f"{sid}.json"), encoding="utf-8") as f:
                rec = json.load(f)
            sc = self.add(str(rec["path"]), check=False, uploaded=bool(rec.get("uploaded")), share=False)
        except (OSError, ValueError, KeyError, GeosegError):
            return None
        return sc if sc.id == sid else None

    # --- uploads and downloads -------------------------------------------
    def new_upload_path(self, filename: str | None) -> str:
        """A fresh path in the upload folder for a file sent as ``filename``."""
        base = os.path.basename((filename or "").replace("\\", "/"))
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(base)[0]).strip("._") or "upload"
        folder = os.path.join(self.upload_dir, uuid.uuid4().hex[:12])
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, stem[:80] + ".tif")

    def too_large(self, what: str, size: int | None = None) -> TooLargeError:
        mb = round(self.upload_limit / 2**20, 3)
        got = f" ({size / 2**20:.2f} MB)" if size is not None else ""
        return TooLargeError(f"{what}: larger than the upload limit of {mb:g} MB{got}; "
                             "restart `geoseg serve` with a larger --upload-limit or serve its folder")

    def add_upload(self, tmp_path: str, shown: str | None = None) -> ServedScene:
        """Serve an uploaded or downloaded file; removes it when it is not a
        usable scene.  ``shown``: the name the user knows it by (the uploaded
        file's name, the URL), put in error messages in place of the path in
        the server's upload folder."""
        try:
            return self.add(tmp_path, check=False, uploaded=True)
        except GeosegError as exc:
            discard(tmp_path)
            if shown and tmp_path in str(exc):
                exc.args = (str(exc).replace(tmp_path, shown),)
            raise
        except BaseException:
            discard(tmp_path)
            raise

    def download(self, url: str) -> ServedScene:
        """Download an http(s) GeoTIFF into the upload folder (size-limited,
        allowed URLs only) and serve it."""
        from urllib.parse import urlsplit

        from .fetch import check_url, download

        check_url(url, self.allow_url_prefixes)
        dest = self.new_upload_path(os.path.basename(urlsplit(url).path))
        try:
            download(url, dest, self.upload_limit, self.allow_url_prefixes, self.too_large)
        except BaseException:
            discard(dest)
            raise
        return self.add_upload(dest, url)


def discard(path: str) -> None:
    """Remove an upload and its folder (best effort)."""
    for p in (path, os.path.dirname(path)):
        try:
            os.remove(p) if p == path else os.rmdir(p)
        except OSError:
            pass
