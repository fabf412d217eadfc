"""The scene pipeline: plan a scene's blocks, classify them in tasks, and
consume the finished blocks in one sink that writes the products.

Three parts, wired by :func:`classify_scene`:

- :func:`classify_block`, the task: it receives plain data (:class:`BlockJob`:
  the scene's path, the block's windows, the model's path), opens the file
  itself, runs the worker's cached onnxruntime session over the block's
  patches, and returns the block's cells (:class:`BlockResult`);
- :class:`SceneSink`, the single consumer of finished blocks, in the calling
  process: it writes each block by window as it arrives (memory is bounded by
  the blocks in flight, not by the scene), tallies classes and areas, fills
  the quicklook canvas and sums the timings; then it finishes the products
  (rasters, styles, polygons, quicklook, statistics) under temporary names;
- :func:`classify_scene`: checks the scene against the model, plans the
  blocks, streams them through a :class:`~geoseg.scheduling.Runner` into the
  sink, and commits the outputs (or removes every temporary file on failure).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Literal

import numpy as np

from . import __version__
from . import reflectance
from .contract import ModelContract, Scaling
from .errors import GeosegError, InputError, MaskWarning, ResampleWarning, ResolutionWarning, ScalingWarning
from .geometry import ground_pixel_size_m, pixel_area_m2
from .model import ModelInfo, get_session, load_model, resolve_model_path, run_batch
from .providers import check_name, provider_name
from .outputs import (
    OutputPlan, polygonize, write_aux_xml, write_json_atomic, write_polygons, write_probs_qml, write_qml, write_quicklook,
)
from .patches import (
    block_thumbnail, cell_valid_counts, fold_to_cells, gather_patches, patch_valid_fraction, patch_views, stretch_to_uint8,
    to_model_input,
)
from .raster import (
    GridWriter, SceneInfo, check_readable, check_size, open_scene, read_classes, read_window, read_window_resampled, scaling_for,
    scene_percentiles, scene_quantiles,
)
from .naming import basename
from .reflectance import SENSORS, Reflectance
from .sources import GdalConfig, display_path, gdal_env, is_remote, is_stac_item, normalize_config, scene_config, source_time
from .scheduling import Runner, progress_bar, release_free_memory
from .windows import Block, PatchGrid, Resample, choose_block_cells, plan_blocks, plan_resample

log = logging.getLogger(__name__)

ResampleMode = Literal["off", "auto"]
"""``--resample``: ``off`` classifies a scene at its own pixel size; ``auto``
brings it to the model contract's training resolution (:func:`plan_resample`)."""
RESAMPLE_MODES: tuple[str, ...] = ("off", "auto")
BandAffine = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-band (scales, offsets) from a scene's values to reflectance."""


@dataclass(frozen=True)
class ClassifyOptions:
    """Options of ``geoseg classify`` (see the CLI help for each)."""

    stride: int | None = None  # default: the patch size
    nodata: float | None = None
    bidx: tuple[int, ...] | None = None
    batch_size: int = 32
    min_valid: float | None = None  # default: the contract's
    scaling: Scaling | None = None
    polygons: bool = True
    min_area: float = 0.0  # m², polygons smaller are dropped
    simplify: float = 0.0  # CRS units
    probs: bool = True
    quicklook: bool = True
    overwrite: bool = False
    block_px: int = 2048
    block_cells: int | None = None  # force a block size (tests, benchmarks)
    progress: bool | None = None  # None: a bar only on a terminal
    gdal_config: GdalConfig = ()  # GDAL settings of the reads (--gdal-config); a dict is accepted
    assets: tuple[str, ...] | None = None  # STAC item inputs: the RGB asset keys (--assets)
    resample: ResampleMode = "off"  # "auto": to the contract's training resolution (--resample)
    provider: str = "auto"  # onnxruntime execution provider (--provider; geoseg.providers): the best available
    reflectance_scale: float | None = None  # reflectance = DN x scale + offset (reflectance models)
    reflectance_offset: float | None = None
    sensor: str | None = None  # a reflectance preset (geoseg.reflectance.SENSORS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", check_name(self.provider))
        if self.resample not in RESAMPLE_MODES:
            raise InputError(f"resample={self.resample!r}: expected one of {', '.join(RESAMPLE_MODES)}")
        self._check_reflectance()
        object.__setattr__(self, "gdal_config", normalize_config(self.gdal_config))
        if self.assets is not None:
            object.__setattr__(self, "assets", tuple(self.assets))

    def _check_reflectance(self) -> None:
        if self.sensor is not None:  # `--sensor Sentinel2-L2A` is the preset sentinel2-l2a
            object.__setattr__(self, "sensor", self.sensor.strip().lower())
        if self.sensor is not None and self.sensor not in SENSORS:
            raise InputError(f"--sensor {self.sensor!r} is not a preset; expected one of {', '.join(SENSORS)}")
        if self.reflectance_offset is not None and self.reflectance_scale is None:
            raise InputError(f"--reflectance-offset {self.reflectance_offset:g} needs --reflectance-scale "
                             "(reflectance = DN x SCALE + OFFSET)")
        if self.reflectance_scale is not None and not (
                math.isfinite(self.reflectance_scale) and self.reflectance_scale > 0
                and math.isfinite(self.reflectance_offset or 0.0)):
            raise InputError(f"--reflectance-scale {self.reflectance_scale:g} --reflectance-offset "
                             f"{self.reflectance_offset or 0:g}: expected a finite, positive scale and a finite "
                             "offset (e.g. --reflectance-scale 0.0001)")
        if self.scaling is not None and (self.reflectance_scale is not None or self.sensor is not None):
            raise InputError("--scaling maps pixel values to the model input itself; give it or "
                             "--reflectance-scale/--sensor, not both")

    def to_dict(self) -> dict:
        """The options that shape the results (not overwrite, progress, the
        block size or the GDAL settings, which change nothing in the outputs;
        the STAC assets and the resampling only when chosen, so the records
        of earlier runs still match)."""
        d = asdict(self)
        d["scaling"] = self.scaling.to_dict() if self.scaling else None
        for k in ("progress", "overwrite", "block_px", "block_cells", "gdal_config", "provider"):
            d.pop(k)  # the provider is recorded apart (stats "provider"), so earlier runs' records still match
        if d["resample"] == "off":
            d.pop("resample")
        for k in ("reflectance_scale", "reflectance_offset", "sensor"):
            if d[k] is None:  # recorded only when given: earlier runs' records still match
                d.pop(k)
        if d["assets"] is None:
            d.pop("assets")
        else:
            d["assets"] = list(d["assets"])
        return d


@dataclass(frozen=True)
class BlockJob:
    """Everything a task needs; plain picklable data, no open handles."""

    scene: SceneInfo
    grid: PatchGrid
    block: Block
    model_path: str
    model_sha: str
    ort_threads: int
    contract: ModelContract
    scaling: Scaling
    stats: np.ndarray | None
    batch_size: int
    min_valid: float
    thumb_k: int = 0  # quicklook pixels per cell side (0: no quicklook)
    gdal_config: GdalConfig = ()  # entered by the task itself: GDAL settings are per thread
    resample: Resample | None = None  # patches read at the model's resolution (grid in source pixels)
    provider: str = "cpu"  # onnxruntime execution provider (geoseg.providers name)
    band_affine: BandAffine | None = None  # per-band (scales, offsets) to reflectance, before ``scaling``


@dataclass
class BlockResult:
    index: int
    block: Block
    classes: np.ndarray  # (h, w) uint8, 255 = nodata
    probs: np.ndarray  # (n_class, h, w) float32, NaN = nodata
    valid_px: np.ndarray  # (h, w) valid source pixels per cell (0 for nodata cells)
    n_patches: int
    n_classified: int
    t_read: float
    t_infer: float
    t_total: float
    thumb: np.ndarray | None = None  # (band, h*k, w*k) float32, for the quicklook
    thumb_valid: np.ndarray | None = None


def classify_block(job: BlockJob) -> BlockResult:
    """Read one block's window and classify its patches (runs in a Dask task)."""
    t0 = time.perf_counter()
    g, b, c = job.grid, job.block, job.contract
    S = g.stride
    data, pix_valid, valid, inside, Pm, Sm = _read_block(job)
    t1 = time.perf_counter()
    frac = patch_valid_fraction(valid, inside, g.patch, S)  # (npr, npc)
    todo = frac >= job.min_valid
    todo &= frac > 0
    npr, npc = frac.shape
    probs = np.zeros((npr, npc, c.n_classes), dtype=np.float32)
    t_infer = 0.0
    if todo.any():
        t_infer = _infer_patches(job, data, pix_valid, Pm, Sm, todo, probs)
    mean, count = fold_to_cells(
        probs, todo, g.overlap, (b.prow0, b.prow1), (b.pcol0, b.pcol1),
        (b.row_off, b.col_off), (b.height, b.width),
    )
    # validity of each cell's own footprint
    r0 = (b.row_off - b.prow0) * S
    c0 = (b.col_off - b.pcol0) * S
    sl = (slice(r0, r0 + b.height * S), slice(c0, c0 + b.width * S))
    vcount = cell_valid_counts(valid[sl], S)
    icount = cell_valid_counts(inside[sl], S)
    cell_ok = (count > 0) & (vcount > 0) & (vcount >= job.min_valid * np.maximum(icount, 1))
    classes = np.where(cell_ok, np.argmax(mean, axis=0), 255).astype(np.uint8)
    mean[:, ~cell_ok] = np.nan
    thumb = thumb_valid = None
    if job.thumb_k:
        thumb, thumb_valid = _block_thumb(job, data, pix_valid, Sm)
    return BlockResult(
        index=b.index, block=b, classes=classes, probs=mean,
        valid_px=np.where(cell_ok, vcount, 0).astype(np.int64),
        n_patches=int(npr * npc), n_classified=int(todo.sum()),
        t_read=t1 - t0, t_infer=t_infer, t_total=time.perf_counter() - t0,
        thumb=thumb, thumb_valid=thumb_valid,
    )


def _read_block(job: BlockJob) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """The block's window as the model sees it: ``(data, pix_valid, valid,
    inside, Pm, Sm)``; ``pix_valid``, ``Pm``, ``Sm`` are in the model's pixels,
    ``valid`` and ``inside`` in source pixels (the same when not resampling)."""
    g, rs = job.grid, job.resample
    window = job.block.read_window(g)
    with gdal_env(job.gdal_config):
        if rs is None:
            data, valid, inside = read_window(job.scene, window)
            return data, valid, valid, inside, g.patch, g.stride  # the model sees the source pixels
        # the model sees resampled pixels; validity, cells and areas stay in source pixels
        data, pix_valid, valid, inside = read_window_resampled(
            job.scene, window, rs.model_shape(int(window.height), int(window.width)))
        return data, pix_valid, valid, inside, rs.patch, rs.stride


def _infer_patches(job: BlockJob, data: np.ndarray, pix_valid: np.ndarray, Pm: int, Sm: int,
                   todo: np.ndarray, probs: np.ndarray) -> float:
    """Run the model on the ``todo`` patches, batch by batch, into ``probs``
    (npr, npc, n_class); returns the seconds spent in onnxruntime."""
    c = job.contract
    t_infer = 0.0
    # patches are gathered batch by batch from zero-copy views of the
    # window, so a task holds the window plus one batch, not every patch
    pix, pval = patch_views(data, pix_valid, Pm, Sm)
    if pix_valid.all():
        pval = None  # no gaps to fill: skip the per-batch validity copies
    rows, cols = np.nonzero(todo)
    sess = get_session(job.model_path, job.model_sha, job.ort_threads, job.provider)
    out = np.empty((len(rows), c.n_classes), np.float32)
    bs = job.batch_size
    for i in range(0, len(rows), bs):
        raw, v = gather_patches(pix, pval, rows[i : i + bs], cols[i : i + bs])
        if job.band_affine is not None:  # bands with rules of their own: to reflectance first
            a, o = (np.asarray(t, np.float32)[None, :, None, None] for t in job.band_affine)
            raw = raw.astype(np.float32) * a + o
        x = to_model_input(raw, v, job.scaling, c.input_range, job.stats, c.input_layout, c.input_dtype)
        ti = time.perf_counter()
        out[i : i + bs] = run_batch(sess, c.input_name, x, bs, job.model_path)
        t_infer += time.perf_counter() - ti
    probs[rows, cols] = out
    return t_infer


def _block_thumb(job: BlockJob, data: np.ndarray, pix_valid: np.ndarray, Sm: int) -> tuple[np.ndarray, np.ndarray]:
    """The block's quicklook sample and its validity."""
    b = job.block
    # the quicklook samples the pixels the model saw, Sm of them per cell side
    rm, cm = (b.row_off - b.prow0) * Sm, (b.col_off - b.pcol0) * Sm
    slm = (slice(rm, rm + b.height * Sm), slice(cm, cm + b.width * Sm))
    # sampled first, then the bands picked: a band list would copy the whole block
    thumb, thumb_valid = block_thumbnail(data[(slice(None),) + slm], pix_valid[slm], Sm, job.thumb_k)
    return thumb[_rgb_bands(job.contract)], thumb_valid


def _rgb_bands(c: ModelContract) -> slice | list[int]:
    """The model bands the quicklook shows as red, green and blue (the first
    three unless the contract names red, green and blue elsewhere)."""
    idx = [c.bands.index(n) for n in ("red", "green", "blue") if n in c.bands]
    return idx if len(idx) == 3 and idx != [0, 1, 2] else slice(0, 3)


SceneStatus = Literal["done", "failed", "skipped"]


@dataclass
class SceneResult:
    """What happened to one scene."""

    path: str
    name: str
    status: SceneStatus
    outputs: dict[str, str] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0
    n_patches: int = 0
    patches_per_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SceneSetup:
    """A scene checked against the model, with everything its blocks share."""

    scene: SceneInfo
    grid: PatchGrid
    scaling: Scaling
    stats: np.ndarray | None  # per-band percentiles for percentile scaling
    min_valid: float
    gdal_config: GdalConfig = ()  # the GDAL settings of the scene's reads (sources.scene_config)
    source_time: datetime | None = None  # the source's mtime / Last-Modified (the GeoPackage's timestamp)
    source: str = ""  # what the user gave (a STAC item for a scene read through its VRT)
    item_time: datetime | None = None  # a STAC input item's datetime
    resample: Resample | None = None  # --resample auto, where it applies (grid is then in source pixels)
    ground_res_m: float | None = None  # the scene's ground pixel size (m), where the model has a training resolution
    reflectance: Reflectance | None = None  # reflectance models: the scene's rule to reflectance
    band_affine: BandAffine | None = None  # reflectance rules that differ between bands (else in ``scaling``)

    @property
    def model_stride(self) -> int:
        """Model pixels per cell side: the stride the model's patches move by."""
        return self.resample.stride if self.resample else self.grid.stride

    def jobs(self, blocks: list[Block], model: ModelInfo, runner: Runner, options: ClassifyOptions,
             thumb_k: int) -> Iterator[BlockJob]:
        """The tasks' inputs, one per block (built lazily, as the runner asks)."""
        for b in blocks:
            yield BlockJob(self.scene, self.grid, b, model.path, model.sha256, runner.ort_threads, model.contract,
                           self.scaling, self.stats, model.fixed_batch or options.batch_size, self.min_valid, thumb_k,
                           self.gdal_config, self.resample, provider_name(options.provider), self.band_affine)


def prepare_scene(path: str, model: ModelInfo, options: ClassifyOptions, outdir: str | None = None) -> SceneSetup:
    """Open and check a scene against the model; raises :class:`InputError`.

    ``path`` is a local file, a remote source (:mod:`geoseg.sources`) or a
    STAC Item (``*.json``: its RGB assets are stacked into ``OUTDIR/ID.vrt``,
    so ``outdir`` is needed).  The reads run under the scene's GDAL settings
    (:func:`geoseg.sources.scene_config`).
    """
    c = model.contract
    source, item_time, stac_so = path, None, None
    if is_stac_item(path):
        from .stac import stac_input

        if outdir is None:
            raise InputError(f"{path}: a STAC item needs an output folder for its VRT")
        before = set(os.listdir(outdir)) if os.path.isdir(outdir) else set()
        si = stac_input(path, outdir, options.assets, options.gdal_config, c.bands)
        path, item_time, stac_so = si.vrt, si.datetime, si.scale_offset
        try:
            return _prepare_read(source, path, item_time, stac_so, model, options)
        except InputError as exc:  # name the item the user gave, not only the VRT made of it
            exc.args = (str(exc).replace(path, f"{source} (its assets stacked in {path})", 1),)
            if os.path.basename(path) not in before:  # a refused item leaves no VRT of its own behind
                with suppress(OSError):
                    os.remove(path)
            raise
    return _prepare_read(source, path, item_time, stac_so, model, options)


def _prepare_read(source: str, path: str, item_time: datetime | None, stac_so: tuple[tuple[float, float], ...] | None,
                  model: ModelInfo, options: ClassifyOptions) -> SceneSetup:
    """:func:`prepare_scene` once ``path`` is a raster (``source``: what the user gave)."""
    c = model.contract
    config = scene_config(path, options.gdal_config)
    family = SENSORS[options.sensor].family if options.sensor else None
    with gdal_env(config):
        # a remote source's headers come first: 404 and 403 get their one-line errors before GDAL opens it
        when = source_time(path, config) if source == path and is_remote(path) else None
        scene = open_scene(path, c, options.bidx, options.nodata, family, min_side=None)
        if source != path:  # a STAC item, read through its VRT
            when = item_time
        elif when is None:  # a local file, now known to exist
            when = source_time(path, config)
        stride = options.stride or c.patch_size
        try:
            grid = PatchGrid(scene.width, scene.height, c.patch_size, stride)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
        ground = _ground_size(scene, c)
        rs = _resample_for(scene, c, stride, ground) if options.resample == "auto" else None
        if rs is not None:  # the one size check, in the source pixels a patch covers
            check_size(scene, rs.src_patch, f" of {ground:.3g} m pixels ({c.patch_size} px at the model's "
                       f"{c.training_resolution_m:g} m, --resample auto)", ": classify it with --resample off")
            grid = PatchGrid(scene.width, scene.height, rs.src_patch, rs.src_stride)
        else:
            check_size(scene, c.patch_size)
        check_readable(scene)
        scaling, refl, affine = _scene_scaling(scene, c, options, stac_so, rs)
        stats = scene_percentiles(scene, scaling.low, scaling.high, factor=rs.factor if rs else None) \
            if scaling.method == "percentile" else None
    if rs is None:
        _warn_resolution(scene, c, ground)
    min_valid = c.min_valid_fraction if options.min_valid is None else options.min_valid
    return SceneSetup(scene, grid, scaling, stats, min_valid, config, when, source, item_time, rs, ground, refl,
                      affine)


_MAX_BATCH_BYTES = 64 * 2**20  # one batch of model input (float32); a task holds about ten times that


def check_options(model: ModelInfo, options: ClassifyOptions) -> None:
    """Options that do not fit the model, once at the entry: reflectance
    options for a model that reads pixel values as they are; a
    ``--batch-size`` whose batches (each padded to that size) would not fit
    in memory (100000 patches of 64 px took 22 GB for a 4-patch scene)."""
    c = model.contract
    per_patch = c.patch_size ** 2 * len(c.bands) * 4
    if not model.fixed_batch and options.batch_size * per_patch > _MAX_BATCH_BYTES:
        most = _MAX_BATCH_BYTES // per_patch
        raise InputError(f"--batch-size {options.batch_size}: each batch is padded to that many {c.patch_size} px "
                         f"patches, {options.batch_size * per_patch / 2**30:.2g} GiB of model input for {c.name!r}; "
                         f"expected at most {most}: pass a smaller --batch-size (the default, 32, suits a CPU)")
    given = [o for o, v in (("--reflectance-scale", options.reflectance_scale), ("--sensor", options.sensor))
             if v is not None]
    if given and c.input_kind != "reflectance":
        verb, them = ("apply", "them") if len(given) > 1 else ("applies", "it")
        raise InputError(f"{model.path}: the model {c.name!r} takes pixel values ({', '.join(c.bands)}), not "
                         f"reflectance; {' and '.join(given)} {verb} only to reflectance models (e.g. -m "
                         f"multispectral): drop {them}, or use --scaling to change how values are scaled")


def _scene_scaling(scene: SceneInfo, c: ModelContract, options: ClassifyOptions,
                   stac_so: tuple[tuple[float, float], ...] | None, rs: Resample | None
                   ) -> tuple[Scaling, Reflectance | None, BandAffine | None]:
    """The scaling of the scene's values into the model input; for a
    reflectance model, the scene's rule to reflectance (decided and checked
    on a sample of the scene once, here) and the per-band rules, if any."""
    if c.input_kind != "reflectance":
        scaling = scaling_for(scene, c, options.scaling)
        if options.scaling is None:
            _check_float_rule(scene, c, scaling, rs)
        return scaling, None, None
    if options.scaling is not None:
        return options.scaling, Reflectance("--scaling", direct=options.scaling.describe()), None
    so = None
    if stac_so and max(scene.bidx) <= len(stac_so):  # the item's values, for the chosen bands of its VRT
        so = tuple(stac_so[b - 1] for b in scene.bidx)
    rule, warning = reflectance.decide(
        scene.path, scene.dtype, len(scene.bidx), options.reflectance_scale, options.reflectance_offset,
        options.sensor, scene.scale_offset, so, dict(scene.tags))
    if warning:
        warnings.warn(warning, ScalingWarning, stacklevel=4)
    if not rule.uint8_rule:
        try:
            sample = scene_quantiles(scene, (1, 50, 99), factor=rs.factor if rs else None)
        except InputError:  # every sampled pixel is nodata: nothing to check
            sample = None
        if sample is not None:
            warning = reflectance.check_range(scene.path, rule, sample[:, 1], sample[:, 2], sample[:, 0],
                                              scene.dtype)
            if warning:
                warnings.warn(warning, ScalingWarning, stacklevel=4)
    scaling, affine = reflectance.model_scaling(rule, c, scene.path)
    return scaling, rule, affine


def _check_float_rule(scene: SceneInfo, c: ModelContract, scaling: Scaling, rs: Resample | None) -> None:
    """A float scene read by a pixel-value model's linear float rule (made
    for reflectance 0-1): warn where the median value is above 1.5, no
    reflectance (8-bit or DN values stored as float), and the rule would
    saturate most pixels to the top of the input range (all cloud)."""
    if np.dtype(scene.dtype).kind != "f" or scaling.method != "linear" or scaling.scale <= 0:
        return
    try:
        median = scene_quantiles(scene, (50,), factor=rs.factor if rs else None)[:, 0]
    except InputError:  # every sampled pixel is nodata: nothing to check
        return
    m = float(np.median(median))
    top = c.input_range[1]
    if m > 1.5 and m * scaling.scale + scaling.offset >= top:
        fix = ("--scaling linear:1 (values 0-255)" if m <= 255 else
               "--scaling percentile:2,98 (other values, e.g. DN), or convert the scene to reflectance")
        warnings.warn(f"{scene.path}: {scene.dtype} scene with median value {m:.4g}; the model's rule for float "
                      f"scenes ({scaling.describe()}) is for reflectance 0-1 and saturates most pixels at "
                      f"{top:g} (read as cloud); expected reflectance: pass {fix}", ScalingWarning, stacklevel=4)


def _ground_size(scene: SceneInfo, c: ModelContract) -> float | None:
    """The scene's ground pixel size (m), where the model has a training resolution to compare it with."""
    if not c.training_resolution_m:
        return None
    return ground_pixel_size_m(scene.transform, scene.crs_wkt, scene.width, scene.height)


def _resample_for(scene: SceneInfo, c: ModelContract, stride: int, ground: float | None) -> Resample | None:
    """``--resample auto``: the resampling of a scene whose ground pixel size
    is ``ground`` (:func:`_ground_size`).

    None (and a :class:`ResampleWarning`) where the model records no training
    resolution or the scene's CRS has no ground unit: the scene is classified
    at its own pixel size, as with ``--resample off``; None too (an info log
    line) where the scene is within 10 % of the training resolution.
    """
    if not c.training_resolution_m:
        warnings.warn(f"{scene.path}: the model {c.name!r} records no training resolution; --resample auto "
                      "classifies the scene at its own pixel size", ResampleWarning, stacklevel=3)
        return None
    if ground is None:
        warnings.warn(f"{scene.path}: the scene's CRS has no ground unit (metres or degrees); --resample auto "
                      "classifies it at its own pixel size", ResampleWarning, stacklevel=3)
        return None
    rs = plan_resample(c.patch_size, stride, ground, c.training_resolution_m)
    if rs is None:
        log.info("%s: pixel size %.3g m is within 10%% of the model's %.3g m; not resampled", scene.path, ground,
                 c.training_resolution_m)
    else:
        log.info("%s: resampled from %.3g m to %.4g m (%d source px per %d px patch, %s)", scene.path, ground,
                 rs.resolution_m, rs.src_patch, rs.patch, "average" if rs.reducing else "bilinear")
        if not rs.reducing and ground > 8 * c.training_resolution_m:  # a 60 m scene (x 6) still has texture
            warnings.warn(f"{scene.path}: --resample auto enlarges its {ground:.4g} m pixels to the model's "
                          f"{c.training_resolution_m:g} m: a {rs.patch} px patch covers only {rs.src_patch} x "
                          f"{rs.src_patch} source pixel(s), too few for the texture the model reads; results may be "
                          "poor: use a scene with finer pixels for this model", ResolutionWarning, stacklevel=3)
    return rs


class _Tally:
    """Per-class cell counts and ground areas, accumulated block by block."""

    def __init__(self, scene: SceneInfo, grid: PatchGrid, n_classes: int) -> None:
        self.scene, self.grid = scene, grid
        self.cells = np.zeros(n_classes, np.int64)
        self.area = np.zeros(n_classes, np.float64)
        self.nodata_cells = 0

    def add(self, r: BlockResult) -> None:
        b, S = r.block, self.grid.stride
        rows = (np.arange(b.height) + b.row_off + 0.5) * S
        cols = (np.arange(b.width) + b.col_off + 0.5) * S
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        px_area = pixel_area_m2(self.scene.transform, self.scene.crs_wkt, rr, cc)
        ok = r.classes != 255
        self.nodata_cells += int((~ok).sum())
        k = r.classes[ok].astype(np.int64)
        self.cells += np.bincount(k, minlength=len(self.cells))
        self.area += np.bincount(k, weights=(px_area * r.valid_px)[ok], minlength=len(self.cells))


def _stats_doc(setup: SceneSetup, model: ModelInfo, options: ClassifyOptions, tally: _Tally,
               timings: dict[str, float], n_patches: tuple[int, int], plan: OutputPlan) -> dict:
    scene, grid, c = setup.scene, setup.grid, model.contract
    total_cells = int(tally.cells.sum())
    total_area = float(tally.area.sum())
    classes = []
    for i, n in enumerate(c.class_names):
        classes.append({
            "index": i, "name": n, "color": c.class_colors[i], "cells": int(tally.cells[i]),
            "fraction": float(tally.cells[i] / total_cells) if total_cells else 0.0,
            "area_km2": float(tally.area[i] / 1e6),
            "area_fraction": float(tally.area[i] / total_area) if total_area else 0.0,
        })
    return {
        "scene": {
            "path": display_path(setup.source or scene.path), "width": scene.width, "height": scene.height,
            "dtype": scene.dtype, "bands": list(scene.bidx), "band_choice": scene.band_choice,
            "band_names": dict(zip(scene.band_names, scene.bidx)),
            "crs": scene.crs_wkt, "transform": list(scene.transform)[:6],
            "pixel_size": list(scene.res), "mask": scene.mask_kind,
        },
        "grid": {
            "patch": grid.patch, "stride": grid.stride, "cells": list(grid.n_cells),
            "transform": list(grid.cell_transform(scene.transform))[:6],
        },
        "classes": classes,
        "classified_cells": total_cells,
        "nodata_cells": int(tally.nodata_cells),
        "classified_area_km2": total_area / 1e6,
        "patches": {"total": grid.n_patches[0] * grid.n_patches[1], "computed": n_patches[0],
                    "classified": n_patches[1]},
        "model": {
            "path": model.path, "sha256": model.sha256, "name": c.name,
            "class_names": list(c.class_names), "patch_size": c.patch_size,
        },
        "options": _options_doc(setup, options),
        **({"reflectance": _reflectance_doc(setup)} if setup.reflectance else {}),
        "provider": provider_name(options.provider),
        "timings_s": timings,
        "outputs": {k: os.path.basename(v) for k, v in plan.final.items()},
        "geoseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def _reflectance_doc(setup: SceneSetup) -> dict | None:
    """A reflectance model's record of the scene's rule (stats and STAC item)."""
    if setup.reflectance is None:
        return None
    return {**setup.reflectance.to_dict(), "model_input": setup.scaling.describe()}


def _options_doc(setup: SceneSetup, options: ClassifyOptions) -> dict:
    """The options of the statistics; ``--resample auto`` adds what it did:
    the effective factor (source pixels per model pixel, 1 when the scene was
    not resampled) and the resolution actually used."""
    d = options.to_dict()
    if options.resample == "auto":
        rs = setup.resample
        d["resample_applied"] = rs is not None
        d["resample_factor"] = rs.factor if rs else 1.0
        d["resample_resolution_m"] = rs.resolution_m if rs else setup.ground_res_m
        if rs is not None:
            d.update(rs.to_dict())
    return d


class Timings:
    """Seconds spent per step of a scene, summed (tasks report theirs)."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {"read": 0.0, "infer": 0.0, "tasks": 0.0, "write": 0.0}

    def add(self, key: str, seconds: float) -> None:
        self.s[key] = self.s.get(key, 0.0) + seconds

    @contextmanager
    def measure(self, key: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(key, time.perf_counter() - t0)


class SceneSink:
    """The single consumer of a scene's finished blocks.

    :meth:`consume` writes a block into the class and probability rasters,
    adds it to the class tally and the quicklook canvas, and sums its timings;
    :meth:`finish` writes every product under its temporary name (the caller
    commits them); :meth:`abort` closes what is open.
    """

    def __init__(self, setup: SceneSetup, model: ModelInfo, options: ClassifyOptions, plan: OutputPlan,
                 thumb_k: int) -> None:
        self.setup, self.model, self.options, self.plan = setup, model, options, plan
        scene, grid, c = setup.scene, setup.grid, model.contract
        self.timings = Timings()
        self.n_classified = 0
        self.thumb_k = thumb_k
        self.canvas = self.canvas_ok = None
        if thumb_k:
            rows, cols = grid.n_cells
            self.canvas = np.zeros((min(3, len(scene.bidx)), rows * thumb_k, cols * thumb_k), np.float32)
            self.canvas_ok = np.zeros(self.canvas.shape[1:], bool)
        self.tally = _Tally(scene, grid, c.n_classes)
        self.writer = GridWriter(plan.tmp["classes"], plan.tmp.get("probs"), grid.n_cells,
                                 grid.cell_transform(scene.transform), scene.crs_wkt, c)
        self._n_blocks = 0

    def consume(self, r: BlockResult) -> None:
        with self.timings.measure("write"):
            self.writer.write(r.block.cell_window, r.classes, r.probs)
            self.tally.add(r)
            if self.canvas is not None and self.canvas_ok is not None:
                b, k = r.block, self.thumb_k
                sl = (slice(b.row_off * k, (b.row_off + b.height) * k), slice(b.col_off * k, (b.col_off + b.width) * k))
                self.canvas[(slice(None),) + sl] = r.thumb
                self.canvas_ok[sl] = r.thumb_valid
        self.timings.add("read", r.t_read)
        self.timings.add("infer", r.t_infer)
        self.timings.add("tasks", r.t_total)
        self.n_classified += r.n_classified
        self._n_blocks += 1
        if self._n_blocks % TRIM_EVERY == 0:
            release_free_memory()

    def finish(self) -> None:
        """Finish the rasters and write the styles, polygons, quicklook and
        statistics under their temporary names."""
        scene, c, opts, plan, t = self.setup.scene, self.model.contract, self.options, self.plan, self.timings
        if self.tally.cells.sum() == 0:
            lower = ", or lower --min-valid" if self.setup.min_valid > 0 else ""
            warnings.warn(f"{scene.path}: no patch had enough valid pixels; every cell is nodata (check the "
                          f"scene's mask or --nodata{lower})", MaskWarning, stacklevel=2)
        tags = {"GEOSEG_MODEL_SHA256": self.model.sha256, "GEOSEG_SOURCE": basename(scene.path),
                "GEOSEG_STRIDE": str(self.setup.grid.stride), "GEOSEG_PATCH": str(c.patch_size)}
        rs = self.setup.resample
        if rs is not None:  # GEOSEG_STRIDE: source pixels per cell; the model's patches were resampled
            tags["GEOSEG_RESAMPLE"] = f"{rs.factor:.6g} source px per model px ({rs.resolution_m:.6g} m)"
        with t.measure("finish_rasters"):
            self.writer.finish(tags)
        write_qml(plan.tmp["classes_qml"], c)
        write_aux_xml(plan.tmp["classes_aux"], c)
        if "probs_qml" in plan.tmp:
            write_probs_qml(plan.tmp["probs_qml"], c)
        ql = None
        if opts.polygons or opts.quicklook:
            classes, ctr, crs_wkt = read_classes(plan.tmp["classes"])
        try:
            if opts.quicklook and self.canvas is not None and self.canvas_ok is not None:
                # drawn in a thread (PNG encoding releases the GIL) while the
                # polygons are traced: the scene's last steps use both cores
                ql_pool = ThreadPoolExecutor(1, thread_name_prefix="geoseg-quicklook")
                ql = ql_pool.submit(_quicklook, plan.tmp["quicklook"], self.canvas, self.canvas_ok, classes, c,
                                    scene.name)
                ql_pool.shutdown(wait=False)
            if opts.polygons:
                with t.measure("polygons"):
                    gdf = polygonize(classes, ctr, crs_wkt, c, opts.min_area, opts.simplify)
                    write_polygons(gdf, plan.tmp["polygons"], c, _iso_time(self.setup.source_time))
        finally:
            if ql is not None:
                ql.exception()  # let the quicklook thread finish before its file is committed or removed
        if ql is not None:
            t.add("quicklook", ql.result())  # re-raises the thread's error, if any

    def stats_doc(self, total_seconds: float, n_computed: int) -> dict:
        """The scene's ``NAME_stats.json`` document."""
        self.timings.add("total", total_seconds)
        return _stats_doc(self.setup, self.model, self.options, self.tally, self.timings.s,
                          (n_computed, self.n_classified), self.plan)

    def abort(self) -> None:
        self.writer.abort()


def products_of(options: ClassifyOptions) -> tuple[str, ...]:
    """The products a run writes, in order."""
    return tuple(p for p, on in (("classes", True), ("probs", options.probs), ("polygons", options.polygons),
                                 ("stats", True), ("quicklook", options.quicklook)) if on)


def classify_scene(
    path: str | os.PathLike,
    outdir: str | os.PathLike,
    model: str | os.PathLike | ModelInfo | None = None,
    options: ClassifyOptions | None = None,
    runner: Runner | None = None,
) -> SceneResult:
    """Classify one GeoTIFF scene and write its products into ``outdir``.

    Parameters
    ----------
    path
        The scene (any raster GDAL reads; GeoTIFF expected).
    outdir
        Output folder, created if needed.
    model
        An ONNX model with a geoseg contract (path or loaded
        :class:`~geoseg.model.ModelInfo`); default: the shipped model.
    options
        :class:`ClassifyOptions`.
    runner
        A :class:`~geoseg.scheduling.Runner` to share between scenes; default:
        a thread pool for this call.

    Returns
    -------
    SceneResult
        With ``status == "done"``; errors are raised (:class:`GeosegError`).
    """
    options = options or ClassifyOptions()
    if runner is None:
        with Runner("threads") as r:
            return classify_scene(path, outdir, model, options, r)
    t_start = time.perf_counter()
    info = model if isinstance(model, ModelInfo) else load_model(resolve_model_path(model))
    check_options(info, options)
    provider_name(options.provider)  # an unavailable provider: one error line before anything is written
    setup = prepare_scene(str(path), info, options, str(outdir))
    scene, grid = setup.scene, setup.grid
    plan = _output_plan(setup, str(outdir), options)
    bc = options.block_cells or choose_block_cells(grid, options.block_px, scene.tile, min_blocks=2 * runner.slots)
    blocks = plan_blocks(grid, bc)
    n_computed = sum(b.n_patches for b in blocks)  # overlap recomputes block edges
    sink = SceneSink(setup, info, options, plan, _thumb_k(grid.n_cells, setup.model_stride) if options.quicklook else 0)
    if options.polygons:
        _preload("geopandas")
    try:
        tiles_wall = _stream_blocks(runner, setup, blocks, info, options, sink, n_computed)
        sink.finish()
        doc = sink.stats_doc(time.perf_counter() - t_start, n_computed)
        write_json_atomic(plan.tmp["stats"], doc)
        plan.commit()
    except BaseException:
        sink.abort()
        plan.cleanup()
        raise
    return _scene_result(str(path), setup, info, plan, options, doc, t_start, tiles_wall)


def _scene_result(path: str, setup: SceneSetup, info: ModelInfo, plan: OutputPlan, options: ClassifyOptions,
                  doc: dict, t_start: float, tiles_wall: float) -> SceneResult:
    """The finished scene's result, after its STAC item (if any) is written."""
    item = _write_item(setup, info, plan, t_start, provider_name(options.provider))
    grid = setup.grid
    n_unique = grid.n_patches[0] * grid.n_patches[1]
    outputs = {k: v for k, v in plan.final.items() if os.path.exists(v)}
    if item:
        outputs["item"] = item
    return SceneResult(
        path=path, name=setup.scene.name, status="done",
        outputs=outputs,
        stats=doc, seconds=time.perf_counter() - t_start, n_patches=n_unique,
        patches_per_s=n_unique / tiles_wall if tiles_wall > 0 else 0.0,
    )


def _output_plan(setup: SceneSetup, outdir: str, options: ClassifyOptions) -> OutputPlan:
    """The scene's output files, checked against ``--overwrite``, with the
    leftovers of an interrupted run removed."""
    scene = setup.scene
    plan = OutputPlan.make(outdir, scene.name, products_of(options))
    plan.check(options.overwrite)
    for f in plan.remove_stale():
        log.info("%s: removed %s left by an interrupted run", scene.path, f)
    return plan


def _stream_blocks(runner: Runner, setup: SceneSetup, blocks: list[Block], info: ModelInfo,
                   options: ClassifyOptions, sink: SceneSink, n_computed: int) -> float:
    """Classify ``blocks`` on ``runner`` into ``sink`` with a progress bar;
    returns the wall-clock seconds (also recorded as ``tiles_wall``)."""
    t_tiles = time.perf_counter()
    with progress_bar(n_computed, setup.scene.name, "patch", options.progress) as bar:
        for r in runner.stream(classify_block, setup.jobs(blocks, info, runner, options, sink.thumb_k)):
            sink.consume(r)
            bar.update(r.n_patches)
    tiles_wall = time.perf_counter() - t_tiles
    sink.timings.add("tiles_wall", tiles_wall)
    return tiles_wall


QUICKLOOK_SIDE = 1024
TRIM_EVERY = 16  # blocks between malloc_trim calls of the writer


def _preload(module: str) -> None:
    """Import ``module`` in a background thread (geopandas and pandas take
    ~0.4 s of CPU to import: paid while the tiles are classified, when the
    worker threads mostly run without the GIL, rather than on the scene's
    serial tail).  Python's import lock makes a later import wait for it."""
    import sys
    import threading

    if module not in sys.modules:
        threading.Thread(target=__import__, args=(module,), name=f"geoseg-import-{module}", daemon=True).start()


def _quicklook(path: str, canvas: np.ndarray, canvas_ok: np.ndarray, classes: np.ndarray, c: ModelContract,
               title: str) -> float:
    """Write the quicklook PNG; returns the seconds it took."""
    t0 = time.perf_counter()
    step = max(1, int(np.ceil(max(canvas.shape[1:]) / QUICKLOOK_SIDE)))
    bg = stretch_to_uint8(canvas[:, ::step, ::step], canvas_ok[::step, ::step])
    if bg.shape[0] < 3:
        bg = np.repeat(bg[:1], 3, axis=0)
    write_quicklook(path, bg, canvas_ok[::step, ::step], classes, c, title)
    return time.perf_counter() - t0


def _thumb_k(n_cells: tuple[int, int], stride: int) -> int:
    """Quicklook pixels per cell side: the largest divisor of the stride (in
    the pixels the model sees) that keeps the quicklook within about
    QUICKLOOK_SIDE pixels (at least 1)."""
    n = max(n_cells)
    k = 1
    for d in range(1, stride + 1):
        if stride % d == 0 and n * d <= QUICKLOOK_SIDE:
            k = d
    return k


def _iso_time(when: datetime | None) -> str:
    """A timestamp as the GeoPackage stores it, ISO 8601 to whole seconds
    (the source's mtime or Last-Modified, else the epoch: reproducible)."""
    ts = (when or datetime(1970, 1, 1, tzinfo=timezone.utc)).astimezone(timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _write_item(setup: SceneSetup, model: ModelInfo, plan: OutputPlan, t_start: float,
                provider: str | None = None) -> str | None:
    """Write ``NAME_item.json`` (STAC) beside the committed outputs; its
    datetime is the STAC input's, else the source's time, else the run's."""
    from .stac import scene_item

    when = setup.item_time or setup.source_time
    if when is None or when.timestamp() == 0:
        when = datetime.now(timezone.utc).replace(microsecond=0)
    final = {k: v for k, v in plan.final.items() if os.path.exists(v)}
    path = os.path.join(plan.outdir, f"{setup.scene.name}_item.json")
    try:
        doc = scene_item(setup.scene.name, setup.scene, setup.grid, final, model.contract, when,
                         display_path(setup.source or setup.scene.path), provider=provider,
                         reflectance=_reflectance_doc(setup))
        write_json_atomic(path, doc)
    except OSError as exc:
        log.warning("%s: cannot write the STAC item (%s)", path, exc)
        return None
    return path


def _warn_resolution(scene: SceneInfo, c: ModelContract, ground: float | None) -> None:
    """A ResolutionWarning when the scene's ground pixel size (``ground``,
    :func:`geoseg.geometry.ground_pixel_size_m`) is over 3x from the model's."""
    if not c.training_resolution_m or ground is None:
        return
    ratio = ground / c.training_resolution_m
    if ratio > 3 or ratio < 1 / 3:
        warnings.warn(
            f"{scene.path}: pixel size {ground:.3g} m, the model was trained at {c.training_resolution_m:.3g} m; "
            "results may be poor (classify with --resample auto, or resample the scene closer to it)",
            ResolutionWarning, stacklevel=3,
        )


__all__ = [
    "ClassifyOptions", "ResampleMode", "SceneResult", "SceneStatus", "SceneSetup", "SceneSink", "classify_scene", "classify_block",
    "prepare_scene", "BlockJob", "BlockResult", "GeosegError",
]
