"""``geoseg evaluate-scene``: a class map scored against a reference.

The reference (a class raster in any grid, or polygons) is brought onto the
class grid by :mod:`geoseg.reference`, chunk of rows by chunk of rows; each
chunk adds to the confusion matrices (in cells and in km² on the ellipsoid)
and is written into the disagreement raster, so memory is bounded by a
chunk.  The figures come from :mod:`geoseg.scoring`.

Outputs in the folder (written under temporary names, renamed at the end):
``report.json``, ``report.md``, ``confusion.png`` and ``disagreement.tif``
(with ``disagreement.tif.aux.xml`` and ``disagreement.qml``).  The report
is a dictionary; :mod:`geoseg.evalreport` renders it (Markdown, PNG, the
terminal summary).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .errors import InputError, OutputError, OutputExistsError
from .evalreport import DISAGREEMENT_CODES, draw_confusion, report_markdown
from .geometry import pixel_area_m2
from .classmap import ClassGrid, norm_name, open_class_map
from .reference import RasterReference, VectorReference, open_reference, reference_on_grid, reference_values
from .scoring import OTHER, Scores, confusion_matrix, one_vs_rest_groups, scores
from .styled_raster import StyledOutput

log = logging.getLogger(__name__)

# codes of disagreement.tif
AGREE, DISAGREE, LOW_COVERAGE, UNMAPPED, UNNAMED, NODATA = 0, 1, 2, 3, 4, 255
DISAGREEMENT_NAMES = {AGREE: "agree", DISAGREE: "disagree", LOW_COVERAGE: "left out: reference coverage",
                      UNMAPPED: "left out: unmapped reference class",
                      UNNAMED: "left out: class map value without a class name"}
DISAGREEMENT_COLOURS = {AGREE: (76, 168, 84), DISAGREE: (215, 48, 31), LOW_COVERAGE: (189, 189, 189),
                        UNMAPPED: (240, 160, 48), UNNAMED: (152, 78, 163)}
OUTPUTS = ("report.json", "report.md", "confusion.png", "disagreement.tif")
COVERAGE_EPS = 1e-6  # shares computed in float32: 0.5 may come out as 0.49999997


@dataclass(frozen=True)
class EvaluateOptions:
    """Options of ``geoseg evaluate-scene`` (see its help)."""

    field: str | None = None
    mapping: tuple[tuple[str, str], ...] = ()
    min_coverage: float = 0.5
    classes: tuple[str, ...] | None = None
    overwrite: bool = False
    supersample: int = 8
    rows_per_chunk: int | None = None  # default: bounded by the reference's pixels or sub-cells
    layer: str | None = None  # of a vector reference; default: its only (or first) layer with geometries


def parse_mapping(text: str | None) -> tuple[tuple[str, str], ...]:
    """``"wetland=water,sea=water"`` -> ``(("wetland", "water"), ("sea", "water"))``."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        ref, sep, mod = part.partition("=")
        if not sep or not ref.strip() or not mod.strip():
            raise ValueError(f"{part.strip()!r} is not REFCLASS=MODELCLASS (e.g. --map wetland=water,1=water)")
        out.append((ref.strip(), mod.strip()))
    return tuple(out)


@dataclass
class Evaluation:
    """What :func:`evaluate_scene` found and wrote."""

    report: dict
    scores: Scores
    outputs: dict[str, str] = field(default_factory=dict)


class _Mapper:
    """Reference label -> model class index (or -1: unmapped), by ``--map``
    first, else by name (compared with :func:`~geoseg.classmap.norm_name`)."""

    def __init__(self, ref: RasterReference | VectorReference, model_names: list[str],
                 mapping: tuple[tuple[str, str], ...]) -> None:
        self.ref = ref
        self.model_names = model_names
        by_norm = {norm_name(n): i for i, n in enumerate(model_names)}
        known_model = ", ".join(model_names)
        self.by_name = by_norm
        self.mapped: dict[str, int] = {}
        for r, m in mapping:
            if norm_name(m) not in by_norm:
                raise InputError(f"--map {r}={m}: {m!r} is not a class of the class map; known: {known_model}")
        if mapping:
            known_ref = self._known_reference(mapping)
            for r, m in mapping:
                if norm_name(r) not in known_ref:
                    shown = ", ".join(sorted(set(known_ref.values()), key=str)) or "none"
                    raise InputError(f"{ref.path}: --map {r}={m}: {r!r} is not a class of the reference; known: {shown}")
                self.mapped[norm_name(r)] = by_norm[norm_name(m)]
        self.cache: dict[int, tuple[int, str]] = {}

    def _known_reference(self, mapping) -> dict[str, str]:
        known = {}
        for v, n in self.ref.names.items():
            known[norm_name(n)] = n
            if isinstance(self.ref, RasterReference):
                known[str(v)] = n
        if isinstance(self.ref, RasterReference) and any(norm_name(r) not in known for r, _ in mapping):
            for v in reference_values(self.ref):  # unnamed values go by their number
                known.setdefault(str(v), self.ref.name_of(v))
        return known

    def resolve(self, label: int) -> tuple[int, str]:
        """(model index or -1, how: "--map", "name" or "")."""
        label = int(label)
        if label not in self.cache:
            name = self.ref.name_of(label)
            keys = [norm_name(name)] + ([str(label)] if isinstance(self.ref, RasterReference) else [])
            hit = next((self.mapped[k] for k in keys if k in self.mapped), None)
            if hit is not None:
                self.cache[label] = (hit, "--map")
            elif norm_name(name) in self.by_name:
                self.cache[label] = (self.by_name[norm_name(name)], "name")
            else:
                self.cache[label] = (-1, "")
        return self.cache[label]

    def resolve_array(self, labels: np.ndarray) -> np.ndarray:
        u, inv = np.unique(labels, return_inverse=True)
        lut = np.array([self.resolve(v)[0] for v in u], dtype=np.int64)
        return lut[inv].reshape(labels.shape) if u.size else np.full(labels.shape, -1, np.int64)


class _Tally:
    """Sums over the chunks: matrices, left-out cells, reference classes."""

    def __init__(self, k: int) -> None:
        self.cells = np.zeros((k, k))
        self.km2 = np.zeros((k, k))
        self.left = {key: [0, 0.0] for key in ("class_map_nodata", "unnamed_model_value", "no_reference",
                                               "low_coverage", "unmapped_reference")}
        self.ref_cells: dict[int, list] = {}  # label -> [cells, km2] of covered, valid cells

    def add_left(self, key: str, sel: np.ndarray, area: np.ndarray) -> None:
        self.left[key][0] += int(sel.sum())
        self.left[key][1] += float(area[sel].sum())


def evaluate_scene(class_map: str | os.PathLike, reference: str | os.PathLike, outdir: str | os.PathLike,
                   options: EvaluateOptions | None = None) -> Evaluation:
    """Score ``class_map`` against ``reference`` and write the reports into ``outdir``.

    Raises :class:`~geoseg.errors.InputError` (one line) for unreadable
    files, missing CRS, no overlap, a missing field, an unknown class name
    in ``mapping`` or ``classes``, or nothing left to score.
    """
    o = options or EvaluateOptions()
    if not 0.0 <= o.min_coverage <= 1.0:
        raise InputError(f"--min-coverage {o.min_coverage}: expected a share between 0 and 1")
    grid = open_class_map(class_map)
    model_names = [grid.names[v] for v in sorted(grid.names)]
    groups, labels = _scored_labels(grid, model_names, o.classes)
    ref = open_reference(reference, grid, o.field, o.layer)
    mapper = _Mapper(ref, model_names, o.mapping)
    outdir = str(outdir)
    finals = {n: os.path.join(outdir, n) for n in OUTPUTS}
    _prepare_outdir(outdir, finals, o.overwrite)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmps = {n: os.path.join(outdir, f".{os.path.splitext(n)[0]}.{token}.tmp{os.path.splitext(n)[1]}")
            for n in OUTPUTS if n != "disagreement.tif"}
    dis = StyledOutput(finals["disagreement.tif"], overwrite=True)
    try:
        tally = _disagreement(dis, grid, ref, mapper, np.asarray(groups, np.int64), len(labels), o, str(reference))
        sc = scores(tally.cells, labels)
        report = _report(grid, ref, mapper, o, labels, groups, sc, scores(tally.km2, labels), tally)
        dis.style(DISAGREEMENT_NAMES, DISAGREEMENT_COLOURS, "disagreement")
        _write_reports(tmps, report)
        dis.commit()
        for name in ("confusion.png", "report.md", "report.json"):  # the JSON last: it marks a complete run
            os.replace(tmps[name], finals[name])
    except BaseException:
        dis.cleanup()
        for t in tmps.values():
            if os.path.exists(t):
                os.remove(t)
        raise
    return Evaluation(report, sc, {**finals, "disagreement.qml": dis.finals["qml"]})


def _scored_labels(grid: ClassGrid, model_names: list[str],
                   classes: tuple[str, ...] | None) -> tuple[list[int], list[str]]:
    """The group (an index into the labels) of each class-map class, and the
    labels scored: every class, or ``classes`` each against the rest."""
    if not classes:
        return list(range(len(model_names))), list(model_names)
    known = {norm_name(n): n for n in model_names}
    bad = [c for c in classes if norm_name(c) not in known]
    if bad:
        raise InputError(f"--classes {','.join(classes)}: {bad[0]!r} is not a class of the class map "
                         f"{os.path.basename(grid.path)}; known: {', '.join(model_names)}")
    other = OTHER if OTHER not in model_names else "rest"
    return one_vs_rest_groups(model_names, [known[norm_name(c)] for c in classes], other)


def _disagreement(dis: StyledOutput, grid: ClassGrid, ref, mapper: _Mapper, groups: np.ndarray, k: int,
                  o: EvaluateOptions, reference: str) -> _Tally:
    """Score the chunks into a tally, writing disagreement.tif (its
    temporary name) as they come; refused where no cell could be scored."""
    ds = dis.open(grid.width, grid.height, grid.transform, grid.crs_wkt,
                  {**{c: (*rgb, 255) for c, rgb in DISAGREEMENT_COLOURS.items()}, NODATA: (0, 0, 0, 0)})
    try:
        tally = _score_chunks(grid, ref, mapper, groups, k, o, ds)
        ds.set_band_description(1, "disagreement")
        ds.update_tags(GEOSEG_CLASS_MAP=os.path.basename(grid.path), GEOSEG_REFERENCE=os.path.basename(reference),
                       CODES=DISAGREEMENT_CODES)
        ds.update_tags(1, **{f"CLASS_{c}": v for c, v in DISAGREEMENT_NAMES.items()})
    finally:
        ds.close()
    if int(tally.cells.sum()) == 0:
        lf = tally.left
        raise InputError(
            f"{reference}: no cell of {os.path.basename(grid.path)} could be scored ({lf['class_map_nodata'][0]} "
            f"nodata in the class map, {lf['no_reference'][0] + lf['low_coverage'][0]} under --min-coverage "
            f"{o.min_coverage:g}, {lf['unmapped_reference'][0]} of unmapped reference classes); "
            "check --map, --field and --min-coverage")
    return tally


def _write_reports(tmps: dict[str, str], report: dict) -> None:
    with open(tmps["report.json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    with open(tmps["report.md"], "w", encoding="utf-8") as f:
        f.write(report_markdown(report))
    draw_confusion(tmps["confusion.png"], report)


def _prepare_outdir(outdir: str, finals: dict[str, str], overwrite: bool) -> None:
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot create output folder ({exc.strerror})") from None
    if not overwrite:
        exist = [p for p in finals.values() if os.path.exists(p)]
        if exist:
            raise OutputExistsError(f"{exist[0]}: output exists; pass --overwrite to replace it or choose another -o folder")
    if not os.access(outdir, os.W_OK):
        raise OutputError(f"{outdir}: output folder is not writable; choose another -o folder")


def _score_chunks(grid: ClassGrid, ref, mapper: _Mapper, groups: np.ndarray, k: int, o: EvaluateOptions,
                  ds) -> _Tally:
    from rasterio.windows import Window

    tally = _Tally(k)
    rest = None
    if o.classes:  # an extra model index whose group is "other" (the last label)
        rest = len(groups)
        groups = np.append(groups, k - 1)
    lut = {v: i for i, v in enumerate(sorted(grid.names))}
    cols = np.arange(grid.width) + 0.5
    for ch in reference_on_grid(ref, grid, o.supersample, o.rows_per_chunk):
        r0 = ch.row_off
        h = ch.labels.shape[0]
        cls = grid.read_rows(r0, r0 + h)
        rows = np.arange(r0, r0 + h) + 0.5
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        area = pixel_area_m2(grid.transform, grid.crs_wkt, rr, cc) / 1e6
        u, inv = np.unique(cls, return_inverse=True)
        m_idx = np.array([lut.get(int(v), -1) for v in u], np.int64)[inv].reshape(cls.shape)
        nod = cls == grid.nodata
        unnamed = ~nod & (m_idx < 0)
        valid = ~nod & ~unnamed
        cov = ch.coverage
        none = valid & (cov <= 0)
        low = valid & (cov > 0) & (cov < o.min_coverage - COVERAGE_EPS)
        covered = valid & ~none & ~low
        r_idx = np.full(cls.shape, -1, np.int64)
        r_idx[covered] = mapper.resolve_array(ch.labels[covered])
        if rest is not None:  # one-vs-rest: a reference class that matches no class is "other"
            r_idx[covered & (r_idx < 0)] = rest
        unm = covered & (r_idx < 0)
        scored = covered & (r_idx >= 0)
        for key, sel in (("class_map_nodata", nod), ("unnamed_model_value", unnamed), ("no_reference", none),
                         ("low_coverage", low), ("unmapped_reference", unm)):
            tally.add_left(key, sel, area)
        for lab in np.unique(ch.labels[covered]):
            sel = covered & (ch.labels == lab)
            t = tally.ref_cells.setdefault(int(lab), [0, 0.0])
            t[0] += int(sel.sum())
            t[1] += float(area[sel].sum())
        ref_l = np.where(scored, groups[np.maximum(r_idx, 0)], -1)
        mod_l = np.where(scored, groups[np.maximum(m_idx, 0)], -1)
        tally.cells += confusion_matrix(ref_l, mod_l, k)
        tally.km2 += confusion_matrix(ref_l, mod_l, k, weights=area)
        out = np.full(cls.shape, NODATA, np.uint8)
        out[valid] = LOW_COVERAGE
        out[unnamed] = UNNAMED
        out[unm] = UNMAPPED
        out[scored] = np.where(ref_l[scored] == mod_l[scored], AGREE, DISAGREE)
        ds.write(out[None], window=Window(0, r0, grid.width, h))
    return tally


# --- the report -------------------------------------------------------------------
def _r(x, nd: int = 6):
    return None if x is None else round(float(x), nd)


def _crs_label(wkt: str) -> str:
    from pyproj import CRS

    c = CRS.from_wkt(wkt)
    epsg = c.to_epsg()
    return f"EPSG:{epsg} ({c.name})" if epsg else c.name


def _report(grid: ClassGrid, ref, mapper: _Mapper, o: EvaluateOptions, labels: list[str], groups: list[int],
            sc: Scores, sa: Scores, tally: _Tally) -> dict:
    covered = sum(v[0] for v in tally.ref_cells.values())
    per_class = {}
    for n in labels:
        c, a = sc.per_class[n], sa.per_class[n]
        per_class[n] = {**{k: _r(v) for k, v in c.to_dict().items()},
                        "reference_cells": int(c.reference), "model_cells": int(c.model),
                        "reference_km2": _r(a.reference), "model_km2": _r(a.model)}
    ref_classes = _reference_classes(ref, mapper, o, labels, groups, tally, covered)
    unmapped = {n: {"cells": v["cells"], "km2": v["km2"], "share": v["share"]}
                for n, v in ref_classes.items() if v["scored_as"] is None}
    why = {
        "class_map_nodata": "nodata (255) in the class map",
        "unnamed_model_value": "class map value without a class name",
        "no_reference": "the reference does not cover the cell (outside it, or nodata there)",
        "low_coverage": f"the reference covers less than {o.min_coverage:g} of the cell (--min-coverage)",
        "unmapped_reference": "the cell's reference class matches no class of the class map and is not in --map",
    }
    left = {k: {"cells": v[0], "km2": _r(v[1]), "why": why[k]} for k, v in tally.left.items()}
    left["unmapped_reference"]["classes"] = unmapped
    t = grid.transform
    return {
        "geoseg_version": __version__,
        "class_map": os.path.abspath(grid.path),
        "reference": os.path.abspath(ref.path),
        "reference_kind": ref.kind,
        "reference_field": getattr(ref, "field", None),
        "grid": {"width": grid.width, "height": grid.height, "crs": _crs_label(grid.crs_wkt),
                 "transform": list(t)[:6], "cell_size": [abs(t.a), abs(t.e)]},
        "options": {"min_coverage": o.min_coverage, "map": {r: m for r, m in o.mapping},
                    "classes": list(o.classes) if o.classes else None,
                    "supersample": o.supersample if ref.kind == "vector" else None},
        "mode": "one-vs-rest" if o.classes else "all classes",
        "labels": labels,
        "n_cells": int(sc.total),
        "area_km2": _r(sa.total),
        "overall_accuracy": _r(sc.overall_accuracy),
        "kappa": _r(sc.kappa),
        "balanced_accuracy": _r(sc.balanced_accuracy),
        "by_area": {"overall_accuracy": _r(sa.overall_accuracy), "kappa": _r(sa.kappa),
                    "balanced_accuracy": _r(sa.balanced_accuracy)},
        "per_class": per_class,
        "confusion": {"rows": "reference", "columns": "class map", "labels": labels,
                      "cells": sc.matrix.astype(np.int64).tolist(),
                      "km2": [[_r(v) for v in row] for row in sa.matrix]},
        "left_out": left,
        "reference_classes": ref_classes,
        "dropped_features": getattr(ref, "n_dropped", None) or None,
    }


def _reference_classes(ref, mapper: _Mapper, o: EvaluateOptions, labels: list[str], groups: list[int],
                       tally: _Tally, covered: int) -> dict[str, dict]:
    """The report's reference classes, by name: values that share a name
    (two raster values called "water") are one class, their cells summed,
    unless they are scored differently (``--map 1=water,2=desert`` by
    value); then each is listed as ``NAME (VALUE)``."""
    by_key: dict[str, list] = {}
    for lab in sorted(tally.ref_cells, key=lambda v: (ref.name_of(v), v)):
        idx, how = mapper.resolve(lab)
        by_key.setdefault(ref.name_of(lab), []).append((lab, idx, how))
    out: dict[str, dict] = {}
    for name, members in by_key.items():
        split = len({(idx, how) for _, idx, how in members}) > 1
        for lab, idx, how in members:
            key = f"{name} ({lab})" if split else name
            cells, km2 = tally.ref_cells[lab]
            if key in out:
                out[key]["cells"] += cells
                out[key]["km2"] += km2
                continue
            if idx >= 0:
                scored_as = labels[groups[idx]]
            elif o.classes:
                scored_as, how = labels[-1], "one-vs-rest"
            else:
                scored_as = None
            out[key] = {"mapped_to": mapper.model_names[idx] if idx >= 0 else None, "scored_as": scored_as,
                        "how": how or None, "cells": cells, "km2": km2}
    for v in out.values():
        v["share"] = _r(v["cells"] / covered if covered else None)
        v["km2"] = _r(v["km2"])
    return out


__all__ = ["EvaluateOptions", "Evaluation", "evaluate_scene", "parse_mapping"]
