"""The scene-suite guard (issue 23): every shipped model, run on the suite's
scenes of ../shared through the real CLI, stays within 0.02 of each figure
recorded in its ``geoseg/models/NAME.suite.json`` (the figures its model
card's table shows).  Re-recording them is a deliberate change, made in the
same commit as the model (``make model-suite``).

The guard is marked ``slow`` and ``shared`` (``make test-fast`` leaves it
out) and skips where ../shared is absent: about 1 min per model on 2 cores,
plus about 1 min once to split the 4-class set for the test-split figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import model_suite  # noqa: E402  (bench/ is not a package)

TOLERANCE = model_suite.TOLERANCE
MODELS = ROOT / "geoseg" / "models"
RECORDED = sorted(p.name[: -len(".suite.json")] for p in MODELS.glob("*.suite.json"))


def test_pooled_figures_of_a_known_confusion():
    # rows: reference (cloudy, other); columns: the class map
    m = [np.array([[6, 2], [1, 11]]), np.array([[2, 0], [1, 7]])]
    got = model_suite._pooled(m, ["cloudy", "other"], ["cloudy"])
    assert got["cells"] == 30
    assert got["accuracy"] == pytest.approx(26 / 30)
    assert got["cloudy_iou"] == pytest.approx(8 / (8 + 2 + 2))
    pe = (10 * 10 + 20 * 20) / 900  # row sums 10, 20; column sums 10, 20
    assert got["kappa"] == pytest.approx((26 / 30 - pe) / (1 - pe))


def test_iou_is_undefined_where_the_reference_has_none_of_the_class():
    got = model_suite._pooled([np.array([[0, 0], [3, 7]])], ["water", "other"], ["water"])
    assert got["water_iou"] is None and got["water_model_share"] == pytest.approx(0.3)


def test_clouds_are_drawn_over_the_land_use_and_win_where_they_overlap():
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio.features import rasterize

    t = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0)
    forest = gpd.GeoDataFrame({"fclass": ["forest"], "osm_id": [1]}, geometry=[shapely.box(500000, 5799920, 500080, 5800000)],
                              crs="EPSG:32633")  # 8 x 8 pixels
    mask = np.zeros((8, 8), bool)
    mask[:, :3] = True  # the west three columns under cloud
    ref = model_suite.clouds_over(forest, mask, t)
    assert list(ref.columns) == ["fclass", "geometry"] and list(ref["fclass"]) == ["forest", "cloud"]
    # evaluate-scene burns the polygons in order (the later one wins where they overlap)
    burnt = rasterize(zip(ref.geometry, range(1, len(ref) + 1)), out_shape=(8, 8), transform=t)
    assert (burnt[:, :3] == 2).all() and (burnt[:, 3:] == 1).all()


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_figures_belong_to_the_shipped_model_file(name):
    """A model re-exported or re-contracted without re-recording its suite figures is caught without ../shared."""
    rec = json.loads((MODELS / f"{name}.suite.json").read_text())
    assert (MODELS / f"{name}.onnx").exists(), f"{name}.suite.json records a model that is not shipped"
    assert model_suite._sha256(str(MODELS / f"{name}.onnx")) == rec["sha256"], (
        f"{name}.onnx changed without re-recording {name}.suite.json (make model-suite) in the same commit")
    assert rec["figures"], f"{name}.suite.json records no figure"


@pytest.fixture(scope="module")
def suite_out(tmp_path_factory):
    return str(tmp_path_factory.mktemp("suite"))


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("name", RECORDED)
def test_shipped_model_holds_its_recorded_suite_figures(name, shared_dir, suite_out):
    rec = json.loads((MODELS / f"{name}.suite.json").read_text())
    if str(shared_dir) != model_suite.SHARED:
        pytest.skip(f"the suite reads {model_suite.SHARED}; set GEOSEG_SHARED for both")
    scenes = sorted({k.split("/")[0] for k in rec["figures"]} - {"test_split"})
    got = model_suite.evaluate_model(name, suite_out, scenes, rec.get("scaling_override"),
                                     with_test=any(k.startswith("test_split/") for k in rec["figures"]),
                                     log=lambda _: None)
    fell = {k: (v, got["figures"].get(k)) for k, v in rec["figures"].items()
            if got["figures"].get(k) is None or got["figures"][k] < v - TOLERANCE}
    assert not fell, f"{name}: figures more than {TOLERANCE} below the recorded ones (recorded, now): {fell}"
