"""geoseg.bands: the scene's bands for the model's, by --bidx, band names or colour interpretation."""

from __future__ import annotations

import pytest

from geoseg.bands import band_family, choose_bands, family_from_tags, unused_nir
from geoseg.errors import InputError

RGB = ("red", "green", "blue")
MS = ("blue", "green", "red", "nir")
S2_10 = ("B02_blue", "B03_green", "B04_red", "B05_rededge1", "B06_rededge2", "B07_rededge3", "B08_nir", "B8A",
         "B11_swir16", "B12_swir22")
S2_13 = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def grey(n: int) -> list[str]:
    return ["gray"] + ["undefined"] * (n - 1)


def test_sentinel2_descriptions_feed_the_rgb_model_its_red_green_blue():
    # the case: read by position, bands 1, 2, 3 were taken as red, green, blue
    c = choose_bands("s2.tif", RGB, 10, grey(10), S2_10)
    assert (c.bidx, c.how) == ((3, 2, 1), "band names")
    assert c.to_dict() == {"red": 3, "green": 2, "blue": 1}


def test_sentinel2_descriptions_feed_the_multispectral_model():
    assert choose_bands("s2.tif", MS, 10, grey(10), S2_10).bidx == (1, 2, 3, 7)


def test_unpadded_sentinel2_codes_with_b8a_read_as_sentinel2():
    assert choose_bands("spain.tif", MS, 13, grey(13), S2_13).bidx == (2, 3, 4, 8)


@pytest.mark.parametrize("descs,family,want", [
    (("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"), "landsat-oli", (2, 3, 4, 5)),
    (("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "ST_B6", "SR_B7"), "landsat-tm", (1, 2, 3, 4)),
    (("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"), "landsat-tm", (1, 2, 3, 4)),  # Landsat 4-7 SR
    (("B1", "B2", "B3", "B4", "B5", "B7"), "landsat-tm", (1, 2, 3, 4)),
])
def test_landsat_codes_by_their_collection_names(descs, family, want):
    assert band_family(descs) == family
    assert choose_bands("ls.tif", MS, len(descs), grey(len(descs)), descs).bidx == want


@pytest.mark.parametrize("hint", ["landsat-oli", None])
def test_landsat_4_to_7_layout_wins_over_the_landsat_8_numbering(hint):
    # a Landsat 5 SR stack (band 6, thermal, apart) with --sensor landsat-c2-l2 was read by Landsat 8/9's
    # numbering: B2-B5 (green, red, nir, swir16) fed blue, green, red, nir
    descs = ("B1", "B2", "B3", "B4", "B5", "B7")
    assert band_family(descs, hint) == "landsat-tm"
    assert choose_bands("l5.tif", MS, 6, grey(6), descs, family=hint).bidx == (1, 2, 3, 4)
    assert choose_bands("l5.tif", RGB, 6, grey(6), descs, family=hint).bidx == (3, 2, 1)


def test_codes_that_differ_between_sensors_need_a_family():
    descs = ("B2", "B3", "B4", "B8")  # Sentinel-2's nir, or Landsat 8's panchromatic band
    with pytest.raises(InputError, match=r"x.tif: cannot tell which of its 4 bands are nir \(bands named: 1=blue, "
                                         r"2=green, 3=red\).*--bidx.*or --sensor"):
        choose_bands("x.tif", MS, 4, grey(4), descs)
    assert choose_bands("x.tif", MS, 4, grey(4), descs, family="sentinel2").bidx == (1, 2, 3, 4)


def test_codes_that_sensors_share_need_no_family():
    assert choose_bands("x.tif", RGB, 4, grey(4), ("B2", "B3", "B4", "B8")).bidx == (3, 2, 1)


def test_landsat8_family_reads_b5_as_nir():
    c = choose_bands("x.tif", MS, 5, grey(5), ("B1", "B2", "B3", "B4", "B5"), family="landsat-oli")
    assert c.bidx == (2, 3, 4, 5)


def test_colour_interpretation_names_rgb_bands():
    c = choose_bands("rgb.tif", RGB, 3, ["red", "green", "blue"], [None] * 3)
    assert (c.bidx, c.how, c.warning) == ((1, 2, 3), "colour interpretation", None)


def test_colour_interpretation_nir_band_is_matched():
    c = choose_bands("n.tif", MS, 4, ["red", "green", "blue", "nir"], [None] * 4)
    assert c.bidx == (3, 2, 1, 4)


def test_unnamed_bands_feed_an_rgb_model_by_position():
    c = choose_bands("p.tif", RGB, 3, grey(3), [None] * 3)
    assert (c.bidx, c.how, c.warning) == ((1, 2, 3), "first bands", None)


def test_unnamed_bands_feed_a_blue_green_red_model_as_red_green_blue():
    c = choose_bands("p.tif", ("blue", "green", "red"), 3, grey(3), [None] * 3)
    assert (c.bidx, c.how) == ((3, 2, 1), "first bands")


def test_unnamed_extra_bands_warn_for_an_rgb_model():
    c = choose_bands("p.tif", RGB, 4, grey(4), [None] * 4)
    assert c.bidx == (1, 2, 3) and "p.tif: 4 bands without colour interpretation; using bands 1,2,3" in c.warning


def test_unnamed_bands_ask_a_multispectral_model_for_bidx():
    with pytest.raises(InputError, match=r"^p.tif: cannot tell which of its 5 bands are blue, green, red, nir "
                                         r"\(bands named: none\); the model expects blue, green, red, nir: pass "
                                         r"--bidx with 4 band numbers in that order$"):
        choose_bands("p.tif", MS, 5, grey(5), [None] * 5)


def test_unnamed_four_band_file_gets_the_naip_and_planetscope_bidx():
    with pytest.raises(InputError, match=r"^naip.tif: cannot tell which of its 4 bands .* in that order \(a NAIP "
                                         r"file holds red, green, blue, nir: --bidx 3,2,1,4; a blue, green, red, nir "
                                         r"stack such as PlanetScope's: --bidx 1,2,3,4\)$"):
        choose_bands("naip.tif", MS, 4, grey(4), [None] * 4)


def test_rgb_file_with_an_unnamed_fourth_band_suggests_the_bidx():
    with pytest.raises(InputError, match=r"naip.tif: cannot tell which of its 4 bands are nir .*\(e.g. --bidx "
                                         r"3,2,1,4 if band\(s\) 4 hold nir\)"):
        choose_bands("naip.tif", MS, 4, ["red", "green", "blue", "undefined"], [None] * 4)


@pytest.mark.parametrize("descs,want", [
    (("Blue", "Green", "Red", "Near Infrared"), (1, 2, 3, 4)),
    (("blue", "green", "red", "nir08"), (1, 2, 3, 4)),  # the narrow nir where no broad one is named
    (("blue", "green", "red", "B8A", "B08"), (1, 2, 3, 5)),  # the broad nir wins over the narrow one
    (("Red Edge 1", "blue", "green", "red", "NIR"), (2, 3, 4, 5)),  # red edge is not red
])
def test_common_names_in_descriptions(descs, want):
    assert choose_bands("d.tif", MS, len(descs), grey(len(descs)), descs).bidx == want


def test_descriptions_win_over_colour_interpretation():
    c = choose_bands("d.tif", RGB, 3, ["red", "green", "blue"], ("blue", "green", "red"))
    assert c.bidx == (3, 2, 1)


def test_alpha_band_is_not_data():
    with pytest.raises(InputError, match=r"^a.tif: raster has 3 data band\(s\) \(1=red, 2=green, 3=blue, 4=alpha\), "
                                         r"the model expects 4 \(blue, green, red, nir\); band\(s\) 4 are marked "
                                         r"alpha: if they hold data, name them in --bidx; "):
        choose_bands("a.tif", MS, 4, ["red", "green", "blue", "alpha"], [None] * 4)


def test_rgb_scene_for_the_multispectral_model_points_to_the_rgb_model():
    with pytest.raises(InputError, match=r"^rgb.tif: raster has 3 data band\(s\) \(1=red, 2=green, 3=blue\), the "
                                         r"model expects 4 \(blue, green, red, nir\); a scene without near-infrared: "
                                         r"classify it with -m default \(red, green, blue\)$"):
        choose_bands("rgb.tif", MS, 3, ["red", "green", "blue"], [None] * 3)


@pytest.mark.parametrize("descs,hint", [
    (("SR_B2", "SR_B3", "SR_B4", "SR_B5"), r"; or --sensor landsat-c2-l2 or landsat-c2-l1 for Landsat 8/9 "
                                           r"\(SR_B5/B5 is nir there, SR_B4 on Landsat 4-7\)$"),
    (("B2", "B3", "B4", "B5"), r"; or --sensor \(band codes such as B5 and B8 differ between Sentinel-2 and "
                               r"Landsat: sentinel2-\* reads B8 as nir, landsat-c2-\* B5\)$"),
])
def test_unresolved_band_codes_name_the_sensor_presets(descs, hint):
    with pytest.raises(InputError, match=r"^l.tif: cannot tell which of its 4 bands are nir .*" + hint):
        choose_bands("l.tif", MS, 4, grey(4), descs)


def test_two_bands_with_one_name_are_ambiguous():
    with pytest.raises(InputError, match=r"d.tif: bands 1, 4 are all named 'blue'.*--bidx"):
        choose_bands("d.tif", RGB, 4, grey(4), ("blue", "green", "red", "blue"))


def test_bidx_is_taken_as_given():
    c = choose_bands("s2.tif", MS, 10, grey(10), S2_10, bidx=(2, 3, 4, 8))
    assert (c.bidx, c.how) == ((2, 3, 4, 8), "--bidx")


def test_bidx_feeding_one_band_twice_warns():
    c = choose_bands("x.tif", MS, 3, ["red", "green", "blue"], [None] * 3, bidx=(3, 2, 1, 1))
    assert c.bidx == (3, 2, 1, 1)
    assert c.warning == ("x.tif: --bidx 3,2,1,1: band 1 feeds red and nir; the model expects one band of each of "
                         "blue, green, red, nir: check the band numbers")


@pytest.mark.parametrize("ci", [grey(4), ["red", "green", "blue", "alpha"]])  # GDAL marks many NIR bands alpha
def test_bidx_of_distinct_bands_does_not_warn(ci):
    assert choose_bands("x.tif", MS, 4, ci, [None] * 4, bidx=(3, 2, 1, 4)).warning is None


@pytest.mark.parametrize("bidx,msg", [
    ((1, 2, 9), r"--bidx 1,2,9 names band\(s\) \[9\] but the raster has 3"),
    ((1, 2), r"--bidx gives 2 bands, the model expects 3 \(red, green, blue\)"),
])
def test_bad_bidx(bidx, msg):
    with pytest.raises(InputError, match=msg):
        choose_bands("x.tif", RGB, 3, grey(3), [None] * 3, bidx=bidx)


@pytest.mark.parametrize("tags,family", [
    ({"SPACECRAFT_NAME": "Sentinel-2A"}, "sentinel2"),
    ({"SPACECRAFT_ID": "LANDSAT_8"}, "landsat-oli"),
    ({"SPACECRAFT_ID": "LANDSAT_7"}, "landsat-tm"),
    ({"AREA_OR_POINT": "Area"}, None),
])
def test_family_from_tags(tags, family):
    assert family_from_tags(tags) == family


@pytest.mark.parametrize("family,descs,tags,msg", [
    ("landsat-oli", ("B02", "B03", "B04", "B08"), {},
     r"^s.tif: --sensor is a Landsat preset but the file's band names B02, B03, B04, B08 say Sentinel-2; expected "
     r"a scene of the preset's sensor: pass --sensor sentinel2-l1c, sentinel2-l2a \(or their -pb04\), or "
     r"--reflectance-scale S \[--reflectance-offset O\]$"),
    ("sentinel2", ("SR_B2", "SR_B3", "SR_B4", "SR_B5"), {},
     r"^s.tif: --sensor is a Sentinel-2 preset but the file's band names SR_B2, SR_B3, SR_B4, SR_B5 say Landsat; "
     r".*pass --sensor landsat-c2-l1 or landsat-c2-l2, or --reflectance-scale"),
    ("sentinel2", (None,) * 4, {"SPACECRAFT_ID": "LANDSAT_9"},
     r"^s.tif: --sensor is a Sentinel-2 preset but the file's SPACECRAFT_ID=LANDSAT_9 say Landsat"),
])
def test_sensor_preset_contradicting_the_files_own_names_is_refused(family, descs, tags, msg):
    from geoseg.bands import check_sensor_family

    with pytest.raises(InputError, match=msg):
        check_sensor_family("s.tif", family, descs, tags)


@pytest.mark.parametrize("family,descs,tags", [
    ("sentinel2", ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"), {}),
    ("landsat-oli", ("SR_B2", "SR_B3", "SR_B4", "SR_B5"), {}),
    ("landsat-oli", ("B2", "B3", "B4", "B5"), {}),  # codes of no sensor in particular
    ("sentinel2", (None,) * 4, {"AREA_OR_POINT": "Area"}),
])
def test_sensor_preset_agreeing_with_the_file_passes(family, descs, tags):
    from geoseg.bands import check_sensor_family

    check_sensor_family("s.tif", family, descs, tags)


@pytest.mark.parametrize("want,ci,descs,expect", [
    (RGB, grey(10), S2_10, 7),  # an RGB model on a named Sentinel-2 stack: B08_nir unread
    (MS, grey(10), S2_10, None),  # the multispectral model reads it
    (RGB, ["red", "green", "blue", "undefined"], [None] * 4, None),  # nothing says band 4 is near-infrared
    (RGB, grey(4), ("red", "green", "blue", "nir08"), 4),
], ids=["rgb_on_s2", "ms_on_s2", "unnamed_fourth", "narrow_nir"])
def test_unused_nir_names_the_band_an_rgb_model_leaves(want, ci, descs, expect):
    assert unused_nir(want, ci, list(descs)) == expect


@pytest.mark.parametrize("want", [MS, RGB], ids=["multispectral", "rgb"])
def test_a_single_band_file_is_told_to_stack_the_bands(want):
    # Landsat and Sentinel-2 come one file per band: -m default or --bidx were suggested, neither can help
    with pytest.raises(InputError) as e:
        choose_bands("LC08_SR_B2.TIF", want, 1, grey(1), (None,))
    msg = str(e.value)
    assert msg.startswith(f"LC08_SR_B2.TIF: raster has 1 data band(s) (1=?), the model expects {len(want)} ")
    assert msg.endswith(f"stack the bands into one file in the model's order first (`gdalbuildvrt -separate "
                        f"stack.vrt` with the {', '.join(want)} files), or pass the product's STAC item")


@pytest.mark.parametrize("want,bidx", [(MS, (2, 4, 6, 8)), (RGB, (6, 4, 2))], ids=["multispectral", "rgb"])
def test_planetscope_8_band_names_pick_the_band_named_just_so(want, bidx):
    # SuperDove: coastal_blue and blue, green_i and green were refused as two bands of one name
    descs = ("coastal_blue", "blue", "green_i", "green", "yellow", "red", "rededge", "nir")
    assert choose_bands("ps8.tif", want, 8, grey(8), descs).bidx == bidx


def test_two_bands_both_named_just_so_stay_ambiguous():
    with pytest.raises(InputError, match=r"x.tif: bands 1, 2 are all named 'blue'"):
        choose_bands("x.tif", MS, 5, grey(5), ("blue", "blue", "green", "red", "nir"))
