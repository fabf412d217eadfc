"""Loading models and their contracts, sessions and batches (geoseg.model)."""

import threading

import numpy as np
import pytest

from geoseg.errors import ModelError
from geoseg.model import (DEFAULT_MODEL, file_sha256, get_session, load_model, resolve_model_path, run_batch,
                          write_contract)
from helpers import CLASS_NAMES, CLASS_RGB, make_contract, make_model


def test_load_model_reads_the_contract(model8):
    info = load_model(model8)
    assert info.contract == make_contract(8)
    assert info.contract.class_names == CLASS_NAMES
    assert info.sha256 == file_sha256(model8) and info.size_bytes > 0
    assert info.input_shape[1:] == (8, 8, 3) and info.output_shape[-1] == 4


@pytest.mark.parametrize("case,msg", [
    ("missing", "model file not found"),
    ("notonnx", "not a loadable ONNX model"),
    ("nocontract", "no geoseg contract"),
    ("mismatch", "disagrees with the contract"),
    ("classes", "graph output has 4 classes but the contract names 3"),
    ("dtype", r"graph input type is tensor\(float\) but the contract's input_dtype is uint8 .*re-export"),
])
def test_bad_models(tmp_path, case, msg):
    p = tmp_path / f"{case}.onnx"
    if case == "notonnx":
        p.write_text("hello")
    elif case == "nocontract":
        make_model(p, 8, contract=False)
    elif case == "mismatch":
        make_model(p, 8, contract=make_contract(16))
    elif case == "classes":
        make_model(p, 8, contract=make_contract(8, class_names=CLASS_NAMES[:3], class_colors=("#000000",) * 3))
    elif case == "dtype":
        make_model(p, 8, contract_dtype="uint8")
    with pytest.raises(ModelError, match=msg) as e:
        load_model(p)
    assert str(p) in str(e.value)


def test_write_contract_adds_it(tmp_path):
    bare = make_model(tmp_path / "bare.onnx", 8, contract=False)
    write_contract(bare, make_contract(8, name="added"), tmp_path / "with.onnx")
    assert load_model(tmp_path / "with.onnx").contract.name == "added"
    with pytest.raises(ModelError):
        load_model(bare)  # unchanged


def test_resolve_model_path():
    assert resolve_model_path("m.onnx") == "m.onnx"
    if DEFAULT_MODEL.exists():
        assert resolve_model_path(None) == str(DEFAULT_MODEL)


def test_sessions_per_thread_and_padded_batches(model8):
    sha = file_sha256(model8)
    s = get_session(model8, sha, 1)
    assert get_session(model8, sha, 1) is s
    other = []
    t = threading.Thread(target=lambda: other.append(get_session(model8, sha, 1)))
    t.start()
    t.join()
    assert other[0] is not s
    # each class colour gives its class; a short batch gives the same numbers as a full one
    x = np.repeat(np.repeat(CLASS_RGB[:, None, None, :], 8, 1), 8, 2).astype(np.float32)  # (4, 8, 8, 3)
    p = run_batch(s, "input", x, 16)
    assert p.shape == (4, 4) and p.dtype == np.float32 and (p.argmax(1) == np.arange(4)).all()
    assert np.array_equal(run_batch(s, "input", x[:1], 16), p[:1])


def test_a_failed_run_is_a_model_error_naming_the_model(tmp_path):
    # onnxruntime refuses the batch only when run (here: float64 for a float32 input)
    p = make_model(tmp_path / "m.onnx", 8)
    s = get_session(p, file_sha256(p), 1)
    with pytest.raises(ModelError, match=r"m.onnx: the graph failed on a float64 batch of shape \[2, 8, 8, 3\] "
                                         r"\(.*\); expected a graph that runs"):
        run_batch(s, "input", np.zeros((1, 8, 8, 3)), 2, p)


def test_fixed_batch_size_of_the_graph(tmp_path):
    assert load_model(make_model(tmp_path / "n.onnx", 8)).fixed_batch is None
    assert load_model(make_model(tmp_path / "one.onnx", 8, batch=1)).fixed_batch == 1
