"""geoseg.sources: what a source is, its GDAL path and settings, its errors (no network)."""

from __future__ import annotations

import os

import pytest

from geoseg.batch import find_inputs
from geoseg.pipeline import ClassifyOptions
from geoseg.sources import (
    REMOTE_DEFAULTS, display_path, gdal_env, gdal_path, is_prefix, is_remote, is_stac_item, join, normalize_config,
    object_url, parse_gdal_config, remote_error, scene_config, source_id, source_time,
)


@pytest.mark.parametrize("src, gdal", [
    ("s3://b/k/x.tif", "/vsis3/b/k/x.tif"),
    ("gs://b/x.tif", "/vsigs/b/x.tif"),
    ("az://c/x.tif", "/vsiaz/c/x.tif"),
    ("https://h/a/x.tif?sig=1", "/vsicurl/https://h/a/x.tif?sig=1"),
    ("http://h/x.tif", "/vsicurl/http://h/x.tif"),
    ("/vsis3/b/x.tif", "/vsis3/b/x.tif"),
    ("/vsicurl/https://h/x.tif", "/vsicurl/https://h/x.tif"),
    ("/data/x.tif", "/data/x.tif"),
    ("rel/x.tif", "rel/x.tif"),
])
def test_gdal_path(src, gdal):
    assert gdal_path(src) == gdal
    assert is_remote(src) == (src != gdal or src.startswith("/vsi"))


def test_forms():
    assert object_url("/vsis3/b/k") == "s3://b/k" and object_url("/vsicurl/https://h/x") == "https://h/x"
    assert not is_remote("/vsimem/x.tif") and not is_remote("scene.tif")
    assert display_path("s3://b/k") == "s3://b/k" and display_path("x.tif") == os.path.abspath("x.tif")
    assert join("s3://b/lists/l.txt", "x.tif") == "s3://b/lists/x.tif"
    assert join("https://h/a/item.json", "./r.tif") == "https://h/a/r.tif"
    assert join("https://h/a/item.json", "s3://b/r.tif") == "s3://b/r.tif"
    assert is_prefix("s3://b/p/") and not is_prefix("s3://b/p/x.tif") and not is_prefix("/data/")
    assert is_stac_item("https://h/item.json?x=1") and not is_stac_item("x.tif")


def test_config_parsing():
    assert parse_gdal_config(["A=1", "B = x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_gdal_config(["A"])
    assert normalize_config({"B": True, "A": 2}) == (("A", "2"), ("B", "YES"))
    with pytest.raises(ValueError, match="environment variables"):
        normalize_config({"AWS_ACCESS_KEY_ID": "x"})


def test_scene_config_remote_only(tmp_path):
    local = str(tmp_path / "x.tif")
    assert scene_config(local) == ()  # local reads exactly as before (sidecars found)
    assert scene_config(local, (("GDAL_CACHEMAX", "64"),)) == (("GDAL_CACHEMAX", "64"),)
    remote = dict(scene_config("s3://b/x.tif", (("GDAL_HTTP_MAX_RETRY", "9"),)))
    assert remote["GDAL_HTTP_MAX_RETRY"] == "9"
    assert remote["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR" == REMOTE_DEFAULTS["GDAL_DISABLE_READDIR_ON_OPEN"]
    for key in ("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES", "VSI_CACHE",
                "GDAL_HTTP_RETRY_DELAY"):
        assert key in remote
    vrt = tmp_path / "item.vrt"
    vrt.write_text("<VRTDataset><SourceFilename>/vsicurl/https://h/r.tif</SourceFilename></VRTDataset>")
    assert dict(scene_config(str(vrt)))["VSI_CACHE"] == "TRUE"


def test_gdal_env_is_entered():
    from rasterio.env import getenv

    with gdal_env((("GDAL_HTTP_MAX_RETRY", "7"),)):
        assert getenv()["GDAL_HTTP_MAX_RETRY"] == "7"
    with gdal_env(()):
        pass


def test_remote_error_mapping():
    url = "https://h/x.tif"
    assert str(remote_error(url, "HTTP response code: 404")).startswith(f"{url}: not found")
    e403 = str(remote_error(url, "HTTP response code: 403"))
    assert e403.startswith(f"{url}: access denied") and "AWS_NO_SIGN_REQUEST=YES" in e403
    assert "cannot read the remote object" in str(remote_error(url, "HTTP response code: 503"))
    assert remote_error(url, "TIFFReadDirectory: bad IFD") is None
    assert remote_error("/data/x.tif", "HTTP response code: 404") is None


def test_local_identity_unchanged(tmp_path):
    f = tmp_path / "x.tif"
    f.write_bytes(b"abc")
    os.utime(f, (1_700_000_000, 1_700_000_000))
    sid = source_id(str(f))
    assert sid == {"path": str(f), "size": 3, "mtime_ns": 1_700_000_000 * 10**9}
    assert source_time(str(f)).isoformat() == "2023-11-14T22:13:20+00:00"


def test_options_gdal_config_does_not_shape_results():
    a = ClassifyOptions(gdal_config={"VSI_CACHE": "FALSE"})
    assert a.gdal_config == (("VSI_CACHE", "FALSE"),)
    assert a.to_dict() == ClassifyOptions().to_dict()
    assert "assets" not in ClassifyOptions().to_dict()
    assert ClassifyOptions(assets=["r", "g", "b"]).to_dict()["assets"] == ["r", "g", "b"]
    hash(a)


def test_list_of_urls(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("https://h/a.tif\ns3://b/c.tif\n/vsis3/b/d.tif\nlocal.tif\n")
    tasks = find_inputs([str(lst)], str(tmp_path / "out"))
    assert [t.path for t in tasks] == ["https://h/a.tif", "s3://b/c.tif", "/vsis3/b/d.tif",
                                       str(tmp_path / "local.tif")]


def test_http_folder_is_refused(tmp_path):
    from geoseg.errors import UnsupportedSourceError

    with pytest.raises(UnsupportedSourceError, match="cannot be listed"):
        find_inputs(["https://h/folder/"], str(tmp_path))
