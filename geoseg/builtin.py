"""The built-in models: names that ``-m`` takes instead of a path.

Each is ``geoseg/models/NAME.onnx`` with a model card and, where the scene
suite has scored it (``bench/model_suite.py``), ``NAME.suite.json``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class Builtin:
    """A built-in model: its name, card and what it is for."""

    name: str
    card: str  # file name in MODELS_DIR
    use: str  # which data it is for, in a line

    @property
    def path(self) -> Path:
        return MODELS_DIR / f"{self.name}.onnx"

    @property
    def suite_path(self) -> Path:
        return MODELS_DIR / f"{self.name}.suite.json"


BUILTINS: dict[str, Builtin] = {
    "default": Builtin("default", "MODEL_CARD.md",
                       "RGB scenes of any dtype (8-bit aerial and satellite RGB, RGB composites)"),
    "multispectral": Builtin("multispectral", "MULTISPECTRAL_CARD.md",
                             "scenes with blue, green, red and near-infrared bands in reflectance or calibrated "
                             "DN (Sentinel-2, Landsat, NAIP, PlanetScope)"),
    "rgb-reflectance": Builtin("rgb-reflectance", "RGB_REFLECTANCE_CARD.md",
                               "RGB-only 16-bit or float scenes of known calibration (true-colour Sentinel-2 or "
                               "Landsat exports: --sensor, --reflectance-scale) where clouds matter; not the default: "
                               "see its card"),
}


def resolve(model: str | os.PathLike | None) -> str:
    """The file of ``model``: an existing path, or one that looks like a path
    (a folder or a suffix in it), as it is; else a built-in name's file
    (None: ``default``).

    Raises
    ------
    ModelError
        Neither a file nor a built-in name (one line listing the built-ins),
        or a built-in whose file is not installed.
    """
    if model is None:
        model = "default"
    text = str(model)
    b = BUILTINS.get(text)
    if os.path.exists(text) or (b is None and (os.sep in text or "/" in text or "." in os.path.basename(text))):
        return text  # a path (a missing one is load_model's "model file not found")
    if b is None:
        import difflib

        close = difflib.get_close_matches(text.lower(), list(BUILTINS), n=1, cutoff=0.6)
        hint = f"did you mean -m {close[0]}? " if close else ""
        raise ModelError(f"{text}: no such model file and not a built-in model (built-ins: "
                         f"{', '.join(BUILTINS)}; `geoseg models` lists them); {hint}pass -m with a built-in name or "
                         "the path of an .onnx file")
    if not b.path.exists():
        raise ModelError(f"{b.path}: the built-in model {text!r} is not installed with this copy of geoseg; "
                         "reinstall geoseg or pass -m MODEL.onnx")
    return str(b.path)


def suite_figures(b: Builtin) -> dict[str, float] | None:
    """The scene suite's figures of a built-in model (``{"scene/figure":
    value}``), or None when it has not been scored (no file, or a file that
    does not parse or is of another model file: its sha256 differs)."""
    try:
        doc = json.loads(b.suite_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    figs = doc.get("figures") if isinstance(doc, dict) else None
    if not isinstance(figs, dict):
        return None
    sha = doc.get("sha256")
    if sha and b.path.exists():
        from .model import file_sha256

        if sha != file_sha256(b.path):
            return None
    out = {}
    for k, v in figs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[str(k)] = float(v)
    return out


def describe(b: Builtin) -> dict:
    """What ``geoseg models`` says about a built-in model (its contract read
    from the file where it is installed)."""
    from .model import load_model

    d: dict = {"name": b.name, "path": str(b.path), "installed": b.path.exists(), "use": b.use,
               "card": str(MODELS_DIR / b.card)}
    if not d["installed"]:
        return d
    c = load_model(b.path).contract
    d.update({
        "bands": list(c.bands), "input_kind": c.input_kind, "classes": list(c.class_names),
        "patch_size": c.patch_size, "training_resolution_m": c.training_resolution_m,
        "training_data": _training_data(c.extra),
        "suite": suite_figures(b),
    })
    return d


def _training_data(extra: dict) -> str | None:
    """The contract's word on its training data (the export's
    ``training_data``, ``training`` or ``data`` entries), on one line."""
    for key in ("training_data", "training", "data", "dataset"):
        v = extra.get(key)
        if isinstance(v, str) and v.strip():
            return " ".join(v.split())[:2000]
        if isinstance(v, dict):
            for k in ("data", "dataset", "data_dir", "description", "source"):
                if isinstance(v.get(k), str) and v[k].strip():
                    return " ".join(v[k].split())[:2000]
    return None
