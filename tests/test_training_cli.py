"""`geoseg evaluate` (geoseg.training.cli) on the tiny trained run of
conftest.py (skipped without the train extra)."""

import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = pytest.mark.train


def test_evaluate_cli_on_split_and_other_folder(tiny_run, tmp_path):
    import json as _json

    from click.testing import CliRunner

    from geoseg.cli import main

    r = CliRunner().invoke(main, ["evaluate", str(tiny_run)])
    assert r.exit_code == 0, r.output
    out = _json.loads(r.output[r.output.index("{"):])
    assert 0 <= out["accuracy"] <= 1 and set(out["recall"]) == {"desert", "green_area", "water"}
    data = _json.loads((tiny_run / "config.json").read_text())["data_dir"]
    r = CliRunner().invoke(main, ["evaluate", str(tiny_run), "--data", data])
    assert r.exit_code == 0, r.output
    rep = _json.loads((tiny_run / "eval_data" / "report.json").read_text())
    assert rep["n"] >= 40 and (tiny_run / "eval_data" / "confusion.png").exists()
