"""On-demand prediction: aligned blocks of a scene's class grid, computed with
the same task function as ``geoseg classify`` and cached.

A tile (or a click) asks for the blocks under it.  A block already in memory
is returned at once; one being computed for another request is joined (one
task per block: concurrent requests never compute a block twice); the rest
are queued on a bounded :class:`~geoseg.serve.work.PriorityPool` (first
come, first served), where a block is
read from the disk cache or computed by :func:`geoseg.pipeline.classify_block`
on the scene's own patch grid, so every cell is byte-identical to the batch
class raster.  A queued block no request waits for any more is dropped.
Processes sharing the disk cache compute a block once: the computing one
holds the block's lock (:meth:`DiskCache.lock`), the others wait and read
it.  A finished whole-scene job's rasters are taken in as blocks
(:meth:`BlockEngine.ingest_rasters`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..model import ModelInfo
from ..scheduling import available_cores
from .cache import LRU, CellBlock, DiskCache
from .work import PriorityPool, Task

if TYPE_CHECKING:
    from types import ModuleType

    from .scenes import ServedScene

log = logging.getLogger(__name__)

BlockKey = tuple[int, int]  # (block row, block col) in blocks of the class grid


FIELDS = ("memory_hits", "disk_hits", "computed", "joined", "patches", "dropped", "ingested")


@dataclass
class Counters:
    """What the engine did since it started (for /api/health and the tests)."""

    memory_hits: int = 0
    disk_hits: int = 0
    computed: int = 0
    joined: int = 0  # requests that waited for a block another request was computing
    patches: int = 0
    dropped: int = 0  # queued blocks dropped: no request waited for them any more
    ingested: int = 0  # blocks taken from a finished whole-scene job
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in FIELDS}


class BlockEngine:
    """Computes and caches cell blocks for every served scene.

    Parameters
    ----------
    model
        The loaded model.
    disk
        The disk cache (``DiskCache(None)``: none).
    mem_bytes
        Memory budget of the block LRU.
    workers
        Threads computing blocks (default: the cores); each runs its own
        onnxruntime session with cores // workers threads.
    """

    def __init__(self, model: ModelInfo, disk: DiskCache, mem_bytes: int = 256 << 20,
                 workers: int | None = None) -> None:
        cores = available_cores()
        self.model = model
        self.disk = disk
        self.workers = max(1, int(workers or cores))
        self.ort_threads = max(1, cores // self.workers)
        self.mem = LRU(mem_bytes)
        self.counters = Counters()
        self._inflight: dict[tuple[str, int, int], Task] = {}
        self._lock = threading.Lock()
        self.pool = PriorityPool(self.workers, "geoseg-serve-block")

    def close(self) -> None:
        self.pool.close()
        self.disk.close()

    def peek(self, scene: ServedScene, keys: list[BlockKey]) -> dict[BlockKey, CellBlock]:
        """The blocks of ``keys`` that are cached (memory, then disk); computes nothing."""
        out: dict[BlockKey, CellBlock] = {}
        for br, bc in keys:
            k = (scene.cache_key, br, bc)
            b = self.mem.get(k)
            if b is None:
                b = self.disk.load(scene.cache_key, br, bc)
                if b is not None:
                    self.mem.put(k, b, b.nbytes)
            if b is not None:
                out[(br, bc)] = b
        return out

    def request(self, scene: ServedScene, keys: list[BlockKey], priority: float = 0.0
                ) -> tuple[dict[BlockKey, CellBlock], dict[BlockKey, Task]]:
        """The blocks of ``keys`` in memory, and a task for each of the others
        (joined when another request already waits for it, else queued with
        ``priority``).  The caller waits for the tasks' futures, or hands them
        to :meth:`release` when it no longer needs them."""
        out: dict[BlockKey, CellBlock] = {}
        tasks: dict[BlockKey, Task] = {}
        n_mem = n_join = 0
        with self._lock:
            for br, bc in keys:
                k = (scene.cache_key, br, bc)
                b = self.mem.get(k)
                if b is not None:
                    out[(br, bc)] = b
                    n_mem += 1
                    continue
                task = self._inflight.get(k)
                if task is not None and self.pool.claim(task, priority):
                    n_join += 1
                else:
                    task = self._inflight[k] = self.pool.submit(self._load_or_compute, scene, br, bc,
                                                                priority=priority)
                tasks[(br, bc)] = task
        self.counters.add(memory_hits=n_mem, joined=n_join)
        return out, tasks

    def release(self, scene: ServedScene, tasks: dict[BlockKey, Task]) -> None:
        """Stop waiting for ``tasks``: a block nobody else waits for is dropped
        unless its computation has started."""
        with self._lock:
            for (br, bc), task in tasks.items():
                if self.pool.release(task):
                    k = (scene.cache_key, br, bc)
                    if self._inflight.get(k) is task:
                        del self._inflight[k]
                    self.counters.add(dropped=1)

    def get(self, scene: ServedScene, keys: list[BlockKey], timeout: float | None = None) -> dict[BlockKey, CellBlock]:
        """The blocks of ``keys``, computing those not cached (on the pool); blocks the calling thread."""
        out, tasks = self.request(scene, keys, time.monotonic())
        if tasks:
            done, not_done = wait_futures([t.future for t in tasks.values()], timeout=timeout)
            if not_done:
                self.release(scene, tasks)
            for key, task in tasks.items():
                out[key] = task.future.result(timeout=0)  # re-raises a failed block's error
        return out

    def ingest(self, scene: ServedScene, br: int, bc: int, block: CellBlock) -> bool:
        """Cache a block computed elsewhere (a whole-scene job); False when it was cached already."""
        k = (scene.cache_key, br, bc)
        if self.mem.get(k) is not None or self.disk.exists(scene.cache_key, br, bc):
            return False
        self.disk.save(scene.cache_key, br, bc, block)
        self.mem.put(k, block, block.nbytes)
        self.counters.add(ingested=1)
        return True

    def ingest_rasters(self, scene: ServedScene, classes_path: str, probs_path: str) -> int:
        """Cache the blocks of a finished whole-scene job (its class and
        probability rasters, on the scene's own cell grid) that are not cached
        yet; returns how many.  Rasters on another grid are left alone."""
        import rasterio

        with rasterio.open(classes_path) as cs, rasterio.open(probs_path) as ps:
            same = (cs.height, cs.width) == scene.grid.n_cells and ps.shape == cs.shape and \
                cs.transform.almost_equals(scene.cell_transform) and ps.count == self.model.contract.n_classes
            if not same:
                log.info("%s: not on the scene's cell grid; its blocks are not cached", classes_path)
                return 0
            n = 0
            for br in range(math.ceil(scene.grid.n_cells[0] / scene.block_cells)):
                for bc in range(scene.n_block_cols):
                    if self.mem.get((scene.cache_key, br, bc)) is not None or \
                            self.disk.exists(scene.cache_key, br, bc):
                        continue
                    w = scene.block(br, bc).cell_window
                    n += self.ingest(scene, br, bc, CellBlock(cs.read(1, window=w), ps.read(window=w)))
        return n

    def _load_or_compute(self, scene: ServedScene, br: int, bc: int) -> CellBlock:
        k = (scene.cache_key, br, bc)
        try:
            b = self.disk.load(scene.cache_key, br, bc)
            if b is None:
                # one process computes a block: the others wait here, then read it from disk
                with self.disk.lock(scene.cache_key, br * scene.n_block_cols + bc):
                    b = self.disk.load(scene.cache_key, br, bc)
                    if b is None:
                        b, n = compute_block(scene, br, bc, self.model, self.ort_threads)
                        self.counters.add(computed=1, patches=n)
                        self.disk.save(scene.cache_key, br, bc, b)
                    else:
                        self.counters.add(disk_hits=1)
            else:
                self.counters.add(disk_hits=1)
            with self._lock:
                self.mem.put(k, b, b.nbytes)
            return b
        finally:
            with self._lock:
                self._inflight.pop(k, None)


def pipeline() -> ModuleType:
    """The scene-pipeline module :mod:`geoseg.pipeline`, imported on first use
    (it loads rasterio; importing the server stays light)."""
    from .. import pipeline as mod

    return mod


def compute_block(scene: ServedScene, br: int, bc: int, model: ModelInfo, ort_threads: int) -> tuple[CellBlock, int]:
    """Classify one aligned block of ``scene``'s class grid exactly as
    ``geoseg classify`` does (same task function, patch grid, scaling,
    percentiles, reflectance rules, batch size and validity rule); returns it
    and its patches."""
    from ..pipeline import BlockJob, classify_block

    block = scene.block(br, bc)
    job = BlockJob(scene.info, scene.grid, block, model.path, model.sha256, ort_threads, model.contract,
                   scene.scaling, scene.stats, scene.batch_size, scene.min_valid, 0,
                   gdal_config=scene.gdal_config, provider=scene.provider, band_affine=scene.band_affine)
    r = classify_block(job)
    return CellBlock(r.classes, r.probs), r.n_patches
