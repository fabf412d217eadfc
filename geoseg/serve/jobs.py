"""Whole-scene jobs: ``geoseg classify`` of one served scene into a job
folder, one job at a time, with progress and cancellation.

A job runs :func:`geoseg.pipeline.classify_scene` with a :class:`JobRunner`,
a :class:`~geoseg.scheduling.Runner` whose result stream counts the patches
done and raises :class:`JobCancelled` when the job is cancelled.
``classify_scene`` writes under temporary names and removes them on any
exception, so a cancelled or failed job leaves no half-written output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import GeosegError
from ..model import ModelInfo
from ..scheduling import Runner
from .errors import JobStateError, NotFoundError
from .scenes import ServedScene, ServeOptions

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
OUTPUT_KINDS = ("classes", "probs", "polygons", "stats", "quicklook")


RECORDED = ("id", "scene", "scene_name", "folder", "status", "done", "total", "error", "outputs", "created",
            "started", "finished", "version")
JOB_ID = re.compile(r"[0-9a-f]{12}")


class JobCancelled(GeosegError):
    """Raised inside a job's result stream when the job is cancelled."""


class CancelFlag:
    """Set when a job is cancelled: its event (this process) or its cancel
    file (another process of the same server, ``--workers N``)."""

    def __init__(self, event: threading.Event, path: str | None = None) -> None:
        self.event, self.path = event, path

    def is_set(self) -> bool:
        return self.event.is_set() or (self.path is not None and os.path.exists(self.path))


class JobRunner(Runner):
    """A :class:`~geoseg.scheduling.Runner` that reports progress and can be cancelled.

    Parameters
    ----------
    on_total, on_done
        Called with the total patches of the scene (once) and with the
        patches of each finished block.
    cancelled
        Checked before the first block and after every block; when set, the
        stream raises :class:`JobCancelled`.
    """

    def __init__(self, on_total: Callable[[int], None], on_done: Callable[[int], None],
                 cancelled: threading.Event | CancelFlag, **kw: Any) -> None:
        super().__init__(**kw)
        self._on_total, self._on_done, self._cancelled = on_total, on_done, cancelled

    def stream(self, fn: Callable[[Any], Any], jobs: Iterable[Any], in_flight: int | None = None) -> Iterator[Any]:
        jobs = list(jobs)  # plain BlockJobs: cheap to hold, and their count is the total
        self._on_total(sum(j.block.n_patches for j in jobs))
        if self._cancelled.is_set():
            raise JobCancelled("job cancelled")
        for r in super().stream(fn, jobs, in_flight):
            if self._cancelled.is_set():
                raise JobCancelled("job cancelled")
            self._on_done(r.n_patches)
            yield r
        if self._cancelled.is_set():
            raise JobCancelled("job cancelled")


@dataclass
class Job:
    id: str
    scene: str  # scene id
    scene_name: str
    folder: str
    status: str = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    version: int = 0  # bumped on every change (server-sent events wait on it)

    def state(self) -> dict[str, Any]:
        """The fields another process needs to answer for this job."""
        return {k: getattr(self, k) for k in RECORDED}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "scene": self.scene, "scene_name": self.scene_name, "status": self.status,
            "done": self.done, "total": self.total,
            "progress": (self.done / self.total) if self.total else (1.0 if self.status == "done" else 0.0),
            "error": self.error, "outputs": sorted(self.outputs), "created": self.created,
            "started": self.started, "finished": self.finished,
            "seconds": (self.finished or time.time()) - self.started if self.started else None,
        }


class JobManager:
    """Queues jobs and runs them one at a time on a background thread.

    Parameters
    ----------
    root
        Folder of the job folders (``ROOT/JOB_ID/``).
    model
        The loaded model (:class:`~geoseg.model.ModelInfo`).
    options
        The server's :class:`ServeOptions` (the same results as the tiles).
    workers
        Block threads of a job (default: the cores).
    polygons
        Whether jobs write polygons.
    on_done
        Called with the scene and the outputs of every job that is done (the
        server feeds the job's class raster to its tile cache).
    shared_dir
        Where the processes of one server (``--workers N``) record their jobs
        (``JOB_ID.json``) and cancel them (``JOB_ID.cancel``): a job started
        by one process is answered and cancelled by any.
    """

    def __init__(self, root: str, model: ModelInfo, options: ServeOptions, workers: int | None = None,
                 polygons: bool = True, on_done: Callable[[ServedScene, dict[str, str]], None] | None = None,
                 shared_dir: str | None = None) -> None:
        self.root = root
        self.on_done = on_done
        self.shared_dir = shared_dir
        if shared_dir:
            os.makedirs(shared_dir, exist_ok=True)
        self.model, self.options, self.workers, self.polygons = model, options, workers, polygons
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="geoseg-serve-job")
        os.makedirs(root, exist_ok=True)

    def submit(self, scene: ServedScene) -> Job:
        jid = uuid.uuid4().hex[:12]
        job = Job(id=jid, scene=scene.id, scene_name=scene.name, folder=os.path.join(self.root, jid))
        with self._lock:
            self.jobs[jid] = job
        self._record(job)
        self._pool.submit(self._run, job, scene)
        return job

    def get(self, jid: str) -> Job:
        job = self.jobs.get(jid) or self._remote(jid)
        if job is None:
            raise NotFoundError(f"job {jid!r}: no such job")
        return job

    def all(self) -> list[Job]:
        """Every job of the server (of every process), oldest first."""
        jobs = dict(self.jobs)
        if self.shared_dir:
            for name in os.listdir(self.shared_dir):
                if name.endswith(".json") and name[:-5] not in jobs and (j := self._remote(name[:-5])):
                    jobs[j.id] = j
        return sorted(jobs.values(), key=lambda j: j.created)

    def cancel(self, jid: str) -> Job:
        job = self.get(jid)
        if jid not in self.jobs:  # another process runs it: it sees the cancel file after its next block
            with open(self._cancel_path(jid), "w"):  # type: ignore[arg-type]  # remote jobs need a shared_dir
                pass
            return job
        job.cancel_event.set()
        if job.status == "queued":
            self._update(job, status="cancelled", finished=time.time())
        return job

    def _cancel_path(self, jid: str) -> str | None:
        return os.path.join(self.shared_dir, f"{jid}.cancel") if self.shared_dir else None

    def _record(self, job: Job) -> None:
        if self.shared_dir:
            from ..outputs import write_json_atomic

            write_json_atomic(os.path.join(self.shared_dir, f"{job.id}.json"), job.state())

    def _remote(self, jid: str) -> Job | None:
        """A job another process of this server records (a snapshot), or None."""
        if not self.shared_dir or not JOB_ID.fullmatch(jid):
            return None
        try:
            with open(os.path.join(self.shared_dir, f"{jid}.json"), encoding="utf-8") as f:
                d = json.load(f)
            return Job(**{k: d[k] for k in RECORDED})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def output(self, jid: str, kind: str) -> str:
        job = self.get(jid)
        if kind not in OUTPUT_KINDS:
            raise NotFoundError(f"output {kind!r}: unknown; expected one of {', '.join(OUTPUT_KINDS)}")
        if job.status != "done":
            raise JobStateError(f"job {jid}: is {job.status}; outputs are there when it is done")
        p = job.outputs.get(kind)
        if not p or not os.path.isfile(p):
            raise NotFoundError(f"job {jid}: has no {kind} output")
        return p

    def wait_change(self, job: Job, version: int, timeout: float) -> int:
        """Block until ``job.version`` differs from ``version`` (or ``timeout``); returns the version."""
        with self._changed:
            self._changed.wait_for(lambda: job.version != version, timeout=timeout)
            return job.version

    def close(self) -> None:
        for j in list(self.jobs.values()):
            j.cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _update(self, job: Job, **kw: Any) -> None:
        with self._changed:
            for k, v in kw.items():
                setattr(job, k, v)
            job.version += 1
            self._changed.notify_all()
        self._record(job)

    def _add_done(self, job: Job, n: int) -> None:
        self._update(job, done=job.done + n)

    def _run(self, job: Job, scene: ServedScene) -> None:
        from ..pipeline import classify_scene
        from .scenes import classify_options

        flag = CancelFlag(job.cancel_event, self._cancel_path(job.id))
        if flag.is_set():
            if job.status != "cancelled":
                self._update(job, status="cancelled", finished=time.time())
            return
        os.makedirs(job.folder, exist_ok=True)
        self._update(job, status="running", started=time.time())
        opts = classify_options(self.options, self.polygons)
        try:
            runner = JobRunner(lambda n: self._update(job, total=n), lambda n: self._add_done(job, n),
                               flag, scheduler="threads", workers=self.workers)
            with runner:
                res = classify_scene(scene.path, job.folder, self.model, opts, runner)
        except JobCancelled:
            self._update(job, status="cancelled", finished=time.time())
            log.info("job %s cancelled", job.id)
        except GeosegError as exc:
            self._update(job, status="failed", error=str(exc).splitlines()[0], finished=time.time())
        except Exception as exc:  # noqa: BLE001 - a job must report, not kill the server
            log.exception("job %s failed", job.id)
            self._update(job, status="failed", error=f"unexpected {type(exc).__name__}: {exc}".splitlines()[0],
                         finished=time.time())
        else:
            outs = {k: v for k, v in res.outputs.items() if k in OUTPUT_KINDS}
            if self.on_done is not None:
                try:
                    self.on_done(scene, outs)
                except Exception:  # noqa: BLE001 - the job is done; the cache is a bonus
                    log.exception("job %s: its outputs could not feed the tile cache", job.id)
            self._update(job, status="done", outputs=outs, done=job.total, finished=time.time())
