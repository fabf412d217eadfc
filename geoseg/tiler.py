"""The scene pipeline: plan blocks, classify them in Dask tasks, and write the
results through a single writer.

One task per block of patches: it receives plain data (:class:`BlockJob`:
the scene's path, the block's windows, the model's path), opens the file
itself, runs the worker's cached onnxruntime session over the block's
patches in batches, and returns the block's cell probabilities.  The writer
(in the calling process) writes each block by window as it arrives, so memory
is bounded by the blocks in flight, not by the scene.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from . import __version__
from .contract import ModelContract, Scaling
from .errors import GeosegError, InputError
from .geometry import pixel_area_m2
from .model import ModelInfo, get_session, load_model, resolve_model_path, run_batches
from .outputs import OutputPlan, polygonize, write_aux_xml, write_json_atomic, write_polygons, write_qml, write_quicklook
from .patches import (
    block_thumbnail, cell_valid_counts, fold_to_cells, gather_patches, patch_valid_fraction, patch_views, stretch_to_uint8,
    to_model_input,
)
from .raster import (
    GridWriter, SceneInfo, check_readable, open_scene, read_classes, read_window, scaling_for, scene_percentiles,
)
from .scheduling import Runner, release_free_memory
from .windows import Block, PatchGrid, choose_block_cells, plan_blocks

log = logging.getLogger(__name__)


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

    def to_dict(self) -> dict:
        """The options that shape the results (not overwrite, progress or the
        block size, which change nothing in the outputs)."""
        d = asdict(self)
        d["scaling"] = self.scaling.to_dict() if self.scaling else None
        for k in ("progress", "overwrite", "block_px", "block_cells"):
            d.pop(k)
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
    P, S = g.patch, g.stride
    data, valid, inside = read_window(job.scene, b.read_window(g))
    t1 = time.perf_counter()
    frac = patch_valid_fraction(valid, inside, P, S)  # (npr, npc)
    todo = frac >= job.min_valid
    todo &= frac > 0
    npr, npc = frac.shape
    probs = np.zeros((npr, npc, c.n_classes), dtype=np.float32)
    t_infer = 0.0
    if todo.any():
        # patches are gathered batch by batch from zero-copy views of the
        # window, so a task holds the window plus one batch, not every patch
        pix, pval = patch_views(data, valid, P, S)
        if valid.all():
            pval = None  # no gaps to fill: skip the per-batch validity copies
        rows, cols = np.nonzero(todo)
        sess = get_session(job.model_path, job.model_sha, job.ort_threads)
        out = np.empty((len(rows), c.n_classes), np.float32)
        bs = job.batch_size
        for i in range(0, len(rows), bs):
            raw, v = gather_patches(pix, pval, rows[i : i + bs], cols[i : i + bs])
            x = to_model_input(raw, v, job.scaling, c.input_range, job.stats, c.input_layout, c.input_dtype)
            ti = time.perf_counter()
            out[i : i + bs] = run_batches(sess, c.input_name, x, bs)
            t_infer += time.perf_counter() - ti
        probs[rows, cols] = out
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
        thumb, thumb_valid = block_thumbnail(data[(slice(0, 3),) + sl], valid[sl], S, job.thumb_k)
    return BlockResult(
        index=b.index, block=b, classes=classes, probs=mean,
        valid_px=np.where(cell_ok, vcount, 0).astype(np.int64),
        n_patches=int(npr * npc), n_classified=int(todo.sum()),
        t_read=t1 - t0, t_infer=t_infer, t_total=time.perf_counter() - t0,
        thumb=thumb, thumb_valid=thumb_valid,
    )


@dataclass
class SceneResult:
    """What happened to one scene."""

    path: str
    name: str
    status: str  # "done", "failed", "skipped"
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


def _stats_doc(scene, grid, model: ModelInfo, options, tally: _Tally, timings, n_patches, n_computed,
               n_classified, plan) -> dict:
    c = model.contract
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
            "path": os.path.abspath(scene.path), "width": scene.width, "height": scene.height,
            "dtype": scene.dtype, "bands": list(scene.bidx), "band_choice": scene.band_choice,
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
        "patches": {"total": n_patches, "computed": n_computed, "classified": n_classified},
        "model": {
            "path": model.path, "sha256": model.sha256, "name": c.name,
            "class_names": list(c.class_names), "patch_size": c.patch_size,
        },
        "options": options.to_dict(),
        "timings_s": timings,
        "outputs": {k: os.path.basename(v) for k, v in plan.final.items()},
        "geoseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    disable = (not enabled) if enabled is not None else None  # None: only on a tty
    return tqdm(total=total, desc=desc, unit="patch", disable=disable, leave=False,
                dynamic_ncols=True, mininterval=0.5)


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
        a local threads cluster for this call.

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
    c = info.contract
    path, outdir = str(path), str(outdir)
    scene = open_scene(path, c, options.bidx, options.nodata)
    stride = options.stride or c.patch_size
    try:
        grid = PatchGrid(scene.width, scene.height, c.patch_size, stride)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    scaling = scaling_for(scene, c, options.scaling)
    check_readable(scene)
    stats = scene_percentiles(scene, scaling.low, scaling.high) if scaling.method == "percentile" else None
    _warn_resolution(scene, c)
    products = ["classes"] + (["probs"] if options.probs else []) + (["polygons"] if options.polygons else []) + ["stats"] + (["quicklook"] if options.quicklook else [])
    plan = OutputPlan.make(outdir, scene.name, tuple(products))
    plan.check(options.overwrite)
    for f in plan.remove_stale():
        log.info("%s: removed %s left by an interrupted run", scene.path, f)
    min_valid = c.min_valid_fraction if options.min_valid is None else options.min_valid
    bc = options.block_cells or choose_block_cells(grid, options.block_px, scene.tile, min_blocks=2 * runner.slots)
    blocks = plan_blocks(grid, bc)
    thumb_k = _thumb_k(grid) if options.quicklook else 0
    jobs = (
        BlockJob(scene, grid, b, info.path, info.sha256, runner.ort_threads, c, scaling, stats,
                 options.batch_size, min_valid, thumb_k)
        for b in blocks
    )
    canvas = None
    if thumb_k:
        rows, cols = grid.n_cells
        canvas = np.zeros((min(3, len(scene.bidx)), rows * thumb_k, cols * thumb_k), np.float32)
        canvas_ok = np.zeros(canvas.shape[1:], bool)
    n_total = sum(b.n_patches for b in blocks)  # computed (overlap recomputes block edges)
    n_unique = grid.n_patches[0] * grid.n_patches[1]
    writer = GridWriter(plan.tmp["classes"], plan.tmp.get("probs"), grid.n_cells,
                        grid.cell_transform(scene.transform), scene.crs_wkt, c)
    tally = _Tally(scene, grid, c.n_classes)
    t = {"read": 0.0, "infer": 0.0, "tasks": 0.0, "write": 0.0}
    n_cls = n_done = 0
    ql = None
    if options.polygons:
        _preload("geopandas")
    try:
        t_tiles = time.perf_counter()
        with _progress(n_total, scene.name, options.progress) as bar:
            for r in runner.stream(classify_block, jobs):
                tw = time.perf_counter()
                writer.write(r.block.cell_window, r.classes, r.probs)
                tally.add(r)
                if canvas is not None:
                    b = r.block
                    sl = (slice(b.row_off * thumb_k, (b.row_off + b.height) * thumb_k),
                          slice(b.col_off * thumb_k, (b.col_off + b.width) * thumb_k))
                    canvas[(slice(None),) + sl] = r.thumb
                    canvas_ok[sl] = r.thumb_valid
                t["write"] += time.perf_counter() - tw
                t["read"] += r.t_read
                t["infer"] += r.t_infer
                t["tasks"] += r.t_total
                n_cls += r.n_classified
                bar.update(r.n_patches)
                n_done += 1
                if n_done % TRIM_EVERY == 0:
                    release_free_memory()
        t["tiles_wall"] = time.perf_counter() - t_tiles
        if tally.cells.sum() == 0:
            log.warning("%s: no patch had enough valid pixels; every cell is nodata (check the "
                        "scene's mask or --nodata, or lower --min-valid)", path)
        tags = {"GEOSEG_MODEL_SHA256": info.sha256, "GEOSEG_SOURCE": os.path.basename(path),
                "GEOSEG_STRIDE": str(stride), "GEOSEG_PATCH": str(c.patch_size)}
        tf = time.perf_counter()
        writer.finish(tags)
        t["finish_rasters"] = time.perf_counter() - tf
        write_qml(plan.tmp["classes_qml"], c)
        write_aux_xml(plan.tmp["classes_aux"], c)
        if options.polygons or options.quicklook:
            classes, ctr, crs_wkt = read_classes(plan.tmp["classes"])
        if options.quicklook:
            # the quicklook (PNG encoding releases the GIL) is drawn in a thread
            # while the polygons are traced: the scene's last steps use both cores
            from concurrent.futures import ThreadPoolExecutor

            ql_pool = ThreadPoolExecutor(1, thread_name_prefix="geoseg-quicklook")
            ql = ql_pool.submit(_quicklook, plan.tmp["quicklook"], canvas, canvas_ok, classes, c, scene.name)
            ql_pool.shutdown(wait=False)
        if options.polygons:
            tp = time.perf_counter()
            gdf = polygonize(classes, ctr, crs_wkt, c, options.min_area, options.simplify)
            write_polygons(gdf, plan.tmp["polygons"], _source_time(path))
            t["polygons"] = time.perf_counter() - tp
        if ql is not None:
            t["quicklook"] = ql.result()
        t["total"] = time.perf_counter() - t_start
        doc = _stats_doc(scene, grid, info, options, tally, t, n_unique, n_total, n_cls, plan)
        write_json_atomic(plan.tmp["stats"], doc)
        plan.commit()
    except BaseException:
        if ql is not None:
            ql.exception()  # let the quicklook thread finish before its file is removed
        writer.abort()
        plan.cleanup()
        raise
    secs = time.perf_counter() - t_start
    return SceneResult(
        path=path, name=scene.name, status="done",
        outputs={k: v for k, v in plan.final.items() if os.path.exists(v)},
        stats=doc, seconds=secs, n_patches=n_unique,
        patches_per_s=n_unique / t["tiles_wall"] if t["tiles_wall"] > 0 else 0.0,
    )


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


def _thumb_k(grid: PatchGrid) -> int:
    """Quicklook pixels per cell side: the largest divisor of the stride that
    keeps the quicklook within about QUICKLOOK_SIDE pixels (at least 1)."""
    n = max(grid.n_cells)
    k = 1
    for d in range(1, grid.stride + 1):
        if grid.stride % d == 0 and n * d <= QUICKLOOK_SIDE:
            k = d
    return k


def _source_time(path: str) -> str:
    """The source's modification time, ISO 8601 (a reproducible timestamp)."""
    ts = datetime.fromtimestamp(int(os.stat(path).st_mtime), timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _warn_resolution(scene: SceneInfo, c: ModelContract) -> None:
    if not c.training_resolution_m or scene.is_geographic:
        return
    px = abs(scene.res[0])
    ratio = px / c.training_resolution_m
    if ratio > 3 or ratio < 1 / 3:
        log.warning(
            "%s: pixel size %.3g m, the model was trained at %.3g m; results may be poor "
            "(resample the scene closer to the training resolution)", scene.path, px,
            c.training_resolution_m,
        )


__all__ = ["ClassifyOptions", "SceneResult", "classify_scene", "classify_block", "BlockJob", "GeosegError"]
