"""The event-loop lag the server reports (what a cached tile waits for under load)."""

from __future__ import annotations

import asyncio
import time

from geoseg.serve.looplag import LoopLag


def test_no_samples_reads_zero():
    assert LoopLag().summary() == {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "samples": 0}


def test_a_blocked_loop_shows_as_lag():
    async def main() -> dict:
        lag = LoopLag(every=0.005)
        lag.start()
        await asyncio.sleep(0.03)
        time.sleep(0.12)  # the loop is blocked: the next wake-up is about 120 ms late
        await asyncio.sleep(0.03)
        lag.stop()
        return lag.summary()

    s = asyncio.run(main())
    assert s["samples"] >= 3
    assert s["max_ms"] >= 100
    assert s["p50_ms"] < s["max_ms"]
