"""The QGIS/GDAL style builders of geoseg.styles: XML that parses, with the
contract's labels and colours in it; the layer_styles table as QGIS writes it."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import make_contract

from geoseg import styles
from geoseg.errors import OutputError

HEX = ("#f0f0f0", "#e3c16f", "#2e8b3a", "#1f5fbf")
NAMES = ("cloudy", "desert", "green_area", "water")


@pytest.fixture
def contract():
    return make_contract()


def test_classes_qml_is_a_semi_transparent_palette_of_the_classes(contract):
    root = ET.fromstring(styles.classes_qml(contract))
    ren = root.find("pipe/rasterrenderer")
    assert ren.get("type") == "paletted"
    assert ren.get("band") == "1"
    assert float(ren.get("opacity")) == pytest.approx(0.7)
    entries = [(int(e.get("value")), e.get("label"), e.get("color"), e.get("alpha"))
               for e in ren.findall("colorPalette/paletteEntry")]
    assert entries == [(i, n, c, "255") for i, (n, c) in enumerate(zip(NAMES, HEX))]
    px = ren.find("rasterTransparency/singleValuePixelList/pixelListEntry")
    assert (px.get("min"), px.get("max"), px.get("percentTransparent")) == ("255", "255", "100")
    res = root.find("pipe/provider/resampling")
    assert res.get("zoomedOutResamplingMethod") == "nearestNeighbour"


def test_classes_qml_opacity_is_a_parameter(contract):
    ren = ET.fromstring(styles.classes_qml(contract, opacity=1.0)).find("pipe/rasterrenderer")
    assert ren.get("opacity") == "1"
    with pytest.raises(ValueError, match="between 0 and 1"):
        styles.classes_qml(contract, opacity=1.5)


def test_categories_qml_escapes_labels_and_keeps_given_values():
    text = styles.categories_qml([0, 2, 7], ['a & b', '<c>', 'say "x"'], ["#000000", "#FF0000", "#00ff00"], 0.5)
    ren = ET.fromstring(text).find("pipe/rasterrenderer")
    got = [(e.get("value"), e.get("label"), e.get("color")) for e in ren.findall("colorPalette/paletteEntry")]
    assert got == [("0", "a & b", "#000000"), ("2", "<c>", "#ff0000"), ("7", 'say "x"', "#00ff00")]
    assert ren.get("opacity") == "0.5"


@pytest.mark.parametrize("values, labels, colors, match", [
    ([0, 255], ["a", "b"], ["#000000", "#000000"], "255 is nodata"),
    ([0, 1], ["a"], ["#000000", "#000000"], "as many of each"),
    ([1, 1], ["a", "b"], ["#000000", "#000000"], "repeat"),
    ([0], ["a"], ["red"], "#RRGGBB"),
])
def test_categories_qml_refuses_bad_categories(values, labels, colors, match):
    with pytest.raises(ValueError, match=match):
        styles.categories_qml(values, labels, colors)


def test_probs_qml_ramps_one_class_from_transparent_to_its_colour(contract):
    ren = ET.fromstring(styles.probs_qml(contract, band="green_area")).find("pipe/rasterrenderer")
    assert ren.get("type") == "singlebandpseudocolor"
    assert ren.get("band") == "3"
    assert (ren.get("classificationMin"), ren.get("classificationMax")) == ("0", "1")
    shader = ren.find("rastershader/colorrampshader")
    assert shader.get("colorRampType") == "INTERPOLATED"
    items = [(i.get("value"), i.get("color"), i.get("alpha")) for i in shader.findall("item")]
    assert items == [("0", "#2e8b3a", "0"), ("1", "#2e8b3a", "255")]
    ramp = {o.get("name"): o.get("value") for o in shader.findall("colorramp/Option/Option")}
    assert ramp["color1"] == "46,139,58,0" and ramp["color2"] == "46,139,58,255"
    # by band number: band 1 is the first class
    assert ET.fromstring(styles.probs_qml(contract)).find("pipe/rasterrenderer").get("band") == "1"
    with pytest.raises(ValueError, match="between 1 and 4"):
        styles.probs_qml(contract, band=5)
    with pytest.raises(ValueError, match="not one of"):
        styles.probs_qml(contract, band="snow")


def test_classes_aux_xml_has_a_colour_table_of_the_classes_only(contract):
    band = ET.fromstring(styles.classes_aux_xml(contract)).find("PAMRasterBand")
    assert band.find("Description").text == "class"
    assert band.find("ColorInterp").text == "Palette"
    assert [c.text for c in band.findall("CategoryNames/Category")] == list(NAMES)
    table = [tuple(int(e.get(k)) for k in ("c1", "c2", "c3", "c4")) for e in band.findall("ColorTable/Entry")]
    assert table == [(*rgb, 255) for rgb in contract.rgb_colors()]


def test_categories_aux_xml_fills_gaps_with_transparent_unnamed_entries():
    band = ET.fromstring(styles.categories_aux_xml([0, 3], ["agree", "differ"], ["#00ff00", "#ff0000"],
                                                   description="disagreement")).find("PAMRasterBand")
    assert [c.text for c in band.findall("CategoryNames/Category")] == ["agree", None, None, "differ"]
    table = [tuple(int(e.get(k)) for k in ("c1", "c2", "c3", "c4")) for e in band.findall("ColorTable/Entry")]
    assert table == [(0, 255, 0, 255), (0, 0, 0, 0), (0, 0, 0, 0), (255, 0, 0, 255)]


def test_gdal_reads_the_pam_colour_table_in_place_of_the_tiffs(tmp_path, contract):
    """Measured: GDAL returns the .aux.xml colour table (4 entries), not the
    GeoTIFF's 256; QGIS's default legend follows it."""
    path = tmp_path / "c.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=2, count=1, dtype="uint8", nodata=255,
                       crs="EPSG:32633", transform=Affine(10, 0, 0, 0, -10, 20)) as dst:
        dst.write(np.array([[[0, 1, 2, 3], [3, 2, 1, 255]]], np.uint8))
        dst.write_colormap(1, styles.colormap(contract))
    with rasterio.open(path) as src:
        assert len(src.colormap(1)) == 256
    (tmp_path / "c.tif.aux.xml").write_text(styles.classes_aux_xml(contract))
    with rasterio.open(path) as src:
        cmap = src.colormap(1)
        assert src.colorinterp[0].name == "palette"
    assert cmap == {i: (*rgb, 255) for i, rgb in enumerate(contract.rgb_colors())}


def test_colormap_has_the_classes_and_transparent_rest(contract):
    cmap = styles.colormap(contract)
    assert len(cmap) == 256
    assert [cmap[i] for i in range(4)] == [(*rgb, 255) for rgb in contract.rgb_colors()]
    assert cmap[4] == cmap[254] == cmap[255] == (0, 0, 0, 0)


def test_polygons_layer_style_is_categorised_on_class_name(contract):
    s = styles.polygons_layer_style(contract)
    assert (s.table, s.name, s.default, s.geometry_column) == ("classes", "classes", True, None)
    root = ET.fromstring(s.qml)
    ren = root.find("renderer-v2")
    assert (ren.get("type"), ren.get("attr")) == ("categorizedSymbol", "class_name")
    cats = [(c.get("value"), c.get("label"), c.get("symbol")) for c in ren.findall("categories/category")]
    assert cats == [(n, n, str(i)) for i, n in enumerate(NAMES)]
    fills = {}
    for sym in ren.findall("symbols/symbol"):
        opts = {o.get("name"): o.get("value") for o in sym.findall("layer/Option/Option")}
        props = {p.get("k"): p.get("v") for p in sym.findall("layer/prop")}
        assert opts == props  # the new and the legacy form agree
        fills[sym.get("name")] = opts["color"]
    assert fills == {str(i): f"{r},{g},{b},255" for i, (r, g, b) in enumerate(contract.rgb_colors())}
    assert float(root.find("layerOpacity").text) == pytest.approx(0.7)
    sld = ET.fromstring(s.sld)
    ns = {"se": "http://www.opengis.net/se", "ogc": "http://www.opengis.net/ogc"}
    rules = sld.findall(".//se:Rule", ns)
    assert [r.find("ogc:Filter/ogc:PropertyIsEqualTo/ogc:Literal", ns).text for r in rules] == list(NAMES)
    assert [r.find("se:PolygonSymbolizer/se:Fill/se:SvgParameter[@name='fill']", ns).text for r in rules] == list(HEX)


def _gpkg(path):
    """Written in a fresh interpreter: where TensorFlow was imported (the
    training tests' modules are collected in the same session), its SQLite
    lacks the R-tree module and GDAL writes other triggers."""
    import subprocess
    import sys

    code = (
        "import sys, geopandas as gpd, shapely; from geoseg import styles\n"
        "gdf = gpd.GeoDataFrame({'class_name': ['desert', 'water']}, "
        "geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], crs='EPSG:32633')\n"
        "gdf.to_file(sys.argv[1], driver='GPKG', engine='pyogrio', layer='classes', "
        "dataset_options=styles.GPKG_DATASET_OPTIONS)"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
    return str(path)


QGIS_COLUMNS = ["id", "f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column", "styleName",
                "styleQML", "styleSLD", "useAsDefault", "description", "owner", "ui", "update_time"]


def test_gpkg_dataset_options_write_version_1_2(tmp_path):
    con = sqlite3.connect(_gpkg(tmp_path / "p.gpkg"))
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
    assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
    # the R-tree triggers GDAL < 3.7's validator looks for
    triggers = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"rtree_classes_geom_update1", "rtree_classes_geom_update3"} <= triggers
    con.close()


def test_write_layer_styles_writes_the_table_as_qgis_does(tmp_path, contract):
    path = _gpkg(tmp_path / "p.gpkg")
    style = styles.polygons_layer_style(contract)
    styles.write_layer_styles(path, [style], timestamp="2024-05-06T07:08:09Z")
    con = sqlite3.connect(path)
    cols = [r[1] for r in con.execute("PRAGMA table_info(layer_styles)")]
    assert cols == QGIS_COLUMNS
    assert con.execute("SELECT data_type, identifier, srs_id, last_change FROM gpkg_contents "
                       "WHERE table_name = 'layer_styles'").fetchone() == (
        "attributes", "layer_styles", 0, "2024-05-06T07:08:09.000Z")
    rows = con.execute("SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
                       "useAsDefault, styleQML, styleSLD, update_time FROM layer_styles").fetchall()
    assert rows == [("", "", "classes", "geom", "classes", 1, style.qml, style.sld, "2024-05-06T07:08:09.000Z")]
    assert con.execute("SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = 'layer_styles'"
                       ).fetchone() == (1,)
    con.close()
    # again: the style is replaced, not duplicated
    styles.write_layer_styles(path, [style], timestamp="2024-05-06T07:08:09Z")
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM layer_styles").fetchone() == (1,)
    assert con.execute("SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = 'layer_styles'"
                       ).fetchone() == (1,)
    con.close()


def test_write_layer_styles_is_readable_by_gdal(tmp_path, contract):
    import pyogrio

    path = _gpkg(tmp_path / "p.gpkg")
    styles.write_layer_styles(path, [styles.polygons_layer_style(contract)], timestamp="2024-05-06T07:08:09Z")
    names = [n for n, _ in pyogrio.list_layers(path)]
    assert names == ["classes", "layer_styles"]
    df = pyogrio.read_dataframe(path, layer="layer_styles", read_geometry=False)
    assert list(df["styleName"]) == ["classes"]
    assert list(df["useAsDefault"]) == [True]


def test_write_layer_styles_refuses_what_it_cannot_style(tmp_path, contract):
    path = _gpkg(tmp_path / "p.gpkg")
    other = styles.polygons_layer_style(contract, table="roads")
    with pytest.raises(OutputError, match="no layer 'roads'"):
        styles.write_layer_styles(path, [other])
    not_gpkg = tmp_path / "x.gpkg"
    not_gpkg.write_text("hello")
    with pytest.raises(OutputError, match="GeoPackage"):
        styles.write_layer_styles(not_gpkg, [other])
    with pytest.raises(OutputError, match="no such GeoPackage"):
        styles.write_layer_styles(tmp_path / "missing.gpkg", [other])
