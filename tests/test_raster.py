"""Opening scenes and reading them (geoseg.raster): mask kinds, band choice,
scaling rules, the warnings of degraded cases, windows past the edges."""

import numpy as np
import pytest
from rasterio.windows import Window

from geoseg.contract import Scaling
from geoseg.errors import InputError, MaskWarning, ScalingWarning
from geoseg.raster import open_scene, read_window, scaling_for, stretch_hint
from helpers import make_contract, make_reflectance_contract, paint, write_rgba, write_scene


@pytest.fixture
def contract():
    return make_contract(8)


def test_scene_info_and_mask_kinds(tmp_path, truth, contract):
    img = paint(truth, 8)
    s = open_scene(write_scene(tmp_path / "plain.tif", img), contract)
    assert (s.width, s.height, s.count, s.dtype) == (56, 48, 3, "uint8")
    assert s.bidx == (1, 2, 3) and s.band_choice == "colour interpretation"
    assert s.mask_kind == "none" and s.nodata is None and s.name == "plain"
    assert open_scene(write_scene(tmp_path / "nd.tif", img, nodata=0), contract).mask_kind == "nodata"
    u = open_scene(write_scene(tmp_path / "nd2.tif", img, nodata=0), contract, nodata=5.0)
    assert u.mask_kind == "user" and u.mask_by_value and u.nodata == 5.0
    alpha = np.full(img.shape[1:], 255, np.uint8)
    assert open_scene(write_rgba(tmp_path / "rgba.tif", img, alpha), contract).mask_kind == "alpha"


def test_nodata_and_alpha_warn_once(tmp_path, truth, contract):
    img = paint(truth, 8)
    p = write_rgba(tmp_path / "both.tif", img, np.full(img.shape[1:], 255, np.uint8), nodata=0)
    with pytest.warns(MaskWarning, match=r"both.tif: has both a nodata value \(0\) and an alpha band") as rec:
        s = open_scene(p, contract)
    assert len(rec) == 1
    assert s.mask_kind == "nodata" and s.nodata == 0


def test_scaling_rules(tmp_path, truth, contract):
    u16 = open_scene(write_scene(tmp_path / "u16.tif", paint(truth, 8, dtype="uint16")), contract)
    assert scaling_for(u16, contract, None).method == "linear"
    assert scaling_for(u16, contract, Scaling("identity")).method == "identity"
    i16 = open_scene(write_scene(tmp_path / "i16.tif", paint(truth, 8, dtype="int16")), contract)
    with pytest.warns(ScalingWarning, match=r"no scaling for int16; using its uint16 rule"):
        assert scaling_for(i16, contract, None).method == "linear"
    f32 = open_scene(write_scene(tmp_path / "f.tif", paint(truth, 8, dtype="float32")), contract)
    with pytest.raises(InputError, match="float32 but the model declares scaling only for uint16, uint8"):
        scaling_for(f32, contract, None)


def test_read_window_pads_past_the_edges(tmp_path, truth, contract):
    img = paint(truth, 8)
    img[:, :2, :] = 0
    s = open_scene(write_scene(tmp_path / "nd.tif", img, nodata=0), contract)
    data, valid, inside = read_window(s, Window(50, -4, 16, 16))  # 6 columns and 12 rows inside
    assert data.shape == (3, 16, 16) and valid.shape == inside.shape == (16, 16)
    assert inside[4:, :6].all() and inside.sum() == 12 * 6
    assert (data[:, 4:, :6] == img[:, :12, 50:]).all() and (data[:, ~inside] == 0).all()
    assert not valid[4:6, :6].any() and valid[6:, :6].all() and not valid[~inside].any()
    data, valid, inside = read_window(s, Window(100, 100, 8, 8))  # wholly outside
    assert not inside.any() and not valid.any() and (data == 0).all()


def test_file_cut_short_after_its_pixels_is_truncated_not_unreferenced(tmp_path, truth, contract):
    # a GeoTIFF whose tags follow its pixels (GDAL's own layout) cut at 90 %:
    # GDAL opens it with warnings and without its CRS and geotransform; the
    # error must say truncated (not "no CRS"), and GDAL's warnings stay back
    import logging

    import rasterio

    img = paint(truth, 8)
    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", width=img.shape[2], height=img.shape[1], count=3,
                       dtype="uint8", crs="EPSG:32633", transform=rasterio.Affine(10, 0, 5e5, 0, -10, 6e6)) as dst:
        dst.write(img)
        dst.update_tags(NOTE="x" * 2000)
    data = (tmp_path / "s.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: int(len(data) * 0.9)])
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: seen.append(r.getMessage())  # type: ignore[method-assign]
    logging.getLogger("rasterio").addHandler(handler)
    try:
        with pytest.raises(InputError, match=r"cut.tif: truncated or corrupt \(GDAL: .*IO error.*re-download"):
            open_scene(tmp_path / "cut.tif", contract)
    finally:
        logging.getLogger("rasterio").removeHandler(handler)
    assert not [m for m in seen if "IO error" in m]


def test_nodata_value_outside_the_dtype_is_refused(tmp_path, truth, contract):
    p = write_scene(tmp_path / "s.tif", paint(truth, 8))
    for bad in (300, -1, 0.5):
        with pytest.raises(InputError, match=rf"s.tif: --nodata {bad:g} cannot occur in a uint8 scene"):
            open_scene(p, contract, nodata=bad)
    assert open_scene(p, contract, nodata=0).nodata == 0


def test_geographic_scene_beyond_the_earth_is_refused(tmp_path, truth, contract):
    # 10 degree pixels from (-180, 90): latitudes down to -1190 (a geotransform meant for metres)
    from affine import Affine

    p = write_scene(tmp_path / "deg.tif", paint(truth, 8), crs="EPSG:4326", transform=Affine(10, 0, -180, 0, -10, 90))
    with pytest.raises(InputError, match=r"deg.tif: in degrees \(EPSG:4326\) the scene spans longitude -180..380, "
                                         r"latitude -390..90, beyond the Earth"):
        open_scene(p, contract)


def test_scene_info_records_band_names_scale_offset_and_tags(tmp_path, truth):
    from helpers import make_reflectance_contract, paint_reflectance

    p = write_scene(tmp_path / "s2.tif", paint_reflectance(truth, 8), colorinterp=False,
                    descriptions=("B02", "B03", "B04", "B08"), scales=(1e-4,) * 4, offsets=(-0.1,) * 4,
                    tags={"PROCESSING_BASELINE": "05.09", "SPACECRAFT_NAME": "Sentinel-2B", "OTHER": "x"})
    s = open_scene(p, make_reflectance_contract(8))
    assert s.bidx == (1, 2, 3, 4) and s.band_names == ("blue", "green", "red", "nir")
    assert s.band_choice == "band names" and s.scale_offset == ((1e-4, -0.1),) * 4
    assert dict(s.tags) == {"PROCESSING_BASELINE": "05.09", "SPACECRAFT_NAME": "Sentinel-2B"}


def test_scaling_for_a_reflectance_model_uses_the_file_calibration(tmp_path, truth):
    from helpers import make_reflectance_contract, paint_reflectance

    c = make_reflectance_contract(8)
    p = write_scene(tmp_path / "s.tif", paint_reflectance(truth, 8), colorinterp=False,
                    descriptions=("blue", "green", "red", "nir"), scales=(1e-4,) * 4, offsets=(0.0,) * 4)
    s = scaling_for(open_scene(p, c), c, None)
    assert (s.method, s.scale, s.offset) == ("linear", 1e-4, 0.0)


def test_scene_smaller_than_a_patch(tmp_path, truth):
    from geoseg.errors import InputError

    p = write_scene(tmp_path / "small.tif", paint(truth, 8)[:, :20, :30])
    with pytest.raises(InputError, match=r"small.tif: raster is 30x20 px, smaller than one 32x32 patch; expected at "
                                         r"least 32x32"):
        open_scene(p, make_contract(32))
    assert open_scene(p, make_contract(32), min_side=None).width == 30


@pytest.mark.parametrize("dtype,nodata,by_value", [
    ("uint8", 0, True),  # GDAL's nodata masks are "value != nodata": computed from the values read
    ("uint16", 65535, True),
    ("float32", 0.0, False),  # GDAL compares floats its own way: its masks are read
])
def test_integer_nodata_validity_from_values_equals_gdal_masks(tmp_path, truth, contract, dtype, nodata, by_value):
    import rasterio

    img = paint(truth, 8).astype(dtype)
    img[:, :5, :7] = nodata  # nodata in every band
    img[0, 20:30, 3:9] = nodata  # in one band only: still data
    p = write_scene(tmp_path / "nd.tif", img, nodata=nodata)
    s = open_scene(p, contract)
    assert (s.mask_kind, s.mask_by_value) == ("nodata", by_value)
    _, valid, _ = read_window(s, Window(0, 0, s.width, s.height))
    with rasterio.open(p) as src:
        gdal = np.any(src.read_masks(s.bidx) > 0, axis=0)
    assert np.array_equal(valid, gdal) and not valid[:5, :7].any() and valid[20:30, 3:9].all()


def _vrt(path, sources):
    """A 3-band VRT of (file, band, GDAL data type) sources on the test grid (16 x 16 px)."""
    bands = "".join(
        f'<VRTRasterBand dataType="{t}" band="{i}"><SimpleSource><SourceFilename relativeToVRT="0">{f}'
        f"</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for i, (f, b, t) in enumerate(sources, 1))
    path.write_text(f'<VRTDataset rasterXSize="16" rasterYSize="16"><SRS>EPSG:32633</SRS>'
                    f"<GeoTransform>500000, 10, 0, 6000000, 0, -10</GeoTransform>{bands}</VRTDataset>")
    return str(path)


@pytest.mark.parametrize("case", ["mixed_dtypes", "missing_source"])
def test_vrt_scene_errors_say_what_to_fix(tmp_path, contract, case):
    from geoseg.raster import check_readable

    p8 = write_scene(tmp_path / "u8.tif", np.ones((3, 16, 16), np.uint8))
    p16 = write_scene(tmp_path / "u16.tif", np.ones((3, 16, 16), np.uint16))
    gone = str(tmp_path / "gone.tif")
    srcs = {"mixed_dtypes": [(p8, 1, "Byte"), (p16, 2, "UInt16"), (p8, 3, "Byte")],
            "missing_source": [(p8, 1, "Byte"), (gone, 2, "Byte"), (p8, 3, "Byte")]}[case]
    vrt = _vrt(tmp_path / "s.vrt", srcs)
    with pytest.raises(InputError) as e:
        check_readable(open_scene(vrt, contract, bidx=(1, 2, 3)))
    msg = str(e.value)
    assert msg.startswith(f"{vrt}: ") and "\n" not in msg
    if case == "mixed_dtypes":
        assert "the chosen bands 1,2,3 have mixed dtypes (uint16, uint8); expected bands of one dtype" in msg
    else:
        assert f"a file it refers to cannot be opened ({gone}: No such file or directory)" in msg
        assert "restore the file or fix the paths in s.vrt" in msg


def test_a_landsat_preset_on_a_landsat_5_file_reads_its_own_numbering(tmp_path):
    # --sensor landsat-c2-l2 (Landsat 8/9 numbering) on a file whose SPACECRAFT_ID says LANDSAT_5
    from helpers import make_reflectance_contract

    descs = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
    p = write_scene(tmp_path / "l5.tif", np.ones((7, 16, 16), np.uint16), colorinterp=False, descriptions=descs,
                    tags={"SPACECRAFT_ID": "LANDSAT_5"})
    scene = open_scene(p, make_reflectance_contract(8), family="landsat-oli")
    assert scene.bidx == (1, 2, 3, 4) and scene.band_names == ("blue", "green", "red", "nir")


@pytest.mark.parametrize("given,hint", [
    ("{d}/s.tif/", "{d}/s.tif is a file: drop the trailing /"),
    ("file://{d}/s.tif", "expected a path: pass {d}/s.tif (without file://)"),
    ("ftp://host/s.tif", "ftp:// is not a source geoseg reads; expected a local path, http(s)://, s3://, gs:// or az://"),
    ("/vsizip/{d}/a.zip/s.tif", "expected a local path or a URL (vsizip paths are not read): extract the file first"),
    ("~/nowhere/s.tif", "the ~ was not expanded (quoted?): pass "),
    ("{d}/S.TIF", "did you mean {d}/s.tif? (names are case-sensitive)"),
    ("{d}/other.tif", "check the path of the scene"),
], ids=["trailing_slash", "file_url", "ftp", "vsizip", "tilde", "case", "plain"])
def test_a_missing_scene_path_says_what_to_fix(tmp_path, contract, given, hint):
    write_scene(tmp_path / "s.tif", np.ones((3, 16, 16), np.uint8))
    path = given.format(d=tmp_path)
    with pytest.raises(InputError) as e:
        open_scene(path, contract)
    assert str(e.value).startswith(f"{path}: file not found; {hint.format(d=tmp_path)}")


STRETCH = {"uint8": Scaling("identity"), "uint16": Scaling.parse("percentile:2,98"), "float": Scaling.parse("linear:1000")}


@pytest.mark.parametrize("dtype, contract, hinted", [
    ("uint16", make_contract(scaling=STRETCH), True),
    ("int16", make_contract(scaling=STRETCH), True),  # other integers take the uint16 rule
    ("uint8", make_contract(scaling=STRETCH), False),
    ("float32", make_contract(scaling=STRETCH), False),  # a linear rule keeps cloud white
    ("uint16", make_contract(), False),  # linear uint16 rule
    ("uint16", make_reflectance_contract(), False),
])
def test_stretch_hint_names_the_reflectance_model_where_cloud_goes_grey(dtype, contract, hinted):
    hint = stretch_hint(contract, dtype)
    assert (hint is not None) == hinted
    if hinted:
        assert hint.startswith(f"{dtype} pixels are stretched per scene (percentile:2,98)") and "rgb-reflectance" in hint
