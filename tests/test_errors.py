"""geoseg.errors: the warning helpers."""

from __future__ import annotations

import threading
import warnings

import pytest

from geoseg.errors import ignoring


class Quiet(UserWarning):
    pass


def _hammer(ctx) -> list[BaseException]:
    failures: list[BaseException] = []

    def work():
        try:
            for _ in range(3000):
                with ctx():
                    warnings.warn("silenced", Quiet, stacklevel=1)
        except Quiet as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def test_ignoring_is_safe_across_threads():
    """Four threads silencing a warning at once: none meets it (pytest turns
    warnings into errors here).  With plain ``warnings.catch_warnings`` the
    threads restore each other's filters too early (a scene thread of a
    two-scene run met a NotGeoreferencedWarning it had silenced)."""
    assert not _hammer(lambda: ignoring(Quiet))


def test_first_line_takes_the_cause_a_message_points_to():
    from geoseg.errors import first_line

    try:
        try:
            raise OSError("trunc.tif, band 1: IReadBlock failed at X offset 0\nmore")
        except OSError as cause:
            raise RuntimeError("Read failed. See previous exception for details.") from cause
    except RuntimeError as exc:
        assert first_line(exc) == "trunc.tif, band 1: IReadBlock failed at X offset 0"
    assert first_line(ValueError("")) == "ValueError"


def test_ignoring_holds_no_lock_while_its_block_runs():
    """A thread inside ``ignoring`` (e.g. opening a remote raster: network
    I/O) does not keep another thread out of its own ``ignoring`` block."""
    inside, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow():
        with ignoring(Quiet):
            inside.set()
            release.wait(10)

    def quick():
        with ignoring(Quiet):
            warnings.warn("silenced", Quiet, stacklevel=1)
        done.set()

    a = threading.Thread(target=slow)
    a.start()
    assert inside.wait(10)
    b = threading.Thread(target=quick)
    b.start()
    try:
        assert done.wait(5), "the second thread waited for the first one's block"
    finally:
        release.set()
        a.join()
        b.join()
    with pytest.raises(Quiet):  # the filter is gone again once every block is left
        warnings.warn("loud", Quiet, stacklevel=1)
