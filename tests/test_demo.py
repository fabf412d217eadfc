"""The demo scene generator and the demo run (the runtime only)."""

import os

import numpy as np
import pytest
import rasterio

from geoseg.demo import agreement, main, make_scene
from geoseg.model import DEFAULT_MODEL


def test_demo_scene(tmp_path):
    labels = make_scene(str(tmp_path / "d.tif"), size=256, border=16)
    with rasterio.open(tmp_path / "d.tif") as s:
        assert s.crs.to_epsg() == 32633 and s.count == 3 and s.nodata == 0
        a = s.read()
        m = s.dataset_mask()
    assert (labels[:16] == 255).all() and (m[:16] == 0).all()
    assert set(np.unique(labels[16:-16, 16:-16])) <= {0, 1, 2, 3}
    assert (m[labels != 255] == 255).all()  # painted pixels are never nodata
    assert a.shape == (3, 256, 256)


def test_agreement_counts_majority():
    labels = np.zeros((8, 8), np.uint8)
    labels[:, 4:] = 1
    classes = np.array([[0, 1], [0, 0]], np.uint8)
    agree, n = agreement(classes, labels, 4)
    assert n == 4 and agree == 0.75


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="no default model shipped")
def test_demo_runs(tmp_path, capsys):
    assert main([str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "agreement with the painted regions" in out and "class areas" in out
    assert os.path.exists(tmp_path / "demo" / "demo_scene_classes.tif")
