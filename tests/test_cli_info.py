"""`geoseg info MODEL` (geoseg.cli.info)."""

import json

from click.testing import CliRunner

from geoseg.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_info(model8):
    r = run("info", model8)
    assert r.exit_code == 0
    assert "green_area" in r.output and "patch size: 8 px" in r.output
    d = json.loads(run("info", model8, "--json").output)
    assert d["contract"]["class_names"][3] == "water"


def test_info_of_a_reflectance_model(tmp_path):
    from helpers import make_model

    r = run("info", make_model(tmp_path / "ms.onnx", 8, reflectance=True))
    assert r.exit_code == 0
    assert "bands:      blue, green, red, nir (--bidx gives the scene's bands in this order)" in r.output
    assert "input kind: reflectance" in r.output and "then identity to the model input" in r.output
    assert "uncalibrated 8-bit scenes: linear:0.00156863,0 from their values" in r.output


def test_info_of_a_built_in_name():
    from geoseg.builtin import BUILTINS

    r = run("info", "default")
    if BUILTINS["default"].path.exists():
        assert r.exit_code == 0 and "input kind: pixel values" in r.output and "trained at: 10 m per pixel" in r.output
    else:
        assert r.exit_code == 1 and "not installed" in r.output
