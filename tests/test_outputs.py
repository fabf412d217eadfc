"""Output files of a scene (geoseg.outputs): polygons, the output plan
(final and temporary names, commit, clean-up), atomic JSON."""

import json
import os

import numpy as np
import pytest
from affine import Affine

from geoseg.errors import OutputExistsError
from geoseg.outputs import OutputPlan, polygonize, write_json_atomic
from helpers import make_contract


def test_polygons_valid_and_cover_the_cells():
    """Diagonal touches, holes and islands in holes give valid MultiPolygons
    that cover exactly the classified cells."""
    import shapely
    from pyproj import CRS

    cb = (np.indices((40, 40)).sum(0) % 2).astype(np.uint8)  # checkerboard: corners only
    cb[10:20, 10:20] = 2
    cb[13:17, 13:17] = 3  # a lake in the forest
    cb[14:16, 14:16] = 2  # an island in the lake
    cb[5, 5] = 255
    tr = Affine(10, 0, 500000, 0, -10, 6000000)
    wkt = CRS("EPSG:32633").to_wkt()
    gdf = polygonize(cb, tr, wkt, make_contract(8))
    assert shapely.is_valid(gdf.geometry.values).all()
    for k, g in zip(gdf["class_index"], gdf.geometry):
        assert g.area == pytest.approx((cb == k).sum() * 100.0)
    assert dict(zip(gdf["class_index"], gdf["n_parts"]))[3] == 1


def test_output_plan_names_commit_and_cleanup(tmp_path):
    out = str(tmp_path / "o")
    plan = OutputPlan.make(out, "x.dat", ("classes", "probs", "stats"))
    names = {k: os.path.basename(p) for k, p in plan.final.items()}
    assert names == {"classes": "x.dat_classes.tif", "probs": "x.dat_probs.tif", "stats": "x.dat_stats.json",
                     "classes_qml": "x.dat_classes.qml", "classes_aux": "x.dat_classes.tif.aux.xml",
                     "probs_qml": "x.dat_probs.qml"}
    assert all(os.path.basename(t).startswith(".x.dat_") and ".tmp" in t for t in plan.tmp.values())
    plan.check(overwrite=False)
    for t in plan.tmp.values():
        with open(t, "w") as f:
            f.write("x")
    plan.commit()
    assert sorted(os.listdir(out)) == sorted(names.values())
    again = OutputPlan.make(out, "x.dat", ("classes", "probs", "stats"))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        again.check(overwrite=False)
    again.check(overwrite=True)
    with open(again.tmp["classes"], "w") as f:
        f.write("x")
    again.cleanup()
    assert sorted(os.listdir(out)) == sorted(names.values())


def test_remove_stale_only_removes_dead_runs(tmp_path):
    from geoseg.naming import tmp_name

    plan = OutputPlan.make(str(tmp_path), "s", ("classes",))
    plan.check(overwrite=False)
    dead = tmp_path / tmp_name("s", "classes", "999999999-deadbeef")  # no such process
    mine = tmp_path / tmp_name("s", "classes", f"{os.getpid()}-cafef00d")
    other = tmp_path / tmp_name("t", "classes", "999999999-deadbeef")  # another scene's
    for f in (dead, mine, other):
        f.write_text("x")
    assert plan.remove_stale() == [dead.name]
    assert mine.exists() and other.exists() and not dead.exists()


def test_write_json_atomic_numpy_values(tmp_path):
    p = tmp_path / "a.json"
    write_json_atomic(str(p), {"n": np.int64(3), "a": np.arange(3), "f": np.float32(0.5)})
    assert json.loads(p.read_text()) == {"n": 3, "a": [0, 1, 2], "f": 0.5}
    assert os.listdir(tmp_path) == ["a.json"]


def test_polygon_tracing_beside_silencing_threads():
    """rasterio's in-memory datasets (``features.shapes``) silence their
    NotGeoreferencedWarning with ``warnings.catch_warnings``; a scene thread
    leaving :func:`geoseg.errors.ignoring` at the same time restored the
    filters under it and the warning escaped (a failed scene in a two-scene
    run; pytest turns warnings into errors here).  The tracing now takes the
    same lock."""
    import threading
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    from geoseg.errors import ignoring

    failures: list[BaseException] = []
    stop = threading.Event()

    def silencer():
        while not stop.is_set():
            with ignoring(NotGeoreferencedWarning):
                warnings.warn("silenced", NotGeoreferencedWarning, stacklevel=1)

    threads = [threading.Thread(target=silencer),
               threading.Thread(target=_trace_checkerboard, args=(failures, stop))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:1]


def test_polygon_tracing_in_two_threads_at_once():
    """Two scene threads polygonizing at once: each runs rasterio's own
    ``catch_warnings`` inside :func:`geoseg.errors.ignoring`; one's restore
    dropped the other's entries and its NotGeoreferencedWarning escaped (an
    error here, a failed scene in a fresh-clone CI run of
    test_byte_identical_across_workers_and_blocks).  Exclusive blocks run one
    at a time."""
    import threading

    failures: list[BaseException] = []
    threads = [threading.Thread(target=_trace_checkerboard, args=(failures,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:1]


def _trace_checkerboard(failures: list[BaseException], stop=None) -> None:
    """Trace an 8 x 8 checkerboard 1500 times (64 parts each); collect any failure."""
    from geoseg.outputs import _shapes

    grid = (np.indices((8, 8)).sum(0) % 2).astype(np.uint8)
    tr = Affine(10.0, 0, 500000.0, 0, -10.0, 6000000.0)
    try:
        for _ in range(1500):
            assert len(list(_shapes(grid, tr))) == 64
    except BaseException as exc:  # noqa: BLE001 - collected and asserted by the caller
        failures.append(exc)
    finally:
        if stop is not None:
            stop.set()
