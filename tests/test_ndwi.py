"""geoseg.ndwi and `geoseg reference ndwi`: known water, band files, and
every bad input, one case a test."""

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.classmap import open_class_map
from geoseg.errors import InputError, OutputExistsError
from geoseg.ndwi import BandSpec, ndwi_reference, parse_band
from helpers import one_error_line, run_cli
from test_reference import X0, Y0, write_raster


def ndwi_scene(tmp_path):
    """4 bands float32 (blue, green, red, nir) 24 x 40, nodata -9999, with
    known water (green 800, nir 200: NDWI 0.6), land (500 / 1500: -0.5),
    faint water (550 / 450: 0.1), a zero stripe (green + nir = 0) and nodata."""
    h, w = 24, 40
    a = np.zeros((4, h, w), np.float32)
    a[1], a[3] = 500, 1500
    a[1, :, :10], a[3, :, :10] = 800, 200         # water: 240 px
    a[1, :, 10:15], a[3, :, 10:15] = 550, 450     # faint water: 120 px
    a[1, :, 15:17], a[3, :, 15:17] = 0, 0         # green + nir = 0: 48 px nodata
    a[3, 0:2, 20:40] = -9999                      # nir nodata: 40 px
    a[1, 5, 30] = np.nan                          # not finite: 1 px
    return write_raster(tmp_path / "scene.tif", a, Affine(10, 0, X0, 0, -10, Y0), nodata=-9999)


def test_ndwi_known_water(tmp_path):
    scene = ndwi_scene(tmp_path)
    r = ndwi_reference(scene, parse_band("2", scene), parse_band(4, scene), tmp_path / "w.tif", block=16)
    assert (r.water, r.nodata) == (360, 48 + 40 + 1)
    assert r.not_water == 24 * 40 - 360 - 89
    with rasterio.open(tmp_path / "w.tif") as s, rasterio.open(scene) as src:
        a = s.read(1)
        assert s.dtypes[0] == "uint8" and s.nodata == 255
        assert s.crs == src.crs and s.transform == src.transform and s.shape == src.shape
        assert s.tags()["CLASS_NAMES"] == "not_water,water"
        assert s.colormap(1)[1][:3] == (31, 95, 191)
        assert s.profile["tiled"] and s.profile["compress"] == "deflate"
        assert s.descriptions[0] == "class"
    assert (a[:, :15] == 1).all() and (a[:, 15:17] == 255).all() and (a[0:2, 20:] == 255).all()
    assert a[5, 30] == 255 and (a[10:, 17:] == 0).all()
    aux = Path(tmp_path / "w.tif.aux.xml").read_text()
    assert "<Category>not_water</Category>" in aux and "<Category>water</Category>" in aux
    assert 'label="water"' in Path(tmp_path / "w.qml").read_text()
    assert sorted(os.listdir(tmp_path)) == ["scene.tif", "w.qml", "w.tif", "w.tif.aux.xml"]
    # the written map is a reference geoseg reads back with its names
    assert open_class_map(tmp_path / "w.tif").names == {0: "not_water", 1: "water"}
    # the threshold moves the faint water to land; the block size changes nothing
    r2 = ndwi_reference(scene, BandSpec(scene, 2), BandSpec(scene, 4), tmp_path / "w2.tif", threshold=0.2)
    assert r2.water == 240
    r3 = ndwi_reference(scene, BandSpec(scene, 2), BandSpec(scene, 4), tmp_path / "w3.tif", block=1024)
    with rasterio.open(tmp_path / "w.tif") as s1, rasterio.open(tmp_path / "w3.tif") as s3:
        assert (s1.read() == s3.read()).all() and r3.water == 360


def _band_files(tmp_path, scene):
    with rasterio.open(scene) as src:
        t, g, n = src.transform, src.read(2), src.read(4)
    b03 = write_raster(tmp_path / "B03.tif", g, t, nodata=-9999)
    b08 = write_raster(tmp_path / "B08.tif", n, t, nodata=-9999)
    return t, g, n, b03, b08


def test_ndwi_from_band_files(tmp_path):
    scene = ndwi_scene(tmp_path)
    _, _, _, b03, b08 = _band_files(tmp_path, scene)
    r = ndwi_reference(b03, parse_band("1", b03), parse_band(b08, b03), tmp_path / "w.tif")
    assert (r.water, r.nodata) == (360, 89)
    with pytest.raises(OutputExistsError):
        ndwi_reference(b03, parse_band("1", b03), parse_band(b08, b03), tmp_path / "w.tif")


def _bad(tmp_path, case):
    """(scene, green, nir, output, options) of one bad call, and its message."""
    scene = ndwi_scene(tmp_path)
    t, g, n, b03, b08 = _band_files(tmp_path, scene)
    x = tmp_path / "x.tif"
    if case == "no-such-band":
        return (scene, BandSpec(scene, 2), BandSpec(scene, 5), x, {}), "names a band the raster does not have"
    if case == "other-grid":
        other = write_raster(tmp_path / "shifted.tif", n, t @ Affine.translation(1, 0), nodata=-9999)
        return (scene, BandSpec(scene, 2), BandSpec(other, 1), x, {}), "not on the scene's grid"
    if case == "multi-band-file":
        return (b03, BandSpec(b03, 1), BandSpec(scene, 1), x, {}), "expected a single-band raster"
    if case == "threshold-nan":
        return (scene, BandSpec(scene, 2), BandSpec(scene, 4), x, dict(threshold=float("nan"))), \
            "--threshold nan: NDWI lies in -1..1"
    if case == "threshold-1.5":
        return (scene, BandSpec(scene, 2), BandSpec(scene, 4), x, dict(threshold=1.5)), \
            "--threshold 1.5: NDWI lies in -1..1"
    if case == "same-band":
        return (scene, BandSpec(scene, 2), BandSpec(scene, 2), x, {}), "--green and --nir are the same band"
    if case == "not-tif":
        return (scene, BandSpec(scene, 2), BandSpec(scene, 4), tmp_path / "x.png", {}), \
            "x.png: the reference is written as a GeoTIFF"
    assert case == "complex"
    cplx = write_raster(tmp_path / "slc.tif", (g + 1j * n).astype(np.complex64), t)
    return (cplx, BandSpec(cplx, 1), BandSpec(b08, 1), x, {}), \
        r"slc.tif: --green band 1 is complex64; expected integer or real .*amplitude"


@pytest.mark.parametrize("case", ["no-such-band", "other-grid", "multi-band-file", "threshold-nan", "threshold-1.5",
                                  "same-band", "not-tif", "complex"])
def test_ndwi_bad_input(tmp_path, case):
    (scene, green, nir, out, kw), msg = _bad(tmp_path, case)
    with pytest.raises(InputError, match=msg):
        ndwi_reference(scene, green, nir, out, **kw)
    assert not out.exists()


def test_ndwi_cli(tmp_path):
    scene = ndwi_scene(tmp_path)
    r = run_cli("reference", "ndwi", scene, "--green", "2", "--nir", "4", "-o", tmp_path / "w.tif")
    assert r.exit_code == 0, r.output
    assert "water 360 px" in r.output
    assert "exists" in one_error_line(run_cli("reference", "ndwi", scene, "--green", "2", "--nir", "4", "-o",
                                            tmp_path / "w.tif"))
    assert run_cli("reference", "ndwi", scene, "--green", "2", "--nir", "4", "-o", tmp_path / "w.tif",
                   "--overwrite").exit_code == 0


@pytest.mark.parametrize("case", ["no-such-band", "junk", "no-crs"])
def test_ndwi_cli_bad_input_is_one_line(tmp_path, case):
    scene = ndwi_scene(tmp_path)
    green, nir, texts = "2", "4", ()
    if case == "no-such-band":
        nir, texts = "9", ("scene.tif", "has 4")
    elif case == "junk":
        (tmp_path / "junk.tif").write_text("not a raster")
        scene, texts = tmp_path / "junk.tif", ("junk.tif: not a readable raster",)
    else:
        scene = write_raster(tmp_path / "nocrs.tif", np.ones((2, 8, 8), np.uint8), Affine(1, 0, 0, 0, -1, 8),
                             crs=None)
        green, nir, texts = "1", "2", ("nocrs.tif", "no CRS")
    line = one_error_line(run_cli("reference", "ndwi", scene, "--green", green, "--nir", nir, "-o",
                                  tmp_path / "x.tif"))
    assert all(t in line for t in texts), line
