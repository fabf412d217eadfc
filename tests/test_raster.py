"""Opening scenes and reading them (geoseg.raster): mask kinds, band choice,
scaling rules, the warnings of degraded cases, windows past the edges."""

import numpy as np
import pytest
from rasterio.windows import Window

from geoseg.contract import Scaling
from geoseg.errors import InputError, MaskWarning, ScalingWarning
from geoseg.raster import open_scene, read_window, scaling_for
from helpers import make_contract, paint, write_rgba, write_scene


@pytest.fixture
def contract():
    return make_contract(8)


def test_scene_info_and_mask_kinds(tmp_path, truth, contract):
    img = paint(truth, 8)
    s = open_scene(write_scene(tmp_path / "plain.tif", img), contract)
    assert (s.width, s.height, s.count, s.dtype) == (56, 48, 3, "uint8")
    assert s.bidx == (1, 2, 3) and s.band_choice == "colour interpretation"
    assert s.mask_kind == "none" and s.nodata is None and s.name == "plain"
    assert open_scene(write_scene(tmp_path / "nd.tif", img, nodata=0), contract).mask_kind == "nodata"
    u = open_scene(write_scene(tmp_path / "nd2.tif", img, nodata=0), contract, nodata=5.0)
    assert u.mask_kind == "user" and u.mask_by_value and u.nodata == 5.0
    alpha = np.full(img.shape[1:], 255, np.uint8)
    assert open_scene(write_rgba(tmp_path / "rgba.tif", img, alpha), contract).mask_kind == "alpha"


def test_nodata_and_alpha_warn_once(tmp_path, truth, contract):
    img = paint(truth, 8)
    p = write_rgba(tmp_path / "both.tif", img, np.full(img.shape[1:], 255, np.uint8), nodata=0)
    with pytest.warns(MaskWarning, match=r"both.tif: has both a nodata value \(0\) and an alpha band") as rec:
        s = open_scene(p, contract)
    assert len(rec) == 1
    assert s.mask_kind == "nodata" and s.nodata == 0


def test_scaling_rules(tmp_path, truth, contract):
    u16 = open_scene(write_scene(tmp_path / "u16.tif", paint(truth, 8, dtype="uint16")), contract)
    assert scaling_for(u16, contract, None).method == "linear"
    assert scaling_for(u16, contract, Scaling("identity")).method == "identity"
    i16 = open_scene(write_scene(tmp_path / "i16.tif", paint(truth, 8, dtype="int16")), contract)
    with pytest.warns(ScalingWarning, match=r"no scaling for int16; using its uint16 rule"):
        assert scaling_for(i16, contract, None).method == "linear"
    f32 = open_scene(write_scene(tmp_path / "f.tif", paint(truth, 8, dtype="float32")), contract)
    with pytest.raises(InputError, match="float32 but the model declares scaling only for uint16, uint8"):
        scaling_for(f32, contract, None)


def test_read_window_pads_past_the_edges(tmp_path, truth, contract):
    img = paint(truth, 8)
    img[:, :2, :] = 0
    s = open_scene(write_scene(tmp_path / "nd.tif", img, nodata=0), contract)
    data, valid, inside = read_window(s, Window(50, -4, 16, 16))  # 6 columns and 12 rows inside
    assert data.shape == (3, 16, 16) and valid.shape == inside.shape == (16, 16)
    assert inside[4:, :6].all() and inside.sum() == 12 * 6
    assert (data[:, 4:, :6] == img[:, :12, 50:]).all() and (data[:, ~inside] == 0).all()
    assert not valid[4:6, :6].any() and valid[6:, :6].all() and not valid[~inside].any()
    data, valid, inside = read_window(s, Window(100, 100, 8, 8))  # wholly outside
    assert not inside.any() and not valid.any() and (data == 0).all()
