"""`geoseg evaluate` (geoseg.training.cli) on the tiny trained run of
conftest.py (skipped without the train extra)."""

import os

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


def test_train_mix_skip_unknown_class_is_one_clear_line(tmp_path):
    from click.testing import CliRunner

    from geoseg.cli import main
    from helpers import make_image_dataset

    data = make_image_dataset(tmp_path / "data")
    r = CliRunner().invoke(main, ["train", str(data), "-o", str(tmp_path / "run"), "--arch", "scratch",
                                  "--input-size", "32", "--epochs", "1", "--fine-tune-epochs", "0",
                                  "--mix-cells", "0.5", "--mix-skip", "cloudy"])
    assert r.exit_code != 0
    # progress lines (info) and then one error line naming the option, the class and the classes there are
    errors = [ln for ln in r.output.splitlines() if "info:" not in ln and ln.strip()]
    assert len(errors) == 1, r.output
    assert "--mix-skip" in errors[0] and "cloudy" in errors[0] and "classes:" in errors[0], r.output
    assert "Traceback" not in r.output


def test_evaluate_in_a_fresh_process_prints_no_tensorflow_log(tiny_run):
    # TensorFlow writes its C++ start-up log (absl, oneDNN) to fd 2 while it loads
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", "geoseg", "evaluate", str(tiny_run)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert '"accuracy"' in r.stdout
    for noise in ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "E0000", "I0000"):
        assert noise not in r.stderr, r.stderr


def test_evaluate_a_damaged_run_folder(tiny_run, tmp_path):
    import shutil

    from click.testing import CliRunner

    from geoseg.cli import main

    def err(run):
        r = CliRunner().invoke(main, ["evaluate", str(run)])
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        return r.output.strip().splitlines()[-1]

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "config.json").write_text("[]")
    assert "config.json: lacks classes, input_size, data_dir" in err(run)
    (run / "config.json").write_text("{")
    assert "config.json: not readable JSON" in err(run)
    (run / "config.json").unlink()
    assert "not a run folder of `geoseg train` (no config.json)" in err(run)
    shutil.copy(tiny_run / "config.json", run / "config.json")
    (run / "model.keras").write_bytes(b"PK\x03\x04 cut")
    assert "model.keras: cannot load the model" in err(run)
    shutil.copy(tiny_run / "model.keras", run / "model.keras")
    (run / "manifest.csv").unlink()
    assert "manifest.csv: not found; expected the manifest.csv" in err(run)


def test_evaluate_finds_the_data_from_another_working_directory(tiny_run, tmp_path, monkeypatch):
    # config.json keeps data_dir as given (e.g. relative: it is quoted in the
    # exported contract) and data_dir_abs to find it from elsewhere
    import json as _json
    import shutil

    from click.testing import CliRunner

    from geoseg.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = _json.loads((run / "config.json").read_text())
    assert os.path.isabs(cfg["data_dir_abs"])
    cfg["data_dir"] = "data-as-typed-elsewhere"
    (run / "config.json").write_text(_json.dumps(cfg))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["evaluate", str(run)])
    assert r.exit_code == 0, r.output
