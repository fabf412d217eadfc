"""Training (geoseg.training.train) on a tiny synthetic dataset (skipped
without the train extra)."""

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = pytest.mark.train

from geoseg.training import data as D  # noqa: E402
from helpers import make_image_dataset  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_image_dataset(tmp_path_factory.mktemp("data"))


def test_train_tiny_transfer_and_report(dataset, tmp_path):
    import keras

    from geoseg.training.train import TrainConfig, train

    cfg = TrainConfig(str(dataset), str(tmp_path / "run"), arch="mobilenetv2", weights=None, input_size=32,
                      epochs=1, fine_tune_epochs=1, batch_size=16)
    rep = train(cfg)
    run = tmp_path / "run"
    for f in ("report.json", "report.md", "confusion.png", "curves.png", "errors.png", "manifest.csv",
              "config.json", "model.keras", "data_report.md"):
        assert (run / f).exists(), f
    for key in ("accuracy", "per_class", "macro", "confusion", "shortcut_check"):
        assert key in rep
    assert set(rep["per_class"]["water"]) == {"precision", "recall", "f1", "support"}
    assert json.loads((run / "config.json").read_text())["versions"]["tensorflow"]
    m = keras.models.load_model(run / "model.keras")
    # the model takes raw uint8 pixels (preprocessing inside)
    p = m.predict(np.full((2, 32, 32, 3), 200, np.uint8), verbose=0)
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_train_scratch_with_split_from(dataset, tmp_path):
    from geoseg.training.train import TrainConfig, train

    D.prepare(str(dataset), str(tmp_path / "split"), size=32, seed=3)
    cfg = TrainConfig(str(dataset), str(tmp_path / "scratch"), arch="scratch", input_size=32, epochs=1,
                      fine_tune_epochs=0, batch_size=16, split_from=str(tmp_path / "split" / "manifest.csv"))
    train(cfg)
    a = [r.split for r in D.read_manifest(str(tmp_path / "split" / "manifest.csv"))]
    b = [r.split for r in D.read_manifest(str(tmp_path / "scratch" / "manifest.csv"))]
    assert a == b


def test_pretrain_excludes_evaluation_images(tiny_run, tmp_path):
    """Pre-training on a folder that holds the 4-class images leaves out every
    image of the run's validation and test split."""
    import json as _json

    from geoseg.training import data as D
    from geoseg.training.train import pretrain

    data = _json.loads((tiny_run / "config.json").read_text())["data_dir"]
    manifest = str(tiny_run / "manifest.csv")
    held_out = sum(r.split in ("val", "test") for r in D.read_manifest(manifest))
    out = tmp_path / "bb.weights.h5"
    doc = pretrain(data, str(out), [manifest], arch="mobilenetv2", size=32, epochs=1, batch_size=16)
    assert out.exists() and (tmp_path / "bb.json").exists()
    assert doc["n_excluded"] >= held_out > 0
    # the weights load as a backbone for training
    from geoseg.training.models import build_backbone

    build_backbone("mobilenetv2", 32, str(out))


def test_options_that_cannot_work_are_refused_before_training(dataset, tmp_path):
    from geoseg.training.train import TrainConfig, train

    with pytest.raises(ValueError, match=r"--weights w.h5: weights are for the pretrained backbones .* leave --weights"):
        train(TrainConfig(str(dataset), str(tmp_path / "a"), arch="scratch", weights="w.h5"))
    with pytest.raises(ValueError, match=r"--input-size 17: the mobilenetv2 backbone needs at least 32 px"):
        train(TrainConfig(str(dataset), str(tmp_path / "b"), arch="mobilenetv2", input_size=17))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
