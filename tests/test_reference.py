"""geoseg.reference: references brought onto the class grid
(raster and vector, coverage at edges and nodata)."""


import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from geoseg.errors import InputError
from geoseg.classmap import open_class_map
from geoseg.reference import RasterReference, open_reference, reference_on_grid

X0, Y0 = 500000.0, 6000000.0
MODEL = ("cloudy", "desert", "green_area", "water")


def write_raster(path, arr, transform, crs="EPSG:32633", nodata=255, names=None, dtype=None, **tags):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    prof = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                dtype=dtype or arr.dtype, crs=crs, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr.astype(prof["dtype"]))
        if names is not None:
            dst.update_tags(CLASS_NAMES=",".join(names))
        if tags:
            dst.update_tags(**tags)
    return str(path)


def class_map(path, arr, cell=4.0, names=MODEL, crs="EPSG:32633"):
    return write_raster(path, np.asarray(arr, np.uint8), Affine(cell, 0, X0, 0, -cell, Y0), crs=crs, names=names)


def collect(ref, grid, **kw):
    chunks = list(reference_on_grid(ref, grid, **kw))
    return np.concatenate([c.labels for c in chunks]), np.concatenate([c.coverage for c in chunks])


# --- raster reference ------------------------------------------------------------
def planted_reference(tmp_path, name="ref.tif"):
    """A 1 m land(0)/water(1) raster under a 3 x 4 grid of 4 m cells, with known shares."""
    r = np.zeros((12, 16), np.uint8)
    r[0:4, 0:4] = 1                      # (0,0): all water
    r[0:4, 4:8].flat[:10] = 1            # (0,1): 10/16 water
    r[0:4, 8:12].flat[:6] = 1            # (0,2): 6/16 water -> land
    r[4:8, 0:4] = 255
    r[7, 0:4] = 1                        # (1,0): 4/16 water, the rest nodata
    r[4:6, 4:8] = 255                    # (1,1): 8/16 nodata, 8 land
    r[4:8, 8:12] = 255                   # (1,2): all nodata
    r[8:12, 0:2] = 1                     # (2,0): 8 water, 8 land: a tie -> the lowest value (land)
    return write_raster(tmp_path / name, r, Affine(1, 0, X0, 0, -1, Y0), names=("land", "water"))


def test_raster_reference_majority_and_coverage(tmp_path):
    grid = open_class_map(class_map(tmp_path / "c.tif", np.zeros((3, 4))))
    ref = open_reference(planted_reference(tmp_path), grid)
    assert isinstance(ref, RasterReference) and ref.names == {0: "land", 1: "water"}
    for rows in (None, 1):
        lab, cov = collect(ref, grid, rows_per_chunk=rows)
        assert lab.tolist() == [[1, 1, 0, 0], [1, 0, -1, 0], [0, 0, 0, 0]]
        np.testing.assert_allclose(cov, [[1, 1, 1, 1], [0.25, 0.5, 0, 1], [1, 1, 1, 1]], atol=1e-6)


def test_raster_reference_edges_coarser_and_offset(tmp_path):
    """A 2 m reference starting half a cell right of the grid and ending half a
    cell short of its right edge: the edge columns are half covered."""
    grid = open_class_map(class_map(tmp_path / "c.tif", np.zeros((2, 4))))
    r = np.ones((4, 6), np.uint8)  # 12 m wide, from x0 + 2 to x0 + 14
    p = write_raster(tmp_path / "r.tif", r, Affine(2, 0, X0 + 2, 0, -2, Y0), names=("land", "water"))
    lab, cov = collect(open_reference(p, grid), grid)
    np.testing.assert_allclose(cov, [[0.5, 1, 1, 0.5]] * 2, atol=1e-6)
    assert (lab == 1).all()
    # a reference past the grid on every side changes nothing inside
    p = write_raster(tmp_path / "big.tif", np.ones((20, 30), np.uint8), Affine(1, 0, X0 - 5, 0, -1, Y0 + 5))
    lab, cov = collect(open_reference(p, grid), grid)
    np.testing.assert_allclose(cov, 1, atol=1e-6)


def test_small_fine_reference_inside_a_coarse_grid(tmp_path):
    """A 1 m reference of 150 m x 150 m inside a grid of 100 m cells: the
    cells at its edges get the share of them it covers, the others nothing."""
    grid = open_class_map(class_map(tmp_path / "c.tif", np.zeros((6, 6)), cell=100.0))
    p = write_raster(tmp_path / "r.tif", np.ones((150, 150), np.uint8), Affine(1, 0, X0 + 250, 0, -1, Y0 - 250))
    exp = np.zeros((6, 6))
    exp[2:4, 2:4] = [[0.25, 0.5], [0.5, 1]]
    for rows in (None, 1, 4):
        lab, cov = collect(open_reference(p, grid), grid, rows_per_chunk=rows)
        np.testing.assert_allclose(cov, exp, atol=1e-6)
        assert ((lab == 1) == (exp > 0)).all() and (lab[exp == 0] == -1).all()


def test_raster_reference_in_another_crs(tmp_path):
    """Class grid in UTM 33N (4 x 4 cells of 100 m on the central meridian),
    reference in EPSG:4326: water west of x0 + 200 m, land east of it."""
    from pyproj import Transformer

    grid = open_class_map(class_map(tmp_path / "c.tif", np.zeros((4, 4)), cell=100.0))
    tr = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lon_w, lat_n = tr.transform(X0 - 100, Y0 + 100)
    lon_e, lat_s = tr.transform(X0 + 500, Y0 - 500)
    lon_mid, _ = tr.transform(X0 + 200, Y0 - 200)
    res = 0.00005
    w, h = int((lon_e - lon_w) / res) + 1, int((lat_n - lat_s) / res) + 1
    lons = lon_w + (np.arange(w) + 0.5) * res
    r = np.repeat((lons < lon_mid).astype(np.uint8)[None], h, axis=0)
    p = write_raster(tmp_path / "geo.tif", r, Affine(res, 0, lon_w, 0, -res, lat_n), crs="EPSG:4326",
                     names=("land", "water"))
    lab, cov = collect(open_reference(p, grid), grid)
    assert lab.tolist() == [[1, 1, 0, 0]] * 4
    np.testing.assert_allclose(cov, 1, atol=1e-4)


# --- vector reference ------------------------------------------------------------
def test_vector_reference_fractions_and_field(tmp_path):
    grid = open_class_map(class_map(tmp_path / "c.tif", np.zeros((2, 3))))
    gdf = gpd.GeoDataFrame({"class": ["lake", "forest", "lake"], "note": ["a", "b", "c"]}, geometry=[
        box(X0, Y0 - 4, X0 + 2, Y0),               # (0,0): left half -> lake, coverage 0.5
        box(X0 + 4, Y0 - 4, X0 + 5, Y0),           # (0,1): a quarter forest
        box(X0 + 5, Y0 - 4, X0 + 8, Y0),           #        three quarters lake
    ], crs="EPSG:32633")
    p = tmp_path / "ref.gpkg"
    gdf.to_file(p)
    ref = open_reference(p, grid)  # two text fields: the one called "class"
    assert ref.field == "class" and ref.classes == ["forest", "lake"]
    for rows in (None, 1):
        lab, cov = collect(ref, grid, rows_per_chunk=rows)
        assert lab.tolist() == [[1, 1, -1], [-1, -1, -1]]
        np.testing.assert_allclose(cov, [[0.5, 1, 0], [0, 0, 0]])
    assert open_reference(p, grid, field="note").classes == ["a", "b", "c"]
    with pytest.raises(InputError, match="no field 'kind'; the fields are: class, note"):
        open_reference(p, grid, field="kind")
    gdf[["note", "geometry"]].rename(columns={"note": "label"}).assign(other="x").to_file(tmp_path / "two.gpkg")
    with pytest.raises(InputError, match="cannot tell which field"):
        open_reference(tmp_path / "two.gpkg", grid)


def test_vector_reference_layers(tmp_path):
    """A GeoPackage with a table beside its features (geoseg's own
    NAME_polygons.gpkg holds QGIS' layer_styles): the features, no warning;
    two feature layers: the first, with a geoseg warning naming both."""
    import pandas as pd
    import pyogrio

    from geoseg.errors import GeosegWarning

    grid = open_class_map(class_map(tmp_path / "c.tif", np.zeros((2, 3))))
    p = tmp_path / "own.gpkg"
    gpd.GeoDataFrame({"class": ["lake"]}, geometry=[box(X0, Y0 - 4, X0 + 4, Y0)], crs="EPSG:32633").to_file(
        p, layer="classes")
    pyogrio.write_dataframe(pd.DataFrame({"styleName": ["s"]}), p, layer="layer_styles", append=True)
    assert open_reference(p, grid).classes == ["lake"]  # (warnings are errors in the tests)
    gpd.GeoDataFrame({"class": ["forest"]}, geometry=[box(X0, Y0 - 4, X0 + 4, Y0)], crs="EPSG:32633").to_file(
        p, layer="more")
    with pytest.warns(GeosegWarning, match=r"own.gpkg: 2 layers with geometries \(classes, more\); reading the "
                                           r"first, 'classes'"):
        assert open_reference(p, grid).classes == ["lake"]
