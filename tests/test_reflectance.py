"""geoseg.reflectance: each scene's rule to reflectance, in the issue's order, and its checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from geoseg.contract import Scaling
from geoseg.errors import InputError
from geoseg.reflectance import Reflectance, baseline_offset, check_range, decide, model_scaling
from helpers import make_reflectance_contract

ONE = ((1.0, 0.0),) * 4


def test_explicit_scale_comes_first():
    r, w = decide("s.tif", "uint16", 4, 0.0001, -0.1, "landsat-c2-l2", ((2.0, 0.0),) * 4, ((3.0, 0.0),) * 4)
    assert (r.source, r.scale, r.offset, w) == ("--reflectance-scale", (1e-4,) * 4, (-0.1,) * 4, None)


@pytest.mark.parametrize("sensor,scale,offset", [
    ("sentinel2-l2a-pb04", 1e-4, -0.1),
    ("sentinel2-l1c-pb04", 1e-4, -0.1),
    ("landsat-c2-l1", 2.0e-5, -0.1),
    ("landsat-c2-l2", 2.75e-5, -0.2),
])
def test_sensor_presets(sensor, scale, offset):
    r, w = decide("s.tif", "uint16", 4, sensor=sensor, file_scale_offset=((5.0, 0.0),) * 4)
    assert (r.source, r.scale, r.offset, w) == (f"--sensor {sensor}", (scale,) * 4, (offset,) * 4, None)


def test_naip_preset_is_the_uint8_rule():
    r, _ = decide("naip.tif", "uint8", 4, sensor="naip")
    assert r.uint8_rule and r.source == "--sensor naip"


@pytest.mark.parametrize("tags,offset", [
    ({"BOA_ADD_OFFSET": "-1000"}, -0.1),
    ({"PROCESSING_BASELINE": "04.00"}, -0.1),
    ({"PROCESSING_BASELINE": "02.09"}, 0.0),
])
def test_l2a_offset_from_the_file_metadata(tags, offset):
    r, w = decide("s.tif", "uint16", 4, sensor="sentinel2-l2a", tags=tags)
    assert r.offset == pytest.approx((offset,) * 4) and w is None and "metadata" in r.source


@pytest.mark.parametrize("sensor", ["sentinel2-l2a", "sentinel2-l1c"])
def test_sentinel2_without_baseline_metadata_warns_and_applies_no_offset(sensor):
    # L1C products carry the -1000 offset from baseline 04.00 (25 January 2022) as L2A products do
    r, w = decide("s.tif", "uint16", 4, sensor=sensor, file_scale_offset=((5.0, 0.0),) * 4)
    assert (r.source, r.scale, r.offset) == (f"--sensor {sensor}", (1e-4,) * 4, (0.0,) * 4)
    assert w is not None and w.startswith("s.tif: the file's metadata does not give its processing baseline") \
        and f"--sensor {sensor}-pb04" in w


@pytest.mark.parametrize("sensor,dtype,msg", [
    ("naip", "uint16", r"s.tif: --sensor naip is for 8-bit scenes but the scene is uint16"),
    ("sentinel2-l2a", "uint8", r"s.tif: --sensor sentinel2-l2a is for 12-16 bit .* but the scene is uint8"),
    ("landsat-c2-l2", "uint8", r"s.tif: --sensor landsat-c2-l2 is for 12-16 bit .* but the scene is uint8"),
    ("sentinel2-l1c", "float32", r"s.tif: --sensor sentinel2-l1c is for the integer DN of .* but the scene is "
                                 r"float32, read as reflectance as it is; expected uint16: drop --sensor"),
    ("modis", "uint16", r"--sensor 'modis' is not a preset; expected one of sentinel2-l1c"),
])
def test_presets_contradicting_the_dtype_are_refused(sensor, dtype, msg):
    with pytest.raises(InputError, match=msg):
        decide("s.tif", dtype, 4, sensor=sensor)


def test_file_band_scale_offset_before_stac():
    r, _ = decide("s.tif", "uint16", 2, file_scale_offset=((1e-4, -0.1), (2e-4, -0.1)),
                  stac_scale_offset=((3.0, 0.0),) * 2)
    assert (r.source, r.scale, r.offset) == ("the file's band scale/offset", (1e-4, 2e-4), (-0.1, -0.1))


@pytest.mark.parametrize("file_so,stac_so,what", [
    (((0.0, 0.0),) * 4, None, "the file's band scale/offset (GDAL metadata) gives the chosen bands scale (0, 0, 0, 0)"),
    (((1e-4, 0.0), (1e-4, 0.0), (0.0, 0.0), (1e-4, 0.0)), None, "scale (0.0001, 0.0001, 0, 0.0001)"),
    (((float("nan"), 0.0),) * 4, None, "scale (nan, nan, nan, nan)"),
    (((-1e-4, 0.0),) * 4, None, "scale (-0.0001, -0.0001, -0.0001, -0.0001)"),
    (((1e-4, float("inf")),) * 4, None, "offset (inf, inf, inf, inf)"),
    (ONE, ((0.0, 0.0),) * 4, "the STAC item's raster:bands gives the chosen bands scale (0, 0, 0, 0)"),
], ids=["file_zero", "file_one_band_zero", "file_nan", "file_negative", "file_offset_inf", "stac_zero"])
def test_stored_calibrations_that_cannot_be_one_are_refused(file_so, stac_so, what):
    with pytest.raises(InputError) as e:
        decide("s.tif", "uint16", 4, file_scale_offset=file_so, stac_scale_offset=stac_so)
    msg = str(e.value)
    assert msg.startswith("s.tif: ") and what in msg
    assert "expected a finite, positive scale and a finite offset per band" in msg and "--reflectance-scale S" in msg


def test_options_override_a_stored_calibration_that_cannot_be_one():
    r, _ = decide("s.tif", "uint16", 4, 1e-4, file_scale_offset=((0.0, 0.0),) * 4)
    assert (r.source, r.scale) == ("--reflectance-scale", (1e-4,) * 4)
    r, _ = decide("s.tif", "uint16", 4, sensor="landsat-c2-l2", file_scale_offset=((0.0, 0.0),) * 4)
    assert r.source == "--sensor landsat-c2-l2"


@pytest.mark.parametrize("scale", [0.0, -1e-4, float("nan"), float("inf")])
def test_reflectance_scale_must_be_finite_and_positive(scale):
    with pytest.raises(InputError, match=r"s.tif: --reflectance-scale \S+ / --reflectance-offset 0: expected a "
                                         r"finite, positive scale"):
        decide("s.tif", "uint16", 4, scale)


def test_stac_raster_bands_where_the_file_has_none():
    r, _ = decide("s.tif", "uint16", 4, file_scale_offset=ONE, stac_scale_offset=((1e-4, -0.1),) * 4)
    assert (r.source, r.scale[0], r.offset[0]) == ("the STAC item's raster:bands", 1e-4, -0.1)


def test_float_scene_is_reflectance():
    r, w = decide("s.tif", "float32", 4, file_scale_offset=ONE)
    assert (r.scale, r.offset, w) == ((1.0,) * 4, (0.0,) * 4, None)


def test_uncalibrated_8bit_scene_follows_the_uint8_rule():
    r, w = decide("s.tif", "uint8", 4, file_scale_offset=ONE)
    assert r.uint8_rule and w is None


def test_uncalibrated_signed_8bit_scene_follows_the_uint8_rule_with_a_warning():
    r, w = decide("s.tif", "int8", 4)
    assert r.uint8_rule and w is not None
    assert w.startswith("s.tif: int8 scene (signed 8-bit) without a calibration; reading it by the model's rule")
    assert "--reflectance-scale S" in w


def test_uncalibrated_uint16_scene_is_assumed_and_warned():
    r, w = decide("s.tif", "uint16", 4, file_scale_offset=ONE)
    assert r.scale == (1e-4,) * 4
    assert w is not None and w.startswith("s.tif: uint16 scene without a calibration") and "x 0.0001" in w \
        and "--sensor" in w and "--reflectance-scale" in w


@pytest.mark.parametrize("tags,scale,offset", [
    ({"BOA_ADD_OFFSET": "-1000", "PROCESSING_BASELINE": "04.00"}, 1e-4, -0.1),
    ({"PROCESSING_BASELINE": "05.09"}, 1e-4, -0.1),
    ({"PROCESSING_BASELINE": "02.09"}, 1e-4, 0.0),
    ({"BOA_QUANTIFICATION_VALUE": "10000", "BOA_ADD_OFFSET": "-1000"}, 1e-4, -0.1),
    ({"QUANTIFICATION_VALUE": "1000", "RADIO_ADD_OFFSET": "-100"}, 1e-3, -0.1),
])
def test_sentinel2_metadata_calibrates_without_sensor(tags, scale, offset):
    # an L2A product of baseline 04.00 read without --sensor: its metadata, not the x 0.0001 assumption
    r, w = decide("l2a.tif", "uint16", 4, file_scale_offset=ONE, tags=tags)
    assert r.scale == pytest.approx((scale,) * 4) and r.offset == pytest.approx((offset,) * 4)
    assert w is None and r.source.startswith("the file's Sentinel-2 metadata")


def test_file_band_scale_wins_over_sentinel2_metadata():
    r, _ = decide("l2a.tif", "uint16", 4, file_scale_offset=((2e-4, 0.0),) * 4, tags={"BOA_ADD_OFFSET": "-1000"})
    assert (r.source, r.scale[0], r.offset[0]) == ("the file's band scale/offset", 2e-4, 0.0)


def test_sentinel2_metadata_does_not_calibrate_8bit_scenes():
    r, _ = decide("q.tif", "uint8", 4, file_scale_offset=ONE, tags={"PROCESSING_BASELINE": "04.00"})
    assert r.uint8_rule


def test_preset_takes_the_files_quantification_value():
    r, _ = decide("l2a.tif", "uint16", 4, sensor="sentinel2-l2a",
                  tags={"BOA_QUANTIFICATION_VALUE": "1000", "BOA_ADD_OFFSET": "-100"})
    assert r.scale == pytest.approx((1e-3,) * 4) and r.offset == pytest.approx((-0.1,) * 4)


def test_baseline_offset_unsaid():
    assert baseline_offset({"AREA_OR_POINT": "Area"}) is None


def test_model_scaling_composes_with_the_contracts_linear_rule():
    c = make_reflectance_contract(scaling={"reflectance": Scaling("linear", scale=2.0, offset=0.5)})
    s, affine = model_scaling(Reflectance("x", (1e-4,) * 4, (-0.1,) * 4), c, "s.tif")
    assert affine is None and s.method == "linear"
    assert (s.scale, s.offset) == pytest.approx((2e-4, 0.3))


def test_model_scaling_of_reflectance_itself_is_identity():
    s, affine = model_scaling(Reflectance("float", (1.0,) * 4, (0.0,) * 4), make_reflectance_contract(), "s.tif")
    assert (s.method, affine) == ("identity", None)


def test_model_scaling_of_bands_with_rules_of_their_own():
    rule = Reflectance("file", (1e-4, 2e-4), (0.0, 0.0))
    s, affine = model_scaling(rule, make_reflectance_contract(), "s.tif")
    assert s.method == "identity" and affine == ((1e-4, 2e-4), (0.0, 0.0))


def test_model_scaling_uint8_rule():
    s, _ = model_scaling(Reflectance("8-bit"), make_reflectance_contract(), "s.tif")
    assert (s.method, s.scale) == ("linear", pytest.approx(0.4 / 255))


def test_model_scaling_uint8_rule_missing():
    c = make_reflectance_contract(scaling={"reflectance": Scaling("identity")})
    with pytest.raises(InputError, match="s.tif: 8-bit scene without calibration, and the model declares no uint8"):
        model_scaling(Reflectance("8-bit"), c, "s.tif")


@pytest.mark.parametrize("scale,median", [(1.0, 1500.0), (1e-4, -20000.0)])
def test_range_check_refuses_values_far_from_reflectance(scale, median):
    rule = Reflectance("--reflectance-scale", (scale,) * 4, (0.0,) * 4)
    with pytest.raises(InputError, match=r"s.tif: with reflectance = .* the scene's median reflectance is "
                                         r".*far outside 0-1.5; expected reflectance"):
        check_range("s.tif", rule, np.full(4, median), np.full(4, median * 2))


def test_range_check_warns_of_values_scaled_twice():
    rule = Reflectance("--reflectance-scale", (1e-4,) * 4, (0.0,) * 4)
    w = check_range("s.tif", rule, np.full(4, 0.1), np.full(4, 0.3))
    assert w is not None and "--reflectance-scale 1" in w


@pytest.mark.parametrize("dtype,scale,median,fix", [
    ("uint8", 1.0, 84.0, "drop --reflectance-scale: uncalibrated 8-bit scenes follow the model's uint8 rule"),
    ("uint16", 1.0, 1200.0, "pass the scene's calibration (--reflectance-scale 0.0001 [--reflectance-offset O] for "
                            "values of reflectance x 10000, or --sensor NAME)"),
    ("float32", 10.0, 0.5, "the values are reflectance already: pass --reflectance-scale 1"),
    ("uint16", -1e-4, 8000.0, "check the offset (--reflectance-offset, or --sensor NAME) or the sign"),
])
def test_range_check_error_names_the_fix_for_the_scene(dtype, scale, median, fix):
    rule = Reflectance("--reflectance-scale", (scale,) * 4, (0.0,) * 4)
    with pytest.raises(InputError, match=r"median value .*far outside 0-1.5; expected reflectance: " + re.escape(fix)):
        check_range("s.tif", rule, np.full(4, median), np.full(4, median * 2), dtype=dtype)


@pytest.mark.parametrize("scale,offset,median,words", [
    (1e-4, 0.0, 22000.0, "most pixels brighter than the model reads (it clips at 1.5); expected reflectance 0-1.5: "
                         "pass the scene's calibration"),
    (1e-4, -0.5, 1200.0, "most pixels negative; expected reflectance 0-1.5: check the offset"),
    (1e-6, 0.0, 1200.0, "darker than any land; the scale is too small (values of reflectance x 10000: "
                        "--reflectance-scale 0.0001"),
])
def test_range_check_warns_of_most_pixels_outside_reflectance(scale, offset, median, words):
    rule = Reflectance("--reflectance-scale", (scale,) * 4, (offset,) * 4)
    w = check_range("s.tif", rule, np.full(4, median), np.full(4, median * 1.2), dtype="uint16")
    assert w is not None and w.startswith("s.tif: with reflectance = ") and words in w


def test_range_check_warns_when_even_the_darkest_pixels_are_bright():
    # Landsat-8 Level-1 DN (about 6500 for dark water) read with a Sentinel-2 preset: every pixel above 0.6
    rule = Reflectance("--sensor sentinel2-l1c", (1e-4,) * 3, (0.0,) * 3)
    w = check_range("l8.tif", rule, np.array([7400.0, 8600, 9700]), np.full(3, 18500.0),
                    np.array([6450.0, 7300, 8500]), "uint16")
    assert w is not None and "even the darkest 1 % of the pixels is above 0.65" in w and "landsat-c2-l1" in w


@pytest.mark.parametrize("source,warns", [("assumed for uint16", True), ("--reflectance-scale", False)])
def test_range_check_warns_when_the_assumed_scale_makes_most_pixels_cloud_bright(source, warns):
    # s2_amsterdam-like: reflectance x 65535 read with the x 0.0001 guess (median 0.7, nodata zeros in the sample)
    rule = Reflectance(source, (1e-4,) * 4, (0.0,) * 4)
    w = check_range("a.vrt", rule, np.array([8087.0, 7143, 6141, 12602]), np.full(4, 20000.0), np.zeros(4), "uint16")
    assert (w is not None and "as bright as cloud or snow" in w and "1.526e-05 for reflectance x 65535" in w) is warns


def test_range_check_passes_reflectance():
    rule = Reflectance("--reflectance-scale", (1e-4,) * 4, (0.0,) * 4)
    assert check_range("s.tif", rule, np.full(4, 1200.0), np.full(4, 4000.0)) is None


def test_describe():
    assert Reflectance("--sensor x", (1e-4,) * 2, (-0.1,) * 2).describe() == "DN x 0.0001 -0.1 (--sensor x)"
    assert Reflectance("f", (1.0,), (0.0,)).describe() == "the values themselves (f)"
    assert Reflectance("s", (2.0, 1.0), (0.0, 0.5)).describe() == "DN x (2, 1) + (0, 0.5) (s)"
