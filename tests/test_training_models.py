"""Backbones and their weights (geoseg.training.models) (skipped without the train extra)."""

import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = pytest.mark.train


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


def test_backbone_weights_that_are_not_a_backbones_are_refused(tmp_path):
    from geoseg.training.models import build_backbone

    text = tmp_path / "notes.weights.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes.weights.h5: not a Keras weights file of a mobilenetv2 backbone"):
        build_backbone("mobilenetv2", 32, str(text))
    # a whole model of another architecture loads nothing (Keras only warns): refused, not trained from random
    import keras

    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "dense.weights.h5")
    with pytest.raises(ValueError, match=r"dense.weights.h5: only 0 of the \d+ weight tensors of the mobilenetv2"):
        build_backbone("mobilenetv2", 32, str(tmp_path / "dense.weights.h5"))
