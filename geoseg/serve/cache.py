"""Caches of the tile server: computed cell blocks in memory (LRU, bounded by
bytes) and on disk (one ``.npz`` per block), and rendered PNG tiles in memory.

A block's disk key holds everything its values depend on: the scene's
identity (real path, size, modification time), the model's SHA-256, the
options that shape the results and the block size, so a changed file, model
or option never reads a stale block.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import numpy as np

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no record locks; writes stay atomic
    fcntl = None


@dataclass(frozen=True)
class CellBlock:
    """The classes and probabilities of one aligned block of the class grid."""

    classes: np.ndarray  # (h, w) uint8, 255 = nodata
    probs: np.ndarray  # (n_class, h, w) float32, NaN = nodata

    @property
    def nbytes(self) -> int:
        return int(self.classes.nbytes + self.probs.nbytes)

    def confidence(self) -> np.ndarray:
        """(h, w) float32 top-class probability, NaN = nodata (computed once)."""
        conf = self.__dict__.get("_confidence")
        if conf is None:
            with np.errstate(invalid="ignore"):
                top = np.nanmax(np.where(np.isnan(self.probs), -np.inf, self.probs), axis=0)
            conf = np.where(np.isfinite(top), top, np.nan).astype(np.float32)
            object.__setattr__(self, "_confidence", conf)
        return conf


def scene_cache_key(path: str, model_sha: str, options: dict, block_cells: int) -> str:
    """Hex key of a scene's blocks: real path, size and mtime of the file, the
    model hash, the result-shaping options and the block size."""
    real = os.path.realpath(path)
    st = os.stat(real)
    doc = {"path": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "model": model_sha,
           "options": options, "block_cells": block_cells}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


class LRU:
    """A thread-safe least-recently-used map bounded by the summed ``size`` of its values."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._d: OrderedDict = OrderedDict()
        self._size: dict = {}
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key, value, size: int) -> None:
        with self._lock:
            if key in self._d:
                self._total -= self._size.pop(key)
                del self._d[key]
            self._d[key] = value
            self._size[key] = size
            self._total += size
            while self._total > self.max_bytes and len(self._d) > 1:
                k, _ = self._d.popitem(last=False)
                self._total -= self._size.pop(k)

    def __len__(self) -> int:
        return len(self._d)

    @property
    def nbytes(self) -> int:
        return self._total

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._size.clear()
            self._total = 0


class DiskCache:
    """Blocks as ``ROOT/SCENE_KEY/ROW_COL.npz``, written atomically (temporary
    name, then rename); an unreadable file counts as a miss.

    Several server processes may share the folder (``geoseg serve --workers
    N``): :meth:`lock` holds an exclusive lock on one byte (the block's index)
    of ``ROOT/SCENE_KEY/.lock`` (POSIX record locks, where the system has
    them), so a block is computed by one process while the others wait and
    then read it.  A process keeps one descriptor per lock file open until
    :meth:`close`: closing any descriptor of a file drops the process's locks
    on it.
    """

    def __init__(self, root: str | None) -> None:
        self.root = root
        self._fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()

    @staticmethod
    def _path(root: str, scene_key: str, br: int, bc: int) -> str:
        return os.path.join(root, scene_key, f"{br}_{bc}.npz")

    def exists(self, scene_key: str, br: int, bc: int) -> bool:
        return bool(self.root) and os.path.isfile(self._path(str(self.root), scene_key, br, bc))

    def load(self, scene_key: str, br: int, bc: int) -> CellBlock | None:
        if not self.root:
            return None
        p = self._path(self.root, scene_key, br, bc)
        try:
            with np.load(p) as z:
                return CellBlock(z["classes"], z["probs"])
        except (OSError, KeyError, ValueError):
            return None

    def save(self, scene_key: str, br: int, bc: int, block: CellBlock) -> None:
        if not self.root:
            return
        p = self._path(self.root, scene_key, br, bc)
        tmp = f"{p}.{uuid.uuid4().hex[:8]}.tmp.npz"
        try:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            np.savez(tmp, classes=block.classes, probs=block.probs)
            os.replace(tmp, p)
        except OSError:
            try:
                os.remove(tmp)
            except OSError:
                pass

    def _fd(self, scene_key: str) -> int | None:
        if not self.root or fcntl is None:
            return None
        with self._fd_lock:
            fd = self._fds.get(scene_key)
            if fd is None:
                folder = os.path.join(self.root, scene_key)
                try:
                    os.makedirs(folder, exist_ok=True)
                    fd = self._fds[scene_key] = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
                except OSError:
                    return None
            return fd

    @contextmanager
    def lock(self, scene_key: str, index: int) -> Iterator[None]:
        """Hold block ``index`` of a scene against other processes (no-op without a disk cache or POSIX locks)."""
        fd = self._fd(scene_key)
        if fd is None or fcntl is None:
            yield
            return
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, index)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, index)

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._fds.clear()
