"""Weight averaging of training runs (training/soup.py) and the fine-tuning
runs that share a start (`geoseg train --init-from ... --epochs 0`), on tiny
synthetic reflectance chips (skipped without the train extra)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = [
    pytest.mark.train,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

from helpers import one_error_line, run_cli  # noqa: E402
from test_training_reflectance import write_chips  # noqa: E402

BACKBONE = str(Path(__file__).parents[1] / "training" / "backbones" / "mobilenetv2_eurosat_e14.weights.h5")


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    return write_chips(tmp_path_factory.mktemp("soup") / "chips", n=8)


def _cfg(chips: str, run_dir: Path, **kw):
    from geoseg.training.train import TrainConfig

    base = dict(arch="mobilenetv2", weights=BACKBONE, input_size=None, epochs=1, fine_tune_epochs=0, batch_size=8,
                input_kind="reflectance", fine_tune_fraction=0.2)
    return TrainConfig(chips, str(run_dir), **{**base, **kw})


@pytest.fixture(scope="module")
def head_and_tune(chips, tmp_path_factory):
    """A head run, and one fine-tuning run started from it (its split, another seed)."""
    from geoseg.training.train import train

    root = tmp_path_factory.mktemp("souprun")
    train(_cfg(chips, root / "head"))
    train(_cfg(chips, root / "tune", epochs=0, fine_tune_epochs=1, seed=1, init_from=str(root / "head" / "model.keras"),
               split_from=str(root / "head" / "manifest.csv")))
    return root / "head", root / "tune"


def _weights(run_dir: Path) -> list[np.ndarray]:
    import keras

    return list(keras.models.load_model(run_dir / "model.keras").get_weights())


def test_average_weights_is_the_elementwise_mean():
    from geoseg.training.soup import average_weights

    a = [np.array([1.0, 2.0], np.float32), np.array([[4.0]], np.float32)]
    b = [np.array([3.0, 6.0], np.float32), np.array([[0.0]], np.float32)]
    out = average_weights([a, b])
    np.testing.assert_array_equal(out[0], [2.0, 4.0])
    np.testing.assert_array_equal(out[1], [[2.0]])
    assert out[0].dtype == np.float32


def test_init_from_run_starts_from_its_weights_and_fine_tunes(head_and_tune):
    head, tune = head_and_tune
    wh, wt = _weights(head), _weights(tune)
    cfg = json.loads((tune / "config.json").read_text())
    assert cfg["init_from"].endswith("model.keras") and cfg["epochs"] == 0
    # the head (Dense) is the head run's, then fine-tuned: changed, but by a step, not re-initialised
    moved = [float(np.abs(a - b).max()) for a, b in zip(wh, wt)]
    assert max(moved) > 0
    assert float(np.abs(wh[-2] - wt[-2]).max()) < 0.1 * float(np.abs(wh[-2]).max())
    assert (head / "manifest.csv").read_text() == (tune / "manifest.csv").read_text()


def test_soup_averages_two_runs_and_exports_with_parity(head_and_tune, tmp_path):
    from geoseg.export.convert import export_model
    from geoseg.training.soup import soup

    head, tune = head_and_tune
    doc = soup([str(head), str(tune)], str(tmp_path / "soup"))
    want = [(a + b) / 2 for a, b in zip(_weights(head), _weights(tune))]
    got = _weights(tmp_path / "soup")
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    assert doc["seeds"] == [0, 1] and 0 < doc["tensors_equal_in_all_runs"] < doc["tensors"]
    cfg = json.loads((tmp_path / "soup" / "config.json").read_text())
    assert cfg["soup_of"] == [str(head), str(tune)] and cfg["input_kind"] == "reflectance"
    res = export_model(str(tmp_path / "soup" / "model.keras"), str(tmp_path / "soup.onnx"), input_dtype=None)
    assert res.parity.ok and res.parity.n > 0 and res.contract["bands"] == ["blue", "green", "red", "nir"]


@pytest.mark.parametrize("case, match", [
    ("one run", "at least two run folders"),
    ("other classes", "not the recipe of"),
    ("no config", "cannot read the run's config"),
])
def test_soup_refuses_runs_that_cannot_be_averaged(head_and_tune, tmp_path, case, match):
    from geoseg.training.soup import soup

    head, _ = head_and_tune
    other = tmp_path / "other"
    other.mkdir()
    if case == "other classes":
        cfg = json.loads((head / "config.json").read_text())
        (other / "config.json").write_text(json.dumps({**cfg, "classes": ["a", "b"]}))
    runs = [str(head)] if case == "one run" else [str(head), str(other)]
    with pytest.raises(ValueError, match=match):
        soup(runs, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_init_from_a_model_of_another_architecture_is_refused(head_and_tune, chips, tmp_path):
    from geoseg.training.train import train

    head, _ = head_and_tune
    with pytest.raises(ValueError, match="not the architecture of the model this run builds"):
        train(_cfg(chips, tmp_path / "run", epochs=0, fine_tune_epochs=1, spectral_indices=True,
                   init_from=str(head / "model.keras"), split_from=str(head / "manifest.csv")))


@pytest.mark.parametrize("extra, match", [
    ([], "--epochs 0: the head would stay untrained"),
    (["--init-from", "MODEL", "--fine-tune-epochs", "0"], "--epochs 0: nothing to train"),
    (["--init-from", "MODEL", "--arch", "scratch", "--weights", "none", "--fine-tune-epochs", "1"],
     "--init-from .*: for the transfer recipes"),
])
def test_train_epochs_zero_and_init_from_errors_are_one_line(head_and_tune, chips, tmp_path, extra, match):
    import re

    head, _ = head_and_tune
    extra = [str(head / "model.keras") if a == "MODEL" else a for a in extra]
    args = ["train", chips, "-o", str(tmp_path / "run"), "--input-kind", "reflectance", "--weights", BACKBONE,
            "--epochs", "0", *extra]
    line = one_error_line(run_cli(*args))
    assert re.search(match, line), line
    assert not (tmp_path / "run").exists()
