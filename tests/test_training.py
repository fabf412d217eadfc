"""The training pipeline on a tiny synthetic dataset (skipped without the train extra)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = pytest.mark.train

from geoseg.training import data as D  # noqa: E402
from helpers import make_image_dataset  # noqa: E402

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_image_dataset(tmp_path_factory.mktemp("data"))


def test_cmyk_decodes_to_right_colours(dataset):
    im, mode = D.decode_rgb(str(dataset / "desert" / "cmyk.jpg"))
    assert mode == "CMYK"
    ref = np.asarray(Image.open(dataset / "desert" / "desert_0.jpg"), float).mean((0, 1))
    got = np.asarray(im, float).mean((0, 1))
    assert np.abs(got - ref).max() < 12  # not inverted, not a colour cast


def test_prepare_rejects_and_keeps_duplicates_together(dataset, tmp_path):
    recs, x, classes = D.prepare(str(dataset), str(tmp_path), size=32, seed=1)
    assert classes == ["desert", "green_area", "water"]
    assert x.shape == (len(recs), 32, 32, 3) and x.dtype == np.uint8
    rejected = {r["file"]: r["reason"] for r in csv.DictReader(open(tmp_path / "rejected.csv"))}
    assert "cannot decode" in rejected[os.path.join("water", "corrupt.jpg")]
    assert "not an image extension" in rejected[os.path.join("water", "notes.txt")]
    assert os.path.join("green_area", "png_named.jpg") in rejected
    by_file = {r.file: r for r in recs}
    for a, b in (("water_0.jpg", "water_0 (1).jpg"), ("water_1.jpg", "water_1_again.jpg")):
        ra, rb = by_file[os.path.join("water", a)], by_file[os.path.join("water", b)]
        assert ra.group == rb.group and ra.split == rb.split
    rep = json.load(open(tmp_path / "data_report.json"))
    assert rep["groups_split_across_sets"] == 0 and rep["duplicate_groups"] >= 2
    assert {r.split for r in recs} == {"train", "val", "test"}
    # the same seed gives the same split
    recs2, _, _ = D.prepare(str(dataset), str(tmp_path / "again"), size=32, seed=1)
    assert [r.split for r in recs] == [r.split for r in recs2]


def test_resize_is_antialiased():
    # a 1-px checkerboard has no landscape content: down-sampled it must turn grey
    a = (np.indices((128, 128)).sum(0) % 2 * 255).astype(np.uint8)
    im = Image.fromarray(np.stack([a] * 3, -1))
    out = D.resize_rgb(im, 32)
    assert out.std() < 10 and abs(out.mean() - 127.5) < 10


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
    assert json.load(open(run / "config.json"))["versions"]["tensorflow"]
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


def test_imagenet_weights_from_local_keras_home(tmp_path):
    """The real `--weights imagenet` path: Keras finds the file in $KERAS_HOME/models."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from geoseg.training.models import MOBILENET_ALPHA

    ref = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=MOBILENET_ALPHA,
                                         input_shape=(64, 64, 3), pooling="avg")
    ref.set_weights([w + 0.01 for w in ref.get_weights()])
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(MOBILENET_ALPHA)}_224_no_top.h5"
    with h5py.File(home / "models" / fname, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    np.savez(tmp_path / "ref.npz", *ref.get_weights())
    # KERAS_HOME is read when Keras is imported: run the real path in a fresh process
    code = f"""
import numpy as np
import keras.src.utils.file_utils as fu
def no_download(*a, **k):
    raise AssertionError("download attempted")
fu.urlretrieve = no_download
from geoseg.training.models import build_backbone
bb = build_backbone("mobilenetv2", 64, "imagenet")
ref = np.load({str(tmp_path / "ref.npz")!r})
ws = bb.get_weights()
assert len(ws) == len(ref.files)
assert all(np.array_equal(w, ref[f"arr_{{i}}"]) for i, w in enumerate(ws))
print("LOADED-FROM-KERAS-HOME")
"""
    env = {**os.environ, "KERAS_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert "LOADED-FROM-KERAS-HOME" in out.stdout, out.stderr[-2000:]
