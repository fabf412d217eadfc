"""The model contract: what an ONNX model promises about its inputs and outputs.

The contract is stored as JSON under the ONNX metadata key
:data:`CONTRACT_KEY`.  It is the one place the runtime learns class names and
colours, patch size, band order, input layout and dtype, and how raw pixels of
each source dtype are scaled into the model's input range.  This module is
pure: it parses and validates dictionaries and never touches files.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast, get_args

from .errors import ModelError

CONTRACT_KEY = "geoseg.contract"
SCHEMA = "geoseg.contract/1"

ScalingMethod = Literal["identity", "linear", "percentile"]
InputLayout = Literal["NHWC", "NCHW"]
InputDtype = Literal["float32", "uint8"]
InputKind = Literal["dn", "reflectance"]
SCALING_METHODS: tuple[str, ...] = get_args(ScalingMethod)
INPUT_LAYOUTS: tuple[str, ...] = get_args(InputLayout)
INPUT_DTYPES: tuple[str, ...] = get_args(InputDtype)
INPUT_KINDS: tuple[str, ...] = get_args(InputKind)
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Scaling:
    """How raw pixel values of one source dtype become model input values.

    ``identity``: values are used as they are (uint8 into a 0-255 model).
    ``linear``: ``value * scale + offset``, then clipped to the input range
    (e.g. uint16 reflectance 0-10000 with ``scale=0.0255``).
    ``percentile``: per band, the ``low`` and ``high`` percentiles of the
    scene's valid pixels are stretched to the input range; with ``targets``
    (one ``(out_low, out_high)`` pair per band) they are stretched to those
    values instead, then clipped to the input range: a scene's range is
    matched to the range the model was trained on (e.g. the training
    images' own per-band 2nd and 98th percentiles) rather than to 0-255.
    """

    method: ScalingMethod = "identity"
    scale: float = 1.0
    offset: float = 0.0
    low: float = 2.0
    high: float = 98.0
    targets: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "scaling") -> Scaling:
        method = d.get("method")
        if method not in SCALING_METHODS:
            raise ModelError(
                f"{where}: scaling method {method!r} is not one of {', '.join(SCALING_METHODS)}"
            )
        targets = d.get("targets")
        if targets is not None:
            try:
                targets = tuple((float(a), float(b)) for a, b in targets)
            except (TypeError, ValueError):
                raise ModelError(f"{where}: targets must be a list of [out_low, out_high] pairs, one per band") from None
            if method != "percentile" or not targets or any(not a < b for a, b in targets):
                raise ModelError(f"{where}: targets need percentile scaling and out_low < out_high for every band")
        s = cls(
            method=method,
            scale=float(d.get("scale", 1.0)),
            offset=float(d.get("offset", 0.0)),
            low=float(d.get("low", 2.0)),
            high=float(d.get("high", 98.0)),
            targets=targets,
        )
        if s.method == "linear" and not (math.isfinite(s.scale) and math.isfinite(s.offset) and s.scale != 0):
            raise ModelError(f"{where}: linear scaling needs a finite, non-zero scale and a finite offset "
                             f"(got scale {s.scale:g}, offset {s.offset:g})")
        if s.method == "percentile" and not (0 <= s.low < s.high <= 100):
            raise ModelError(f"{where}: percentile scaling needs 0 <= low < high <= 100")
        return s

    @classmethod
    def parse(cls, text: str) -> Scaling:
        """Parse a command-line spec: ``identity``, ``linear:SCALE[,OFFSET]``,
        ``percentile:LOW,HIGH``, ``percentile:LOW,HIGH:A-B,C-D,...`` (per-band
        output targets, one ``OUT_LOW-OUT_HIGH`` pair per band)."""
        name, _, args = text.partition(":")
        if name == "percentile" and args.count(":") == 1:
            args, _, tspec = args.partition(":")
            try:
                pairs = [tuple(float(v) for v in t.split("-")) for t in tspec.split(",") if t.strip()]
                base = cls.parse(f"percentile:{args}")
                return cls.from_dict({**base.to_dict(), "targets": [list(t) for t in pairs]})
            except (ValueError, ModelError):
                raise ValueError(
                    f"scaling {text!r}: targets must be OUT_LOW-OUT_HIGH pairs, one per band "
                    "(percentile:2,98:25-222,46-189,67-182)"
                ) from None
        try:
            vals = [float(v) for v in args.split(",") if v.strip()] if args else []
        except ValueError:
            raise ValueError(f"scaling {text!r}: {args!r} is not a list of numbers; expected identity, linear:SCALE"
                             "[,OFFSET] or percentile:LOW,HIGH (e.g. linear:0.0255, percentile:2,98)") from None
        if name == "identity" and not vals:
            return cls("identity")
        if name == "linear" and 1 <= len(vals) <= 2:
            try:
                return cls.from_dict({"method": "linear", "scale": vals[0], "offset": vals[1] if len(vals) > 1 else 0.0})
            except ModelError as exc:
                raise ValueError(f"scaling {text!r}: {str(exc).partition(': ')[2]} (e.g. linear:0.0255)") from None
        if name == "percentile" and len(vals) in (0, 2):
            lo, hi = vals if vals else (2.0, 98.0)
            try:
                return cls.from_dict({"method": "percentile", "low": lo, "high": hi})
            except ModelError as exc:
                raise ValueError(f"scaling {text!r}: {str(exc).partition(': ')[2]} "
                                 "(e.g. percentile:2,98)") from None
        raise ValueError(
            f"scaling {text!r} is not identity, linear:SCALE[,OFFSET] or percentile:LOW,HIGH"
        )

    def describe(self) -> str:
        """The rule as a ``--scaling`` value (``percentile:2,98`` ...)."""
        if self.method == "linear":
            return f"linear:{self.scale:g},{self.offset:g}"
        if self.method == "percentile":
            t = "" if not self.targets else ":" + ",".join(f"{a:g}-{b:g}" for a, b in self.targets)
            return f"percentile:{self.low:g},{self.high:g}{t}"
        return "identity"

    def to_dict(self) -> dict[str, Any]:
        if self.method == "identity":
            return {"method": "identity"}
        if self.method == "linear":
            return {"method": "linear", "scale": self.scale, "offset": self.offset}
        d = {"method": "percentile", "low": self.low, "high": self.high}
        if self.targets:
            d["targets"] = [list(t) for t in self.targets]
        return d


@dataclass(frozen=True)
class ModelContract:
    """What a model takes and returns; see the README's "Model contract"."""

    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    patch_size: int
    bands: tuple[str, ...] = ("red", "green", "blue")
    input_name: str = "input"
    input_layout: InputLayout = "NHWC"
    input_dtype: InputDtype = "float32"
    input_range: tuple[float, float] = (0.0, 255.0)
    scaling: dict[str, Scaling] = field(default_factory=lambda: {"uint8": Scaling()})
    min_valid_fraction: float = 0.5
    training_resolution_m: float | None = None
    name: str = "unnamed"
    extra: dict[str, Any] = field(default_factory=dict)
    input_kind: InputKind = "dn"
    """``dn``: the scene's pixel values are scaled by the rule of their dtype
    (``scaling["uint8"]``, ``scaling["uint16"]``...).  ``reflectance``: each
    scene is first turned into reflectance (about 0-1; see
    :mod:`geoseg.reflectance`), which ``scaling["reflectance"]`` maps to the
    model input (identity when absent); 8-bit scenes without a calibration
    follow ``scaling["uint8"]`` straight from their values."""

    @property
    def reflectance_scaling(self) -> Scaling:
        """The rule from reflectance to model input (reflectance models)."""
        return self.scaling.get("reflectance", Scaling("identity"))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    def rgb_colors(self) -> list[tuple[int, int, int]]:
        return [(int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)) for c in self.class_colors]

    # --- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scaling"] = {k: v.to_dict() for k, v in self.scaling.items()}
        d["class_names"] = list(self.class_names)
        d["class_colors"] = list(self.class_colors)
        d["bands"] = list(self.bands)
        d["input_range"] = list(self.input_range)
        extra = d.pop("extra")
        if d["input_kind"] == "dn":  # absent means "dn": the JSON (and hash) of every earlier model is unchanged
            d.pop("input_kind")
        out = {"schema": SCHEMA, **d}
        out.update(extra)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=None, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model") -> ModelContract:
        if not isinstance(d, dict):
            raise ModelError(f"{where}: contract is not a JSON object")
        if d.get("schema") != SCHEMA:
            raise ModelError(
                f"{where}: contract schema {d.get('schema')!r} is not {SCHEMA!r}; "
                "re-export the model with `geoseg export`"
            )
        missing = [k for k in ("class_names", "class_colors", "patch_size") if k not in d]
        if missing:
            raise ModelError(f"{where}: contract lacks {', '.join(missing)}")
        names, colors = _classes(d, where)
        patch = d["patch_size"]
        if not isinstance(patch, int) or isinstance(patch, bool) or patch < 1:
            raise ModelError(f"{where}: patch_size {patch!r} must be a positive whole number of pixels")
        layout = d.get("input_layout", "NHWC")
        if layout not in INPUT_LAYOUTS:
            raise ModelError(f"{where}: input_layout {layout!r} is not NHWC or NCHW")
        dtype = d.get("input_dtype", "float32")
        if dtype not in INPUT_DTYPES:
            raise ModelError(f"{where}: input_dtype {dtype!r} is not float32 or uint8")
        scaling = {
            str(k): Scaling.from_dict(v, f"{where}: scaling[{k}]")
            for k, v in (d.get("scaling") or {"uint8": {"method": "identity"}}).items()
        }
        known = {f for f in cls.__dataclass_fields__} | {"schema"}
        extra = {k: v for k, v in d.items() if k not in known}
        res = d.get("training_resolution_m")
        if res is not None and not (isinstance(res, (int, float)) and math.isfinite(res) and res > 0):
            raise ModelError(f"{where}: training_resolution_m {res!r} must be a positive number of metres (or absent)")
        kind = d.get("input_kind", "dn")
        if kind not in INPUT_KINDS:
            raise ModelError(f"{where}: input_kind {kind!r} is not one of {', '.join(INPUT_KINDS)}")
        if kind == "reflectance" and "reflectance" in scaling and scaling["reflectance"].method == "percentile":
            raise ModelError(f"{where}: scaling[reflectance] must be identity or linear (reflectance is already "
                             "calibrated; a per-scene percentile stretch would undo it)")
        mvf = d.get("min_valid_fraction", 0.5)
        if not (isinstance(mvf, (int, float)) and 0 <= mvf <= 1):
            raise ModelError(f"{where}: min_valid_fraction {mvf!r} must be a number from 0 to 1")
        return cls(
            class_names=names,
            class_colors=colors,
            patch_size=patch,
            bands=tuple(str(b) for b in d.get("bands", ("red", "green", "blue"))),
            input_name=str(d.get("input_name", "input")),
            input_layout=layout,
            input_dtype=dtype,
            # not length-checked: any length is accepted, as before
            input_range=cast("tuple[float, float]", tuple(float(v) for v in d.get("input_range", (0.0, 255.0)))),
            scaling=scaling,
            min_valid_fraction=float(mvf),
            training_resolution_m=None if res is None else float(res),
            name=str(d.get("name", "unnamed")),
            extra=extra,
            input_kind=kind,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "model") -> ModelContract:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{where}: contract is not valid JSON ({exc})") from None
        return cls.from_dict(d, where)


DEFAULT_COLORS = {
    "cloudy": "#f0f0f0",
    "desert": "#e3c16f",
    "green_area": "#2e8b3a",
    "water": "#1f5fbf",
}


def _classes(d: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A contract's checked class names and colours (1..255 distinct,
    non-empty names; one '#RRGGBB' colour each)."""
    names = tuple(str(n) for n in d["class_names"])
    colors = tuple(str(c) for c in d["class_colors"])
    if not names or len(names) > 255:
        raise ModelError(f"{where}: contract has {len(names)} classes, expected 1..255")
    if len(colors) != len(names):
        raise ModelError(
            f"{where}: contract has {len(names)} class names but {len(colors)} colours"
        )
    bad = [c for c in colors if not _COLOUR.match(c)]
    if bad:
        raise ModelError(f"{where}: class colours {bad} are not '#RRGGBB'")
    if not all(isinstance(n, str) and n.strip() for n in d["class_names"]) or len(set(names)) != len(names):
        raise ModelError(f"{where}: class_names {list(d['class_names'])} must be distinct, non-empty strings")
    return names, colors
