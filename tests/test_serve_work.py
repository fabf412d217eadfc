"""geoseg.serve.work: the bounded priority pool of the tile server."""

from __future__ import annotations

import threading

import pytest

from geoseg.serve.work import PriorityPool


@pytest.fixture
def pool():
    p = PriorityPool(1, "test-pool")
    yield p
    p.close()


def blocker(pool):
    """Occupy the pool's one thread until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(30)
        return "held"

    task = pool.submit(hold, priority=-1)
    assert started.wait(30)
    return task, release


def test_runs_in_priority_order(pool):
    held, release = blocker(pool)
    order = []
    tasks = [pool.submit(order.append, p, priority=p) for p in (3, 1, 2)]
    release.set()
    for t in tasks:
        t.future.result(30)
    assert held.future.result(30) == "held"
    assert order == [1, 2, 3]


def test_claim_moves_a_queued_task_up(pool):
    held, release = blocker(pool)
    order = []
    a = pool.submit(order.append, "a", priority=1)
    b = pool.submit(order.append, "b", priority=2)
    assert pool.claim(b, priority=0)
    release.set()
    a.future.result(30)
    b.future.result(30)
    assert order == ["b", "a"]


def test_release_drops_a_task_nobody_waits_for(pool):
    held, release = blocker(pool)
    ran = []
    t = pool.submit(ran.append, 1, priority=1)
    assert pool.claim(t)  # two requests wait for it
    assert not pool.release(t)  # one is left
    assert pool.release(t)  # none: dropped
    assert t.future.cancelled() and pool.dropped == 1
    assert not pool.claim(t)  # a later request must submit anew
    after = pool.submit(ran.append, 2, priority=2)
    release.set()
    after.future.result(30)
    assert ran == [2]


def test_release_never_drops_running_work(pool):
    held, release = blocker(pool)
    assert not pool.release(held)
    release.set()
    assert held.future.result(30) == "held" and pool.dropped == 0


def test_errors_reach_the_waiter(pool):
    def boom():
        raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        pool.submit(boom).future.result(30)


def test_close_drops_queued_work():
    pool = PriorityPool(1, "test-close")
    held, release = blocker(pool)
    queued = pool.submit(lambda: None, priority=1)
    threading.Timer(0.2, release.set).start()
    pool.close()
    assert queued.future.cancelled() and held.future.result(30) == "held"
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: None)
