"""Every output name (geoseg.naming): one stem rule for paths and URLs."""

import os

import pytest

from geoseg.naming import (basename, manifest_name, product_name, scene_stem, sidecar_names, tmp_name,
                           tmp_owner_pid, tmp_prefix)


@pytest.mark.parametrize("source,stem", [
    ("scene.tif", "scene"),
    ("d/scene.tif", "scene"),
    (os.path.join("d", "sub", "x.tiff"), "x"),
    ("d/x.dat", "x.dat"),  # not a raster extension: kept whole
    ("d/SCENE.TIF", "SCENE"),  # extensions in any case
    ("d/a.b.jp2", "a.b"),
    ("d/.tif", ".tif"),  # nothing before the extension: the whole name
    ("https://host/bucket/b.tif?X-Amz-Signature=abc&y=1", "b"),  # query dropped
    ("/vsicurl/https://host/a/b.tif?x=1", "b"),
    ("/vsicurl/https://host/a/c.dat", "c.dat"),
    ("s3://bucket/key/s2.vrt", "s2"),
])
def test_scene_stem(source, stem):
    assert scene_stem(source) == stem


def test_basename_of_urls_and_paths():
    assert basename("/vsicurl/https://h/a/b.tif?x=1") == "b.tif"
    assert basename("https://h/a/b.tif?x=1#frag") == "b.tif"
    assert basename("d/sub/") == "sub"
    assert basename("plain.tif") == "plain.tif"


def test_x_dat_products_and_manifest_share_the_stem():
    """d/x.dat: the products AND the manifest are named by x.dat (they once disagreed)."""
    stem = scene_stem("d/x.dat")
    assert product_name(stem, "classes") == "x.dat_classes.tif"
    assert manifest_name(stem) == "x.dat_manifest.json"
    assert {product_name(stem, p) for p in ("probs", "polygons", "stats", "quicklook")} == {
        "x.dat_probs.tif", "x.dat_polygons.gpkg", "x.dat_stats.json", "x.dat_quicklook.png"}
    assert sidecar_names(stem) == {"classes_qml": "x.dat_classes.qml", "classes_aux": "x.dat_classes.tif.aux.xml",
                                   "probs_qml": "x.dat_probs.qml"}
    assert product_name(scene_stem("https://h/b.TIF?sig=1"), "classes") == "b_classes.tif"
    assert manifest_name(scene_stem("/vsicurl/https://h/b.tif?sig=1")) == "b_manifest.json"


def test_tmp_names_carry_the_pid_and_are_hidden():
    for product in ("classes", "probs", "polygons", "stats", "quicklook", "classes_qml", "classes_aux"):
        t = tmp_name("x.dat", product, "1234-abcdef12")
        assert t.startswith(tmp_prefix("x.dat")) and t.startswith(".x.dat_") and ".tmp" in t
        assert tmp_owner_pid("x.dat", t) == 1234
        assert tmp_owner_pid("other", t) is None
    assert tmp_name("s", "classes", "7-aa").endswith(".tif")
    assert not tmp_name("s", "classes_aux", "7-aa").endswith(".tif.aux.xml")  # GDAL would read it as PAM
    assert tmp_owner_pid("s", "s_classes.tif") is None  # a final name
    assert tmp_owner_pid("s", ".s_classes.x-aa.tmp.tif") is None  # no pid
