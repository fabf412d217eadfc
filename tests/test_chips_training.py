"""Chips -> train -> export -> classify with 4 bands (RGB + NIR), uint16
(skipped without the train extra)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp as CI

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = [
    pytest.mark.train,
    # TensorFlow's EagerTensor.__array__ predates NumPy 2's copy keyword (keras
    # convert_to_numpy in fit callbacks); third-party, harmless
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

X0, Y0, RES = 500000.0, 6000000.0, 10.0
CRS = "EPSG:32633"
SIZE = 16


def planted(h, w, seed):
    """4-band uint16 image: water (left half: dark, low NIR), forest (right half:
    green, bright NIR); noise.  Returns (4, h, w) and the truth (h, w): 0 forest, 1 water."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((h, w), np.uint8)
    truth[:, : w // 2] = 1
    water = np.array([300, 400, 600, 200.0])
    forest = np.array([500, 900, 400, 3500.0])
    img = np.where(truth[None] == 1, water[:, None, None], forest[:, None, None])
    img = img + rng.normal(0, 60, img.shape)
    return np.clip(img, 1, 10000).astype(np.uint16), truth


def write4(path, img):
    with rasterio.open(path, "w", driver="GTiff", width=img.shape[2], height=img.shape[1], count=4, dtype=img.dtype,
                       crs=CRS, transform=Affine(RES, 0, X0, 0, -RES, Y0), nodata=0) as dst:
        dst.write(img)
        dst.colorinterp = [CI.red, CI.green, CI.blue, CI.nir]
    return str(path)


@pytest.fixture(scope="module")
def chips_dir(tmp_path_factory):
    import geopandas as gpd
    import shapely

    from geoseg.chips import BlockSize, ChipConfig, make_chips

    root = tmp_path_factory.mktemp("chips4")
    img, _ = planted(128, 128, 0)
    scene = write4(root / "train_scene.tif", img)
    geoms = [shapely.box(X0, Y0 - 1280, X0 + 640, Y0), shapely.box(X0 + 640, Y0 - 1280, X0 + 1280, Y0)]
    gpd.GeoDataFrame({"class": ["water", "forest"]}, geometry=geoms, crs=CRS).to_crs("EPSG:4326").to_file(
        root / "labels.geojson")
    res = make_chips([scene], str(root / "labels.geojson"), str(root / "chips"),
                     ChipConfig(size=SIZE, block_size=BlockSize(32, "px")))
    assert res.counts == {"forest": 32, "water": 32} and res.n_groups == 16
    return str(root / "chips")


@pytest.fixture(scope="module")
def run(chips_dir, tmp_path_factory):
    from geoseg.training.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("run4") / "run"
    cfg = TrainConfig(chips_dir, str(run_dir), arch="scratch", input_size=None, epochs=4, fine_tune_epochs=4,
                      batch_size=8, lr=3e-3, augment=False)
    rep = train(cfg)
    return run_dir, rep


def test_prepare_splits_by_spatial_group(chips_dir, tmp_path):
    from geoseg.training import data as D

    recs, x, classes = D.prepare(chips_dir, str(tmp_path), size=None, seed=0)
    assert classes == ["forest", "water"] and x.shape == (64, SIZE, SIZE, 4) and x.dtype == np.uint8
    # 16 blocks of 2 x 2 chips: every group of 4 chips lies on one side of the split
    by_group = {}
    for r in recs:
        by_group.setdefault(r.group, set()).add(r.split)
    assert len(by_group) == 16 and all(len(s) == 1 for s in by_group.values())
    assert {r.split for r in recs} == {"train", "val", "test"}
    rep = json.loads((tmp_path / "data_report.json").read_text())
    ch = rep["chips"]
    assert ch["block_size"] == "32px" and ch["n_groups"] == 16 and rep["groups_split_across_sets"] == 0
    assert ch["band_names"] == ["red", "green", "blue", "nir"] and ch["dtype"] == "uint16"
    assert ch["pixel_size_m"] == 10.0 and ch["scaling_key"] == "uint16" and ch["scaling"]["method"] == "linear"
    assert "blocks of 32px" in (tmp_path / "data_report.md").read_text()
    with pytest.raises(ValueError, match="pass --input-size 16"):
        D.prepare(chips_dir, str(tmp_path / "b"), size=64)


def test_prepare_refuses_a_split_with_an_empty_side(tmp_path):
    # one block holds every chip: one group, so val and test would be empty
    # (training then died in Keras' predict with a traceback)
    import geopandas as gpd
    import shapely

    from geoseg.chips import BlockSize, ChipConfig, make_chips
    from geoseg.training import data as D

    img, _ = planted(64, 64, 1)
    scene = write4(tmp_path / "small.tif", img)
    gpd.GeoDataFrame({"class": ["water", "forest"]},
                     geometry=[shapely.box(X0, Y0 - 640, X0 + 320, Y0), shapely.box(X0 + 320, Y0 - 640, X0 + 640, Y0)],
                     crs=CRS).to_file(tmp_path / "labels.geojson")
    make_chips([scene], str(tmp_path / "labels.geojson"), str(tmp_path / "chips"),
               ChipConfig(size=SIZE, block_size=BlockSize(64, "px")))
    with pytest.raises(ValueError, match=r"chips: the split has no val and no test images \(16 images in 1 groups.*"
                                         r"smaller --block-size \(now 64px\)"):
        D.prepare(str(tmp_path / "chips"), str(tmp_path / "run"), size=None, seed=0)
    assert not (tmp_path / "run" / "manifest.csv").exists()


def test_broken_manifests_are_one_clear_error(chips_dir, tmp_path):
    import shutil

    from geoseg.errors import InputError
    from geoseg.training import data as D

    d = tmp_path / "chips"
    shutil.copytree(chips_dir, d)
    text = (d / "chips.csv").read_text()
    (d / "chips.csv").write_bytes(b"\x89\xb6\x00binary")
    with pytest.raises(InputError, match=r"chips.csv: not a CSV text file .*cut the chips again"):
        D.prepare(str(d), str(tmp_path / "r1"), size=None)
    first = text.splitlines()[1].split(",")[0]
    (d / "chips.csv").write_text(text.replace(first, "/etc/" + os.path.basename(first), 1))
    with pytest.raises(InputError, match=r"chip path '/etc/.*' is not inside the chips folder"):
        D.prepare(str(d), str(tmp_path / "r2"), size=None)
    with pytest.raises(ValueError, match=r"labels.geojson: not a manifest.csv of `geoseg prepare`"):
        D.read_manifest(str(os.path.join(os.path.dirname(chips_dir), "labels.geojson")))


def test_pretrained_arch_refuses_four_bands(chips_dir, tmp_path):
    from geoseg.training.train import TrainConfig, train

    with pytest.raises(ValueError, match="use --arch scratch"):
        train(TrainConfig(chips_dir, str(tmp_path / "r"), arch="mobilenetv2", input_size=None, epochs=1))


def test_export_and_classify_four_bands(run, tmp_path):
    from click.testing import CliRunner

    from geoseg.batch import classify_many
    from geoseg.cli import main
    from geoseg.export.convert import export_model
    from geoseg.model import load_model
    from geoseg.scheduling import Runner

    run_dir, rep = run
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["input_size"] == SIZE and cfg["bands"] == ["red", "green", "blue", "nir"]
    onnx_path = str(tmp_path / "four.onnx")
    res = export_model(str(run_dir / "model.keras"), onnx_path)
    assert res.parity.ok and "test split" in res.parity.source
    c = load_model(onnx_path).contract
    assert c.bands == ("red", "green", "blue", "nir") and c.patch_size == SIZE
    assert c.training_resolution_m == 10.0
    assert c.scaling["uint16"].method == "linear" and c.scaling["uint16"].scale == pytest.approx(
        cfg["scaling"]["uint16"]["scale"])
    # a new 4-band scene, no flags
    img, truth = planted(64, 96, 1)
    scene = write4(tmp_path / "new_scene.tif", img)
    with Runner("synchronous") as r:
        out = classify_many([scene], tmp_path / "out", onnx_path, runner=r)
    assert out.ok, [s.error for s in out.scenes]
    with rasterio.open(tmp_path / "out" / "new_scene_classes.tif") as src:
        cls = src.read(1)
        assert src.crs.to_epsg() == 32633 and cls.shape == (64 // SIZE, 96 // SIZE)
    # the planted classes are trivially separable: the map is right (forest 0, water 1)
    expect = truth[::SIZE, ::SIZE]
    assert (cls == expect).mean() >= 0.9, (rep["accuracy"], cls, expect)
    r = CliRunner().invoke(main, ["classify", scene, "-m", onnx_path, "-o", str(tmp_path / "cli_out"),
                                  "--scheduler", "synchronous"])
    assert r.exit_code == 0, r.output
    assert os.path.exists(tmp_path / "cli_out" / "new_scene_classes.tif")


def test_evaluate_run_on_chips(run):
    from geoseg.training.evaluate import evaluate_run

    run_dir, rep = run
    rep2 = evaluate_run(str(run_dir))
    assert rep2["n"] == rep["n"] and rep2["accuracy"] == pytest.approx(rep["accuracy"])
