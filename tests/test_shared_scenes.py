"""The real scenes of ../shared/scenes (skipped where absent)."""

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.batch import classify_many
from geoseg.errors import BandWarning
from geoseg.scheduling import Runner
from geoseg.pipeline import ClassifyOptions
from helpers import make_model


@pytest.fixture(scope="module")
def model32(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "colour32.onnx", patch=32)


def test_every_shared_scene(tmp_path, shared_dir, model32):
    scenes = sorted((shared_dir / "scenes").glob("*.tif"))
    assert scenes
    # the 4-band scenes (landsat_2020, naip) have no colour interpretation
    with pytest.warns(BandWarning, match="4 bands without colour interpretation; using bands 1,2,3"):
        with Runner("threads", 2) as r:
            run = classify_many([str(shared_dir / "scenes")], tmp_path, model32, ClassifyOptions(), runner=r)
    assert run.ok, [s.error for s in run.scenes]
    assert len(run.scenes) == len(scenes)
    for s in scenes:
        name = s.stem
        with rasterio.open(s) as src, rasterio.open(tmp_path / f"{name}_classes.tif") as cls:
            assert cls.crs == src.crs
            assert cls.transform == src.transform @ Affine.scale(32)
            # the class grid covers the scene: same origin, ends within one cell past it
            assert cls.bounds.left == pytest.approx(src.bounds.left)
            assert cls.bounds.top == pytest.approx(src.bounds.top)
            assert 0 <= cls.bounds.right - src.bounds.right < cls.res[0]
            assert 0 <= src.bounds.bottom - cls.bounds.bottom < cls.res[1]
            a = cls.read(1)
            assert ((a < 4) | (a == 255)).all() and (a < 4).any()
        gdf = gpd.read_file(tmp_path / f"{name}_polygons.gpkg", layer="classes")
        with rasterio.open(s) as src:
            assert gdf.crs == src.crs and len(gdf) >= 1 and gdf.is_valid.all()
        st = json.loads((tmp_path / f"{name}_stats.json").read_text())
        assert st["classified_area_km2"] > 0
    # RGB.byte.tif has nodata corners: they stay nodata
    with rasterio.open(tmp_path / "RGB.byte_classes.tif") as cls:
        a = cls.read(1)
        assert a[0, 0] == 255 and a[-1, -1] == 255
    # the geographic scene's area is computed on the ellipsoid (not in square degrees)
    st = json.loads((tmp_path / "landsat_2020_stats.json").read_text())
    with rasterio.open(shared_dir / "scenes" / "landsat_2020.tif") as src:
        w_deg, h_deg = src.bounds.right - src.bounds.left, src.bounds.top - src.bounds.bottom
        lat = np.radians((src.bounds.top + src.bounds.bottom) / 2)
    approx = w_deg * 111.32 * np.cos(lat) * h_deg * 110.57
    assert 0.5 * approx < st["classified_area_km2"] <= 1.01 * approx
