"""Training chips from scenes and labels: ``geoseg chips``.

A chip is a ``size`` x ``size`` window of a scene whose label is one class
over at least ``min_purity`` of it.  Labels are polygons or points with a
class field (:mod:`geoseg.vectors`) or a class raster; how each labels a
window is :mod:`geoseg.chiplabels`.  Windows with any nodata (masked, or
non-finite) pixel in the chosen bands are skipped.  Chips are grouped by
spatial blocks (``block_size``) per scene: the ``group`` column of
``chips.csv``, which ``geoseg prepare`` / ``geoseg train`` keep on one side
of their split.

:func:`make_chips` is the orchestration: the pure window arithmetic is
:mod:`geoseg.chipgrid`, the scenes and the chip files
:mod:`geoseg.chipscenes`, the manifest :mod:`geoseg.chipmanifest`.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .chipgrid import block_of, row_chunks, sample_per_class
from .chiplabels import Labels, RasterLabels, labels_bounds_in, labels_chunk, open_labels
from .chipmanifest import is_chips_dir, read_chip, read_chips_manifest, remove_chips, safe_name, write_manifest
from .chipscenes import Candidate, Scene, invalid_windows, open_chip_scene, scene_bounds, write_chips
from .errors import GeosegWarning, InputError, OutputError, OutputExistsError, first_line

log = logging.getLogger(__name__)

CELL_BUDGET = 8_000_000  # label cells (pixels or sub-pixels) per chunk of rows
DEFAULT_BLOCK_CHIPS = 8

# training reads chips through these (training/data.py, training/evaluate.py)
__all__ = ["BlockSize", "ChipConfig", "ChipsResult", "ChipWarning", "is_chips_dir", "make_chips", "read_chip",
           "read_chips_manifest"]


class ChipWarning(GeosegWarning):
    """A scene or label gives no chip, or labels were partly left out."""


# --- configuration ---------------------------------------------------------------
@dataclass(frozen=True)
class BlockSize:
    """Side of the spatial blocks chips are grouped by: metres (``m``) or pixels (``px``)."""

    value: float
    unit: str  # "m" or "px"

    @classmethod
    def parse(cls, text: str) -> BlockSize:
        """``640m``, ``640`` (metres) or ``64px``."""
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(m|px)?\s*", str(text))
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"block size {text!r} is not a positive number of metres (640, 640m) or pixels (64px)")
        return cls(float(m.group(1)), m.group(2) or "m")

    def pixels(self, res_x: float, is_geographic: bool, scene: str) -> int:
        if self.unit == "px":
            return max(1, int(round(self.value)))
        if is_geographic:
            raise InputError(f"{scene}: the scene's CRS is geographic (degrees); give --block-size in pixels "
                             f"(e.g. {int(round(self.value))}px) or warp the scene to a projected CRS")
        return max(1, int(round(self.value / abs(res_x))))

    def describe(self) -> str:
        return f"{self.value:g}{self.unit}"


@dataclass(frozen=True)
class ChipConfig:
    """Options of :func:`make_chips` (the ``geoseg chips`` options)."""

    size: int = 64
    stride: int | None = None  # default: size
    min_purity: float = 0.9
    bands: tuple[int, ...] | None = None  # default: every band but alpha
    max_per_class: int | None = None
    block_size: BlockSize | None = None  # default: DEFAULT_BLOCK_CHIPS chips wide
    field: str | None = None
    seed: int = 0
    supersample: int = 4
    overwrite: bool = False
    layer: str | None = None  # of a vector file; default: its only (or first) layer with geometries

    @property
    def step(self) -> int:
        return self.stride or self.size

    def check(self) -> None:
        if self.size < 2:
            raise ValueError(f"chip size {self.size} must be at least 2 px")
        if self.step < 1:
            raise ValueError(f"stride {self.step} must be at least 1 px")
        if not 0 < self.min_purity <= 1:
            raise ValueError(f"min purity {self.min_purity} must be in (0, 1]")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError("max per class must be at least 1")
        if self.supersample < 1:
            raise ValueError("supersample must be at least 1")


@dataclass
class ChipsResult:
    """What :func:`make_chips` wrote."""

    out_dir: str
    manifest: str
    counts: dict[str, int]
    skipped: dict[str, int]
    n_groups: int
    band_names: list[str]
    dtype: str
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.counts.values())


def make_chips(scenes: list[str], labels_path: str, out_dir: str, cfg: ChipConfig | None = None) -> ChipsResult:
    """Cut labelled chips from ``scenes`` into ``out_dir``/<class>/ and write
    ``out_dir``/chips.csv and chips.json.

    Raises
    ------
    InputError
        A scene or label file that cannot be used, labels that overlap no
        scene, or no window pure enough (one line, with the fix).
    OutputExistsError
        ``out_dir`` holds chips (or other files) and ``cfg.overwrite`` is False.
    """
    cfg = cfg or ChipConfig()
    cfg.check()
    if not scenes:
        raise InputError("no scene given; expected one or more GeoTIFF scenes")
    labels = open_labels(labels_path, cfg.field, cfg.layer)
    opened = _open_scenes([str(p) for p in scenes], cfg)
    stems = _unique_stems(opened)
    _prepare_out(out_dir, cfg.overwrite)
    block = cfg.block_size or BlockSize(DEFAULT_BLOCK_CHIPS * cfg.size, "px")
    cands, skipped, block_px = _candidates(opened, stems, labels, labels_path, block, cfg)
    names = [safe_name(labels.name_of(c.label)) for c in cands]
    keep = sample_per_class(names, cfg.max_per_class, cfg.seed)
    skipped["over_max_per_class"] = len(cands) - len(keep)
    rows = write_chips(opened, stems, [cands[i] for i in keep], [names[i] for i in keep], out_dir, cfg.size)
    counts = dict(sorted(Counter(r["class"] for r in rows).items()))
    n_groups = len({r["group"] for r in rows})
    first = opened[0]
    sidecar = {
        "size": cfg.size, "stride": cfg.step, "min_purity": cfg.min_purity, "bands": list(first.bidx),
        "band_names": list(first.band_names), "dtype": first.dtype, "labels": os.path.abspath(labels_path),
        "label_kind": labels.kind, "field": labels.field,
        "supersample": cfg.supersample if labels.kind == "polygon" else None,
        "block_size": block.describe(), "block_size_px": block_px, "max_per_class": cfg.max_per_class,
        "seed": cfg.seed, "classes": counts, "groups": n_groups, "skipped": dict(skipped),
        "nodata_rule": "a window with any nodata pixel is skipped",
        "scenes": [os.path.abspath(s.path) for s in opened],
    }
    manifest = write_manifest(out_dir, rows, sidecar)
    log.info("%d chips in %d classes (%d spatial groups); skipped %s", len(rows), len(counts), n_groups,
             dict(skipped))
    return ChipsResult(out_dir, manifest, counts, dict(skipped), n_groups, list(first.band_names), first.dtype,
                       sidecar)


def _open_scenes(paths: list[str], cfg: ChipConfig) -> list[Scene]:
    """Every scene opened and checked; refused where their bands differ or
    none holds one chip."""
    opened = [open_chip_scene(p, cfg.bands) for p in paths]
    first = opened[0]
    for sc in opened[1:]:
        if len(sc.bidx) != len(first.bidx) or sc.dtype != first.dtype:
            raise InputError(f"{sc.path}: {len(sc.bidx)} {sc.dtype} band(s), but {first.path} gives "
                             f"{len(first.bidx)} {first.dtype}; chips of one set need the same bands "
                             "(choose them with --bands)")
    if all(sc.width < cfg.size or sc.height < cfg.size for sc in opened):
        sc = first
        raise InputError(f"{sc.path}: the scene is {sc.width} x {sc.height} px, smaller than one {cfg.size} px "
                         f"chip; expected scenes of at least {cfg.size} x {cfg.size} px: lower --size")
    return opened


def _unique_stems(opened: list[Scene]) -> list[str]:
    """Scene stems for chip names and groups, numbered where two are the same."""
    stems: list[str] = []
    seen: Counter[str] = Counter()
    for sc in opened:
        seen[sc.stem] += 1
        stems.append(sc.stem if seen[sc.stem] == 1 else f"{sc.stem}_{seen[sc.stem]}")
    return stems


def _candidates(opened: list[Scene], stems: list[str], labels: Labels, labels_path: str, block: BlockSize,
                cfg: ChipConfig) -> tuple[list[Candidate], Counter[str], dict[str, int]]:
    """The windows pure enough with no nodata, every scene; refused where the
    labels overlap no scene or no window qualifies."""
    cands: list[Candidate] = []
    skipped: Counter[str] = Counter()
    block_px: dict[str, int] = {}
    for si, sc in enumerate(opened):
        lb = labels_bounds_in(labels, sc.crs_wkt)
        if lb is None or not _overlaps(lb, scene_bounds(sc)):
            warnings.warn(f"{sc.path}: the labels {os.path.basename(labels_path)} do not overlap this scene; "
                          "no chip from it", ChipWarning, stacklevel=3)
            continue
        block_px[stems[si]] = block.pixels(sc.res[0], sc.is_geographic, sc.path)
        cands += _scene_candidates(si, sc, stems[si], labels, block_px[stems[si]], cfg, skipped)
    if not block_px:
        raise InputError(f"{labels_path}: the labels do not overlap any scene (e.g. {opened[0].path}); use labels "
                         "of the same area (any CRS: they are reprojected)")
    if not cands:
        raise InputError(f"{labels_path}: no {cfg.size} px window is at least {cfg.min_purity:.0%} one class with "
                         f"no nodata ({dict(skipped)} windows skipped); lower --min-purity or --size, or label more "
                         "area")
    return cands, skipped, block_px


def _scene_candidates(si: int, sc: Scene, stem: str, labels: Labels, bpx: int, cfg: ChipConfig,
                      skipped: Counter[str]) -> list[Candidate]:
    """The chips of one scene, chunk of window rows by chunk; ``skipped`` counts the rest."""
    size, stride = cfg.size, cfg.step
    on_scene: Labels = labels
    s = 1
    if not isinstance(labels, RasterLabels):
        s = cfg.supersample if labels.kind == "polygon" else 1
        on_scene = labels.to_crs(sc.crs_wkt)
    out: list[Candidate] = []
    for _, m, r0, r1 in row_chunks(sc.width, sc.height, size, stride, s * s, CELL_BUDGET):
        lab, pur = labels_chunk(on_scene, sc.transform, sc.crs_wkt, sc.width, r0, r1, s, stride, size)
        bad = invalid_windows(sc, r0, r1, size, stride)
        lab, pur, bad = lab[:m], pur[:m], bad[:m]
        labelled = lab >= 0
        pure = labelled & (pur >= cfg.min_purity - 1e-9)
        ok = pure & (bad == 0)
        skipped["unlabelled"] += int((~labelled).sum())
        skipped["impure"] += int((labelled & ~pure).sum())
        skipped["nodata"] += int((pure & (bad > 0)).sum())
        ii, jj = np.nonzero(ok)
        row_off, col_off = r0 + ii * stride, jj * stride
        br, bc = block_of(row_off, col_off, size, bpx)
        out += [Candidate(si, int(row_off[k]), int(col_off[k]), int(lab[ii[k], jj[k]]), float(pur[ii[k], jj[k]]),
                          f"{stem}:{int(br[k])}:{int(bc[k])}") for k in range(len(ii))]
    return out


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _prepare_out(out_dir: str, overwrite: bool) -> None:
    """Refuse a folder that holds files (without ``overwrite``); with it,
    remove the earlier run's chips (:func:`geoseg.chipmanifest.remove_chips`)."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        has_manifest = is_chips_dir(out_dir)
        if not overwrite:
            what = "holds chips (chips.csv)" if has_manifest else "exists and is not empty"
            raise OutputExistsError(f"{out_dir}: {what}; pass --overwrite or choose another folder")
        if has_manifest:
            remove_chips(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the folder ({first_line(exc)})") from None
