"""geoseg.evaluation and `geoseg evaluate-scene`: planted confusions with
exact numbers (raster and vector references, another CRS, class mapping,
coverage at edges and nodata, one-against-rest) and every bad input."""

import json
import os
from pathlib import Path
from collections import Counter

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from PIL import Image
from pyproj import Transformer
from shapely.geometry import box

from geoseg.errors import InputError, OutputExistsError
from geoseg.evaluation import EvaluateOptions, evaluate_scene, parse_mapping
from geoseg.geometry import pixel_area_m2
from geoseg.scoring import scores
from helpers import one_error_line, run_cli

X0, Y0 = 500000.0, 6000000.0
CELL = 4.0
MODEL = ("cloudy", "desert", "green_area", "water")
T_CELLS = Affine(CELL, 0, X0, 0, -CELL, Y0)


def write_raster(path, arr, transform, crs="EPSG:32633", nodata=255, names=None):
    arr = np.asarray(arr, np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype="uint8", crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(arr[None])
        if names is not None:
            dst.update_tags(CLASS_NAMES=",".join(names))
    return str(path)


def fine(cells, k=4):
    """Cell values repeated into k x k reference pixels of CELL / k metres."""
    return np.kron(np.asarray(cells), np.ones((k, k), np.uint8)).astype(np.uint8)


def expected_cm(ref, mod, n):
    cnt = Counter((int(r), int(m)) for r, m in zip(np.ravel(ref), np.ravel(mod)) if r >= 0 and m >= 0)
    return [[cnt[(i, j)] for j in range(n)] for i in range(n)]


@pytest.fixture
def planted(tmp_path):
    """A 6 x 8 class map and a reference equal to it but for 7 planted cells;
    one class-map cell is nodata."""
    rng = np.random.default_rng(3)
    model = rng.integers(0, 4, size=(6, 8)).astype(np.uint8)
    truth = model.copy()
    changes = {(0, 0): 3, (0, 1): 3, (1, 2): 2, (2, 3): 0, (3, 4): 1, (4, 5): 3, (5, 6): 2}
    for (r, c), v in changes.items():
        truth[r, c] = v if v != model[r, c] else (v + 1) % 4
    model[5, 7] = 255
    cm = class_map(tmp_path / "scene_classes.tif", model)
    ref = write_raster(tmp_path / "ref.tif", fine(truth), Affine(1, 0, X0, 0, -1, Y0), names=MODEL)
    return cm, ref, model, truth


def class_map(path, arr, names=MODEL):
    return write_raster(path, arr, T_CELLS, names=names)


def load(outdir):
    return json.loads(Path(outdir, "report.json").read_text())


def test_planted_confusion_with_a_raster_reference(tmp_path, planted):
    cm_path, ref, model, truth = planted
    ev = evaluate_scene(cm_path, ref, tmp_path / "out")
    rep = load(tmp_path / "out")
    valid = model != 255
    exp = expected_cm(truth[valid], model[valid], 4)
    assert rep["confusion"]["cells"] == exp
    assert rep["n_cells"] == 47 and np.trace(np.array(exp)) == 40
    assert rep["overall_accuracy"] == pytest.approx(40 / 47, abs=1e-6)
    s = scores(np.array(exp), MODEL)
    assert rep["kappa"] == pytest.approx(s.kappa, abs=1e-6)
    assert rep["balanced_accuracy"] == pytest.approx(s.balanced_accuracy, abs=1e-6)
    for n in MODEL:
        for f in ("precision", "recall", "f1", "iou"):
            assert rep["per_class"][n][f] == pytest.approx(getattr(s.per_class[n], f), abs=1e-6)
    assert rep["left_out"]["class_map_nodata"]["cells"] == 1
    assert sum(v["cells"] for k, v in rep["left_out"].items() if k != "class_map_nodata") == 0
    # km²: the ellipsoidal area of each cell (UTM scale factor included)
    rr, cc = np.meshgrid(np.arange(6) + 0.5, np.arange(8) + 0.5, indexing="ij")
    area = pixel_area_m2(T_CELLS, rasterio.crs.CRS.from_epsg(32633).to_wkt(), rr, cc) / 1e6
    km2 = np.zeros((4, 4))
    for r, c in zip(*np.nonzero(valid)):
        km2[truth[r, c], model[r, c]] += area[r, c]
    np.testing.assert_allclose(rep["confusion"]["km2"], km2, atol=1e-6)
    assert rep["area_km2"] == pytest.approx(area[valid].sum(), abs=1e-6)
    assert 16e-6 < area[0, 0] < 16.02e-6  # 4 m x 4 m, slightly more than the grid says at the central meridian
    assert ev.scores.overall_accuracy == pytest.approx(40 / 47)
    # the disagreement raster: 1 exactly at the planted cells, 255 at nodata
    with rasterio.open(tmp_path / "out" / "disagreement.tif") as d:
        dis = d.read(1)
        assert d.transform == T_CELLS and d.crs.to_epsg() == 32633 and d.nodata == 255
        assert d.descriptions[0] == "disagreement" and d.profile["compress"] == "deflate" and d.profile["tiled"]
        assert d.colormap(1)[1][:3] == (215, 48, 31)
    exp_dis = np.where(truth == model, 0, 1).astype(np.uint8)
    exp_dis[5, 7] = 255
    assert (dis == exp_dis).all()
    aux = Path(tmp_path / "out" / "disagreement.tif.aux.xml").read_text()
    assert "<Category>agree</Category>" in aux and "<Category>disagree</Category>" in aux
    assert 'label="disagree"' in Path(tmp_path / "out" / "disagreement.qml").read_text()
    with Image.open(tmp_path / "out" / "confusion.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    md = Path(tmp_path / "out" / "report.md").read_text()
    for part in ("## Confusion matrix (cells)", "## Confusion matrix (km²)", "Cohen's kappa", "balanced accuracy",
                 "| water |"):
        assert part in md
    assert sorted(os.listdir(tmp_path / "out")) == ["confusion.png", "disagreement.qml", "disagreement.tif",
                                                   "disagreement.tif.aux.xml", "report.json", "report.md"]
    # outputs are not replaced without overwrite
    with pytest.raises(OutputExistsError):
        evaluate_scene(cm_path, ref, tmp_path / "out")
    evaluate_scene(cm_path, ref, tmp_path / "out", EvaluateOptions(overwrite=True))


def cell_polygons(truth, names, crs_to=None):
    """One square per cell of ``truth`` (UTM), optionally reprojected (densified first)."""
    geoms, vals = [], []
    for r in range(truth.shape[0]):
        for c in range(truth.shape[1]):
            x, y = X0 + c * CELL, Y0 - r * CELL
            geoms.append(box(x, y - CELL, x + CELL, y))
            vals.append(names[truth[r, c]])
    geoms = np.array(geoms, dtype=object)
    if crs_to:
        tr = Transformer.from_crs("EPSG:32633", crs_to, always_xy=True)
        geoms = shapely.transform(shapely.segmentize(geoms, 0.5),
                                  lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return gpd.GeoDataFrame({"landcover": vals, "id": np.arange(len(vals))}, geometry=list(geoms),
                            crs=crs_to or "EPSG:32633")


def test_vector_reference_in_another_crs(tmp_path, planted):
    cm_path, ref, model, truth = planted
    gdf = cell_polygons(truth, MODEL, "EPSG:4326")
    gdf.to_file(tmp_path / "ref.geojson", driver="GeoJSON")
    evaluate_scene(cm_path, tmp_path / "ref.geojson", tmp_path / "out")
    rep = load(tmp_path / "out")
    valid = model != 255
    assert rep["reference_kind"] == "vector" and rep["reference_field"] == "landcover"
    assert rep["confusion"]["cells"] == expected_cm(truth[valid], model[valid], 4)
    assert rep["overall_accuracy"] == pytest.approx(40 / 47, abs=1e-6)
    # the same polygons in a GeoPackage in the class map's CRS, field given
    cell_polygons(truth, MODEL).to_file(tmp_path / "ref.gpkg")
    evaluate_scene(cm_path, tmp_path / "ref.gpkg", tmp_path / "out2", EvaluateOptions(field="landcover"))
    assert load(tmp_path / "out2")["confusion"]["cells"] == rep["confusion"]["cells"]


def test_geoparquet_reference(tmp_path, planted):
    pytest.importorskip("pyarrow")
    cm_path, ref, model, truth = planted
    cell_polygons(truth, MODEL, "EPSG:3857").to_parquet(tmp_path / "ref.parquet")
    evaluate_scene(cm_path, tmp_path / "ref.parquet", tmp_path / "out")
    assert load(tmp_path / "out")["n_cells"] == 47


def mapping_case(tmp_path):
    """Reference classes Water (matched by name), lake and sea (--map onto
    water), forest (onto green_area), sand (onto desert) and snow (unmapped)."""
    names = ("Water", "lake", "sea", "forest", "sand", "snow")
    truth = np.array([[0, 1, 2, 3, 4, 5],
                      [0, 0, 3, 3, 4, 5],
                      [1, 2, 3, 4, 4, 3]])
    model = np.array([[3, 3, 3, 2, 1, 0],
                      [3, 2, 2, 2, 1, 1],
                      [3, 3, 2, 1, 1, 2]], np.uint8)
    cm = class_map(tmp_path / "c.tif", model)
    ref = write_raster(tmp_path / "ref.tif", fine(truth), Affine(1, 0, X0, 0, -1, Y0), names=names)
    return cm, ref, truth, model


def test_class_mapping_several_onto_one_and_unmapped_reported(tmp_path):
    cm, ref, truth, model = mapping_case(tmp_path)
    opts = EvaluateOptions(mapping=parse_mapping("lake=water,sea=water,forest=green_area,sand=desert"))
    evaluate_scene(cm, ref, tmp_path / "out", opts)
    rep = load(tmp_path / "out")
    to_model = {0: 3, 1: 3, 2: 3, 3: 2, 4: 1, 5: -1}
    mapped = np.vectorize(to_model.get)(truth)
    keep = mapped >= 0
    assert rep["confusion"]["cells"] == expected_cm(mapped[keep], model[keep], 4)
    assert rep["n_cells"] == 16
    # water row: 7 reference cells (Water, lake, sea): 6 water, 1 green_area in the map
    assert rep["confusion"]["cells"][3] == [0, 0, 1, 6]
    assert rep["overall_accuracy"] == pytest.approx(15 / 16)
    um = rep["left_out"]["unmapped_reference"]
    assert um["cells"] == 2 and um["classes"] == {"snow": {"cells": 2, "km2": pytest.approx(um["km2"]),
                                                           "share": pytest.approx(2 / 18, abs=1e-6)}}
    rc = rep["reference_classes"]
    assert rc["Water"]["how"] == "name" and rc["lake"]["how"] == "--map" and rc["lake"]["mapped_to"] == "water"
    assert rc["snow"]["scored_as"] is None
    with rasterio.open(tmp_path / "out" / "disagreement.tif") as d:
        dis = d.read(1)
    assert (dis[truth == 5] == 3).all() and set(np.unique(dis[truth != 5])) <= {0, 1}
    # without --map only "Water" is matched: 13 reference cells are left out, by class
    evaluate_scene(cm, ref, tmp_path / "out2")
    rep2 = load(tmp_path / "out2")
    assert rep2["n_cells"] == 3
    assert {k: v["cells"] for k, v in rep2["left_out"]["unmapped_reference"]["classes"].items()} == {
        "forest": 5, "lake": 2, "sand": 4, "sea": 2, "snow": 2}


def test_one_against_rest(tmp_path, planted):
    cm_path, ref, model, truth = planted
    evaluate_scene(cm_path, ref, tmp_path / "out", EvaluateOptions(classes=("water",)))
    rep = load(tmp_path / "out")
    valid = model != 255
    t, m = (truth[valid] == 3).astype(int), (model[valid] == 3).astype(int)
    exp = expected_cm(1 - t, 1 - m, 2)  # index 0 = water, 1 = other
    assert rep["labels"] == ["water", "other"] and rep["confusion"]["cells"] == exp
    tp, fn, fp = exp[0][0], exp[0][1], exp[1][0]
    assert rep["per_class"]["water"]["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
    assert rep["per_class"]["water"]["precision"] == pytest.approx(tp / (tp + fp), abs=1e-6)
    assert rep["per_class"]["water"]["recall"] == pytest.approx(tp / (tp + fn), abs=1e-6)
    assert rep["mode"] == "one-vs-rest"
    # a desert/green_area confusion is agreement here ("other" both)
    with rasterio.open(tmp_path / "out" / "disagreement.tif") as d:
        dis = d.read(1)
    both_other = valid & (truth != 3) & (model != 3)
    assert (dis[both_other] == 0).all()
    # reference classes matching no model class count as "other", not as left out
    cm, ref2, truth2, model2 = mapping_case(tmp_path)
    evaluate_scene(cm, ref2, tmp_path / "out2", EvaluateOptions(classes=("water",)))
    rep2 = load(tmp_path / "out2")
    assert rep2["n_cells"] == 18 and rep2["left_out"]["unmapped_reference"]["cells"] == 0
    assert rep2["reference_classes"]["snow"]["scored_as"] == "other"
    # only "Water" (by name) is water: 3 reference cells, 6 water cells in the map, 2 shared
    assert rep2["confusion"]["cells"] == [[2, 1], [4, 11]]


def test_coverage_at_edges_and_nodata(tmp_path):
    """A 2 m reference starting half a cell right of the grid and ending a
    cell short of it; one cell 3/4 nodata in the reference, one nodata cell
    in the class map."""
    model = np.full((4, 4), 3, np.uint8)
    model[3, 2] = 255
    cm = class_map(tmp_path / "c.tif", model)
    r = np.full((8, 5), 3, np.uint8)  # x0 + 2 .. x0 + 12
    r[4:6, 1] = 255
    r[5, 2] = 255                     # cell (2, 1): 3 of its 4 pixels nodata
    ref = write_raster(tmp_path / "ref.tif", r, Affine(2, 0, X0 + 2, 0, -2, Y0), names=MODEL)
    evaluate_scene(cm, ref, tmp_path / "a")
    a = load(tmp_path / "a")
    lo = a["left_out"]
    assert lo["class_map_nodata"]["cells"] == 1
    assert lo["no_reference"]["cells"] == 4        # column 3
    assert lo["low_coverage"]["cells"] == 1        # cell (2, 1)
    assert a["n_cells"] == 16 - 1 - 4 - 1          # column 0 (half covered) is in at 0.5
    with rasterio.open(tmp_path / "a" / "disagreement.tif") as d:
        dis = d.read(1)
    assert (dis[:, 3] == 2).all() and dis[2, 1] == 2 and dis[3, 2] == 255 and (dis[:, 0] == 0).all()
    evaluate_scene(cm, ref, tmp_path / "b", EvaluateOptions(min_coverage=0.6))
    b = load(tmp_path / "b")
    assert b["left_out"]["low_coverage"]["cells"] == 5 and b["n_cells"] == 6
    evaluate_scene(cm, ref, tmp_path / "c", EvaluateOptions(min_coverage=0.2))
    assert load(tmp_path / "c")["n_cells"] == 11


# --- the command and its bad inputs -------------------------------------------------
def test_cli_summary(tmp_path, planted):
    cm_path, ref, model, truth = planted
    r = run_cli("evaluate-scene", cm_path, "--reference", ref, "-o", tmp_path / "out", "--classes", "water")
    assert r.exit_code == 0, r.output
    rep = load(tmp_path / "out")
    assert f"overall accuracy {rep['overall_accuracy']:.3f}" in r.output
    assert "water" in r.output and "IoU" in r.output and "1 cells class map nodata" in r.output
    assert "exists" in one_error_line(run_cli("evaluate-scene", cm_path, "--reference", ref, "-o", tmp_path / "out"))
    r = run_cli("evaluate-scene", cm_path, "--reference", ref, "-o", tmp_path / "out", "--map", "lake")
    assert r.exit_code == 2  # a malformed option is a usage error


def _bad_case(tmp_path, planted, case):
    """(arguments of evaluate-scene, texts its one error line must hold) of one bad input."""
    cm_path, ref, model, truth = planted
    gdf = cell_polygons(truth, MODEL)
    if case == "far-raster":
        far = write_raster(tmp_path / "far.tif", fine(truth), Affine(1, 0, X0 + 1e5, 0, -1, Y0), names=MODEL)
        return (cm_path, "--reference", far), ("far.tif", "does not overlap")
    if case == "no-such-field":
        gdf.to_file(tmp_path / "ref.gpkg")
        return (cm_path, "--reference", tmp_path / "ref.gpkg", "--field", "kind"), (
            "ref.gpkg", "no field 'kind'", "landcover, id")
    if case == "far-vector":
        gdf.translate(1e5).to_frame("geometry").assign(landcover=gdf["landcover"]).to_file(tmp_path / "farv.gpkg")
        return (cm_path, "--reference", tmp_path / "farv.gpkg"), ("farv.gpkg", "does not overlap")
    if case == "map-unknown-model-class":
        return (cm_path, "--reference", ref, "--map", "water=lakes"), (
            "'lakes' is not a class of the class map", "cloudy, desert, green_area, water")
    if case == "map-unknown-reference-class":
        return (cm_path, "--reference", ref, "--map", "glacier=water"), (
            "ref.tif", "'glacier' is not a class of the reference", "green_area")
    if case == "classes-unknown":
        return (cm_path, "--reference", ref, "--classes", "water,lake"), (
            "'lake' is not a class of the class map", "known: cloudy, desert, green_area, water")
    if case in ("class-map-no-crs", "reference-no-crs"):
        nocrs = write_raster(tmp_path / "nocrs.tif", model, T_CELLS, crs=None, names=MODEL)
        args = (nocrs, "--reference", ref) if case == "class-map-no-crs" else (cm_path, "--reference", nocrs)
        return args, ("nocrs.tif", "no CRS")
    if case == "vector-no-crs":
        with pytest.warns(UserWarning, match="'crs' was not provided"):
            gpd.GeoDataFrame({"landcover": ["water"]}, geometry=[box(X0, Y0 - 8, X0 + 8, Y0)]).to_file(
                tmp_path / "nocrs.shp")
        return (cm_path, "--reference", tmp_path / "nocrs.shp"), ("nocrs.shp", "no CRS")
    if case in ("junk-reference", "junk-class-map"):
        (tmp_path / "junk.tif").write_text("not a raster\n")
        if case == "junk-class-map":
            return (tmp_path / "junk.tif", "--reference", ref), ("junk.tif: not a readable raster",)
        return (cm_path, "--reference", tmp_path / "junk.tif"), ("junk.tif", "not a readable raster or vector file")
    if case == "junk-gpkg":
        (tmp_path / "junk.gpkg").write_text("not a geopackage\n")
        return (cm_path, "--reference", tmp_path / "junk.gpkg"), ("junk.gpkg: not a readable vector file",)
    if case == "missing-class-map":
        return (tmp_path / "missing.tif", "--reference", ref), ("missing.tif: file not found",)
    if case == "missing-reference":
        return (cm_path, "--reference", tmp_path / "missing.gpkg"), ("missing.gpkg: file not found",)
    assert case == "unnamed-class-map"
    unnamed = write_raster(tmp_path / "unnamed.tif", model, T_CELLS)
    return (unnamed, "--reference", ref), ("unnamed.tif", "no class names")


BAD_CASES = ["far-raster", "no-such-field", "far-vector", "map-unknown-model-class", "map-unknown-reference-class",
             "classes-unknown", "class-map-no-crs", "reference-no-crs", "vector-no-crs", "junk-reference",
             "junk-gpkg", "junk-class-map", "missing-class-map", "missing-reference", "unnamed-class-map"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line(tmp_path, planted, case):
    args, texts = _bad_case(tmp_path, planted, case)
    line = one_error_line(run_cli("evaluate-scene", *args, "-o", tmp_path / "out"))
    for t in texts:
        assert t in line, (t, line)
    assert not (tmp_path / "out" / "report.json").exists()


def test_nothing_to_score(tmp_path):
    model = np.full((2, 2), 3, np.uint8)
    cm = class_map(tmp_path / "c.tif", model)
    ref = write_raster(tmp_path / "ref.tif", np.full((8, 8), 1, np.uint8), Affine(1, 0, X0, 0, -1, Y0),
                       names=("x", "snow"))
    with pytest.raises(InputError, match="no cell of c.tif could be scored.*4 of unmapped reference classes"):
        evaluate_scene(cm, ref, tmp_path / "out")
    assert not os.path.exists(tmp_path / "out" / "report.json")
    assert os.listdir(tmp_path / "out") == []


def test_unnamed_reference_raster_by_raw_values(tmp_path, planted):
    cm_path, ref, model, truth = planted
    raw = write_raster(tmp_path / "raw.tif", fine(truth == 3), Affine(1, 0, X0, 0, -1, Y0))  # 1 = water, 0 = land
    evaluate_scene(cm_path, raw, tmp_path / "out", EvaluateOptions(mapping=parse_mapping("1=water"),
                                                                    classes=("water",)))
    rep = load(tmp_path / "out")
    valid = model != 255
    t, m = (truth[valid] == 3).astype(int), (model[valid] == 3).astype(int)
    assert rep["confusion"]["cells"] == expected_cm(1 - t, 1 - m, 2)
    assert rep["reference_classes"]["1"]["mapped_to"] == "water"
    assert rep["reference_classes"]["0"]["scored_as"] == "other"
    with pytest.raises(InputError, match=r"'7' is not a class of the reference; known: 0, 1"):
        evaluate_scene(cm_path, raw, tmp_path / "out2", EvaluateOptions(mapping=parse_mapping("7=water")))


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore::geoseg.errors.GeosegWarning")  # the scene's bands and resolution
def test_naip_water_against_its_ndwi(tmp_path, shared_dir):
    """The real run of docs/evaluation.md, on the NAIP scene with the default model."""
    scene = shared_dir / "scenes" / "naip_m_4709963_se_14_1_20200831.tif"
    r = run_cli("reference", "ndwi", scene, "--green", "2", "--nir", "4", "-o", tmp_path / "water.tif")
    assert r.exit_code == 0, r.output
    r = run_cli("classify", scene, "-o", tmp_path / "c", "--no-polygons", "--no-probs", "--no-quicklook", "-q")
    assert r.exit_code == 0, r.output
    r = run_cli("evaluate-scene", tmp_path / "c" / f"{scene.stem}_classes.tif", "--reference", tmp_path / "water.tif",
             "-o", tmp_path / "e", "--classes", "water")
    assert r.exit_code == 0, r.output
    rep = load(tmp_path / "e")
    assert rep["n_cells"] == 165 and rep["left_out"]["low_coverage"]["cells"] == 15  # the last row, 19 of 64 px filled
    # the figures follow from the cells: the reference's water cells are the NDWI's (52, the model's business is
    # the other column), and IoU is TP / (TP + FP + FN) of the confusion
    (tp, fn), (fp, tn) = rep["confusion"]["cells"]
    assert rep["confusion"]["labels"] == ["water", "other"] and tp + fn == 52 and tp + fn + fp + tn == 165
    assert rep["per_class"]["water"]["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-6)


def test_two_reference_values_of_one_name_are_one_reference_class(tmp_path, planted):
    cm_path, ref, model, truth = planted
    # values 0 and 1 are both "water"; value 2 is desert, value 3 is water too
    both = np.where(truth == 3, 1, np.where(truth == 2, 2, 0)).astype(np.uint8)
    raw = write_raster(tmp_path / "two.tif", fine(both), Affine(1, 0, X0, 0, -1, Y0),
                       names=("water", "water", "desert"))
    evaluate_scene(cm_path, raw, tmp_path / "out")
    rep = load(tmp_path / "out")
    rc = rep["reference_classes"]
    assert set(rc) == {"water", "desert"}
    valid = model != 255
    assert rc["water"]["cells"] + rc["desert"]["cells"] == 47 == rep["n_cells"]
    assert rc["water"]["cells"] == int((both[valid] != 2).sum())
    assert rc["water"]["share"] + rc["desert"]["share"] == pytest.approx(1.0)


def test_disagreement_codes_unnamed_class_map_values_apart(tmp_path, planted):
    cm_path, ref, model, truth = planted
    odd = model.copy()
    odd[0, 0] = 9  # a class-map value without a class name
    cm = class_map(tmp_path / "odd.tif", odd)
    ev = evaluate_scene(cm, ref, tmp_path / "out")
    with rasterio.open(tmp_path / "out" / "disagreement.tif") as d:
        dis = d.read(1)
        names = d.tags(1)
    assert dis[0, 0] == 4 and names["CLASS_4"] == "left out: class map value without a class name"
    assert (dis[odd < 4] <= 2).all()
    assert ev.report["left_out"]["unnamed_model_value"]["cells"] == 1
    assert "4 left out (class map value without a class name)" in Path(ev.outputs["report.md"]).read_text()
