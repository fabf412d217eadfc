"""A bounded pool of threads that runs work in priority order and drops work
nobody waits for any more.

The tile server puts inference and drawing here, never on the event loop,
so an answer that needs no work (a cached tile) is never queued behind one
that does.  Every :class:`Task` counts the requests waiting for it
(``claims``); a request whose client has gone releases its claims, and a task
left with none is dropped before it starts.  The queue is ordered by
priority, smaller first (the server gives a request its arrival time: first
come, first served, so no request starves; a request joining a queued task
moves it up to its own priority).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class Task:
    """One piece of work: its future, priority and the requests waiting for it."""

    __slots__ = ("fn", "args", "kwargs", "future", "priority", "claims", "state")

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], priority: float) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.future: Future[Any] = Future()
        self.priority = priority
        self.claims = 1
        self.state = "queued"  # queued, running, done, dropped


class PriorityPool:
    """``threads`` daemon threads running :class:`Task` objects, smallest priority first.

    Parameters
    ----------
    threads
        How many tasks run at once.
    name
        Prefix of the thread names.
    """

    def __init__(self, threads: int, name: str) -> None:
        self.threads = max(1, int(threads))
        self.dropped = 0  # tasks dropped before they started (nobody waited any more)
        self._heap: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(self.threads)]
        for t in self._workers:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any, priority: float = 0.0, **kwargs: Any) -> Task:
        """Queue ``fn(*args, **kwargs)`` with one claim; returns its task."""
        task = Task(fn, args, kwargs, priority)
        with self._cv:
            if self._closed:
                raise RuntimeError("the pool is closed")
            heapq.heappush(self._heap, (priority, next(self._seq), task))
            self._cv.notify()
        return task

    def claim(self, task: Task, priority: float | None = None) -> bool:
        """One more request waits for ``task`` (moved up to ``priority`` when
        that comes sooner); False when the task was dropped (submit anew)."""
        with self._cv:
            if task.state == "dropped" or task.future.cancelled():
                return False
            task.claims += 1
            if priority is not None and priority < task.priority and task.state == "queued":
                task.priority = priority
                heapq.heappush(self._heap, (priority, next(self._seq), task))  # the old entry is skipped
            return True

    def release(self, task: Task) -> bool:
        """A request no longer waits for ``task``; drops it (True) when none
        waits and it has not started."""
        with self._cv:
            task.claims -= 1
            if task.claims > 0 or task.state != "queued":
                return False
            task.state = "dropped"
            self.dropped += 1
        task.future.cancel()
        return True

    def queued(self) -> int:
        with self._cv:
            return sum(1 for _, _, t in self._heap if t.state == "queued")

    def close(self) -> None:
        """Drop every queued task and stop the threads (running tasks finish)."""
        with self._cv:
            self._closed = True
            for _, _, t in self._heap:
                if t.state == "queued":
                    t.state = "dropped"
                    t.future.cancel()
            self._heap.clear()
            self._cv.notify_all()
        for th in self._workers:
            if th is not threading.current_thread():
                th.join(timeout=30)

    def _next(self) -> Task | None:
        with self._cv:
            while True:
                while self._heap:
                    _, _, task = heapq.heappop(self._heap)
                    if task.state == "queued":
                        task.state = "running"
                        return task
                if self._closed:
                    return None
                self._cv.wait()

    def _work(self) -> None:
        while (task := self._next()) is not None:
            if not task.future.set_running_or_notify_cancel():  # cancelled from outside: nobody waits
                task.state = "dropped"
                continue
            try:
                result = task.fn(*task.args, **task.kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiters
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
            finally:
                task.state = "done"
