"""STAC: the Item written beside a scene's outputs, and STAC Items as input.

pystac's ``validate()`` fetches the JSON schemas from the internet, which the
tests cannot reach: the Item's structure is checked here instead.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio

from geoseg.batch import classify_many
from geoseg.errors import InputError
from geoseg.pipeline import ClassifyOptions
from helpers import paint, write_scene
from servers import RangeServer

FIXED_MTIME = 1_700_000_000
FAST = {"GDAL_HTTP_RETRY_DELAY": "0.01"}


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """One RGB scene and its three bands as one-band files."""
    d = tmp_path_factory.mktemp("stac")
    rng = np.random.default_rng(9)
    img = paint(rng.integers(0, 4, (6, 7)), 8)
    write_scene(d / "scene.tif", img, tiled=True, block=16)
    for i, name in enumerate(("r", "g", "b")):
        write_scene(d / f"{name}.tif", img[i:i + 1], tiled=True, block=16)
    for f in d.glob("*.tif"):
        os.utime(f, (FIXED_MTIME, FIXED_MTIME))
    return d


def classes(path) -> np.ndarray:
    with rasterio.open(path) as s:
        return s.read(1)


def item_doc(assets: dict, item_id: str = "S2_TEST_ITEM") -> dict:
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [[[15, 54], [15.1, 54], [15.1, 54.1], [15, 54.1], [15, 54]]]},
        "bbox": [15, 54, 15.1, 54.1], "properties": {"datetime": "2021-06-01T10:00:00Z"}, "links": [],
        "assets": assets,
    }


def test_item_written_beside_outputs(rgb, model8, tmp_path):
    import pystac

    run = classify_many([str(rgb / "scene.tif")], tmp_path / "out", model8, ClassifyOptions(),
                        scheduler="synchronous", progress=False)
    assert run.ok
    path = tmp_path / "out" / "scene_item.json"
    assert run.scenes[0].outputs["item"] == str(path)
    d = json.loads(path.read_text())
    assert d["type"] == "Feature" and d["id"] == "scene" and d["stac_version"].startswith("1.")
    exts = " ".join(d["stac_extensions"])
    for e in ("projection", "raster", "classification"):
        assert f"stac-extensions.github.io/{e}/" in exts
    p = d["properties"]
    assert p["proj:code"] == "EPSG:32633" and "PROJCRS" in p["proj:wkt2"]
    assert p["datetime"] == "2023-11-14T22:13:20Z"  # the source's mtime
    w, s, e, n = d["bbox"]
    assert -180 <= w < e <= 180 and -90 <= s < n <= 90 and 14 < w < 16 and 53 < s < 55  # lon/lat (EPSG:32633)
    assert d["geometry"]["type"] == "Polygon" and d["geometry"]["coordinates"][0][0] == [w, s]
    a = d["assets"]
    assert a["classes"]["href"] == "./scene_classes.tif" and a["classes"]["roles"] == ["data"]
    assert "cloud-optimized" in a["classes"]["type"]
    assert a["stats"]["roles"] == ["metadata"] and "overview" in a["quicklook"]["roles"]
    assert a["polygons"]["type"] == "application/geopackage+sqlite3"
    cls = a["classes"]["classification:classes"]
    assert [c["name"] for c in cls] == ["cloudy", "desert", "green_area", "water", "nodata"]
    assert cls[-1] == {"value": 255, "name": "nodata", "description": "no data", "nodata": True}
    assert all(len(c["color_hint"]) == 6 for c in cls[:-1])
    assert a["classes"]["raster:bands"][0]["nodata"] == 255 and len(a["probs"]["raster:bands"]) == 4
    assert a["classes"]["proj:shape"] == [6, 7]
    for key in a:
        assert (tmp_path / "out" / a[key]["href"][2:]).exists()
    assert d["links"][0]["rel"] == "derived_from" and d["links"][0]["href"] == str(rgb / "scene.tif")
    item = pystac.Item.from_dict(d)  # pystac reads it back
    assert item.assets["classes"].roles == ["data"]


def test_item_with_eo_bands_as_input(rgb, model8, tmp_path):
    ref = classify_many([str(rgb / "scene.tif")], tmp_path / "ref", model8, ClassifyOptions(),
                        scheduler="synchronous", progress=False)
    with RangeServer(rgb) as srv:
        bands = {n: {"href": srv.url(f"{n[0]}.tif"), "type": "image/tiff; application=geotiff",
                     "eo:bands": [{"name": n.upper(), "common_name": n}]} for n in ("red", "green", "blue")}
        assets = {"B04": bands["red"], "B03": bands["green"], "B02": bands["blue"],
                  "thumbnail": {"href": srv.url("thumb.png"), "type": "image/png", "roles": ["thumbnail"]}}
        item = tmp_path / "item.json"
        item.write_text(json.dumps(item_doc(assets)))
        opts = ClassifyOptions(gdal_config=FAST)
        run = classify_many([str(item)], tmp_path / "out", model8, opts, scheduler="threads", workers=2,
                            progress=False)
        assert run.ok, [s.error for s in run.scenes]
        assert run.scenes[0].name == "S2_TEST_ITEM"
        assert (classes(tmp_path / "out" / "S2_TEST_ITEM_classes.tif") == classes(ref.scenes[0].outputs["classes"])).all()
        vrt = (tmp_path / "out" / "S2_TEST_ITEM.vrt").read_text()
        assert "/vsicurl/http://127.0.0.1" in vrt and vrt.count("<VRTRasterBand") == 3
        out_item = json.loads((tmp_path / "out" / "S2_TEST_ITEM_item.json").read_text())
        assert out_item["properties"]["datetime"] == "2021-06-01T10:00:00Z"
        assert out_item["links"][0]["href"] == str(item)
        assert all(r.range for r in srv.gets())
        # a rerun skips it
        again = classify_many([str(item)], tmp_path / "out", model8, opts, scheduler="synchronous", progress=False)
        assert [s.status for s in again.scenes] == ["skipped"]


def test_remote_item_with_visual_asset_and_assets_option(rgb, model8, tmp_path):
    ref = classify_many([str(rgb / "scene.tif")], tmp_path / "ref", model8, ClassifyOptions(),
                        scheduler="synchronous", progress=False)
    (rgb / "visual_item.json").write_text(json.dumps(item_doc(
        {"visual": {"href": "./scene.tif", "type": "image/tiff", "roles": ["visual"]}}, "visual_item")))
    (rgb / "named_item.json").write_text(json.dumps(item_doc(
        {"x": {"href": "./r.tif"}, "y": {"href": "./g.tif"}, "z": {"href": "./b.tif"}}, "named_item")))
    with RangeServer(rgb) as srv:
        run = classify_many([srv.url("visual_item.json")], tmp_path / "out", model8,
                            ClassifyOptions(gdal_config=FAST), scheduler="synchronous", progress=False)
        assert run.ok, [s.error for s in run.scenes]
        assert (classes(tmp_path / "out" / "visual_item_classes.tif") == classes(ref.scenes[0].outputs["classes"])).all()
        bad = classify_many([srv.url("named_item.json")], tmp_path / "o2", model8,
                            ClassifyOptions(gdal_config=FAST), scheduler="synchronous", progress=False)
        assert "--assets red,green,blue" in bad.scenes[0].error and "\n" not in bad.scenes[0].error
        named = classify_many([srv.url("named_item.json")], tmp_path / "o2", model8,
                              ClassifyOptions(gdal_config=FAST, assets=("x", "y", "z")), scheduler="synchronous",
                              progress=False)
        assert named.ok, [s.error for s in named.scenes]
        assert (classes(tmp_path / "o2" / "named_item_classes.tif") == classes(ref.scenes[0].outputs["classes"])).all()


def test_not_an_item(tmp_path):
    from geoseg.stac import load_item

    p = tmp_path / "x.json"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(InputError, match="expected a STAC Item"):
        load_item(str(p))


def test_item_of_four_band_assets_with_raster_bands_scale_offset(tmp_path):
    # an Earth Search-like L2A item: one-band assets named by eo:bands common names, reflectance = DN x 1e-4 - 0.1
    from helpers import make_model, paint_reflectance

    truth = np.random.default_rng(3).integers(0, 4, (5, 6))
    img = paint_reflectance(truth, 8, offset=-0.1)
    assets = {}
    for i, (key, name) in enumerate((("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir"))):
        path = write_scene(tmp_path / f"{key}.tif", img[i:i + 1], colorinterp=False)
        assets[name] = {"href": path, "type": "image/tiff; application=geotiff",
                        "eo:bands": [{"name": key, "common_name": name}],
                        "raster:bands": [{"scale": 0.0001, "offset": -0.1, "data_type": "uint16"}]}
    assets["visual"] = {"href": str(tmp_path / "missing.tif"), "roles": ["visual"]}
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_doc(dict(reversed(list(assets.items()))))))
    model = make_model(tmp_path / "ms.onnx", 8, reflectance=True)
    run = classify_many([str(item)], tmp_path / "out", model, ClassifyOptions(), scheduler="synchronous",
                        progress=False)
    assert run.ok, [s.error for s in run.scenes]
    assert (classes(tmp_path / "out" / "S2_TEST_ITEM_classes.tif") == truth).all()
    vrt = (tmp_path / "out" / "S2_TEST_ITEM.vrt").read_text()
    assert vrt.count("<VRTRasterBand") == 4 and "<Description>nir</Description>" in vrt
    props = json.loads((tmp_path / "out" / "S2_TEST_ITEM_item.json").read_text())["properties"]
    assert props["geoseg:bands"] == {"blue": 1, "green": 2, "red": 3, "nir": 4}
    assert props["geoseg:reflectance"]["source"] == "the STAC item's raster:bands"
    assert props["geoseg:reflectance"]["offset"] == [-0.1] * 4


def test_item_without_the_models_bands(tmp_path, rgb):
    from geoseg.stac import choose_assets, load_item

    assets = {n: {"href": str(rgb / f"{n[0]}.tif"), "eo:bands": [{"common_name": n}]} for n in ("red", "green", "blue")}
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_doc(assets)))
    with pytest.raises(InputError, match=r"no blue/green/red/nir asset in the STAC item \(assets: blue, green, red\); "
                                         r"choose them with --assets blue,green,red,nir"):
        choose_assets(load_item(str(item)), None, ("blue", "green", "red", "nir"))


def test_assets_option_counts_the_models_bands(tmp_path, rgb):
    from geoseg.stac import choose_assets, load_item

    assets = {n: {"href": str(rgb / f"{n[0]}.tif")} for n in ("red", "green", "blue")}
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_doc(assets)))
    with pytest.raises(InputError, match=r"--assets names 3 assets; expected 4 \(blue,green,red,nir\) or 1"):
        choose_assets(load_item(str(item)), ("blue", "green", "red"), ("blue", "green", "red", "nir"))


def test_an_item_too_small_for_the_model_is_named_in_the_error(tmp_path, model8):
    img = np.zeros((3, 4, 4), np.uint8)  # 4 x 4 px: smaller than one 8 px patch
    assets = {}
    for i, n in enumerate(("red", "green", "blue")):
        assets[n] = {"href": write_scene(tmp_path / f"{n}.tif", img[i:i + 1]), "eo:bands": [{"common_name": n}]}
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_doc(assets)))
    run = classify_many([str(item)], tmp_path / "out", model8, ClassifyOptions(), scheduler="synchronous",
                        progress=False)
    err = run.scenes[0].error
    assert not run.ok and err.startswith(f"{item} (its assets stacked in ") and "S2_TEST_ITEM.vrt" in err


def test_an_item_with_a_zero_raster_bands_scale_is_refused_and_leaves_no_vrt(tmp_path):
    from helpers import make_model, paint_reflectance

    img = paint_reflectance(np.random.default_rng(3).integers(0, 4, (5, 6)), 8)
    assets = {}
    for i, name in enumerate(("blue", "green", "red", "nir")):
        assets[name] = {"href": write_scene(tmp_path / f"{name}.tif", img[i:i + 1], colorinterp=False),
                        "eo:bands": [{"common_name": name}], "raster:bands": [{"scale": 0, "offset": 0}]}
    item = tmp_path / "item.json"
    item.write_text(json.dumps(item_doc(assets)))
    model = make_model(tmp_path / "ms.onnx", 8, reflectance=True)
    run = classify_many([str(item)], tmp_path / "out", model, ClassifyOptions(), scheduler="synchronous",
                        progress=False)
    err = run.scenes[0].error
    assert not run.ok and err.startswith(f"{item} (its assets stacked in ")
    assert "the STAC item's raster:bands gives the chosen bands scale (0, 0, 0, 0)" in err
    assert sorted(os.listdir(tmp_path / "out")) == ["run.json"]


@pytest.mark.parametrize("case", ["no_datetime", "missing_asset_file"])
def test_bad_items_are_one_line_with_the_fix(tmp_path, model8, case):
    doc = item_doc({n: {"href": f"missing_{n}.tif", "eo:bands": [{"common_name": n}]} for n in ("red", "green", "blue")})
    if case == "no_datetime":
        doc["properties"] = {}
    item = tmp_path / "item.json"
    item.write_text(json.dumps(doc))
    run = classify_many([str(item)], tmp_path / "out", model8, ClassifyOptions(), scheduler="synchronous",
                        progress=False)
    err = run.scenes[0].error
    assert not run.ok and "\n" not in err
    if case == "no_datetime":
        assert err.startswith(f"{item}: not a valid STAC Item (") and "expected a STAC Item with an id" in err
    else:
        assert err.startswith(f"{tmp_path / 'missing_red.tif'}: asset 'red' is not a readable raster (")
        assert "expected a GeoTIFF at the asset's href" in err and "--assets" in err
