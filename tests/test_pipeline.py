"""classify_scene end to end (geoseg.pipeline): tiny painted scenes with a known answer."""

import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from geoseg.errors import InputError, OutputExistsError
from geoseg.scheduling import Runner
from geoseg.pipeline import ClassifyOptions, classify_scene
from helpers import CLASS_NAMES, make_model, paint, write_rgba, write_scene


@pytest.fixture(scope="module")
def sync():
    with Runner("synchronous") as r:
        yield r


def read(path, band=1):
    with rasterio.open(path) as s:
        return s.read(band), s.profile, s


def test_known_answer_projected(tmp_path, model8, truth, scene_u8, sync):
    res = classify_scene(scene_u8, tmp_path / "out", model8, ClassifyOptions(), sync)
    cls, prof, _ = read(res.outputs["classes"])
    assert (cls == truth).all()
    with rasterio.open(res.outputs["classes"]) as s, rasterio.open(scene_u8) as src:
        # the class raster lies exactly on the scene: stride-scaled transform, same CRS and bounds
        assert s.crs == src.crs
        assert s.transform == src.transform @ Affine.scale(8)
        assert s.bounds == src.bounds
        assert s.nodata == 255 and s.dtypes[0] == "uint8"
        assert s.profile["tiled"] and s.profile["compress"] == "deflate"
        assert s.colormap(1)[2][:3] == (0x2E, 0x8B, 0x3A)
        assert s.descriptions == ("class",)
        assert s.tags()["CLASS_NAMES"] == ",".join(CLASS_NAMES)
    with rasterio.open(res.outputs["probs"]) as p:
        assert p.count == 4 and p.descriptions == CLASS_NAMES
        pr = p.read()
        assert np.allclose(pr.sum(0), 1, atol=1e-5)
        assert (pr.argmax(0) == truth).all()
    stats = json.loads(Path(res.outputs["stats"]).read_text())
    cells = {c["name"]: c["cells"] for c in stats["classes"]}
    assert cells == {n: int((truth == i).sum()) for i, n in enumerate(CLASS_NAMES)}
    # UTM zone 33, 10 m pixels: a cell is 80 m x 80 m = 0.0064 km², on the ellipsoid within 0.1%
    total = sum(c["area_km2"] for c in stats["classes"])
    assert total == pytest.approx(truth.size * 0.0064, rel=2e-3)
    assert stats["model"]["sha256"] and stats["timings_s"]["total"] > 0
    gdf = gpd.read_file(res.outputs["polygons"], layer="classes")
    with rasterio.open(scene_u8) as src:
        assert gdf.crs == src.crs
    assert set(gdf["class_name"]) == set(CLASS_NAMES)
    assert gdf["area_km2"].sum() == pytest.approx(total, rel=1e-6)
    assert os.path.getsize(res.outputs["quicklook"]) > 1000
    assert Path(res.outputs["classes_qml"]).read_text().count("paletteEntry") == 4
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp" in f or ".part" in f]


@pytest.mark.parametrize("shape,stride", [((48, 56), 8), ((1100, 1300), 4)])
def test_class_and_probability_rasters_are_cogs(tmp_path, model8, sync, shape, stride):
    """The README promises Cloud Optimized GeoTIFFs: NAME_classes.tif and
    NAME_probs.tif pass rio-cogeo's validator, small (one tile, no overviews)
    and larger than a tile (with overviews)."""
    from rio_cogeo.cogeo import cog_validate

    rng = np.random.default_rng(4)
    p = write_scene(tmp_path / "cog.tif", paint(rng.integers(0, 4, (shape[0] // 8, shape[1] // 8)), 8))
    res = classify_scene(p, tmp_path / "out", model8,
                         ClassifyOptions(stride=stride, polygons=False, quicklook=False), sync)
    assert os.path.basename(res.outputs["classes"]) == "cog_classes.tif"
    assert os.path.basename(res.outputs["probs"]) == "cog_probs.tif"
    for key in ("classes", "probs"):
        valid, errors, warns = cog_validate(res.outputs[key], strict=True)
        assert valid and errors == [] and warns == [], (key, errors, warns)
        with rasterio.open(res.outputs[key]) as s:
            assert s.profile["tiled"] and s.block_shapes[0] == (256, 256)
            assert bool(s.overviews(1)) == (min(s.shape) > 256)


def test_geographic_crs_area_on_ellipsoid(tmp_path, model8, truth, sync):
    # 0.001 degree pixels at 60 N: a cell is 0.008 deg x 0.008 deg
    t = Affine(0.001, 0, 10.0, 0, -0.001, 60.0)
    p = write_scene(tmp_path / "geo.tif", paint(truth, 8), crs="EPSG:4326", transform=t)
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    h, w = truth.shape
    lat0, lat1 = 60.0 - h * 0.008, 60.0
    expected, _ = g.polygon_area_perimeter([10, 10 + w * 0.008, 10 + w * 0.008, 10], [lat0, lat0, lat1, lat1])
    stats = json.loads(Path(res.outputs["stats"]).read_text())
    assert stats["classified_area_km2"] == pytest.approx(abs(expected) / 1e6, rel=1e-3)
    gdf = gpd.read_file(res.outputs["polygons"], layer="classes")
    assert gdf["area_km2"].sum() == pytest.approx(abs(expected) / 1e6, rel=1e-3)


def test_uint16_linear_scaling(tmp_path, model8, truth, sync):
    img = paint(truth, 8, dtype="uint16", scale=10000 / 255)
    p = write_scene(tmp_path / "u16.tif", img)
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()


def test_uint16_without_declared_scaling(tmp_path, truth, sync):
    from helpers import make_contract
    from geoseg.contract import Scaling

    m = make_model(tmp_path / "m.onnx", 8, contract=make_contract(8, scaling={"uint8": Scaling()}))
    p = write_scene(tmp_path / "u16.tif", paint(truth, 8, dtype="uint16"))
    with pytest.raises(InputError, match="uint16 but the model declares scaling only for uint8"):
        classify_scene(p, tmp_path / "out", m, ClassifyOptions(), sync)
    # the user can declare it
    res = classify_scene(p, tmp_path / "out", m, ClassifyOptions(scaling=Scaling("identity")), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()


def test_int16_uses_the_uint16_rule(tmp_path, model8, truth, sync):
    """int16 reflectance (no rule of its own in the contract) is scaled by the
    model's uint16 rule, with a warning naming it; nodata -9999 stays nodata."""
    from geoseg.errors import ScalingWarning

    img = paint(truth, 8, dtype="uint16", scale=10000 / 255).astype("int16")
    img[:, :8, :8] = -9999
    p = write_scene(tmp_path / "i16.tif", img, nodata=-9999)
    u = write_scene(tmp_path / "u16.tif", paint(truth, 8, dtype="uint16", scale=10000 / 255))
    with pytest.warns(ScalingWarning, match=r"no scaling for int16; using its uint16 rule \(linear:"):
        res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    ref = classify_scene(u, tmp_path / "ref", model8, ClassifyOptions(), sync)
    got, want = read(res.outputs["classes"])[0], read(ref.outputs["classes"])[0]
    assert got[0, 0] == 255  # the nodata corner
    rest = np.ones(got.shape, bool)
    rest[0, 0] = False
    assert (got[rest] == want[rest]).all() and (want == truth).all()


@pytest.mark.parametrize("layout,dtype", [("NCHW", "uint8"), ("NHWC", "uint8"), ("NCHW", "float32")])
def test_model_input_layouts_and_dtypes_agree(tmp_path, truth, sync, layout, dtype):
    """The same colour model fed NHWC float32 (the reference), or NCHW / uint8:
    identical classes on a scene with gaps, ragged edges and an overlap
    stride, and on a 16-bit scene (scaled, then rounded for uint8 models)."""
    clean = write_scene(tmp_path / "clean.tif", paint(truth, 8))
    img = paint(truth, 8)[:, :-3, :-5]
    img[:, :8, :12] = 0  # nodata, partly covering patches
    p8 = write_scene(tmp_path / "u8.tif", img, nodata=0)
    p16 = write_scene(tmp_path / "u16.tif", paint(truth, 8, dtype="uint16", scale=10000 / 255))
    ref = make_model(tmp_path / "ref.onnx", 8)
    other = make_model(tmp_path / "other.onnx", 8, layout=layout, dtype=dtype)
    for scene in (clean, p8, p16):
        for stride in (8, 4):
            opts = ClassifyOptions(stride=stride, polygons=False, quicklook=False, overwrite=True)
            a = classify_scene(scene, tmp_path / "a", ref, opts, sync)
            b = classify_scene(scene, tmp_path / "b", other, opts, sync)
            ca, cb = read(a.outputs["classes"])[0], read(b.outputs["classes"])[0]
            assert (ca == cb).all() and (ca != 255).sum() > 0
            pa, pb = read(a.outputs["probs"])[0], read(b.outputs["probs"])[0]
            ok = ~np.isnan(pa)
            assert (np.isnan(pb) == ~ok).all()
            # 8-bit pixels with no gaps reach a uint8 model untouched: the same
            # numbers (up to float summation order); gap-filled or scaled pixels are rounded to whole grey
            # levels for it (this toy model is steep: ~0.03 at most here)
            exact = scene == clean or dtype == "float32"
            assert np.abs(pa[ok] - pb[ok]).max() < (1e-4 if exact else 0.05)  # 1e-4: summation order


def test_edges_partial_patches_are_classified(tmp_path, model8, truth, sync):
    img = paint(truth, 8)[:, :-3, :-5]  # last row/col of patches only partly present
    p = write_scene(tmp_path / "edge.tif", img)
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    cls = read(res.outputs["classes"])[0]
    assert cls.shape == truth.shape
    assert (cls == truth).all()


def test_nodata_value_and_dark_data(tmp_path, model8, truth, sync):
    img = paint(truth, 8)
    img[:, :8, :] = 0  # first row of patches is nodata
    img[:, 8:16, 8:16] = 1  # dark but valid: data
    t2 = truth.copy()
    p = write_scene(tmp_path / "nd.tif", img, nodata=0)
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    cls = read(res.outputs["classes"])[0]
    assert (cls[0] == 255).all()
    assert cls[1, 1] != 255  # the dark patch is classified
    assert (cls[2:] == t2[2:]).all()
    stats = json.loads(Path(res.outputs["stats"]).read_text())
    assert stats["nodata_cells"] == truth.shape[1]
    # --nodata overrides: 1 is now nodata, 0 is data
    res = classify_scene(p, tmp_path / "out2", model8, ClassifyOptions(nodata=1.0), sync)
    cls = read(res.outputs["classes"])[0]
    assert cls[1, 1] == 255 and (cls[0] != 255).all()


def test_partly_valid_patch_uses_threshold(tmp_path, model8, truth, sync):
    img = paint(truth, 8)
    img[:, 0:5, 0:8] = 0  # 5 of 8 rows of patch (0,0) are nodata: 37.5% valid
    img[:, 8:11, 0:8] = 0  # 3 of 8 rows of patch (1,0) are nodata: 62.5% valid
    p = write_scene(tmp_path / "part.tif", img, nodata=0)
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    cls = read(res.outputs["classes"])[0]
    assert cls[0, 0] == 255 and cls[1, 0] == truth[1, 0]


def test_alpha_band_masks(tmp_path, model8, truth, sync):
    from rasterio.enums import ColorInterp as CI

    rgb = paint(truth, 8)
    alpha = np.full(rgb.shape[1:], 255, np.uint8)
    alpha[:, :8] = 0
    p = tmp_path / "rgba.tif"
    write_scene(p, np.concatenate([rgb, alpha[None]]), colorinterp=False)
    with rasterio.open(p, "r+") as d:
        d.colorinterp = [CI.red, CI.green, CI.blue, CI.alpha]
    res = classify_scene(str(p), tmp_path / "out", model8, ClassifyOptions(), sync)
    cls = read(res.outputs["classes"])[0]
    assert (cls[:, 0] == 255).all() and (cls[:, 1:] == truth[:, 1:]).all()


def test_nodata_and_alpha_give_one_mask_warning(tmp_path, model8, truth, sync):
    """GDAL masks by the nodata value and ignores the alpha band: one
    MaskWarning says so, and nothing else warns."""
    from geoseg.errors import MaskWarning

    rgb = paint(truth, 8)
    rgb[:, 8:16, :] = 0  # second row of patches: nodata by value
    alpha = np.full(rgb.shape[1:], 255, np.uint8)
    alpha[:, :8] = 0  # first column of patches: transparent, but ignored
    p = write_rgba(tmp_path / "rgba_nd.tif", rgb, alpha, nodata=0)
    with pytest.warns(MaskWarning, match=r"nodata value \(0\) and an alpha band; GDAL masks by the nodata") as rec:
        res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    assert [w.category for w in rec] == [MaskWarning]
    cls = read(res.outputs["classes"])[0]
    assert (cls[1] == 255).all() and (cls[0] == truth[0]).all() and (cls[2:, 0] == truth[2:, 0]).all()


def test_all_nodata_scene_warns(tmp_path, model8, truth, sync):
    from geoseg.errors import MaskWarning

    p = write_scene(tmp_path / "allnd.tif", np.zeros_like(paint(truth, 8)), nodata=0)
    with pytest.warns(MaskWarning, match="no patch had enough valid pixels; every cell is nodata"):
        res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == 255).all()


def test_resolution_far_from_training_warns(tmp_path, truth, sync):
    from geoseg.errors import ResolutionWarning
    from helpers import make_contract

    m = make_model(tmp_path / "m.onnx", 8, contract=make_contract(8, training_resolution_m=0.5))
    p = write_scene(tmp_path / "s.tif", paint(truth, 8))  # 10 m pixels
    with pytest.warns(ResolutionWarning, match="pixel size 10 m, the model was trained at 0.5 m"):
        res = classify_scene(p, tmp_path / "out", m, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()


def test_bands_by_position_warn(tmp_path, model8, truth, sync):
    from geoseg.errors import BandWarning

    img = np.concatenate([paint(truth, 8), np.zeros((1,) + paint(truth, 8).shape[1:], np.uint8)])
    p = write_scene(tmp_path / "four.tif", img, colorinterp=False)
    with rasterio.open(p, "r+") as d:
        d.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * 3  # no colours, no alpha
    with pytest.warns(BandWarning, match=r"4 bands without colour interpretation; using bands 1,2,3"):
        res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()


def test_nan_in_float_scene(tmp_path, model8, truth, sync):
    from geoseg.contract import Scaling

    img = paint(truth, 8, dtype="float32")
    img[:, :8, :8] = np.nan
    p = write_scene(tmp_path / "f.tif", img)
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(scaling=Scaling("identity")), sync)
    cls = read(res.outputs["classes"])[0]
    assert cls[0, 0] == 255 and (cls.ravel()[1:] == truth.ravel()[1:]).all()


def test_overlap_stride_is_finer_and_seamless(tmp_path, model8, truth, sync):
    p = write_scene(tmp_path / "s.tif", paint(truth, 8, noise=0))
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(stride=4), sync)
    cls, prof, _ = read(res.outputs["classes"])
    assert cls.shape == (truth.shape[0] * 2, truth.shape[1] * 2)
    with rasterio.open(res.outputs["classes"]) as s, rasterio.open(p) as src:
        assert s.transform == src.transform @ Affine.scale(4) and s.bounds == src.bounds
    # the top-left cell of every painted patch is covered by patches lying
    # mostly on that patch, so it keeps its class
    up = np.repeat(np.repeat(truth, 2, 0), 2, 1)
    assert (cls[::2, ::2] == up[::2, ::2]).mean() > 0.8
    assert (cls == up).mean() > 0.7
    assert (cls != 255).all()


@pytest.mark.parametrize("block_cells", [1, 2, 3, 5, 100])
def test_identical_whatever_the_block_size(tmp_path, model8, truth, sync, block_cells):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (3, 50, 61), dtype=np.uint8)  # noise: close calls everywhere
    p = write_scene(tmp_path / "noise.tif", img)
    ref = classify_scene(p, tmp_path / "ref", model8, ClassifyOptions(block_cells=50, stride=4), sync)
    out = classify_scene(p, tmp_path / "b", model8, ClassifyOptions(block_cells=block_cells, stride=4), sync)
    a = read(ref.outputs["classes"])[0]
    b = read(out.outputs["classes"])[0]
    assert (a == b).all()
    with rasterio.open(ref.outputs["probs"]) as x, rasterio.open(out.outputs["probs"]) as y:
        assert np.array_equal(x.read(), y.read(), equal_nan=True)


def test_same_output_across_schedulers(tmp_path, model8):
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (3, 70, 90), dtype=np.uint8)
    p = write_scene(tmp_path / "noise.tif", img, tiled=True, block=16)
    outs = {}
    for sched, workers in (("synchronous", 1), ("threads", 2), ("processes", 2)):
        with Runner(sched, workers) as r:
            res = classify_scene(p, tmp_path / sched, model8, ClassifyOptions(block_cells=3, stride=4), r)
        outs[sched] = read(res.outputs["classes"])[0]
    assert (outs["synchronous"] == outs["threads"]).all()
    assert (outs["synchronous"] == outs["processes"]).all()


def test_existing_output_needs_overwrite(tmp_path, model8, scene_u8, sync):
    classify_scene(scene_u8, tmp_path / "o", model8, ClassifyOptions(), sync)
    before = (tmp_path / "o" / "scene_u8_classes.tif").read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        classify_scene(scene_u8, tmp_path / "o", model8, ClassifyOptions(), sync)
    assert (tmp_path / "o" / "scene_u8_classes.tif").read_bytes() == before
    classify_scene(scene_u8, tmp_path / "o", model8, ClassifyOptions(overwrite=True), sync)


def test_failure_midway_leaves_no_final_files(tmp_path, model8, scene_u8, monkeypatch):
    import geoseg.pipeline as T

    calls = {"n": 0}
    real = T.classify_block

    def flaky(job):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(job)

    monkeypatch.setattr(T, "classify_block", flaky)
    with Runner("synchronous") as r, pytest.raises(RuntimeError, match="boom"):
        classify_scene(scene_u8, tmp_path / "o", model8, ClassifyOptions(block_cells=2), r)
    assert os.listdir(tmp_path / "o") == []
