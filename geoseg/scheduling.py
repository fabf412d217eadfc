"""Where block tasks run: inline, on a thread pool, on a local Dask cluster
of processes or on an existing ``dask.distributed`` cluster.

A :class:`Runner` streams results back as tasks finish, keeping a bounded
number of tasks in flight so memory does not grow with the scene, and the
caller (the single writer) consumes them in completion order.  Every
parallel runner is a ``concurrent.futures`` executor (a thread pool, or
Dask's ``Client.get_executor``), so one streaming loop serves them all.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Literal

from .errors import GeosegError, GeosegWarning, InputError, first_line

if TYPE_CHECKING:
    import ctypes

    from distributed import Client, LocalCluster

log = logging.getLogger(__name__)

SCHEDULERS = ("threads", "processes", "synchronous")


def release_free_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``).

    Worker threads allocate and free a block's arrays in their own malloc
    arenas; without trimming, the resident size creeps up with the number of
    blocks (measured: +16 % from a 16k² to a 32k² scene).  A no-op where
    glibc is absent.
    """
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: ctypes.CDLL | Literal[False] | None = None


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def validate_scheduler(name: str) -> str:
    if name in SCHEDULERS or name.startswith("tcp://") or name.startswith("tls://"):
        return name
    raise ValueError(
        f"scheduler {name!r} is not threads, processes, synchronous or tcp://HOST:PORT"
    )


class Runner:
    """Runs block tasks; use as a context manager, one per run (shared by scenes).

    Parameters
    ----------
    scheduler
        ``threads`` (one process, N threads), ``processes`` (N worker
        processes), ``synchronous`` (inline, for debugging), the address of a
        running ``dask.distributed`` scheduler (``tcp://HOST:PORT``), or a
        ``distributed.Client`` the caller made (and closes).
    workers
        Worker threads or processes for local schedulers (default: the cores).
    ort_threads
        onnxruntime threads per task; default: cores // workers, so that
        workers x onnxruntime threads never exceed the cores.
    """

    def __init__(self, scheduler: str | Any = "threads", workers: int | None = None,
                 ort_threads: int | None = None) -> None:
        self._own_client = isinstance(scheduler, str)
        self.client: Client | None = None if isinstance(scheduler, str) else scheduler
        self.scheduler = validate_scheduler(scheduler) if self._own_client else "client"
        cores = available_cores()
        self.workers = 1 if self.scheduler == "synchronous" else max(1, int(workers or cores))
        self.remote = self.client is not None or "://" in self.scheduler
        if ort_threads:
            self.ort_threads = int(ort_threads)
            if not self.remote and self.ort_threads > 4 * cores:
                warnings.warn(f"--ort-threads {self.ort_threads} with {self.workers} worker(s) runs "
                              f"{self.ort_threads * self.workers} onnxruntime threads on {cores} core(s); expected "
                              f"at most {max(1, cores // self.workers)} per worker (the default): so many threads "
                              "take turns on the cores and the run is many times slower", GeosegWarning,
                              stacklevel=2)
        elif self.remote:
            self.ort_threads = 1
        else:
            self.ort_threads = max(1, cores // self.workers)
        self._cluster: LocalCluster | None = None
        self._executor: Executor | None = None

    @property
    def slots(self) -> int:
        """Tasks that can run at once."""
        if self.client is not None:
            return max(1, sum(self.client.nthreads().values()))
        return self.workers

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard of the cluster in use (None for threads and synchronous runs)."""
        return self.client.dashboard_link if self.client is not None else None

    def performance_report(self, filename: str) -> Any:
        """A context manager writing Dask's performance report of the tasks run
        inside it to ``filename`` (HTML; cluster runs only, needs ``bokeh``)."""
        if self.client is None:
            raise ValueError(f"{filename}: a performance report needs a Dask cluster (--workers N or "
                             f"--scheduler tcp://...), not the {self.scheduler} scheduler")
        from distributed import performance_report

        return _ReportOn(self.client, performance_report(filename=filename))

    @property
    def parallel(self) -> bool:
        """Tasks run beside the caller (not inline)."""
        return self._executor is not None

    def __enter__(self) -> Runner:
        if self.scheduler == "synchronous":
            return self
        if self.scheduler == "threads":
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="geoseg-block")
            log.info("thread pool of %d workers (%d onnxruntime threads each)", self.workers, self.ort_threads)
            return self
        if self.client is None:
            from distributed import Client, LocalCluster

            if self.remote:
                try:
                    self.client = Client(self.scheduler, set_as_default=False)
                except OSError as exc:
                    raise InputError(f"{self.scheduler}: cannot reach the Dask scheduler ({first_line(exc)}); "
                                     "expected a running `dask scheduler` at that address: start it, or check "
                                     "the address and port") from None
            else:  # processes
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=":0", silence_logs=logging.CRITICAL, host="127.0.0.1")
                self.client = Client(self._cluster, set_as_default=False)
        self._executor = self.client.get_executor(pure=False, retries=1)
        log.info("dask client %s (%d task slots, %d onnxruntime threads each)",
                 self.client, self.slots, self.ort_threads)
        return self

    def __exit__(self, *exc: Any) -> None:
        if isinstance(self._executor, ThreadPoolExecutor):
            self._executor.shutdown(wait=True, cancel_futures=True)
        elif self._executor is not None:  # Dask's executor: stream() already cancelled what was left
            self._executor.shutdown(wait=False)
        self._executor = None
        if self._own_client and self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` as one task (on a worker where the runner has them), waited for."""
        if self._executor is None:
            return fn(*args)
        return _arrived(self._executor.submit(self._task(fn), *args))

    def _task(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as submitted: on a Dask cluster, its geoseg errors and its
        warnings travel back to this process (:class:`_Portable`)."""
        return _Portable(fn) if self.client is not None else fn

    def stream(self, fn: Callable[[Any], Any], jobs: Iterable[Any], in_flight: int | None = None) -> Iterator[Any]:
        """Yield ``fn(job)`` for every job as tasks complete (any order).

        At most ``in_flight`` tasks are submitted ahead of the consumer, so
        memory is bounded by the tasks in flight.  The thread pool and a Dask
        cluster are both driven through ``concurrent.futures`` (Dask's
        ``Client.get_executor``), so one loop serves both.  A failed task
        re-raises its exception here; tasks lost with a Dask worker are
        recomputed (one retry).
        """
        if self._executor is None:
            for j in jobs:
                yield fn(j)
            return
        ex = self._executor
        fn = self._task(fn)
        limit = in_flight or 2 * self.slots + 2
        it = iter(jobs)
        live: set[Future] = set()
        try:
            for j in itertools.islice(it, limit):
                live.add(ex.submit(fn, j))
            while live:
                done, live = wait(live, return_when=FIRST_COMPLETED)
                for fut in done:
                    res = _arrived(fut)
                    nxt = next(it, _END)
                    if nxt is not _END:
                        live.add(ex.submit(fn, nxt))
                    yield res
        finally:
            for fut in live:
                fut.cancel()


_END = object()


class _Portable:
    """A task function for a Dask cluster whose geoseg errors and warnings
    reach the client as they were raised.

    Errors: a geoseg error raised while handling a library's (a failed
    rasterio read) carries that exception as its context; Dask pickles the
    whole chain, rasterio's CPLE errors cannot be unpickled, and Dask then
    sends ``Exception("InputError('...')")`` instead: the one-line error
    became "unexpected Exception: InputError(...)".  Here the chain is
    dropped (the message already says what the library said).

    Warnings: a worker process printed its task's warnings itself, raw
    (``file.py:762: ScalingWarning: ...`` and the source line), past the
    command's one-line printer and ``-q``.  Here they are collected (per
    thread: a worker may run tasks in threads) and sent back with the result
    or the error, and :func:`_arrived` issues them again in the client."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        _collect_warnings()
        caught: list[tuple[type[Warning], str]] = []
        _caught.list = caught
        try:
            return _Reply(self.fn(*args), caught)
        except GeosegError as exc:
            err = exc
        finally:
            _caught.list = None
        err.__cause__ = err.__context__ = None
        err.task_warnings = caught  # type: ignore[attr-defined]
        raise err.with_traceback(None)  # outside the handler: no new context


class _Reply:
    """A task's result with the warnings its function raised."""

    def __init__(self, value: Any, caught: list[tuple[type[Warning], str]]) -> None:
        self.value, self.caught = value, caught


def _arrived(fut: Future) -> Any:
    """A finished task's result, its warnings issued here first (see :class:`_Portable`)."""
    try:
        res = fut.result()
    except GeosegError as exc:
        _warn_again(getattr(exc, "task_warnings", ()))
        raise
    if isinstance(res, _Reply):
        _warn_again(res.caught)
        return res.value
    return res


def _warn_again(caught: Iterable[tuple[type[Warning], str]]) -> None:
    for category, message in caught:
        warnings.warn(message, category, stacklevel=3)


_caught = threading.local()


def _collect_warnings() -> None:
    """Hook this process's ``warnings.showwarning`` (unless hooked): a
    warning shown while a :class:`_Portable` task runs in this thread joins
    its list; others go to the showwarning that was there."""
    inner = warnings.showwarning
    if getattr(inner, "geoseg_collects", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings API
        buf = getattr(_caught, "list", None)
        if buf is None:
            return inner(message, category, filename, lineno, file, line)
        buf.append((category, str(message)))
        return None

    show.geoseg_collects = True  # type: ignore[attr-defined]
    warnings.showwarning = show


class _ReportOn:
    """``distributed.performance_report`` on a given client: the report finds
    its client through ``get_client()``, and a runner's client is not the
    default one (``set_as_default=False``), so it is made current meanwhile."""

    def __init__(self, client: Any, report: Any) -> None:
        self.client, self.report = client, report
        self._cm: Any = None

    def __enter__(self) -> Any:
        self._cm = self.client.as_current()
        self._cm.__enter__()
        try:
            return self.report.__enter__()
        except BaseException:
            self._cm.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self.report.__exit__(*exc)
        finally:
            self._cm.__exit__(None, None, None)


PROGRESS_JSON = False  # set by `geoseg classify --progress-json`: progress as JSON lines on stderr


class JsonProgress:
    """Progress for tools (the QGIS plugin): one JSON line on stderr per
    update, at most every 0.2 s, and at the start and the end, e.g.
    ``{"progress": {"desc": "scene", "unit": "patch", "n": 120, "total": 480}}``."""

    def __init__(self, total: int, desc: str, unit: str, every: float = 0.2) -> None:
        self.total, self.desc, self.unit, self.every = int(total), desc, unit, every
        self.n, self._last = 0, 0.0

    def _emit(self) -> None:
        import json
        import sys
        import time

        self._last = time.monotonic()
        sys.stderr.write(json.dumps({"progress": {"desc": self.desc, "unit": self.unit, "n": self.n,
                                                  "total": self.total}}) + "\n")
        sys.stderr.flush()

    def __enter__(self) -> JsonProgress:
        self._emit()
        return self

    def update(self, n: int = 1) -> None:
        import time

        self.n += int(n)
        if time.monotonic() - self._last >= self.every:
            self._emit()

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._emit()


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None = None, leave: bool = False):
    """A tqdm bar; ``enabled=None`` shows it only on a terminal (not in the
    logs of cron jobs or pipes), ``False`` never, ``True`` always.  With
    :data:`PROGRESS_JSON` and not ``False``: a :class:`JsonProgress`."""
    if PROGRESS_JSON and enabled is not False:
        return JsonProgress(total, desc, unit)
    from tqdm.auto import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=leave, dynamic_ncols=True,
                mininterval=0.5)
