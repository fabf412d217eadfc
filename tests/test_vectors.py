"""geoseg.vectors: the one reader of class features, and one shared test of
vector-label inputs run through both `geoseg evaluate-scene` and `geoseg chips`."""

from __future__ import annotations

import json
import os

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import CRS as PCRS

from helpers import one_error_line, run_cli

X0, Y0, RES = 500000.0, 6000000.0, 10.0
N = 32  # the grid: 32 x 32 cells of 10 m, UTM 33N
UTM = "EPSG:32633"
LOCAL = 'LOCAL_CS["site grid",UNIT["metre",1]]'
NAMES = ("cloudy", "desert", "green_area", "water")


def px_box(c0, r0, c1, r1):
    return shapely.box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


@pytest.fixture
def grid_tif(tmp_path):
    """A 1-band uint8 raster with class names: a class map for evaluate-scene
    and a scene for chips (top half water = 3, bottom half desert = 1)."""
    arr = np.full((N, N), 1, np.uint8)
    arr[: N // 2] = 3
    p = tmp_path / "grid.tif"
    with rasterio.open(p, "w", driver="GTiff", width=N, height=N, count=1, dtype="uint8", crs=UTM,
                       transform=Affine(RES, 0, X0, 0, -RES, Y0), nodata=255) as dst:
        dst.write(arr[None])
        dst.update_tags(CLASS_NAMES=",".join(NAMES))
    return str(p)


def halves(values, crs=UTM):
    """Two polygons: the top half of the grid and the bottom half."""
    gdf = gpd.GeoDataFrame({"landcover": list(values)}, geometry=[px_box(0, 0, N, N // 2), px_box(0, N // 2, N, N)],
                           crs=UTM)
    return gdf.to_crs(crs) if crs != UTM else gdf


def _parquet(tmp_path):
    p = tmp_path / "labels.parquet"
    halves(["water", "desert"], "EPSG:4326").to_parquet(p)
    return p, ["desert", "water"], ()


def _float_codes(tmp_path):
    p = tmp_path / "codes.parquet"
    halves([3.0, 1.0]).astype({"landcover": "float32"}).to_parquet(p)
    return p, ["1", "3"], ("--map", "1=desert,3=water")


def _float_codes_gpkg(tmp_path):
    p = tmp_path / "codes.gpkg"
    halves([3.0, 1.0]).to_file(p)
    return p, ["1", "3"], ("--map", "1=desert,3=water")


def _points(tmp_path):
    pts = [shapely.Point(X0 + (c + 0.5) * RES, Y0 - (r + 0.5) * RES) for r in (4, 20) for c in (4, 20)]
    p = tmp_path / "points.geojson"
    gpd.GeoDataFrame({"landcover": ["water", "water", "desert", "desert"]}, geometry=pts, crs=UTM).to_file(p)
    return p, ["desert", "water"], ()


def _layers(tmp_path):
    p = tmp_path / "layers.gpkg"
    halves(["water", "desert"]).to_file(p, layer="truth")
    halves(["cloudy", "cloudy"]).to_file(p, layer="draft")
    return p, ["desert", "water"], ()


CASES = {"geoparquet": _parquet, "float-codes": _float_codes, "float-codes-gpkg": _float_codes_gpkg,
         "points": _points, "several-layers": _layers}


def _evaluate(grid_tif, path, extra, out):
    return run_cli("evaluate-scene", grid_tif, "--reference", path, "-o", out, *extra)


def _chips(grid_tif, path, out):
    return run_cli("chips", grid_tif, "--labels", path, "-o", out, "--size", "16", "--min-purity", "0.5")


# the CLI prints a GeosegWarning as a line (several layers); pytest would raise it
@pytest.mark.filterwarnings("default::geoseg.errors.GeosegWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_vector_labels_through_chips(tmp_path, grid_tif, case):
    path, classes, _ = CASES[case](tmp_path)
    r = _chips(grid_tif, path, tmp_path / "chips")
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "chips" / "chips.json").read_text())
    assert sorted(side["classes"]) == classes
    if case == "several-layers":
        assert "2 layers with geometries (truth, draft); reading the first, 'truth'" in r.stderr


@pytest.mark.filterwarnings("default::geoseg.errors.GeosegWarning")
@pytest.mark.parametrize("case", sorted(set(CASES) - {"points"}))
def test_vector_labels_through_evaluate_scene(tmp_path, grid_tif, case):
    path, classes, extra = CASES[case](tmp_path)
    r = _evaluate(grid_tif, path, extra, tmp_path / "ev")
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert sorted(rep["reference_classes"]) == classes
    assert rep["n_cells"] == N * N and rep["overall_accuracy"] == 1.0
    if case == "several-layers":
        assert "2 layers with geometries (truth, draft); reading the first, 'truth'" in r.stderr


def test_points_through_evaluate_scene_are_refused(tmp_path, grid_tif):
    path, _, _ = _points(tmp_path)
    line = one_error_line(_evaluate(grid_tif, path, (), tmp_path / "ev"))
    assert "points.geojson: 4 point(s) and no polygon" in line and "expected polygons" in line


def _local_crs_vector(tmp_path):
    p = tmp_path / "local.gpkg"
    halves(["water", "desert"]).set_crs(PCRS.from_wkt(LOCAL), allow_override=True).to_file(p)
    return p


def _local_crs_raster(tmp_path):
    p = tmp_path / "local.tif"
    with rasterio.open(p, "w", driver="GTiff", width=N, height=N, count=1, dtype="uint8",
                       crs=rasterio.crs.CRS.from_wkt(LOCAL), transform=Affine(RES, 0, X0, 0, -RES, Y0)) as dst:
        dst.write(np.full((1, N, N), 3, np.uint8))
        dst.update_tags(CLASS_NAMES=",".join(NAMES))
    return p


@pytest.mark.parametrize("command", ["evaluate-scene", "chips"])
@pytest.mark.parametrize("make", [_local_crs_vector, _local_crs_raster], ids=["vector", "raster"])
def test_labels_in_a_local_crs_are_one_line(tmp_path, grid_tif, capfd, command, make):
    path = make(tmp_path)
    capfd.readouterr()
    if command == "chips":
        r = _chips(grid_tif, path, tmp_path / "out")
    else:
        r = _evaluate(grid_tif, path, (), tmp_path / "out")
    line = one_error_line(r)
    assert f"{path}: the CRS 'site grid' is a local (engineering) system" in line
    assert "PROJ" not in capfd.readouterr().err  # nothing from PROJ on the terminal


# --- the reader itself ---------------------------------------------------------------
def test_value_name_one_rule():
    from geoseg.vectors import value_name

    assert [value_name(v) for v in (1.0, np.float32(2.0), np.int64(3), " lake ", 1.5, np.float32(0.25))] == [
        "1", "2", "3", "lake", "1.5", "0.25"]


def test_read_class_features_bbox_and_make_valid(tmp_path):
    from geoseg.vectors import read_class_features

    bowtie = shapely.Polygon([(X0, Y0), (X0 + 10, Y0 - 10), (X0 + 10, Y0), (X0, Y0 - 10)])
    far = px_box(1000, 1000, 1010, 1010)
    p = tmp_path / "v.gpkg"
    gpd.GeoDataFrame({"class": ["lake", "sea"]}, geometry=[bowtie, far], crs=UTM).to_file(p)
    f = read_class_features(str(p), bbox=((X0, Y0 - 100, X0 + 100, Y0), PCRS.from_user_input(UTM).to_wkt(), "the grid"))
    assert f.classes == ["lake"] and f.kind == "polygon" and bool(shapely.is_valid(f.geoms).all())
    assert f.to_crs("EPSG:4326").crs_wkt != f.crs_wkt


def test_read_class_features_counts_what_it_leaves_out(tmp_path):
    from geoseg.errors import GeosegWarning
    from geoseg.vectors import read_class_features

    p = tmp_path / "mixed.gpkg"
    df = gpd.GeoDataFrame({"class": ["lake", None, "sea"]}, geometry=[
        px_box(0, 0, 4, 4), px_box(4, 4, 8, 8), shapely.Point(X0 + 5, Y0 - 5)], crs=UTM)
    pyogrio.write_dataframe(df, p, geometry_type="Unknown")
    with pytest.warns(GeosegWarning, match=r"mixed.gpkg: 1 point\(s\) among the polygons were left out"):
        f = read_class_features(str(p), points=True)
    assert f.classes == ["lake"] and f.dropped == {"no class value": 1, "not a polygon": 1}


def test_layer_choice(tmp_path):
    from geoseg.errors import InputError
    from geoseg.vectors import read_class_features

    p, _, _ = _layers(tmp_path)
    assert read_class_features(str(p), layer="draft").classes == ["cloudy"]
    with pytest.raises(InputError, match=r"layers.gpkg: no layer 'nope'; the layers are: truth, draft"):
        read_class_features(str(p), layer="nope")


def test_a_table_beside_the_features_is_no_layer(tmp_path):
    p = tmp_path / "own.gpkg"
    halves(["water", "desert"]).to_file(p, layer="classes")
    pyogrio.write_dataframe(pd.DataFrame({"styleName": ["s"]}), p, layer="layer_styles", append=True)
    from geoseg.vectors import read_class_features

    assert read_class_features(str(p)).layer == "classes"


def test_geoparquet_without_crs_is_refused(tmp_path):
    from geoseg.errors import InputError
    from geoseg.vectors import read_class_features

    p = tmp_path / "nocrs.parquet"
    halves(["water", "desert"]).set_crs(None, allow_override=True).to_parquet(p)
    with pytest.raises(InputError, match=r"nocrs.parquet: no CRS \(unknown coordinate system\) in the labels"):
        read_class_features(str(p), role="labels")
    assert os.path.exists(p)


@pytest.mark.parametrize("command", ["evaluate-scene", "chips"])
def test_layer_option_of_both_commands(tmp_path, grid_tif, command):
    path, _, _ = _layers(tmp_path)
    if command == "chips":
        r = run_cli("chips", grid_tif, "--labels", path, "--layer", "draft", "-o", tmp_path / "o", "--size", "16")
        assert r.exit_code == 0, r.output
        assert json.loads((tmp_path / "o" / "chips.json").read_text())["classes"] == {"cloudy": 4}
    else:
        r = run_cli("evaluate-scene", grid_tif, "--reference", path, "--layer", "draft", "-o", tmp_path / "o")
        assert r.exit_code == 0, r.output
        assert list(json.loads((tmp_path / "o" / "report.json").read_text())["reference_classes"]) == ["cloudy"]
    assert "layers with geometries" not in r.stderr


def test_lines_among_polygons_are_named_as_such(tmp_path):
    from geoseg.errors import GeosegWarning
    from geoseg.vectors import read_class_features

    p = tmp_path / "lines.gpkg"
    df = gpd.GeoDataFrame({"class": ["lake", "river"]}, geometry=[
        px_box(0, 0, 4, 4), shapely.LineString([(X0, Y0), (X0 + 30, Y0 - 30)])], crs=UTM)
    pyogrio.write_dataframe(df, p, geometry_type="Unknown")
    with pytest.warns(GeosegWarning, match=r"lines.gpkg: 1 feature\(s\) that are not polygons were left out"):
        f = read_class_features(str(p), points=True)
    assert f.classes == ["lake"] and f.dropped == {"not a polygon": 1}


@pytest.mark.parametrize("field", [None, "class"], ids=["field_guessed", "field_given"])
def test_a_file_without_features_says_so(tmp_path, field):
    from geoseg.errors import InputError
    from geoseg.vectors import read_class_features

    p = tmp_path / "empty.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(InputError, match=r"empty.geojson: layer 'empty' of the labels holds no features; expected "
                                         r"polygons \(or points\) with a class field"):
        read_class_features(str(p), field, role="labels")
