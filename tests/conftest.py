import os
from pathlib import Path

import numpy as np
import pytest

from helpers import make_image_dataset, make_model, paint, write_scene  # importable through pytest's `pythonpath = ["tests"]`

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED = Path(os.environ.get("GEOSEG_SHARED", SHARED))


@pytest.fixture(scope="session")
def shared_dir():
    if not (SHARED / "scenes").is_dir():
        pytest.skip(f"real data not present at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def model8(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("models") / "colour8.onnx", patch=8)


@pytest.fixture
def truth():
    """A 6 x 7 grid of patch classes; every class appears."""
    rng = np.random.default_rng(42)
    t = rng.integers(0, 4, size=(6, 7))
    t[0, :4] = [0, 1, 2, 3]
    return t


@pytest.fixture
def scene_u8(tmp_path, truth):
    return write_scene(tmp_path / "scene_u8.tif", paint(truth, 8))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny trained run (train extra): the scratch CNN, 32 px, a few epochs on
    distinct colours; shared by the export and training CLI tests."""
    from geoseg.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("export")
    data = make_image_dataset(root / "data")
    cfg = TrainConfig(str(data), str(root / "run"), arch="scratch", input_size=32, epochs=3,
                      fine_tune_epochs=0, batch_size=8, augment=False)
    train(cfg)
    return root / "run"
