"""On-demand prediction: aligned blocks of a scene's class grid, computed with
the same task function as ``geoseg classify`` and cached.

A tile (or a click) asks for the blocks under it.  A block already in memory
is returned at once; one on disk is loaded; one being computed for another
request is waited for (one future per block: concurrent requests never
compute a block twice); the rest are computed on a small thread pool by
:func:`geoseg.pipeline.classify_block` on the scene's own patch grid, so every
cell is byte-identical to the batch class raster.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..model import ModelInfo
from ..scheduling import available_cores
from .cache import CellBlock, DiskCache, LRU

if TYPE_CHECKING:
    from types import ModuleType

    from .scenes import ServedScene

log = logging.getLogger(__name__)

BlockKey = tuple[int, int]  # (block row, block col) in blocks of the class grid


@dataclass
class Counters:
    """What the engine did since it started (for /api/health and the tests)."""

    memory_hits: int = 0
    disk_hits: int = 0
    computed: int = 0
    joined: int = 0  # requests that waited for a block another request was computing
    patches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("memory_hits", "disk_hits", "computed", "joined", "patches")}


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
        self._inflight: dict[tuple[str, int, int], Future[CellBlock]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="geoseg-serve-block")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

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

    def get(self, scene: ServedScene, keys: list[BlockKey], timeout: float | None = None) -> dict[BlockKey, CellBlock]:
        """The blocks of ``keys``, computing those not cached (on the pool)."""
        out: dict[BlockKey, CellBlock] = {}
        waiting: dict[BlockKey, Future[CellBlock]] = {}
        n_mem = n_join = 0
        with self._lock:
            for br, bc in keys:
                k = (scene.cache_key, br, bc)
                b = self.mem.get(k)
                if b is not None:
                    out[(br, bc)] = b
                    n_mem += 1
                    continue
                fut = self._inflight.get(k)
                if fut is not None:
                    n_join += 1
                else:
                    fut = self._inflight[k] = self._pool.submit(self._load_or_compute, scene, br, bc)
                waiting[(br, bc)] = fut
        self.counters.add(memory_hits=n_mem, joined=n_join)
        if waiting:
            wait_futures(list(waiting.values()), timeout=timeout)
            for key, fut in waiting.items():
                out[key] = fut.result(timeout=0)  # re-raises a failed block's error
        return out

    def _load_or_compute(self, scene: ServedScene, br: int, bc: int) -> CellBlock:
        k = (scene.cache_key, br, bc)
        try:
            b = self.disk.load(scene.cache_key, br, bc)
            if b is not None:
                self.counters.add(disk_hits=1)
            else:
                b, n = compute_block(scene, br, bc, self.model, self.ort_threads)
                self.counters.add(computed=1, patches=n)
                self.disk.save(scene.cache_key, br, bc, b)
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
    percentiles, batch size and validity rule); returns it and its patches."""
    from ..pipeline import BlockJob, classify_block

    block = scene.block(br, bc)
    job = BlockJob(scene.info, scene.grid, block, model.path, model.sha256, ort_threads, model.contract,
                 scene.scaling, scene.stats, scene.batch_size, scene.min_valid, 0)
    r = classify_block(job)
    return CellBlock(r.classes, r.probs), r.n_patches
