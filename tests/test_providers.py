"""geoseg.providers: the execution provider a name stands for, the errors,
and the records of the provider used (stats, run.json, STAC item).

This machine's onnxruntime offers CPU only (and Azure, which geoseg does not
use); GPU builds are simulated by patching ``get_available_providers``.
"""

from __future__ import annotations

import json

import pytest
from helpers import one_error_line, run_cli

from geoseg import model as model_mod
from geoseg import providers
from geoseg.batch import classify_many
from geoseg.errors import GeosegError, InputError
from geoseg.pipeline import ClassifyOptions

CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]
GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def offered(monkeypatch):
    """Make onnxruntime offer the given providers (the list, as
    ``onnxruntime.get_available_providers()`` would return it)."""
    import onnxruntime

    def set_(names: list[str]) -> None:
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(names))
        providers._ort_available.cache_clear()

    yield set_
    providers._ort_available.cache_clear()


def test_names_are_the_pinned_ones():
    assert providers.PROVIDER_NAMES == ("auto", "cpu", "cuda", "tensorrt", "rocm", "directml", "coreml", "openvino")


def test_this_machine_offers_cpu_only():
    assert providers.available_providers() == ("cpu",)
    assert providers.resolve_provider("auto") == ["CPUExecutionProvider"]


@pytest.mark.parametrize("offer, name, expected", [
    (CPU_ONLY, "auto", ["CPUExecutionProvider"]),
    (CPU_ONLY, "cpu", ["CPUExecutionProvider"]),
    (CPU_ONLY, "CPU", ["CPUExecutionProvider"]),
    (GPU, "auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]),  # TensorRT only when asked
    (GPU, "cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (GPU, "tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
    (GPU, "cpu", ["CPUExecutionProvider"]),
    (["MIGraphXExecutionProvider", "CPUExecutionProvider"], "rocm", ["MIGraphXExecutionProvider", "CPUExecutionProvider"]),
    (["ROCMExecutionProvider", "CPUExecutionProvider"], "auto", ["ROCMExecutionProvider", "CPUExecutionProvider"]),
    (["DmlExecutionProvider", "CPUExecutionProvider"], "auto", ["DmlExecutionProvider", "CPUExecutionProvider"]),
    (["CoreMLExecutionProvider", "CPUExecutionProvider"], "auto", ["CoreMLExecutionProvider", "CPUExecutionProvider"]),
    (["OpenVINOExecutionProvider", "CPUExecutionProvider"], "openvino", ["OpenVINOExecutionProvider", "CPUExecutionProvider"]),
    (["CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider"], "auto",
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
])
def test_resolve_provider_chooses_the_best_available_cpu_last(offered, offer, name, expected):
    offered(offer)
    assert providers.resolve_provider(name) == expected


@pytest.mark.parametrize("offer, name, words", [
    (CPU_ONLY, "cuda", ["'cuda'", "available: cpu", "onnxruntime-gpu", "pip uninstall onnxruntime"]),
    (CPU_ONLY, "tensorrt", ["'tensorrt'", "TensorrtExecutionProvider", "TensorRT"]),
    (CPU_ONLY, "directml", ["onnxruntime-directml"]),
    (CPU_ONLY, "openvino", ["onnxruntime-openvino"]),
    (CPU_ONLY, "rocm", ["onnxruntime-rocm", "ROCMExecutionProvider or MIGraphXExecutionProvider"]),
    (GPU, "coreml", ["available: cpu, cuda, tensorrt", "macOS"]),
    (CPU_ONLY, "gpu", ["unknown", "auto, cpu, cuda"]),
])
def test_unavailable_or_unknown_provider_is_one_line(offered, offer, name, words):
    offered(offer)
    with pytest.raises(InputError) as e:
        providers.resolve_provider(name)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_classify_options_checks_the_name_and_keeps_records_unchanged():
    assert ClassifyOptions().provider == "auto"
    assert ClassifyOptions(provider="CUDA").provider == "cuda"
    with pytest.raises(InputError, match="unknown"):
        ClassifyOptions(provider="npu")
    # the recorded options (manifests, identity of earlier runs) do not name it
    assert "provider" not in ClassifyOptions(provider="cpu").to_dict()
    assert ClassifyOptions(provider="cpu").to_dict() == ClassifyOptions().to_dict()


def test_new_session_runs_on_the_provider_asked(model8):
    sess = model_mod.new_session(model8, 1, "cpu")
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert model_mod.new_session(model8, 1, "auto").get_providers() == ["CPUExecutionProvider"]


def test_a_provider_onnxruntime_drops_silently_is_an_error(offered, model8):
    """onnxruntime-gpu without CUDA libraries falls back to CPU without a word:
    a named provider that did not start is an error, ``auto`` accepts it."""
    offered(GPU)
    # (the simulation only: this onnxruntime's own list lacks CUDA, so it warns too)
    with pytest.warns(UserWarning, match="not in available provider names"), \
            pytest.raises(InputError, match="could not start CUDAExecutionProvider"):
        model_mod.new_session(model8, 1, "cuda")


def test_the_provider_used_is_recorded(tmp_path, scene_u8, model8):
    run = classify_many([scene_u8], tmp_path / "out", model8, ClassifyOptions(provider="cpu"), progress=False)
    assert run.ok and run.provider == "cpu"
    stats = json.loads((tmp_path / "out" / "scene_u8_stats.json").read_text())
    assert stats["provider"] == "cpu"
    assert "provider" not in stats["options"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["provider"] == "cpu"
    item = json.loads((tmp_path / "out" / "scene_u8_item.json").read_text())
    assert item["properties"]["geoseg:provider"] == "cpu"


def test_auto_is_recorded_as_the_provider_it_chose(tmp_path, scene_u8, model8):
    classify_many([scene_u8], tmp_path / "out", model8, ClassifyOptions(provider="auto"), progress=False)
    assert json.loads((tmp_path / "out" / "scene_u8_stats.json").read_text())["provider"] == "cpu"


def test_an_unavailable_provider_stops_the_run_before_writing(tmp_path, scene_u8, model8, offered):
    offered(CPU_ONLY)
    with pytest.raises(GeosegError, match="onnxruntime-gpu"):
        classify_many([scene_u8], tmp_path / "out", model8, ClassifyOptions(provider="cuda"), progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_provider_unavailable_is_one_error_line(tmp_path, scene_u8, model8):
    r = run_cli("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--provider", "cuda")
    line = one_error_line(r)
    assert "available: cpu" in line and "onnxruntime-gpu" in line


def test_cli_provider_cpu_classifies(tmp_path, scene_u8, model8):
    r = run_cli("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--provider", "cpu", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "scene_u8_stats.json").read_text())["provider"] == "cpu"


def test_cli_progress_json_reports_patches(tmp_path, scene_u8, model8):
    from geoseg import scheduling

    try:
        r = run_cli("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--progress-json",
                    "--block-size", "64")
    finally:
        scheduling.PROGRESS_JSON = False
    assert r.exit_code == 0, r.output
    events = [json.loads(ln)["progress"] for ln in r.stderr.splitlines() if ln.startswith("{")]
    assert events[0]["n"] == 0 and events[-1]["n"] == events[-1]["total"] == 42
    assert {e["unit"] for e in events} == {"patch"}


def test_classify_scene_refuses_an_unavailable_provider_before_writing(tmp_path, scene_u8, model8, offered):
    from geoseg.pipeline import classify_scene

    offered(CPU_ONLY)
    with pytest.raises(InputError, match="provider 'openvino': not available"):
        classify_scene(scene_u8, tmp_path / "out", model8, ClassifyOptions(provider="openvino"))
    assert not (tmp_path / "out").exists()
