"""Running tasks (geoseg.scheduling): schedulers, the streaming loop, the progress bar."""

import threading
import time
import warnings
from pathlib import Path

import pytest

from geoseg.scheduling import Runner, available_cores, progress_bar, validate_scheduler


def test_validate_scheduler():
    for s in ("threads", "processes", "synchronous", "tcp://127.0.0.1:8786", "tls://h:1"):
        assert validate_scheduler(s) == s
    with pytest.raises(ValueError, match="is not threads, processes, synchronous or tcp://HOST:PORT"):
        validate_scheduler("gpu")


def test_unreachable_scheduler_is_one_clear_error():
    import dask

    from geoseg.errors import InputError

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(
            InputError, match=r"tcp://127.0.0.1:1: cannot reach the Dask scheduler .*start it"):
        with Runner("tcp://127.0.0.1:1"):
            pass


def test_workers_and_onnxruntime_threads():
    cores = available_cores()
    assert Runner("synchronous", 8).workers == 1
    r = Runner("threads", 1)
    assert r.workers == 1 and r.ort_threads == cores and r.slots == 1
    assert Runner("threads", 2, ort_threads=3).ort_threads == 3
    assert Runner("tcp://127.0.0.1:1").ort_threads == 1  # a remote cluster: one thread per task


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_stream_yields_every_result(scheduler):
    with Runner(scheduler, 2) as r:
        assert r.parallel == (scheduler == "threads")
        got = list(r.stream(lambda j: j * j, range(20)))
    assert sorted(got) == [j * j for j in range(20)]


def test_stream_bounds_the_tasks_in_flight():
    lock = threading.Lock()
    state = {"submitted": 0, "consumed": 0, "ahead": 0}

    def jobs():
        for j in range(30):
            with lock:
                state["submitted"] += 1
                state["ahead"] = max(state["ahead"], state["submitted"] - state["consumed"])
            yield j

    with Runner("threads", 2) as r:
        for _ in r.stream(lambda j: time.sleep(0.001) or j, jobs(), in_flight=3):
            with lock:
                state["consumed"] += 1
    assert state["consumed"] == 30 and state["ahead"] <= 4  # 3 in flight + the one being handed over


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_stream_reraises_a_failed_task(scheduler):
    def fn(j):
        if j == 5:
            raise RuntimeError("task 5 failed")
        return j

    with Runner(scheduler, 2) as r, pytest.raises(RuntimeError, match="task 5 failed"):
        list(r.stream(fn, range(10)))


def test_oversubscribed_onnxruntime_threads_warn():
    # --ort-threads 1000 on 2 cores: 64 s instead of 0.5 s for a 4-patch scene, without a word
    from geoseg.errors import GeosegWarning
    from geoseg.scheduling import available_cores

    n = 4 * available_cores() + 1
    with pytest.warns(GeosegWarning, match=rf"^--ort-threads {n} with 1 worker\(s\) runs {n} onnxruntime threads "
                                           rf"on {available_cores()} core\(s\); expected at most"):
        Runner("synchronous", ort_threads=n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Runner("synchronous", ort_threads=available_cores())  # the default's size: no warning


def test_progress_bar_enabled_flags():
    with progress_bar(3, "x", "it", enabled=False) as bar:
        assert bar.disable
        bar.update(3)
    with progress_bar(3, "x", "it", enabled=True) as bar:
        assert not bar.disable and bar.total == 3


def _read_corrupt(path):
    """A geoseg error raised while handling rasterio's (a failed pixel read), as in a block task."""
    import rasterio
    from rasterio.windows import Window

    from geoseg.raster import raise_unreadable

    with rasterio.open(path) as src:
        try:
            src.read(1, window=Window(0, 0, 16, 16))
        except rasterio.errors.RasterioError as exc:
            raise_unreadable(path, 0, 0, exc)


def test_a_geoseg_error_with_a_rasterio_context_crosses_to_a_dask_client_as_itself(tmp_path):
    # Dask pickles a task's exception with its chain (tblib); rasterio's CPLE errors cannot be unpickled, and
    # Dask then sent Exception("InputError('...')"): "unexpected Exception" instead of the one-line error
    import dask
    import numpy as np
    import tifffile
    from distributed.core import error_message
    from distributed.protocol.pickle import loads

    from geoseg.errors import InputError
    from geoseg.scheduling import _Portable
    from helpers import write_scene

    p = write_scene(tmp_path / "s.tif", np.ones((1, 32, 32), np.uint8), tiled=True, block=16)
    with tifffile.TiffFile(p) as tf:
        off, n = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    data = bytearray(Path(p).read_bytes())
    data[off:off + n] = b"\xff" * n  # the first tile is no deflate stream
    Path(p).write_bytes(bytes(data))
    for fn, portable in ((_read_corrupt, False), (_Portable(_read_corrupt), True)):
        try:
            fn(p)
        except Exception as exc:  # noqa: BLE001 - the worker side of Dask
            with dask.config.set({"distributed.admin.max-error-length": 10000}):  # an earlier test's config.set
                msg = error_message(exc)  # may have dropped distributed's defaults
        got = loads(msg["exception"].data)  # the client side
        assert (type(got) is InputError) is portable, repr(got)
    assert str(got).startswith(f"{p}: cannot read the pixels at column 0, row 0 (")


def _warns_then(x):
    from geoseg.errors import InputError, ScalingWarning

    warnings.warn(f"{x}.tif: assumed x 0.0001", ScalingWarning, stacklevel=1)
    if x == "bad":
        raise InputError(f"{x}.tif: refused")
    return x * 2


@pytest.mark.parametrize("x", ["ok", "bad"], ids=["result", "error"])
def test_a_dask_tasks_warnings_are_issued_again_in_the_client(x):
    # a worker process printed its task's warnings raw ("pipeline.py:762: ScalingWarning: ..." and the source line)
    import pickle
    from concurrent.futures import Future

    from geoseg.errors import InputError, ScalingWarning
    from geoseg.scheduling import _arrived, _Portable

    fut: Future = Future()
    with warnings.catch_warnings():  # the worker: nothing shown there
        warnings.simplefilter("always")
        try:
            fut.set_result(pickle.loads(pickle.dumps(_Portable(_warns_then)(x))))
        except InputError as exc:
            fut.set_exception(pickle.loads(pickle.dumps(exc)))
    with pytest.warns(ScalingWarning, match=rf"^{x}.tif: assumed x 0.0001$"):  # the client
        if x == "ok":
            assert _arrived(fut) == "okok"
        else:
            with pytest.raises(InputError, match="bad.tif: refused"):
                _arrived(fut)
