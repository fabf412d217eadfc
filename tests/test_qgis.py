"""geoseg's outputs opened in a real QGIS: styled as the user should see them.

Outputs are made with ``geoseg.batch.classify_many`` (a synthetic scene with
a known answer, and the shared RGB.byte.tif with the default model when
../shared is present), exactly as the writers leave them, then loaded by
``tests/qgis_probe.py`` under the system Python,
where PyQGIS lives.  Skips where ``/usr/bin/python3`` cannot import
``qgis.core`` (``scripts/install-qgis.sh`` installs it on Debian).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import make_contract, make_model, paint, write_scene

from geoseg import styles
from geoseg.batch import classify_many
from geoseg.errors import ResolutionWarning
from geoseg.model import load_model, resolve_model_path

SYSTEM_PYTHON = os.environ.get("GEOSEG_QGIS_PYTHON", "/usr/bin/python3")
PROBE = Path(__file__).with_name("qgis_probe.py")
ARTIFACTS = Path(__file__).with_name("artifacts")
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONNOUSERSITE": "1"}
ENV.pop("PYTHONPATH", None)
ENV.pop("VIRTUAL_ENV", None)
OPACITY = styles.DEFAULT_OPACITY


def _qgis_missing() -> str | None:
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], env=ENV, capture_output=True, text=True,
                       timeout=120)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"PyQGIS not importable by {SYSTEM_PYTHON} ({last}); run scripts/install-qgis.sh"
    return None


_MISSING = _qgis_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")

# the synthetic scene: a 6 x 7 grid of 8 px patches, class known per patch,
# the bottom-right patch nodata (0 in every band)
TRUTH = np.array([[0, 1, 2, 3, 1, 3, 0],
                  [2, 0, 0, 2, 3, 2, 3],
                  [2, 3, 2, 0, 3, 1, 2],
                  [1, 0, 3, 3, 2, 1, 3],
                  [2, 1, 1, 0, 0, 2, 3],
                  [0, 3, 3, 1, 2, 0, 255]])


def run_probe(files: list[Path], scene: Path, render: Path, on_map: list[Path]) -> dict:
    cmd = [SYSTEM_PYTHON, str(PROBE), *map(str, files), "--scene", str(scene), "--render", str(render),
           "--on-map", ",".join(map(str, on_map))]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"probe printed no JSON (rc {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert r.returncode == 0 and "error" not in report, report.get("traceback") or r.stderr[-3000:]
    return report


def _make_synthetic(root: Path):
    img = paint(np.where(TRUTH == 255, 0, TRUTH), 8)
    img[:, 40:, 48:] = 0
    scene = Path(write_scene(root / "scene.tif", img, nodata=0))
    model = make_model(root / "colour8.onnx", patch=8)
    return scene, model, make_contract(8), TRUTH


def _make_shared(root: Path, shared: Path):
    scene = shared / "scenes" / "RGB.byte.tif"
    if not scene.exists():
        pytest.skip(f"{scene} not present")
    model = resolve_model_path(None)
    return scene, model, load_model(model).contract, None


@pytest.fixture(scope="module", params=["synthetic", pytest.param("rgb_byte", marks=pytest.mark.shared)])
def qgis_case(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"qgis_{request.param}")
    if request.param == "synthetic":
        scene, model, contract, truth = _make_synthetic(root)
    else:
        scene, model, contract, truth = _make_shared(root, request.getfixturevalue("shared_dir"))
    out = root / "out"
    if request.param == "rgb_byte":  # 300 m pixels, the default model was trained at 10 m
        with pytest.warns(ResolutionWarning):
            run = classify_many([str(scene)], out, model, scheduler="synchronous", progress=False)
    else:
        run = classify_many([str(scene)], out, model, scheduler="synchronous", progress=False)
    assert [s.status for s in run.scenes] == ["done"], run.scenes[0].error
    stem = scene.stem
    # the class raster alone with its .aux.xml, no .qml: QGIS's default style
    bare = out / "bare"
    bare.mkdir()
    for f in (f"{stem}_classes.tif", f"{stem}_classes.tif.aux.xml"):
        shutil.copy(out / f, bare / f)
    files = [out / f"{stem}_classes.tif", out / f"{stem}_probs.tif", out / f"{stem}_polygons.gpkg",
             bare / f"{stem}_classes.tif"]
    png = root / "render.png"
    report = run_probe(files, scene, png, on_map=[out / f"{stem}_classes.tif"])
    ARTIFACTS.mkdir(exist_ok=True)
    artefact = ARTIFACTS / ("qgis_render.png" if request.param == "rgb_byte" else "qgis_render_synthetic.png")
    shutil.copy(png, artefact)
    with rasterio.open(out / f"{stem}_classes.tif") as src:
        grid = {"crs": src.crs, "bounds": list(src.bounds), "shape": src.shape}
    return {"name": request.param, "out": out, "stem": stem, "contract": contract, "truth": truth,
            "report": report, "png": png, "grid": grid, "scene": scene}


def _expected_crs(case) -> str:
    epsg = case["grid"]["crs"].to_epsg()
    return f"EPSG:{epsg}"


def test_classes_open_paletted_semi_transparent_with_the_models_classes(qgis_case):
    c = qgis_case["contract"]
    info = _file(qgis_case, f"{qgis_case['stem']}_classes.tif")
    assert info["valid"] and info["qml_sidecar"]
    assert info["renderer"] == "paletted"
    assert [(k["value"], k["label"], k["hex"], k["alpha"]) for k in info["classes"]] == [
        (i, n, col.lower(), 255) for i, (n, col) in enumerate(zip(c.class_names, c.class_colors))]
    assert info["legend_labels"] == list(c.class_names)
    assert info["opacity"] == pytest.approx(OPACITY)
    assert info["nodata"] == {"source_has": True, "source_value": 255.0, "use_source": True}
    rendered = info["rendered"]
    assert rendered["data_alpha_min"] == rendered["data_alpha_max"] == pytest.approx(255 * OPACITY, abs=1)
    if rendered["nodata_cells"]:
        assert rendered["nodata_alpha_max"] == 0
    if qgis_case["truth"] is not None:
        assert rendered["nodata_cells"] == int((qgis_case["truth"] == 255).sum()) == 1


def _file(case, relpath: str) -> dict:
    """The probe's facts of an output (path relative to the output folder)."""
    return case["report"]["files"][str(case["out"] / relpath)]


def test_classes_without_qml_list_only_the_classes(qgis_case):
    """The .aux.xml's colour table is what QGIS's default paletted style uses:
    the model's classes only, not GeoTIFF's 256 palette entries."""
    c = qgis_case["contract"]
    info = _file(qgis_case, f"bare/{qgis_case['stem']}_classes.tif")
    assert not info["qml_sidecar"]
    assert info["renderer"] == "paletted"
    assert info["color_table_entries"] == info["legend_entries"] == c.n_classes
    assert info["legend_labels"] == list(c.class_names)
    assert [k["hex"] for k in info["classes"]] == [col.lower() for col in c.class_colors]
    assert info["rendered"]["nodata_alpha_max"] in (0, None)


def test_probs_open_as_one_class_probability(qgis_case):
    c = qgis_case["contract"]
    info = _file(qgis_case, f"{qgis_case['stem']}_probs.tif")
    assert info["renderer"] == "singlebandpseudocolor"
    assert info["band"] == 1
    assert info["band_names"] == [f"Band {i + 1}: {n}" for i, n in enumerate(c.class_names)]
    assert info["classification"] == [0.0, 1.0]
    assert [(i["value"], i["hex"], i["alpha"]) for i in info["items"]] == [
        (0.0, c.class_colors[0].lower(), 0), (1.0, c.class_colors[0].lower(), 255)]
    assert info["nodata"]["source_value"] == "nan"
    if info["rendered"]["nodata_cells"]:
        assert info["rendered"]["nodata_alpha_max"] == 0


def test_polygons_load_their_default_style_from_the_geopackage(qgis_case):
    c = qgis_case["contract"]
    gpkg = _file(qgis_case, f"{qgis_case['stem']}_polygons.gpkg")
    # layer_styles is a system table: QGIS offers only the polygons
    assert [s["name"] for s in gpkg["sublayers"]] == ["classes"]
    assert gpkg["layers"], "no layer loaded"
    for layer in gpkg["layers"]:
        assert layer["valid"]
        assert layer["default_style_from_db"], layer.get("default_style_message")
        assert not layer["qml_sidecar"]
        assert layer["renderer"] == "categorizedSymbol"
        assert layer["class_attribute"] == "class_name"
        assert [(k["value"], k["label"], k["hex"], k["alpha"]) for k in layer["categories"]] == [
            (n, n, col.lower(), 255) for n, col in zip(c.class_names, c.class_colors)]
        assert layer["legend_entries"] == c.n_classes
        assert layer["opacity"] == pytest.approx(OPACITY)


def test_every_output_lies_on_the_scene(qgis_case):
    crs = _expected_crs(qgis_case)
    left, bottom, right, top = qgis_case["grid"]["bounds"]
    stem = qgis_case["stem"]
    rasters = [_file(qgis_case, f"{stem}_{p}.tif") for p in ("classes", "probs")]
    for info in rasters:
        assert info["crs"] == crs
        assert info["extent"] == pytest.approx([left, bottom, right, top])
    for layer in _file(qgis_case, f"{stem}_polygons.gpkg")["layers"]:
        assert layer["crs"] == crs
        # polygons cover the classified cells: within the grid (a real
        # scene's nodata border may leave whole rows out)
        x0, y0, x1, y1 = layer["extent"]
        assert left - 1e-6 <= x0 < x1 <= right + 1e-6 and bottom - 1e-6 <= y0 < y1 <= top + 1e-6
        if qgis_case["truth"] is not None:  # synthetic: classes reach every edge
            assert layer["extent"] == pytest.approx([left, bottom, right, top])


def test_the_rendered_map_shows_the_classes_over_the_scene(qgis_case):
    from PIL import Image

    render = qgis_case["report"]["render"]
    assert render["saved"] and render["layers"][-1] == "scene"
    img = np.asarray(Image.open(qgis_case["png"]).convert("RGBA")).astype(int)
    assert img.shape[1] == 800
    truth = qgis_case["truth"]
    if truth is None:  # a real scene: only that something was drawn
        assert (img[..., 3] > 0).mean() > 0.5
        return
    # synthetic: the scene's patches have the class colours; 70 % class
    # colour over the scene's noisy patch colour stays close to the class colour
    rows, cols = truth.shape
    h, w = img.shape[:2]
    rgb = np.array(qgis_case["contract"].rgb_colors())
    for r in range(rows):
        for c in range(cols):
            px = img[int((r + 0.5) * h / rows), int((c + 0.5) * w / cols)]
            if truth[r, c] == 255:
                assert px[3] == 0, (r, c, px)  # nodata in the scene and the classes: nothing drawn
            else:
                assert px[3] == 255
                assert np.abs(px[:3] - rgb[truth[r, c]]).max() <= 30, (r, c, px, truth[r, c])


def _validator() -> list[str] | None:
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import osgeo_utils.samples.validate_gpkg"], env=ENV,
                       capture_output=True, timeout=60)
    if r.returncode == 0:
        return [SYSTEM_PYTHON, "-m", "osgeo_utils.samples.validate_gpkg"]
    exe = shutil.which("validate_gpkg.py")
    return [exe] if exe else None


def test_geopackage_is_valid_for_gdal(qgis_case):
    gpkg = qgis_case["out"] / f"{qgis_case['stem']}_polygons.gpkg"
    con = sqlite3.connect(gpkg)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
    con.close()
    cmd = _validator()
    if cmd is None:
        pytest.skip("GDAL's validate_gpkg.py not found (python3-gdal / gdal-utils)")
    r = subprocess.run([*cmd, str(gpkg)], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
