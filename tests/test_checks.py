"""geoseg.checks: the one home of input checks, one case a test."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from geoseg.checks import check_georeferenced, check_nodata_value, check_pixel_dtype, check_vector_crs
from geoseg.errors import InputError
from geoseg.raster import open_raster

LOCAL = 'LOCAL_CS["site grid",UNIT["metre",1]]'
GOOD_T = Affine(10, 0, 500000, 0, -10, 6000000)


def _write(path, **kw):
    prof = dict(driver="GTiff", width=8, height=8, count=1, dtype="uint8")
    prof.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.simplefilter("ignore", UserWarning)  # rasterio: 'crs' was not provided
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(np.ones((1, 8, 8), np.uint8))
    return str(path)


RASTERS = {
    "gcps": (dict(gcps=[GroundControlPoint(r, c, 500000 + c, 6e6 - r) for r, c in ((0, 0), (0, 7), (7, 0))],
                  crs="EPSG:32633"), "the label raster is georeferenced by 3 ground control points only"),
    "nocrs": (dict(transform=GOOD_T), "the label raster has no CRS"),
    "local": (dict(crs=CRS.from_wkt(LOCAL), transform=GOOD_T),
              "the CRS 'site grid' is a local (engineering) system"),
    "notransform": (dict(crs="EPSG:32633"), "the label raster has no geotransform"),
    "beyond": (dict(crs="EPSG:4326", transform=Affine(30, 0, -180, 0, -30, 90)),
               "in degrees (EPSG:4326) the label raster spans longitude -180..60, latitude -150..90, beyond the Earth"),
}


@pytest.mark.parametrize("case", sorted(RASTERS))
def test_check_georeferenced_refuses(tmp_path, case):
    kw, msg = RASTERS[case]
    p = _write(tmp_path / f"{case}.tif", **kw)
    with open_raster(p) as src, pytest.raises(InputError) as e:
        check_georeferenced(src, p, "label raster")
    assert str(e.value).startswith(f"{p}: ") and msg in str(e.value)
    assert "\n" not in str(e.value)


def test_check_georeferenced_names_an_image_that_is_not_a_geotiff(tmp_path):
    from PIL import Image

    p = tmp_path / "photo.tif"  # a PNG saved under a GeoTIFF's name
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p, format="PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with open_raster(str(p)) as src, pytest.raises(InputError) as e:
            check_georeferenced(src, str(p), "scene")
    assert str(e.value).startswith(f"{p}: the scene is a PNG image, not a GeoTIFF, and has no CRS or geotransform")
    assert "gdal_translate -a_srs" in str(e.value)


def test_check_georeferenced_north_up_only_when_asked(tmp_path):
    p = _write(tmp_path / "rot.tif", crs="EPSG:32633", transform=Affine(10, 2, 500000, 2, -10, 6e6))
    with open_raster(p) as src:
        check_georeferenced(src, p, "reference")  # a reference may be rotated: it is reprojected
        with pytest.raises(InputError, match="rot.tif: transform is rotated, sheared or flipped"):
            check_georeferenced(src, p, "scene", north_up=True)


def test_check_georeferenced_accepts_a_good_raster(tmp_path):
    p = _write(tmp_path / "ok.tif", crs="EPSG:32633", transform=GOOD_T)
    with open_raster(p) as src:
        assert check_georeferenced(src, p, "scene", north_up=True) is None


@pytest.mark.parametrize("crs, msg", [
    (None, "no CRS (unknown coordinate system) in the labels"),
    ("", "no CRS (unknown coordinate system) in the labels"),
    ("not a crs at all", "cannot read the CRS of the labels (not a crs at all)"),
    (LOCAL, "the CRS 'site grid' is a local (engineering) system"),
], ids=["none", "empty", "unreadable", "local"])
def test_check_vector_crs_refuses(crs, msg):
    with pytest.raises(InputError) as e:
        check_vector_crs(crs, "l.gpkg", "labels")
    assert str(e.value).startswith("l.gpkg: ") and msg in str(e.value) and "ogr2ogr -a_srs" in str(e.value)


def test_check_vector_crs_gives_wkt():
    assert "UTM zone 33N" in check_vector_crs("EPSG:32633", "l.gpkg")


@pytest.mark.parametrize("value, dtype", [(300, "uint8"), (-1, "uint8"), (0.5, "uint8"), (70000, "int16"),
                                          (float("nan"), "uint16")])
def test_check_nodata_value_refuses(value, dtype):
    with pytest.raises(InputError, match=rf"s.tif: --nodata {value:g} cannot occur in a {dtype} scene"):
        check_nodata_value("s.tif", value, dtype)


@pytest.mark.parametrize("value, dtype", [(None, "uint8"), (0, "uint8"), (float("nan"), "float32"),
                                          (-9999.5, "float32"), (65535, "uint16")])
def test_check_nodata_value_accepts(value, dtype):
    assert check_nodata_value("s.tif", value, dtype) is None


@pytest.mark.parametrize("dtype", ["complex64", "complex128", "complex_int16"])
def test_check_pixel_dtype_refuses_complex(dtype):
    with pytest.raises(InputError) as e:
        check_pixel_dtype("sar.tif", dtype)
    assert str(e.value).startswith(f"sar.tif: the scene's bands are {dtype} (complex values, e.g. SAR); expected "
                                   "real-valued optical bands")


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "int32", "float32", "float64"])
def test_check_pixel_dtype_accepts_real(dtype):
    assert check_pixel_dtype("s.tif", dtype) is None
