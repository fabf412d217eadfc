"""How a scene's pixel values become reflectance, for models whose contract
says ``input_kind: reflectance`` (pure: no I/O; the caller reads the facts).

Decided per scene, the first that applies (:func:`decide`):

1. ``--reflectance-scale S [--reflectance-offset O]``: reflectance = DN x S + O;
2. ``--sensor NAME``, a preset (:data:`SENSORS`): ``sentinel2-l1c`` and
   ``sentinel2-l2a`` (DN x 0.0001, with the -1000 DN offset of processing
   baseline 04.00 and later where the file's metadata says so:
   ``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET`` or ``PROCESSING_BASELINE`` tags),
   ``sentinel2-l1c-pb04``/``sentinel2-l2a-pb04`` (that offset always),
   ``landsat-c2-l1`` (DN x 2.0e-5 - 0.1), ``landsat-c2-l2`` (DN x 2.75e-5 -
   0.2), ``naip`` (8-bit, uncalibrated: the contract's ``uint8`` rule);
3. the file's GDAL band scale and offset, else its Sentinel-2 metadata
   (``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET``, ``PROCESSING_BASELINE``,
   ``*_QUANTIFICATION_VALUE`` tags) for an integer scene: DN / quantification
   (10000) plus the offset, so an L2A product of baseline 04.00 is read right
   without ``--sensor``;
4. a STAC item's ``raster:bands`` scale and offset;
5. a float scene: its values are reflectance;
6. an 8-bit scene: the contract's ``uint8`` rule (DN straight to model input);
7. any other integer scene (uint16...): DN x 0.0001, with a warning naming
   the assumption and the options.

:func:`model_scaling` then composes the rule with the contract's
``scaling["reflectance"]`` (reflectance -> model input) into the one
:class:`~geoseg.contract.Scaling` the patches are scaled by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .contract import ModelContract, Scaling
from .errors import InputError

ASSUMED_SCALE = 1e-4
RANGE = (0.0, 1.5)  # reflectance a scene's pixels are expected in
_FAR = (-0.5, 3.0)  # a median beyond this is not reflectance
_BRIGHT = 0.5  # a median above this under the assumed x 0.0001 is cloud, snow or another scale


@dataclass(frozen=True)
class Preset:
    """A ``--sensor`` preset: DN x ``scale`` + ``offset`` (None: the uint8 rule)."""

    scale: float | None
    offset: float
    family: str | None  # band-code numbering (:mod:`geoseg.bands`)
    wide: bool  # True: for 12-16 bit DN (refused on 8-bit scenes); False: for 8-bit scenes only
    baseline_tags: bool = False  # honour the file's processing-baseline offset tags
    note: str = ""


SENSORS: dict[str, Preset] = {
    "sentinel2-l1c": Preset(1e-4, 0.0, "sentinel2", True, True, "Sentinel-2 L1C top-of-atmosphere"),
    "sentinel2-l1c-pb04": Preset(1e-4, -0.1, "sentinel2", True, False,
                                 "Sentinel-2 L1C, processing baseline 04.00 or later (from 25 January 2022)"),
    "sentinel2-l2a": Preset(1e-4, 0.0, "sentinel2", True, True, "Sentinel-2 L2A surface reflectance"),
    "sentinel2-l2a-pb04": Preset(1e-4, -0.1, "sentinel2", True, False,
                                 "Sentinel-2 L2A, processing baseline 04.00 or later (from 25 January 2022)"),
    "landsat-c2-l1": Preset(2.0e-5, -0.1, "landsat-oli", True, False,
                            "Landsat 8/9 Collection 2 Level-1 top-of-atmosphere"),
    "landsat-c2-l2": Preset(2.75e-5, -0.2, "landsat-oli", True, False,
                            "Landsat Collection 2 Level-2 surface reflectance"),
    "naip": Preset(None, 0.0, None, False, False, "NAIP 8-bit aerial, uncalibrated"),
}


@dataclass(frozen=True)
class Reflectance:
    """A scene's rule from pixel values to reflectance: per band, DN x
    ``scale`` + ``offset``; no scales: the contract's uint8 rule."""

    source: str  # what decided it: "--reflectance-scale", "--sensor naip", "band scale/offset"...
    scale: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()
    direct: str = ""  # no reflectance at all: the values go to the model input by this rule (--scaling)

    @property
    def uint8_rule(self) -> bool:
        return not self.scale

    @property
    def uniform(self) -> bool:
        return len(set(self.scale)) <= 1 and len(set(self.offset)) <= 1

    def describe(self) -> str:
        if self.direct:
            return f"none: {self.direct} to the model input ({self.source})"
        if self.uint8_rule:
            return f"the model's uint8 rule ({self.source})"
        if set(self.scale) == {1.0} and set(self.offset) == {0.0}:
            return f"the values themselves ({self.source})"
        s = f"{self.scale[0]:g}" if len(set(self.scale)) == 1 else "(" + ", ".join(f"{v:g}" for v in self.scale) + ")"
        o = f"{self.offset[0]:+g}" if len(set(self.offset)) == 1 else \
            "+ (" + ", ".join(f"{v:g}" for v in self.offset) + ")"
        return f"DN x {s} {o} ({self.source})".replace(" +0 (", " (").replace(" +-", " -")

    def to_dict(self) -> dict:
        d: dict = {"source": self.source, "rule": self.describe()}
        if not self.uint8_rule:
            d["scale"], d["offset"] = list(self.scale), list(self.offset)
        return d


def decide(
    path: str,
    dtype: str,
    n_bands: int,
    scale: float | None = None,
    offset: float | None = None,
    sensor: str | None = None,
    file_scale_offset: Sequence[tuple[float, float]] = (),
    stac_scale_offset: Sequence[tuple[float, float]] | None = None,
    tags: Mapping[str, str] | None = None,
) -> tuple[Reflectance, str | None]:
    """The scene's :class:`Reflectance` rule (the module's order) and a
    warning to issue, if any.

    ``file_scale_offset``: the chosen bands' GDAL (scale, offset);
    ``stac_scale_offset``: a STAC item's ``raster:bands`` (scale, offset) of
    the chosen bands; ``tags``: the file's metadata (processing baseline).

    Raises
    ------
    InputError
        An unknown preset, or one that contradicts the scene's dtype.
    """
    kind = np.dtype(dtype).kind
    is8 = np.dtype(dtype).itemsize == 1 and kind in "ui"

    def each(v: float) -> tuple[float, ...]:
        return (float(v),) * n_bands

    if scale is not None:
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(offset or 0.0)):
            raise InputError(f"{path}: --reflectance-scale {scale:g} / --reflectance-offset {offset or 0:g}: "
                             "expected a finite, positive scale and a finite offset (e.g. 0.0001)")
        return Reflectance("--reflectance-scale", each(scale), each(offset or 0.0)), None
    if sensor is not None:
        return _preset(path, dtype, is8, n_bands, sensor, tags or {})
    _check_calibration(path, file_scale_offset, "the file's band scale/offset (GDAL metadata)",
                       "fix the file's (`gdal_edit.py -scale S -offset O FILE`)")
    if stac_scale_offset:
        _check_calibration(path, stac_scale_offset, "the STAC item's raster:bands", "fix the item's raster:bands")
    if any((s, o) != (1.0, 0.0) for s, o in file_scale_offset):
        return Reflectance("the file's band scale/offset", tuple(float(s) for s, _ in file_scale_offset),
                           tuple(float(o) for _, o in file_scale_offset)), None
    if stac_scale_offset and any((s, o) != (1.0, 0.0) for s, o in stac_scale_offset):
        return Reflectance("the STAC item's raster:bands", tuple(float(s) for s, _ in stac_scale_offset),
                           tuple(float(o) for _, o in stac_scale_offset)), None
    found = baseline_offset(tags or {}) if kind in "ui" and not is8 else None
    if found is not None:  # Sentinel-2 metadata: its offset and quantification are the file's calibration
        q = quantification(tags or {})
        return Reflectance(f"the file's Sentinel-2 metadata: DN / {q:g}, offset {found:g} DN",
                           each(1.0 / q), each(found / q)), None
    if kind == "f":
        return Reflectance("float scene: values are reflectance", each(1.0), each(0.0)), None
    if is8:
        return Reflectance("8-bit scene without calibration"), None if kind == "u" else (
            f"{path}: {dtype} scene (signed 8-bit) without a calibration; reading it by the model's rule for "
            "uncalibrated 8-bit data, made for values 0-255: negative values become negative reflectance; convert "
            "it to uint8 or pass its calibration (--reflectance-scale S [--reflectance-offset O])")
    return Reflectance(f"assumed for {dtype}", each(ASSUMED_SCALE), each(0.0)), (
        f"{path}: {dtype} scene without a calibration (no --reflectance-scale, --sensor, band scale/offset); "
        f"assuming reflectance = DN x {ASSUMED_SCALE:g} (Sentinel-2 before 2022); say otherwise with --sensor "
        f"{'|'.join(n for n, p in SENSORS.items() if p.wide)} or --reflectance-scale S [--reflectance-offset O]")


def _check_calibration(path: str, scale_offset: Sequence[tuple[float, float]], what: str, fix: str) -> None:
    """Refuse a stored calibration that cannot be one (a scale of 0 makes
    every pixel the same reflectance; NaN, infinite or negative ones none)."""
    if all(math.isfinite(s) and s > 0 and math.isfinite(o) for s, o in scale_offset):
        return
    found = ", ".join(f"{s:g}" for s, _ in scale_offset)
    offs = ", ".join(f"{o:g}" for _, o in scale_offset)
    raise InputError(f"{path}: {what} gives the chosen bands scale ({found}), offset ({offs}); expected a finite, "
                     "positive scale and a finite offset per band: pass the calibration with --reflectance-scale S "
                     f"[--reflectance-offset O] or --sensor NAME (they override it), or {fix}")


def _preset(path: str, dtype: str, is8: bool, n: int, sensor: str, tags: Mapping[str, str]
            ) -> tuple[Reflectance, str | None]:
    p = SENSORS.get(sensor)
    if p is None:
        raise InputError(f"--sensor {sensor!r} is not a preset; expected one of {', '.join(SENSORS)}")
    if p.wide and is8:
        raise InputError(f"{path}: --sensor {sensor} is for 12-16 bit {p.note} values but the scene is {dtype}; "
                         "expected a uint16 scene: check the file, or drop --sensor for 8-bit data")
    if p.wide and np.dtype(dtype).kind == "f":
        raise InputError(f"{path}: --sensor {sensor} is for the integer DN of {p.note} but the scene is {dtype}, "
                         "read as reflectance as it is; expected uint16: drop --sensor (or pass "
                         "--reflectance-scale S [--reflectance-offset O] if its values are DN)")
    if not p.wide and not is8:
        raise InputError(f"{path}: --sensor {sensor} is for 8-bit scenes but the scene is {dtype}; expected uint8: "
                         "pass --reflectance-scale S (or another --sensor) for this scene")
    if p.scale is None:
        return Reflectance(f"--sensor {sensor}"), None
    offset, warning = p.offset, None
    if p.baseline_tags:
        found = baseline_offset(tags)
        if found is not None:
            q = 1.0 / quantification(tags, 1.0 / p.scale)
            return Reflectance(f"--sensor {sensor}, offset {found:g} DN from the file's metadata",
                               (q,) * n, (found * q,) * n), None
        warning = (f"{path}: the file's metadata does not give its processing baseline; --sensor {sensor} "
                   f"applies no offset (products of baseline 04.00 and later, from 25 January 2022, need "
                   f"--sensor {sensor}-pb04)")
    return Reflectance(f"--sensor {sensor}", (p.scale,) * n, (offset,) * n), warning


def baseline_offset(tags: Mapping[str, str]) -> float | None:
    """The Sentinel-2 DN offset the file's metadata states: a
    ``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET`` tag, else -1000 for a
    ``PROCESSING_BASELINE`` of 04.00 or later (0 for earlier); None if unsaid."""
    for k, v in tags.items():
        if "ADD_OFFSET" in k.upper():
            try:
                return float(v)
            except ValueError:
                continue
    for k, v in tags.items():
        if "PROCESSING_BASELINE" in k.upper():
            try:
                return -1000.0 if float(str(v).upper().lstrip("N").replace(",", ".")) >= 4 else 0.0
            except ValueError:
                continue
    return None


def quantification(tags: Mapping[str, str], default: float = 10000.0) -> float:
    """The Sentinel-2 quantification value (DN per unit reflectance) the
    file's metadata states (``BOA_QUANTIFICATION_VALUE``,
    ``QUANTIFICATION_VALUE``...), else ``default``."""
    for k, v in tags.items():
        if "QUANTIFICATION" in k.upper():
            try:
                q = float(v)
            except ValueError:
                continue
            if math.isfinite(q) and q > 0:
                return q
    return default


def model_scaling(rule: Reflectance, contract: ModelContract, path: str
                  ) -> tuple[Scaling, tuple[tuple[float, ...], tuple[float, ...]] | None]:
    """The :class:`Scaling` from the scene's values to the model input, and
    the per-band (scales, offsets) to apply first where the bands' rules
    differ (None otherwise: the scaling does it all).

    Raises
    ------
    InputError
        The uint8 rule for a model that declares none.
    """
    if rule.uint8_rule:
        s = contract.scaling.get("uint8")
        if s is None:
            raise InputError(f"{path}: 8-bit scene without calibration, and the model declares no uint8 rule; pass "
                             "--reflectance-scale S [--reflectance-offset O]")
        return s, None
    r = contract.reflectance_scaling
    if not rule.uniform:
        return r, (rule.scale, rule.offset)
    a, b = rule.scale[0], rule.offset[0]
    if r.method == "linear":  # model = (DN x a + b) x s + o
        a, b = a * r.scale, b * r.scale + r.offset
    if (a, b) == (1.0, 0.0):
        return Scaling("identity"), None
    return Scaling("linear", scale=a, offset=b), None


def check_range(path: str, rule: Reflectance, median: np.ndarray, p99: np.ndarray, p1: np.ndarray | None = None,
                dtype: str = "") -> str | None:
    """Refuse a rule that puts most pixels far outside reflectance (per-band
    ``median``, 99th and, if given, 1st percentile of a sample of the
    scene's values, ``dtype`` the scene's); return a warning where most
    pixels lie outside 0-1.5 but not far, where nearly every value is below
    0.01 (scaled twice?), or where even the darkest pixels are bright (raw
    Landsat Collection 2 DN read with another sensor's scale?).

    Raises
    ------
    InputError
        The median reflectance of the bands is below -0.5 or above 3.
    """
    if rule.uint8_rule:
        return None
    s, o = np.asarray(rule.scale), np.asarray(rule.offset)
    med = np.asarray(median, float) * s + o
    top = np.asarray(p99, float) * s + o
    m = float(np.median(med))
    raw = float(np.median(np.asarray(median, float)))
    values = (f"with reflectance = {rule.describe()} the scene's median reflectance is {m:.4g} (per band "
              f"{', '.join(f'{v:.3g}' for v in med)}; median value {raw:.4g})")
    fix = _fix(rule, dtype, raw, high=m > RANGE[1])
    if not (_FAR[0] <= m <= _FAR[1]):
        raise InputError(f"{path}: {values}, far outside {RANGE[0]:g}-{RANGE[1]:g}; expected reflectance: {fix}")
    if m > RANGE[1] or m < RANGE[0]:
        side = "brighter than the model reads (it clips at 1.5)" if m > RANGE[1] else "negative"
        return f"{path}: {values}: most pixels {side}; expected reflectance {RANGE[0]:g}-{RANGE[1]:g}: {fix}"
    if rule.source.startswith("assumed") and m > _BRIGHT:  # the x 0.0001 guess, and most pixels as bright as cloud
        return (f"{path}: {values}, as bright as cloud or snow: unless the scene is mostly cloud, its values are not "
                "reflectance x 10000; pass its calibration (--reflectance-scale S, e.g. 1.526e-05 for reflectance x "
                "65535; --sensor landsat-c2-l1 or landsat-c2-l2 for Landsat Collection 2 DN)")
    if float(np.max(top)) < 0.01:
        hint = ("if the scene is reflectance already, pass --reflectance-scale 1" if abs(raw) <= RANGE[1] else
                "the scale is too small (values of reflectance x 10000: --reflectance-scale 0.0001; or --sensor NAME)")
        return (f"{path}: with reflectance = {rule.describe()} 99 % of the pixels are below {float(np.max(top)):.3g} "
                f"(median value {raw:.4g}), darker than any land; {hint}")
    if p1 is not None:
        low = np.asarray(p1, float) * s + o
        if float(np.min(low)) > 0.3:
            return (f"{path}: with reflectance = {rule.describe()} even the darkest 1 % of the pixels is above "
                    f"{float(np.min(low)):.2g} in every band: a scene of cloud or snow only, or a wrong calibration "
                    "(Landsat Collection 2 DN: --sensor landsat-c2-l1 for top-of-atmosphere, landsat-c2-l2 for "
                    "surface reflectance)")
    return None


def _fix(rule: Reflectance, dtype: str, raw: float, high: bool) -> str:
    """The way out of a rule that does not give reflectance (``raw``: the
    scene's median value)."""
    given = rule.source.startswith("--reflectance-scale")
    if dtype and np.dtype(dtype).itemsize == 1 and np.dtype(dtype).kind in "ui":
        return ("drop --reflectance-scale: uncalibrated 8-bit scenes follow the model's uint8 rule (or --sensor naip)"
                if given else "pass --sensor naip or --reflectance-scale S [--reflectance-offset O]")
    if 0 <= raw <= RANGE[1] and high:
        return "the values are reflectance already: pass --reflectance-scale 1"
    if high:
        return ("pass the scene's calibration (--reflectance-scale 0.0001 [--reflectance-offset O] for values of "
                "reflectance x 10000, or --sensor NAME)")
    return "check the offset (--reflectance-offset, or --sensor NAME) or the sign of --reflectance-scale"
