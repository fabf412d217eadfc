"""onnxruntime execution providers: which one runs the model.

``--provider auto|cpu|cuda|tensorrt|rocm|directml|coreml|openvino`` (and
``ClassifyOptions(provider=...)``, ``geoseg serve --provider``) names one;
:func:`resolve_provider` turns the name into onnxruntime's provider list
(the chosen provider first, CPU last, so an operator the accelerator lacks
still runs), or raises a one-line :class:`~geoseg.errors.InputError` that
lists the providers this onnxruntime offers and the package that brings the
one asked for.

Which providers exist depends on the onnxruntime *package* installed, not
on the machine: ``onnxruntime`` (CPU; CoreML on macOS), ``onnxruntime-gpu``
(CUDA, TensorRT), ``onnxruntime-directml`` (Windows), ``onnxruntime-openvino``,
``onnxruntime-rocm`` / ``onnxruntime-migraphx`` (AMD).  They replace each
other (one ``onnxruntime`` module): ``pip uninstall onnxruntime`` before
installing another (the ``gpu`` extra documents the swap).
"""

from __future__ import annotations

import functools

from .errors import InputError

PROVIDER_NAMES: tuple[str, ...] = ("auto", "cpu", "cuda", "tensorrt", "rocm", "directml", "coreml", "openvino")

# geoseg name -> onnxruntime provider names, the first one available wins
ORT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider",),
    "tensorrt": ("TensorrtExecutionProvider",),
    "rocm": ("ROCMExecutionProvider", "MIGraphXExecutionProvider"),
    "directml": ("DmlExecutionProvider",),
    "coreml": ("CoreMLExecutionProvider",),
    "openvino": ("OpenVINOExecutionProvider",),
}

# what to install for each (the error line and `geoseg classify --help` say it)
PACKAGES: dict[str, str] = {
    "cpu": "onnxruntime",
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu and NVIDIA TensorRT",
    "rocm": "onnxruntime-rocm or onnxruntime-migraphx",
    "directml": "onnxruntime-directml (Windows)",
    "coreml": "onnxruntime on macOS",
    "openvino": "onnxruntime-openvino",
}

# ``auto``: the first available of these, else CPU.  TensorRT is left out:
# it builds an engine per model and batch shape when the session starts
# (tens of seconds to minutes), so it is only used when asked for; where
# it is available CUDA is too.
AUTO_ORDER: tuple[str, ...] = ("cuda", "rocm", "directml", "coreml", "openvino")


@functools.lru_cache(maxsize=1)
def _ort_available() -> tuple[str, ...]:
    import onnxruntime as ort

    return tuple(ort.get_available_providers())


def available_providers() -> tuple[str, ...]:
    """geoseg's names of the providers this onnxruntime offers ("cpu" always)."""
    have = set(_ort_available())
    return tuple(n for n in PROVIDER_NAMES[1:] if n == "cpu" or any(p in have for p in ORT_PROVIDERS[n]))


def check_name(name: str) -> str:
    """``name`` lower-cased, or an InputError naming the valid ones."""
    n = str(name).strip().lower()
    if n not in PROVIDER_NAMES:
        raise InputError(f"provider {name!r}: unknown; expected one of {', '.join(PROVIDER_NAMES)}")
    return n


def provider_name(name: str = "auto") -> str:
    """The geoseg name ``name`` stands for here: ``auto`` becomes the best
    available provider (else ``cpu``); another name is checked to be available."""
    n = check_name(name)
    have = available_providers()
    if n == "auto":
        return next((p for p in AUTO_ORDER if p in have), "cpu")
    if n not in have:
        raise InputError(
            f"provider {n!r}: not available in this onnxruntime ({' or '.join(ORT_PROVIDERS[n])} missing; "
            f"available: {', '.join(have)}); install {PACKAGES[n]} in place of onnxruntime "
            f"(pip uninstall onnxruntime; pip install {PACKAGES[n].split()[0]}), or use --provider auto"
        )
    return n


def resolve_provider(name: str = "auto") -> list[str]:
    """onnxruntime's provider list for ``name``: the chosen provider (TensorRT
    with CUDA behind it where available), then CPU last."""
    n = provider_name(name)
    have = _ort_available()
    out = [next(p for p in ORT_PROVIDERS[n] if p in have)] if n != "cpu" else []
    if n == "tensorrt" and "CUDAExecutionProvider" in have:
        out.append("CUDAExecutionProvider")
    out.append("CPUExecutionProvider")
    return out


def short_name(ort_provider: str) -> str:
    """geoseg's name of an onnxruntime provider (e.g. of ``session.get_providers()[0]``)."""
    for n, ps in ORT_PROVIDERS.items():
        if ort_provider in ps:
            return n
    return ort_provider


__all__ = ["PROVIDER_NAMES", "PACKAGES", "AUTO_ORDER", "available_providers", "check_name", "provider_name",
           "resolve_provider", "short_name"]
