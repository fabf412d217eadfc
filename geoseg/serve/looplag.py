"""How late the server's event loop runs: a cached tile is answered on the
loop, so its latency under load is the loop's lag plus a fraction of a
millisecond.  Reported by ``/api/health`` (and read by ``bench/serve_load.py``)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np


class LoopLag:
    """Samples how late a ``every``-second sleep of the event loop wakes up
    (the last ``keep`` samples)."""

    def __init__(self, every: float = 0.02, keep: int = 6000) -> None:
        self.every = every
        self.samples: deque[float] = deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.every)
            self.samples.append(max(0.0, time.perf_counter() - t - self.every) * 1000)

    def summary(self) -> dict[str, float]:
        """p50, p99 and max lag in ms over the samples kept (zeros before the first)."""
        if not self.samples:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "samples": 0}
        v = np.fromiter(self.samples, float)
        return {"p50_ms": round(float(np.percentile(v, 50)), 2), "p99_ms": round(float(np.percentile(v, 99)), 2),
                "max_ms": round(float(v.max()), 2), "samples": int(v.size)}
