"""classify_scene end to end (geoseg.pipeline): tiny painted scenes with a known answer."""

import json
import os
import re
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from geoseg.contract import Scaling
from geoseg.errors import InputError, OutputExistsError, ScalingWarning
from geoseg.scheduling import Runner
from geoseg.pipeline import ClassifyOptions, classify_scene
from helpers import CLASS_NAMES, make_model, paint, paint_reflectance, write_rgba, write_scene


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


def test_graph_with_a_fixed_batch_size(tmp_path, model8, truth, scene_u8, sync):
    """Exported with a batch size of 1 (common in ONNX exports): fed one
    patch per run, the same map as the model with a free batch size."""
    one = make_model(tmp_path / "one.onnx", 8, batch=1)
    opts = ClassifyOptions(polygons=False, quicklook=False)
    a = classify_scene(scene_u8, tmp_path / "a", model8, opts, sync).outputs
    b = classify_scene(scene_u8, tmp_path / "b", one, opts, sync).outputs
    assert (read(b["classes"])[0] == truth).all()
    for band in range(1, 5):
        assert np.allclose(read(a["probs"], band)[0], read(b["probs"], band)[0], atol=1e-5, equal_nan=True)


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


# --- --resample auto -------------------------------------------------------------
T25 = Affine(2.5, 0, 500000.0, 0, -2.5, 6000000.0)  # 2.5 m pixels on the UTM central meridian


@pytest.fixture
def model10(tmp_path):
    from helpers import make_contract

    return make_model(tmp_path / "m10.onnx", 8, contract=make_contract(8, training_resolution_m=10.0))


def _scene_25m(tmp_path, dtype="uint8", scale=1.0):
    """A 2.5 m scene (96 x 128 px) painted in squares of 16 px (half a
    resampled patch, so each patch mixes colours), with a nodata corner on
    whole 10 m pixels; and the same scene averaged to 10 m by GDAL."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, size=(6, 8))
    truth[:, :4] = np.where(truth[:, :4] == 3, 1, truth[:, :4])  # two halves: no water on the left
    truth[:, 4:] = np.where(truth[:, 4:] == 1, 3, truth[:, 4:])
    img = paint(truth, 16, dtype=dtype, scale=scale)
    img[:, :32, :48] = 0
    src = write_scene(tmp_path / "s25.tif", img, transform=T25, nodata=0)
    with rasterio.open(src) as s:
        avg = s.read(out_shape=(3, 24, 32), resampling=rasterio.enums.Resampling.average)
    (tmp_path / "ref10").mkdir()
    ref = write_scene(tmp_path / "ref10" / "s10.tif", avg, transform=T25 @ Affine.scale(4), nodata=0)
    return src, ref


def test_resample_auto_equals_classifying_a_scene_averaged_to_10m(tmp_path, model10, sync):
    src, ref = _scene_25m(tmp_path)
    opts = dict(stride=4, block_cells=3)  # 3 x 3 cell blocks: seams inside the scene
    res = classify_scene(src, tmp_path / "auto", model10, ClassifyOptions(resample="auto", **opts), sync)
    want = classify_scene(ref, tmp_path / "ref", model10, ClassifyOptions(**opts), sync)
    cls, _, _ = read(res.outputs["classes"])
    ref_cls, _, _ = read(want.outputs["classes"])
    with rasterio.open(res.outputs["classes"]) as s, rasterio.open(src) as sc, rasterio.open(want.outputs["classes"]) as r:
        # 4 model px of stride x 4 source px per model px: cells of 16 source px, on source pixel edges
        assert s.transform == sc.transform @ Affine.scale(16)
        assert s.transform == r.transform and s.shape == r.shape == (6, 8)
        assert s.bounds == sc.bounds
        col, row = ~sc.transform @ (s.transform.c + 3 * s.transform.a, s.transform.f + 2 * s.transform.e)
        assert (col, row) == (48.0, 32.0)  # a cell edge is a source pixel edge
    assert (cls == ref_cls).all()
    assert (cls[:2, :3] == 255).all() and (cls != 255).sum() == 42
    assert len(set(cls[cls != 255].tolist())) >= 3  # mixed patches: a real test of the averaging
    with rasterio.open(res.outputs["probs"]) as a, rasterio.open(want.outputs["probs"]) as b:
        np.testing.assert_allclose(a.read(), b.read(), atol=1e-5)
    st = res.stats
    assert st["options"]["resample"] == "auto" and st["options"]["resample_applied"] is True
    assert st["options"]["resample_factor"] == 4.0
    assert st["options"]["resample_resolution_m"] == pytest.approx(10.0, rel=1e-3)
    assert st["grid"]["patch"] == 32 and st["grid"]["stride"] == 16
    # the ground areas count source pixels: the same as the 10 m scene's
    assert st["classified_area_km2"] == pytest.approx(want.stats["classified_area_km2"], rel=1e-6)
    for k in ("polygons", "quicklook", "stats", "item"):
        assert os.path.exists(res.outputs[k])
    item = json.loads(Path(res.outputs["item"]).read_text())
    assert item["assets"]["classes"]["proj:transform"][:6] == list(sc.transform @ Affine.scale(16))[:6]
    assert len(gpd.read_file(res.outputs["polygons"], layer="classes")) > 0


def test_resample_auto_uint16_percentiles(tmp_path, model10, sync):
    from geoseg.contract import Scaling

    src, ref = _scene_25m(tmp_path, "uint16", 40.0)
    o = dict(stride=4, scaling=Scaling.parse("percentile:2,98"))
    res = classify_scene(src, tmp_path / "auto", model10, ClassifyOptions(resample="auto", **o), sync)
    want = classify_scene(ref, tmp_path / "ref", model10, ClassifyOptions(**o), sync)
    a, b = read(res.outputs["classes"])[0], read(want.outputs["classes"])[0]
    # the percentiles come from differently placed samples of the two scenes: nearly the same classes
    assert a.shape == b.shape and (a == b).mean() >= 0.9


def test_resample_off_is_todays_output(tmp_path, model10, sync):
    import hashlib

    from geoseg.errors import ResolutionWarning

    src, _ = _scene_25m(tmp_path)

    def digests(out, **kw):
        with pytest.warns(ResolutionWarning, match=r"2.5 m, the model was trained at 10 m; .*--resample auto"):
            res = classify_scene(src, tmp_path / out, model10, ClassifyOptions(stride=4, **kw), sync)
        return [hashlib.sha256(Path(res.outputs[k]).read_bytes()).hexdigest() for k in ("classes", "probs")], res

    default, res = digests("default")
    off, res_off = digests("off", resample="off")
    assert default == off
    assert "resample" not in res.stats["options"] and "resample" not in res_off.stats["options"]
    with rasterio.open(res.outputs["classes"]) as s:
        assert s.transform == T25 @ Affine.scale(4) and "GEOSEG_RESAMPLE" not in s.tags()


def test_resample_auto_without_training_resolution_warns(tmp_path, model8, truth, scene_u8, sync):
    import hashlib

    from geoseg.errors import ResampleWarning

    with pytest.warns(ResampleWarning, match="records no training resolution; --resample auto classifies the scene at"):
        res = classify_scene(scene_u8, tmp_path / "auto", model8, ClassifyOptions(resample="auto"), sync)
    off = classify_scene(scene_u8, tmp_path / "off", model8, ClassifyOptions(), sync)
    h = [hashlib.sha256(Path(r.outputs["classes"]).read_bytes()).hexdigest() for r in (res, off)]
    assert h[0] == h[1]
    assert res.stats["options"]["resample_applied"] is False and res.stats["options"]["resample_factor"] == 1.0


def test_resample_auto_within_ten_percent_does_nothing(tmp_path, truth, sync, caplog):
    import logging

    from helpers import make_contract

    m = make_model(tmp_path / "m.onnx", 8, contract=make_contract(8, training_resolution_m=10.5))
    p = write_scene(tmp_path / "s.tif", paint(truth, 8))  # 10 m pixels
    with caplog.at_level(logging.INFO, logger="geoseg"):
        res = classify_scene(p, tmp_path / "out", m, ClassifyOptions(resample="auto"), sync)
    assert "within 10% of the model's 10.5 m; not resampled" in caplog.text
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["options"]["resample_applied"] is False
    assert res.stats["options"]["resample_resolution_m"] == pytest.approx(10.0, rel=1e-3)


def test_resample_auto_geographic_and_enlarging(tmp_path, truth, sync):
    from helpers import make_contract

    m = make_model(tmp_path / "m.onnx", 8, contract=make_contract(8, training_resolution_m=5.0))
    t = Affine(9e-5, 0, 10.0, 0, -9e-5, 0.5)  # ~10 m at the equator: enlarged 2x for a 5 m model (bilinear)
    p = write_scene(tmp_path / "geo.tif", paint(truth, 8), crs="EPSG:4326", transform=t)
    res = classify_scene(p, tmp_path / "out", m, ClassifyOptions(resample="auto"), sync)
    o = res.stats["options"]
    assert o["resample_applied"] and o["stride_source_px"] == 4 and o["patch_source_px"] == 4
    with rasterio.open(res.outputs["classes"]) as s:
        assert s.transform == t @ Affine.scale(4) and s.shape == (12, 14)
        cls = s.read(1)
    # every 8 px painted patch holds 2 x 2 cells of one colour
    assert (cls == np.repeat(np.repeat(truth, 2, 0), 2, 1)).mean() > 0.9
    assert os.path.exists(res.outputs["quicklook"])


def test_resample_auto_warns_when_it_enlarges_more_than_eight_times(tmp_path, truth, sync):
    # a 100 m scene for a 10 m model: an 8 px patch covers 1 source pixel, no texture left to read
    from geoseg.errors import ResolutionWarning
    from helpers import make_contract

    m = make_model(tmp_path / "m.onnx", 8, contract=make_contract(8, training_resolution_m=10.0))
    p = write_scene(tmp_path / "coarse.tif", paint(truth, 8), transform=Affine(100, 0, 500000, 0, -100, 6e6))
    with pytest.warns(ResolutionWarning, match=r"coarse.tif: --resample auto enlarges its 100(\.\d+)? m pixels to the model's "
                                               r"10 m: a 8 px patch covers only 1 x 1 source pixel\(s\)"):
        res = classify_scene(p, tmp_path / "out", m, ClassifyOptions(resample="auto"), sync)
    assert res.stats["options"]["patch_source_px"] == 1


def test_resample_auto_refuses_a_scene_smaller_than_one_patch(tmp_path, truth, sync):
    # a 2 cm drone scene for a 10 m model: one patch would read about 4000 x 4000 px of a 56 x 48 px scene
    from helpers import make_contract

    m = make_model(tmp_path / "m.onnx", 8, contract=make_contract(8, training_resolution_m=10.0))
    p = write_scene(tmp_path / "drone.tif", paint(truth, 8), transform=Affine(0.02, 0, 500000, 0, -0.02, 6e6))
    with pytest.raises(InputError, match=r"drone.tif: raster is 56x48 px, smaller than one 3998x3998 patch of "
                                         r"0.02 m pixels \(8 px at the model's 10 m, --resample auto\); expected at "
                                         r"least 3998x3998: classify it with --resample off"):
        classify_scene(p, tmp_path / "out", m, ClassifyOptions(resample="auto"), sync)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_resample_option_is_checked():
    with pytest.raises(InputError, match="resample='yes': expected one of off, auto"):
        ClassifyOptions(resample="yes")  # type: ignore[arg-type]


def test_resample_auto_checks_the_size_after_resampling(tmp_path, sync):
    # issue 22 bug 4: 48 x 48 px at 60 m is 288 x 288 px at the model's 10 m, about 4.5 patches of 64 px;
    # the size was checked in source pixels first ("smaller than one 64x64 patch")
    from helpers import make_contract

    m = make_model(tmp_path / "m.onnx", 64, contract=make_contract(64, training_resolution_m=10.0))
    img = paint(np.array([[3]]), 48)
    p = write_scene(tmp_path / "s60.tif", img, transform=Affine(60.0, 0, 500000, 0, -60.0, 6e6))
    res = classify_scene(p, tmp_path / "out", m, ClassifyOptions(resample="auto"), sync)
    cls, _, _ = read(res.outputs["classes"])
    assert cls.size > 0 and (cls == 3).all()
    assert res.stats["options"]["resample_applied"] is True


# --- reflectance models (issue 24) ---------------------------------------------
@pytest.fixture(scope="module")
def ms_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("ms") / "ms8.onnx", 8, reflectance=True)


S2_DESCS = ("B02_blue", "B03_green", "B04_red", "B08_nir")


def _bgrn_to(order, img):
    """Bands of a blue, green, red, nir image in another order (names of ``order``)."""
    idx = {"blue": 0, "green": 1, "red": 2, "nir": 3}
    return np.stack([img[idx[n]] for n in order])


def test_reflectance_scale_option(tmp_path, ms_model, truth, sync):
    img = _bgrn_to(("nir", "red", "green", "blue"), paint_reflectance(truth, 8))  # bands in another order
    p = write_scene(tmp_path / "s2.tif", img, colorinterp=False)
    res = classify_scene(p, tmp_path / "out", ms_model,
                         ClassifyOptions(bidx=(4, 3, 2, 1), reflectance_scale=1e-4), sync)
    cls, _, _ = read(res.outputs["classes"])
    assert (cls == truth).all()
    assert res.stats["scene"]["band_names"] == {"blue": 4, "green": 3, "red": 2, "nir": 1}
    assert res.stats["reflectance"]["source"] == "--reflectance-scale"
    assert res.stats["reflectance"]["model_input"] == "linear:0.0001,0"
    item = json.loads(Path(res.outputs["item"]).read_text())
    assert item["properties"]["geoseg:bands"] == {"blue": 4, "green": 3, "red": 2, "nir": 1}
    assert item["properties"]["geoseg:reflectance"]["rule"] == "DN x 0.0001 (--reflectance-scale)"


def test_reflectance_bands_found_by_description(tmp_path, ms_model, truth, sync):
    img = paint_reflectance(truth, 8)
    p = write_scene(tmp_path / "s2.tif", img, colorinterp=False, descriptions=S2_DESCS)
    with pytest.warns(ScalingWarning, match=r"uint16 scene without a calibration.*assuming reflectance = DN x 0.0001"):
        res = classify_scene(p, tmp_path / "out", ms_model, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["scene"]["band_choice"] == "band names"


def test_reflectance_sensor_preset_with_offset(tmp_path, ms_model, truth, sync):
    img = paint_reflectance(truth, 8, offset=-0.1)  # a baseline 04.00 product: DN = (reflectance + 0.1) x 10000
    p = write_scene(tmp_path / "l2a.tif", img, colorinterp=False)
    res = classify_scene(p, tmp_path / "out", ms_model,
                         ClassifyOptions(bidx=(1, 2, 3, 4), sensor="sentinel2-l2a-pb04"), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["reflectance"]["offset"] == [-0.1] * 4


def test_reflectance_from_sentinel2_metadata_without_sensor(tmp_path, ms_model, truth, sync):
    # an L2A product of baseline 04.00 whose tags say so: read right without --sensor, and without a warning
    img = paint_reflectance(truth, 8, offset=-0.1)
    p = write_scene(tmp_path / "l2a.tif", img, colorinterp=False, descriptions=S2_DESCS,
                    tags={"PROCESSING_BASELINE": "04.00", "BOA_ADD_OFFSET": "-1000", "BOA_QUANTIFICATION_VALUE": "10000"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = classify_scene(p, tmp_path / "out", ms_model, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["reflectance"]["source"] == "the file's Sentinel-2 metadata: DN / 10000, offset -1000 DN"
    assert res.stats["reflectance"]["offset"] == pytest.approx([-0.1] * 4)


def test_reflectance_landsat_preset(tmp_path, ms_model, truth, sync):
    img = paint_reflectance(truth, 8, scale=2.75e-5, offset=-0.2)
    p = write_scene(tmp_path / "lc2.tif", img, colorinterp=False,
                    descriptions=("SR_B2", "SR_B3", "SR_B4", "SR_B5"))
    res = classify_scene(p, tmp_path / "out", ms_model, ClassifyOptions(sensor="landsat-c2-l2"), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["scene"]["bands"] == [1, 2, 3, 4]


def test_reflectance_float_stack_with_bidx_only(tmp_path, ms_model, truth, sync):
    img = _bgrn_to(("red", "green", "blue", "nir"), paint_reflectance(truth, 8, scale=1.0, dtype="float32"))
    p = write_scene(tmp_path / "f.tif", img, colorinterp=False)
    res = classify_scene(p, tmp_path / "out", ms_model, ClassifyOptions(bidx=(3, 2, 1, 4)), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["reflectance"]["source"] == "float scene: values are reflectance"


def test_reflectance_file_band_scale_per_band(tmp_path, ms_model, truth, sync):
    refl = paint_reflectance(truth, 8, scale=1.0, dtype="float64")
    scales = (1e-4, 2e-4, 1e-4, 5e-5)
    img = np.stack([np.round(refl[i] / s) for i, s in enumerate(scales)]).astype("uint16")
    p = write_scene(tmp_path / "cal.tif", img, colorinterp=False, scales=scales, offsets=(0.0,) * 4)
    res = classify_scene(p, tmp_path / "out", ms_model, ClassifyOptions(bidx=(1, 2, 3, 4)), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["reflectance"]["source"] == "the file's band scale/offset"
    assert res.stats["reflectance"]["scale"] == list(scales)


def test_reflectance_model_on_8bit_naip_uses_the_uint8_rule(tmp_path, truth, sync):
    # NAIP-like: red, green, blue, nir bands of 8-bit values; the contract's uint8 rule (x 0.6/255 here: the
    # test classes' reflectance reaches 0.5) maps them to the model input
    from helpers import make_reflectance_contract

    c = make_reflectance_contract(8, scaling={"reflectance": Scaling("identity"),
                                              "uint8": Scaling("linear", scale=0.6 / 255)})
    m = make_model(tmp_path / "m.onnx", 8, contract=c, reflectance=True)
    img = _bgrn_to(("red", "green", "blue", "nir"), paint_reflectance(truth, 8, scale=0.6 / 255, dtype="uint8",
                                                                       noise=0.002))
    p = write_scene(tmp_path / "naip.tif", img)  # colour interpretation red, green, blue, undefined
    res = classify_scene(p, tmp_path / "out", m, ClassifyOptions(bidx=(3, 2, 1, 4), sensor="naip"), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["reflectance"]["source"] == "--sensor naip"


@pytest.mark.parametrize("case,msg", [
    ("unnamed", r"p.tif: cannot tell which of its 4 bands are blue, green, red, nir \(bands named: none\).*--bidx"),
    ("naip_on_uint16", r"p.tif: --sensor naip is for 8-bit scenes but the scene is uint16"),
    ("scale_far_off", r"p.tif: with reflectance = the values themselves \(--reflectance-scale\) the scene's median reflectance is "
                      r"\d+.*far outside 0-1.5"),
])
def test_reflectance_scene_errors(tmp_path, ms_model, truth, sync, case, msg):
    p = write_scene(tmp_path / "p.tif", paint_reflectance(truth, 8), colorinterp=False)
    opts = {"unnamed": ClassifyOptions(),
            "naip_on_uint16": ClassifyOptions(bidx=(1, 2, 3, 4), sensor="naip"),
            "scale_far_off": ClassifyOptions(bidx=(1, 2, 3, 4), reflectance_scale=1.0)}[case]
    with pytest.raises(InputError, match=msg):
        classify_scene(p, tmp_path / "out", ms_model, opts, sync)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


@pytest.mark.parametrize("kw,msg", [
    ({"sensor": "modis"}, r"--sensor 'modis' is not a preset"),
    ({"reflectance_offset": -0.1}, r"--reflectance-offset -0.1 needs --reflectance-scale"),
    ({"reflectance_scale": 0.0}, r"--reflectance-scale 0 --reflectance-offset 0: expected a finite, positive"),
    ({"reflectance_scale": -1e-4}, r"--reflectance-scale -0.0001 --reflectance-offset 0: expected a finite, positive"),
    ({"reflectance_scale": 1e-4, "scaling": Scaling("identity")}, r"give it or --reflectance-scale/--sensor"),
])
def test_reflectance_options_are_checked(kw, msg):
    with pytest.raises(InputError, match=msg):
        ClassifyOptions(**kw)


def test_sensor_names_ignore_case_and_spaces():
    assert ClassifyOptions(sensor=" Sentinel2-L2A ").sensor == "sentinel2-l2a"


@pytest.mark.parametrize("kw,words", [
    ({"sensor": "sentinel2-l1c"}, "--sensor applies only to reflectance models (e.g. -m multispectral): drop it,"),
    ({"sensor": "sentinel2-l1c", "reflectance_scale": 1e-4},
     "--reflectance-scale and --sensor apply only to reflectance models (e.g. -m multispectral): drop them,"),
])
def test_reflectance_options_refused_for_an_rgb_model(tmp_path, model8, scene_u8, sync, kw, words):
    with pytest.raises(InputError, match=r"the model 'test-colour-model' takes pixel values \(red, green, blue\), "
                                         r"not reflectance; " + re.escape(words)):
        classify_scene(scene_u8, tmp_path / "out", model8, ClassifyOptions(**kw), sync)


def test_rgb_model_reads_named_bands_not_positions(tmp_path, model8, truth, sync):
    # issue 24: a file whose descriptions say B02_blue, B03_green, B04_red was read as red, green, blue
    rgb = paint(truth, 8)
    img = np.stack([rgb[2], rgb[1], rgb[0], rgb[0]])  # blue, green, red, (nir)
    p = write_scene(tmp_path / "s2.tif", img, colorinterp=False, descriptions=S2_DESCS)
    res = classify_scene(p, tmp_path / "out", model8, ClassifyOptions(), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["scene"]["bands"] == [3, 2, 1] and res.stats["scene"]["band_choice"] == "band names"


def test_options_record_reflectance_only_when_given():
    assert not {"reflectance_scale", "reflectance_offset", "sensor"} & set(ClassifyOptions().to_dict())
    assert ClassifyOptions(sensor="naip").to_dict()["sensor"] == "naip"


def test_scaling_option_with_a_reflectance_model_is_recorded(tmp_path, ms_model, truth, sync):
    p = write_scene(tmp_path / "s.tif", paint_reflectance(truth, 8), colorinterp=False)
    res = classify_scene(p, tmp_path / "out", ms_model,
                         ClassifyOptions(bidx=(1, 2, 3, 4), scaling=Scaling("linear", scale=1e-4)), sync)
    assert (read(res.outputs["classes"])[0] == truth).all()
    assert res.stats["reflectance"]["rule"] == "none: linear:0.0001,0 to the model input (--scaling)"


@pytest.fixture(scope="module")
def float_rule_model(tmp_path_factory):
    """An RGB test model whose contract reads float scenes x 1000 (reflectance 0-1 to 0-255), as the default's."""
    from helpers import make_contract

    c = make_contract(8, scaling={"uint8": Scaling("identity"), "float": Scaling("linear", scale=1000.0)})
    return make_model(tmp_path_factory.mktemp("f") / "f8.onnx", 8, contract=c)


@pytest.mark.parametrize("case,low,high,fix", [
    ("bytes_as_float", 0.0, 255.0, "pass --scaling linear:1 (values 0-255)"),
    ("dn_as_float", 300.0, 3000.0, "pass --scaling percentile:2,98 (other values, e.g. DN)"),
])
def test_float_scene_that_is_not_reflectance_warns(tmp_path, float_rule_model, sync, case, low, high, fix):
    img = np.random.default_rng(5).uniform(low, high, (3, 16, 16)).astype(np.float32)
    p = write_scene(tmp_path / f"{case}.tif", img)
    with pytest.warns(ScalingWarning) as rec:
        classify_scene(p, tmp_path / "out", float_rule_model, ClassifyOptions(), sync)
    msg = str(rec[0].message)
    assert msg.startswith(f"{p}: float32 scene with median value ") and fix in msg
    assert "the model's rule for float scenes (linear:1000,0) is for reflectance 0-1 and saturates most pixels" in msg


@pytest.mark.parametrize("low,high", [(0.0, 0.3), (0.5, 0.9)], ids=["land", "mostly_cloud"])
def test_float_reflectance_scene_does_not_warn(tmp_path, float_rule_model, sync, low, high):
    img = np.random.default_rng(5).uniform(low, high, (3, 16, 16)).astype(np.float32)
    p = write_scene(tmp_path / "refl.tif", img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = classify_scene(p, tmp_path / "out", float_rule_model, ClassifyOptions(), sync)
    assert res.status == "done"


@pytest.mark.parametrize("ok", [True, False], ids=["at_the_limit", "over"])
def test_batch_size_whose_padded_batches_would_not_fit_is_refused(model8, ok):
    # --batch-size 100000 took 22 GB (then SIGKILL) for a 4-patch scene: every batch is padded to the full size
    from geoseg.model import load_model
    from geoseg.pipeline import check_options

    info = load_model(model8)
    most = 64 * 2**20 // (8 * 8 * 3 * 4)
    opts = ClassifyOptions(batch_size=most if ok else most + 1)
    if ok:
        assert check_options(info, opts) is None
    else:
        with pytest.raises(InputError, match=rf"^--batch-size {most + 1}: each batch is padded to that many 8 px "
                                             rf"patches, .* GiB of model input for 'test-colour-model'; expected at "
                                             rf"most {most}: pass a smaller --batch-size"):
            check_options(info, opts)
