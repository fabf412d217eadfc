"""Keras -> ONNX export (geoseg.export): parity, contract round trip, refusal of
a broken graph, int8 quantization (skipped without the train extra); the
trained run is the session fixture ``tiny_run`` of conftest.py."""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = pytest.mark.train


def test_export_parity_and_contract_round_trip(tiny_run, tmp_path):
    from geoseg.export.convert import export_model
    from geoseg.model import load_model

    out = tmp_path / "m.onnx"
    res = export_model(str(tiny_run / "model.keras"), str(out), resolution=10.0, name="tiny")
    assert res.parity.ok and res.parity.n > 0 and res.parity.source.startswith("test split")
    assert res.parity.max_abs_diff <= 1e-4 and res.parity.argmax_agreement == 1.0
    info = load_model(out)  # the runtime accepts it
    c = info.contract
    assert c.class_names == ("desert", "green_area", "water")
    assert c.patch_size == 32 and c.bands == ("red", "green", "blue")
    assert c.input_layout == "NCHW" and c.input_dtype == "uint8"  # the runtime's cheapest feed
    assert c.training_resolution_m == 10.0 and c.name == "tiny"
    assert c.scaling["uint8"].method == "identity" and c.scaling["uint16"].method == "percentile"
    assert c.extra["metrics"]["test_accuracy"] is not None and "per_class" in c.extra["metrics"]
    assert c.extra["export"]["tf2onnx"] and c.extra["parity"]["max_abs_diff"] <= 1e-4
    assert info.input_shape[0] in (None, "N", "unk__0") or not isinstance(info.input_shape[0], int)
    # the runtime classifies with it
    import onnxruntime as ort

    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    p = s.run(None, {"input": np.full((5, 3, 32, 32), 120, np.uint8)})[0]
    assert p.shape == (5, 3)
    # the Keras model's own float32 NHWC input is still available, and both
    # give the same probabilities for the same 8-bit pixels
    out2 = tmp_path / "nhwc.onnx"
    res2 = export_model(str(tiny_run / "model.keras"), str(out2), input_layout="NHWC", input_dtype="float32")
    assert res2.parity.ok and load_model(out2).contract.input_layout == "NHWC"
    x = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    s2 = ort.InferenceSession(str(out2), providers=["CPUExecutionProvider"])
    p1 = s.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    p2 = s2.run(None, {"input": x.astype(np.float32)})[0]
    assert np.abs(p1 - p2).max() < 1e-5


def test_adapt_input_on_a_small_graph():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from geoseg.export.graph import adapt_input

    # y = mean over H, W of x * 2 for NHWC float input: any layout edit must keep it
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    g = helper.make_graph(
        [helper.make_node("Mul", ["input", "two"], ["m"]),
         helper.make_node("ReduceMean", ["m"], ["y"], axes=[1, 2], keepdims=0)],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 5, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [two])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9  # what this onnxruntime reads (onnx writes a newer one by default)
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3)).astype(np.uint8)
    want = x.astype(np.float32).mean(axis=(1, 2)) * 2
    a = adapt_input(m, "NCHW", "uint8")
    assert a.graph.input[0].name == "input" and a.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    s = ort.InferenceSession(a.SerializeToString(), providers=["CPUExecutionProvider"])
    got = s.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    assert np.allclose(got, want)
    with pytest.raises(ValueError, match="layout"):
        adapt_input(m, "NWHC", "uint8")
    with pytest.raises(ValueError, match="not a 4-d float32"):
        adapt_input(a, "NCHW", "uint8")  # already adapted
    assert onnx.checker.check_model(a) is None


def test_export_cli_and_info(tiny_run, tmp_path):
    from click.testing import CliRunner

    from geoseg.cli import main

    r = CliRunner().invoke(main, ["export", str(tiny_run / "model.keras"), "-o", str(tmp_path / "c.onnx")])
    assert r.exit_code == 0, r.output
    assert "parity:" in r.output and "argmax agreement 100.00%" in r.output
    r = CliRunner().invoke(main, ["info", str(tmp_path / "c.onnx")])
    assert r.exit_code == 0 and "green_area" in r.output and "metrics:" in r.output


def test_broken_graph_is_refused(tiny_run, tmp_path, monkeypatch):
    """A conversion that silently changes the model must fail the export."""
    import keras
    import tf2onnx

    from geoseg.export.convert import ExportError, export_model

    real = tf2onnx.convert.from_keras

    def broken(model, **kw):
        other = keras.models.clone_model(model)  # same graph, fresh random weights
        other.set_weights([w + np.float32(0.5) for w in model.get_weights()])
        return real(other, **kw)

    monkeypatch.setattr(tf2onnx.convert, "from_keras", broken)
    out = tmp_path / "broken.onnx"
    with pytest.raises(ExportError, match="parity failed"):
        export_model(str(tiny_run / "model.keras"), str(out))
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "tmp" in f]


def test_int8_quantization_report_and_refusal(tiny_run, tmp_path, monkeypatch):
    import geoseg.export.convert as C
    from geoseg.model import load_model

    res = C.export_model(str(tiny_run / "model.keras"), str(tmp_path / "q.onnx"), quantize="int8")
    q = res.quantized
    assert q["written"] and os.path.exists(tmp_path / "q.int8.onnx")
    for k in ("size_bytes", "float_size_bytes", "accuracy_float", "accuracy_int8", "patches_per_s_float",
              "patches_per_s_int8", "calibration_images"):
        assert k in q
    assert q["accuracy_float"] - q["accuracy_int8"] <= 0.005
    info = load_model(tmp_path / "q.int8.onnx")
    assert info.contract.extra["quantization"]["accuracy_int8"] == q["accuracy_int8"]
    assert "patches_per_s_int8" not in info.contract.extra["quantization"]  # measured: in the report only
    # the same export again writes the same bytes (make default-model reproduces the shipped files)
    (tmp_path / "again").mkdir()
    C.export_model(str(tiny_run / "model.keras"), str(tmp_path / "again" / "q.onnx"), quantize="int8")
    for name in ("q.onnx", "q.int8.onnx"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    # a stricter limit than the model meets: refused, nothing written
    monkeypatch.setattr(C, "MAX_INT8_DROP", -1.0)
    with pytest.raises(C.ExportError, match="0.5 point"):
        C.export_model(str(tiny_run / "model.keras"), str(tmp_path / "r.onnx"), quantize="int8")
    assert not (tmp_path / "r.int8.onnx").exists()


def test_export_wide_scaling_in_contract(tiny_run, tmp_path):
    from click.testing import CliRunner

    from geoseg.cli import main
    from geoseg.contract import Scaling
    from geoseg.model import load_model

    spec = "percentile:2,98:25-222,46-189,67-182"
    r = CliRunner().invoke(main, ["export", str(tiny_run / "model.keras"), "-o", str(tmp_path / "w.onnx"),
                                  "--wide-scaling", spec])
    assert r.exit_code == 0, r.output
    c = load_model(str(tmp_path / "w.onnx")).contract
    assert c.scaling["uint16"] == c.scaling["float"] == Scaling.parse(spec)
    assert c.scaling["uint8"] == Scaling("identity")
    r = CliRunner().invoke(main, ["export", str(tiny_run / "model.keras"), "-o", str(tmp_path / "x.onnx"),
                                  "--wide-scaling", "percentile:2,98:1-2"])
    assert r.exit_code == 1 and "one OUT_LOW-OUT_HIGH pair per band" in r.output
    r = CliRunner().invoke(main, ["export", str(tiny_run / "model.keras"), "-o", str(tmp_path / "y.onnx"),
                                  "--wide-scaling", "percentile:2,98:1"])
    assert r.exit_code == 2 and "--wide-scaling" in r.output


def test_export_refuses_before_writing(tiny_run, tmp_path):
    import shutil

    from click.testing import CliRunner

    from geoseg.cli import main

    def err(*args):
        r = CliRunner().invoke(main, ["export", *map(str, args)])
        assert r.exit_code in (1, 2) and "Traceback" not in r.output, r.output
        return r.output

    assert "the folder" in err(tiny_run / "model.keras", "-o", tmp_path / "no" / "m.onnx") and "does not exist" in \
        err(tiny_run / "model.keras", "-o", tmp_path / "no" / "m.onnx")
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 cut")
    assert "junk.keras: cannot load the Keras model" in err(tmp_path / "junk.keras", "-o", tmp_path / "j.onnx")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tiny_run / "model.keras", lone / "model.keras")
    assert "--quantize int8 needs the run's training images" in err(lone / "model.keras", "-o", lone / "q.onnx",
                                                                    "--quantize", "int8")
    assert sorted(os.listdir(lone)) == ["model.keras"]  # no float model left behind either
    assert "nan is not a number of metres" in err(tiny_run / "model.keras", "-o", tmp_path / "r.onnx",
                                                  "--training-resolution", "nan")
    assert "expected within 0-255" in err(tiny_run / "model.keras", "-o", tmp_path / "w.onnx", "--wide-scaling",
                                          "percentile:2,98:300-400,46-189,67-182")
    assert not any(p.suffix == ".onnx" for p in tmp_path.iterdir())
