"""Built-in model names (geoseg.builtin) and `geoseg models` (geoseg.cli.models)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from geoseg import builtin
from geoseg.errors import ModelError
from geoseg.model import file_sha256
from helpers import make_model, one_error_line, run_cli


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A models folder holding a test model as `default` and a reflectance one as `multispectral`."""
    d = tmp_path / "models"
    d.mkdir()
    make_model(d / "default.onnx", 8)
    make_model(d / "multispectral.onnx", 8, reflectance=True)
    monkeypatch.setattr(builtin, "MODELS_DIR", d)
    return d


def test_names_resolve_to_the_models_folder(models_dir):
    assert builtin.resolve("multispectral") == str(models_dir / "multispectral.onnx")
    assert builtin.resolve(None) == str(models_dir / "default.onnx")


def test_an_existing_path_wins_over_a_name(models_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(models_dir / "default.onnx", tmp_path / "multispectral")
    assert builtin.resolve("multispectral") == "multispectral"


def test_a_missing_path_is_left_to_the_loader(models_dir):
    assert builtin.resolve("nowhere/model.onnx") == "nowhere/model.onnx"


def test_unknown_name_lists_the_built_ins(models_dir):
    with pytest.raises(ModelError, match=r"^rgbnir: no such model file and not a built-in model \(built-ins: "
                                         r"default, multispectral, rgb-reflectance; `geoseg models` lists them\)"):
        builtin.resolve("rgbnir")


@pytest.mark.parametrize("name,hint", [("multispecral", "did you mean -m multispectral? "),
                                       ("Default", "did you mean -m default? "), ("rgbnir", "")])
def test_unknown_name_suggests_a_close_built_in(models_dir, name, hint):
    with pytest.raises(ModelError, match=rf"^{name}: .*`geoseg models` lists them\); {re.escape(hint)}pass -m with "
                                         r"a built-in name or the path of an .onnx file$"):
        builtin.resolve(name)


def test_built_in_not_installed(models_dir):
    (models_dir / "multispectral.onnx").unlink()
    with pytest.raises(ModelError, match=r"multispectral.onnx: the built-in model 'multispectral' is not installed"):
        builtin.resolve("multispectral")


def test_classify_with_an_unknown_name_is_one_error_line(tmp_path, scene_u8):
    line = one_error_line(run_cli("classify", scene_u8, "-o", tmp_path / "out", "-m", "rgbnir", "-q"))
    assert "rgbnir: no such model file and not a built-in model (built-ins: default, multispectral, rgb-reflectance" in line


def test_classify_with_a_built_in_name(models_dir, tmp_path, scene_u8):
    r = run_cli("classify", scene_u8, "-o", tmp_path / "out", "-m", "default", "-q")
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "out" / "scene_u8_stats.json").read_text())
    assert stats["model"]["path"] == str(models_dir / "default.onnx")


def test_models_lists_bands_classes_and_not_scored(models_dir):
    r = run_cli("models")
    assert r.exit_code == 0
    out = r.output
    assert out.startswith("default\n") and "\nmultispectral\n" in out
    assert "  bands:      blue, green, red, nir (reflectance)" in out
    assert "  bands:      red, green, blue (pixel values)" in out
    assert "  classes:    cloudy, desert, green_area, water" in out
    assert out.count("suite:      not scored") == 2


def test_models_shows_suite_figures_of_the_same_file(models_dir):
    sha = file_sha256(models_dir / "multispectral.onnx")
    (models_dir / "multispectral.suite.json").write_text(json.dumps(
        {"model": "multispectral", "sha256": sha, "figures": {"naip/water_iou": 0.8123, "x/bad": "n/a"}}))
    (models_dir / "default.suite.json").write_text(json.dumps(
        {"model": "default", "sha256": "0" * 64, "figures": {"naip/water_iou": 0.3}}))  # another file's figures
    d = {m["name"]: m for m in json.loads(run_cli("models", "--json").output)}
    assert d["multispectral"]["suite"] == {"naip/water_iou": 0.8123}
    assert d["default"]["suite"] is None
    assert "    naip/water_iou" in run_cli("models").output


def test_models_json(models_dir):
    d = {m["name"]: m for m in json.loads(run_cli("models", "--json").output)}
    assert d["multispectral"]["bands"] == ["blue", "green", "red", "nir"]
    assert d["multispectral"]["input_kind"] == "reflectance" and d["default"]["input_kind"] == "dn"
    assert d["default"]["installed"] is True and d["default"]["card"].endswith("MODEL_CARD.md")


def test_models_with_one_not_installed(models_dir):
    (models_dir / "multispectral.onnx").unlink()
    r = run_cli("models")
    assert r.exit_code == 0 and "multispectral  (not installed)" in r.output


def test_corrupt_suite_file_is_not_scored(models_dir):
    (models_dir / "default.suite.json").write_text("{not json")
    assert builtin.suite_figures(builtin.BUILTINS["default"]) is None


@pytest.mark.skipif(not builtin.BUILTINS["multispectral"].path.exists(), reason="multispectral.onnx not installed")
@pytest.mark.parametrize("dtype,args,rule", [
    ("uint8", ["--bidx", "3,2,1,4"], "the model's uint8 rule (8-bit scene without calibration)"),
    ("uint16", ["--bidx", "2,3,4,8", "--reflectance-scale", "0.0001"], "DN x 0.0001 (--reflectance-scale)"),
    ("float32", ["--bidx", "2,3,4,8"], "the values themselves (float scene: values are reflectance)"),
    ("uint16", ["--bidx", "2,3,4,8", "--sensor", "sentinel2-l1c-pb04"], "DN x 0.0001 -0.1 (--sensor sentinel2-l1c-pb04)"),
])
def test_pinned_commands_with_the_shipped_multispectral_model(tmp_path, dtype, args, rule):
    # the pinned CLI on tiny scenes: NAIP-like 8-bit R, G, B, N; a 13-band Sentinel-2-like stack
    from helpers import write_scene

    rng = np.random.default_rng(0)
    n = 4 if dtype == "uint8" else 13
    scale = {"uint8": 255 / 0.4, "uint16": 1e4, "float32": 1.0}[dtype]
    refl = rng.uniform(0.02, 0.3, (n, 128, 128)) + (0.1 if "pb04" in " ".join(args) else 0.0)
    p = write_scene(tmp_path / "scene.tif", (refl * scale).astype(dtype), colorinterp=False)
    r = run_cli("classify", p, "-o", tmp_path / "out", "-m", "multispectral", "-q", *args)
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "out" / "scene_stats.json").read_text())
    assert stats["reflectance"]["rule"] == rule and stats["model"]["name"].startswith("geoseg-multispectral")
    assert stats["classified_cells"] == 4
