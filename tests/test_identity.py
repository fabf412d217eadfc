"""Byte identity of the outputs: the hashes recorded before the runtime was
restructured (issue 11) must not change by refactoring.

Probability rasters are compared by layout and per-band means (their float
bits differ between CPUs), every other product byte for byte.
A deliberate change of an output (a new style, a new model) re-records them:
``GEOSEG_RECORD_IDENTITY=1 pytest tests/test_identity.py`` and says why in
the commit.  The synthetic cases always run; the real scenes of
``../shared/scenes`` run where they are present.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import make_model, paint, write_scene

HASHES = Path(__file__).parent / "data" / "identity_hashes.json"
RECORD = os.environ.get("GEOSEG_RECORD_IDENTITY") == "1"
# products whose bytes depend only on the inputs (stats.json holds timings and
# dates; the manifest holds paths and times)
PRODUCTS = ("_classes.tif", "_classes.qml", "_classes.tif.aux.xml", "_probs.tif", "_probs.qml", "_polygons.gpkg",
            "_quicklook.png")
FIXED_MTIME = 1_700_000_000  # sources get a fixed mtime: the GeoPackage stores it


def _classify(inputs: Path, out: Path, model: str | None, **options) -> None:
    """Run in a fresh interpreter: a process that imported TensorFlow (the
    training tests) carries TensorFlow's SQLite, without the R-tree module
    GDAL uses for the GeoPackage's spatial index, and the GeoPackage differs."""
    import subprocess
    import sys

    code = (
        "import sys; from geoseg.batch import classify_many; from geoseg.scheduling import Runner; "
        "from geoseg.pipeline import ClassifyOptions\n"
        f"with Runner('threads', 2) as r:\n"
        f"    run = classify_many([{str(inputs)!r}], {str(out)!r}, {model!r}, ClassifyOptions(**{options!r}), runner=r)\n"
        "sys.exit(0 if run.ok else [s.error for s in run.scenes])"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


PROBS_TOL = 0.02  # of a band's mean, in the stored unit (0-255 or 0-1)


def _probs_print(p: Path) -> str:
    """Probabilities are floating-point results of onnxruntime, whose kernels
    differ in the last bits between CPUs (AVX2, AVX-512): their bytes are not
    comparable across machines.  Their fingerprint is the raster's layout
    (shape, dtype, transform, CRS, nodata, tiling, compression) exactly and the
    per-band means to within ``PROBS_TOL``."""
    import rasterio

    with rasterio.open(p) as r:
        layout = hashlib.sha256(repr((r.shape, r.count, r.dtypes, tuple(r.transform), r.crs.to_wkt() if r.crs else None,
                                      r.nodata, r.block_shapes, r.compression, r.descriptions)).encode()).hexdigest()
        means = [float(np.nanmean(r.read(b, masked=True).astype(np.float64).filled(np.nan))) for b in r.indexes]
    return "probs:" + layout + ":" + ",".join(f"{m:.4f}" for m in means)


def _same(a: str, b: str) -> bool:
    if a.startswith("probs:") and b.startswith("probs:"):
        _, la, ma = a.split(":")
        _, lb, mb = b.split(":")
        va, vb = [float(v) for v in ma.split(",")], [float(v) for v in mb.split(",")]
        return la == lb and len(va) == len(vb) and all(abs(x - y) <= PROBS_TOL for x, y in zip(va, vb))
    return a == b


def _hashes(outdir: Path) -> dict[str, str]:
    out = {}
    for f in sorted(outdir.rglob("*")):
        if f.is_file() and f.name.endswith(PRODUCTS):
            out[str(f.relative_to(outdir))] = _probs_print(f) if f.name.endswith("_probs.tif") else _sha(f)
    return out


def _check(case: str, got: dict[str, str]) -> None:
    recorded = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    if RECORD:
        recorded[case] = got
        HASHES.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        return
    if case not in recorded:
        pytest.fail(f"no recorded hashes for {case}; record them with GEOSEG_RECORD_IDENTITY=1")
    want = recorded[case]
    assert sorted(got) == sorted(want)
    changed = [k for k in got if not _same(got[k], want[k])]
    assert not changed, changed


def _synthetic_scenes(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 4, size=(9, 11))
    img = paint(truth, 8)
    img[:, :5, :13] = 0  # a nodata corner
    write_scene(root / "u8_nodata.tif", img, nodata=0, tiled=True, block=16)
    write_scene(root / "u16.tif", paint(truth, 8, dtype="uint16", scale=40.0))
    geo = paint(truth[:6, :6], 8)
    from affine import Affine

    write_scene(root / "geographic.tif", geo, crs="EPSG:4326", transform=Affine(0.001, 0, 10.0, 0, -0.001, 50.0))
    for f in root.glob("*.tif"):
        os.utime(f, (FIXED_MTIME, FIXED_MTIME))
    return root


@pytest.mark.parametrize("stride", [8, 4])
def test_synthetic_outputs_are_unchanged(tmp_path, stride):
    scenes = _synthetic_scenes(tmp_path / "in")
    model = make_model(tmp_path / "colour8.onnx", patch=8)
    out = tmp_path / "out"
    _classify(scenes, out, model, stride=stride, block_cells=3)
    _check(f"synthetic-stride{stride}", _hashes(out))


def test_shared_scenes_outputs_are_unchanged(tmp_path, shared_dir):
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted((shared_dir / "scenes").glob("*.tif*")):  # with landsat_2020.tif.aux.xml
        shutil.copy(f, src / f.name)
        os.utime(src / f.name, (FIXED_MTIME, FIXED_MTIME))
    out = tmp_path / "out"
    _classify(src, out, None)
    _check("shared-default-model", _hashes(out))
