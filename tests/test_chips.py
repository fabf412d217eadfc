"""``geoseg chips``: windows, purity, groups and the manifest on a tiny labelled scene."""

from __future__ import annotations

import csv
import json
import os
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.enums import ColorInterp as CI
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from geoseg.chips import BlockSize, ChipConfig, make_chips
from geoseg.cli.chips import chips as chips_cmd
from geoseg.errors import InputError, OutputExistsError

X0, Y0, RES = 500000.0, 6000000.0, 10.0
TRANSFORM = Affine(RES, 0, X0, 0, -RES, Y0)
CRS = "EPSG:32633"
H, W = 64, 96  # 4 x 6 windows of 16 px
COLUMNS = ["chip", "class", "scene", "col_off", "row_off", "width", "height", "left", "bottom", "right", "top",
           "crs", "pixel_size_x", "pixel_size_y", "purity", "group"]


def px_box(c0, r0, c1, r1):
    """A rectangle of scene pixels as a shapely box in the scene CRS."""
    import shapely

    return shapely.box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


def px_point(r, c):
    import shapely

    return shapely.Point(X0 + c * RES, Y0 - r * RES)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """4-band uint16 scene (red, green, blue, nir), nodata 0 at one pixel of window (row 1, col 4)."""
    rng = np.random.default_rng(0)
    img = rng.integers(500, 3000, (4, H, W)).astype(np.uint16)
    img[:, 20, 70] = 0
    path = tmp_path_factory.mktemp("scene") / "tiny_scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=4, dtype="uint16", crs=CRS,
                       transform=TRANSFORM, nodata=0) as dst:
        dst.write(img)
        dst.colorinterp = [CI.red, CI.green, CI.blue, CI.nir]
        dst.descriptions = ("B04", "B03", "B02", "B08")
    return str(path)


def write_vector(path, geoms, values, field="landcover", crs="EPSG:4326", extra=None):
    import geopandas as gpd

    cols = {field: values, **(extra or {})}
    gdf = gpd.GeoDataFrame(cols, geometry=list(geoms), crs=CRS)
    gdf = gdf.to_crs(crs) if crs else gdf.set_crs(None, allow_override=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)  # the unknown-CRS case
        gdf.to_file(path, engine="pyogrio")
    return str(path)


@pytest.fixture(scope="module")
def polygons(tmp_path_factory):
    """In EPSG:4326: water over px cols 0-48 / rows 0-32, forest over cols 48-96 (all rows),
    field over cols 0-40 / rows 32-64 (window col 2 is half field: purity 0.5)."""
    geoms = [px_box(0, 0, 48, 32), px_box(48, 0, 96, 64), px_box(0, 32, 40, 64)]
    return write_vector(tmp_path_factory.mktemp("lab") / "labels.gpkg", geoms, ["water", "forest", "field"],
                        extra={"area_ha": [1.0, 2.0, 3.0]})


def read_manifest(d):
    with open(os.path.join(d, "chips.csv"), newline="") as f:
        return list(csv.DictReader(f))


# --- polygons in another CRS ----------------------------------------------------------
def test_polygon_chips_counts_groups_manifest(scene, polygons, tmp_path):
    out = tmp_path / "chips"
    res = make_chips([scene], polygons, str(out), ChipConfig(size=16, block_size=BlockSize(32, "px")))
    # water 3x2 windows; forest 3x4 less the one with a nodata pixel; field 2x2 (the half-field column is impure)
    assert res.counts == {"field": 4, "forest": 11, "water": 6}
    assert res.skipped["nodata"] == 1 and res.skipped["impure"] == 2 and res.skipped["unlabelled"] == 0
    assert res.band_names == ["red", "green", "blue", "nir"] and res.dtype == "uint16"
    rows = read_manifest(out)
    assert list(rows[0]) == COLUMNS and len(rows) == 21
    for r in rows:
        ro, co = int(r["row_off"]), int(r["col_off"])
        assert r["group"] == f"tiny_scene:{(ro + 8) // 32}:{(co + 8) // 32}"
        assert float(r["purity"]) >= 0.9 and r["crs"] == CRS and float(r["pixel_size_x"]) == 10.0
        assert float(r["left"]) == X0 + co * RES and float(r["top"]) == Y0 - ro * RES
        assert os.path.isfile(out / r["chip"]) and r["chip"].startswith(r["class"] + "/")
    assert res.n_groups == 6 == len({r["group"] for r in rows})
    assert not {(r["row_off"], r["col_off"]) for r in rows} & {("16", "64"), ("32", "32"), ("48", "32")}
    # a chip is a georeferenced GeoTIFF of the window, source dtype, band names carried over
    r = next(r for r in rows if r["class"] == "forest")
    with rasterio.open(out / r["chip"]) as c, rasterio.open(scene) as s:
        ro, co = int(r["row_off"]), int(r["col_off"])
        assert c.count == 4 and c.dtypes[0] == "uint16" and c.crs == s.crs and (c.width, c.height) == (16, 16)
        assert c.transform == s.transform @ Affine.translation(co, ro)
        assert list(c.colorinterp) == [CI.red, CI.green, CI.blue, CI.nir] and c.descriptions[3] == "B08"
        assert np.array_equal(c.read(), s.read(window=((ro, ro + 16), (co, co + 16))))
    side = json.loads((out / "chips.json").read_text())
    assert side["block_size"] == "32px" and side["groups"] == 6 and side["band_names"][3] == "nir"
    assert not [f for f in os.listdir(out / "water") if "tmp" in f]


def test_purity_threshold_and_max_per_class(scene, polygons, tmp_path):
    res = make_chips([scene], polygons, str(tmp_path / "a"), ChipConfig(size=16, min_purity=0.5))
    assert res.counts == {"field": 6, "forest": 11, "water": 6}
    cfg = ChipConfig(size=16, max_per_class=5, seed=7)
    r1 = make_chips([scene], polygons, str(tmp_path / "b"), cfg)
    make_chips([scene], polygons, str(tmp_path / "c"), cfg)
    assert r1.counts == {"field": 4, "forest": 5, "water": 5}
    assert [r["chip"] for r in read_manifest(tmp_path / "b")] == [r["chip"] for r in read_manifest(tmp_path / "c")]
    # default block: 8 chips wide (128 px): the whole tiny scene is one group
    assert r1.n_groups == 1 and r1.sidecar["block_size"] == "128px"


def test_stride_and_field_choice(scene, polygons, tmp_path):
    res = make_chips([scene], polygons, str(tmp_path / "s"), ChipConfig(size=32, stride=16, field="landcover"))
    # 32 px windows every 16 px: 3 x 5 windows; water: (0,0) and (0,16); forest: cols 48 and 64 at
    # rows 0, 16, 32 less the four holding the nodata pixel (row 20, col 70); field: (32,0)
    assert res.counts == {"field": 1, "forest": 2, "water": 2}


def test_outputs_are_not_overwritten(scene, polygons, tmp_path):
    out = str(tmp_path / "o")
    make_chips([scene], polygons, out, ChipConfig(size=16))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        make_chips([scene], polygons, out, ChipConfig(size=16))
    res = make_chips([scene], polygons, out, ChipConfig(size=32, overwrite=True))
    assert sum(len(os.listdir(os.path.join(out, c))) for c in ("forest", "water", "field")
               if os.path.isdir(os.path.join(out, c))) == res.n


def test_a_failed_read_leaves_no_chips_and_names_the_file(scene, polygons, tmp_path, monkeypatch):
    import rasterio.io

    real, calls = rasterio.io.DatasetReader.read, []

    def flaky(self, *a, **k):  # the 5th chip's read fails (a truncated strip)
        calls.append(1)
        if len(calls) == 5:
            raise RasterioError("Read failed. See previous exception for details.") from OSError(
                "tiny_scene.tif, band 1: IReadBlock failed at X offset 1, Y offset 2")
        return real(self, *a, **k)

    out = tmp_path / "o"
    make_chips([scene], polygons, str(out / "old"), ChipConfig(size=16))
    monkeypatch.setattr(rasterio.io.DatasetReader, "read", flaky)
    with pytest.raises(InputError, match=r"tiny_scene.tif: cannot read the pixels at column \d+, row \d+ "
                                         r"\(tiny_scene.tif, band 1: IReadBlock failed.*re-download"):
        make_chips([scene], polygons, str(out / "old"), ChipConfig(size=16, overwrite=True))
    assert len(calls) == 5
    assert [f for _, _, fs in os.walk(out / "old") for f in fs] == []  # old chips replaced, no new ones left


# --- raster labels --------------------------------------------------------------------
def test_raster_labels(scene, tmp_path):
    lab = np.zeros((32, 48), np.uint8)  # 20 m: twice the scene's pixel
    lab[:, 24:] = 1
    lab[16:, :12] = 255
    path = tmp_path / "ref.tif"
    with rasterio.open(path, "w", driver="GTiff", width=48, height=32, count=1, dtype="uint8", crs=CRS,
                       transform=Affine(20, 0, X0, 0, -20, Y0), nodata=255) as dst:
        dst.write(lab, 1)
        dst.update_tags(CLASS_NAMES="water,forest")
    res = make_chips([scene], str(path), str(tmp_path / "c"), ChipConfig(size=16))
    # water: 3 x 4 windows less 2 wholly nodata and 2 half nodata; forest: 3 x 4 less the nodata pixel
    assert res.counts == {"forest": 11, "water": 8}
    assert res.skipped == {"unlabelled": 2, "impure": 2, "nodata": 1, "over_max_per_class": 0}


# --- points ---------------------------------------------------------------------------
def test_points(scene, tmp_path):
    pts = [px_point(4.5, 4.5), px_point(10.5, 20.5), px_point(12.5, 22.5), px_point(40.5, 70.5)]
    path = write_vector(tmp_path / "pts.geojson", pts, ["water", "water", "forest", "forest"], field="class")
    res = make_chips([scene], path, str(tmp_path / "c"), ChipConfig(size=16))
    # window (0,1) holds a water and a forest point: mixed, skipped
    assert res.counts == {"forest": 1, "water": 1} and res.skipped["impure"] == 1
    rows = {r["class"]: (r["row_off"], r["col_off"]) for r in read_manifest(tmp_path / "c")}
    assert rows == {"water": ("0", "0"), "forest": ("32", "64")}


# --- bad inputs -----------------------------------------------------------------------
def test_missing_field_lists_fields(scene, polygons, tmp_path):
    with pytest.raises(InputError, match=r"labels\.gpkg: no field 'kind'; the fields are: landcover, area_ha"):
        make_chips([scene], polygons, str(tmp_path / "c"), ChipConfig(size=16, field="kind"))


def test_no_overlap(scene, tmp_path):
    path = write_vector(tmp_path / "far.gpkg", [px_box(1000, 1000, 1100, 1100)], ["water"])
    with pytest.raises(InputError, match="do not overlap any scene"), pytest.warns(UserWarning, match="do not overlap"):
        make_chips([scene], path, str(tmp_path / "c"), ChipConfig(size=16))


def test_unknown_crs(scene, tmp_path):
    path = write_vector(tmp_path / "nocrs.gpkg", [px_box(0, 0, 48, 32)], ["water"], crs=None)
    with pytest.raises(InputError, match="no CRS"):
        make_chips([scene], path, str(tmp_path / "c"), ChipConfig(size=16))
    bare = tmp_path / "bare.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.simplefilter("ignore", UserWarning)  # rasterio: 'crs' was not provided
        with rasterio.open(bare, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8") as dst:
            dst.write(np.ones((1, 32, 32), np.uint8))
    ref = write_vector(tmp_path / "ok.gpkg", [px_box(0, 0, 48, 32)], ["water"])
    with pytest.raises(InputError, match="bare.tif: the scene has no CRS"):
        make_chips([str(bare)], ref, str(tmp_path / "d"), ChipConfig(size=16))


def test_complex_bands_are_refused(polygons, tmp_path):
    path = tmp_path / "slc.tif"
    with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=1, dtype="complex64", crs=CRS,
                       transform=TRANSFORM) as dst:
        dst.write(np.ones((1, H, W), np.complex64))
    with pytest.raises(InputError, match="slc.tif: the bands are complex64; expected integer or real"):
        make_chips([str(path)], polygons, str(tmp_path / "c"), ChipConfig(size=16))
    assert not (tmp_path / "c").exists()


def test_scene_smaller_than_a_chip(scene, polygons, tmp_path):
    with pytest.raises(InputError, match=rf"tiny_scene.tif: the scene is {W} x {H} px, smaller than one 128 px chip"
                                         r".*lower --size"):
        make_chips([scene], polygons, str(tmp_path / "c"), ChipConfig(size=128))
    assert not (tmp_path / "c").exists()


def test_no_pure_window(scene, polygons, tmp_path):
    with pytest.raises(InputError, match="lower --min-purity"):
        make_chips([scene], polygons, str(tmp_path / "c"), ChipConfig(size=64))


def test_cli(scene, polygons, tmp_path):
    out = tmp_path / "cli"
    r = CliRunner().invoke(chips_cmd, [scene, "--labels", polygons, "-o", str(out), "--size", "16",
                                       "--block-size", "320m", "--bands", "1,2,3,4", "--max-per-class", "100"])
    assert r.exit_code == 0, r.output
    assert "21 chips (field: 4, forest: 11, water: 6) in 6 spatial groups of 320m" in r.output
    r = CliRunner().invoke(chips_cmd, [scene, "--labels", polygons, "-o", str(out), "--size", "16"])
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = CliRunner().invoke(chips_cmd, [scene, "--labels", polygons, "-o", str(tmp_path / "x"), "--field", "nope"])
    assert r.exit_code == 1 and "the fields are: landcover, area_ha" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_chunked_rows_give_the_same_chips(scene, polygons, tmp_path, monkeypatch):
    import geoseg.chips as C

    full = make_chips([scene], polygons, str(tmp_path / "a"), ChipConfig(size=16, stride=8))
    monkeypatch.setattr(C, "CELL_BUDGET", 2000)  # one window row per chunk
    chunked = make_chips([scene], polygons, str(tmp_path / "b"), ChipConfig(size=16, stride=8))
    assert chunked.counts == full.counts and chunked.skipped == full.skipped
    assert [r["chip"] for r in read_manifest(tmp_path / "a")] == [r["chip"] for r in read_manifest(tmp_path / "b")]


# --- the manifest of an earlier run (--overwrite) --------------------------------------
def test_overwrite_never_deletes_outside_the_folder(scene, polygons, tmp_path):
    out = tmp_path / "o"
    make_chips([scene], polygons, str(out), ChipConfig(size=16))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    rows = (out / "chips.csv").read_text().splitlines()
    (out / "chips.csv").write_text("\n".join(rows + ["../victim.txt" + rows[1][rows[1].index(","):]]) + "\n")
    with pytest.raises(InputError, match=r"chips.csv: chip path '../victim.txt' is not inside the chips folder"):
        make_chips([scene], polygons, str(out), ChipConfig(size=16, overwrite=True))
    assert victim.read_text() == "keep me"
    assert len(read_manifest(out)) == 22  # nothing of the earlier run was removed either


def test_overwrite_with_a_manifest_without_chip_column_is_one_line(scene, polygons, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "chips.csv").write_text("name,class\na.tif,water\n")
    r = CliRunner().invoke(chips_cmd, [scene, "--labels", polygons, "-o", str(out), "--size", "16", "--overwrite"])
    assert r.exit_code == 1 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert "chips.csv: lacks column(s) chip, group" in r.output and (out / "chips.csv").exists()
