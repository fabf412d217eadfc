"""geoseg.classmap: class names of a raster (tag, band tags, .aux.xml
categories or attribute table), the class map's entry checks and reads."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.classmap import norm_name, open_class_map
from geoseg.errors import InputError
from test_reference import MODEL, X0, Y0, class_map, write_raster


def test_class_names_from_tag_band_tags_aux_and_rat(tmp_path):
    t = Affine(4, 0, X0, 0, -4, Y0)
    a = np.zeros((2, 2), np.uint8)
    assert open_class_map(class_map(tmp_path / "tag.tif", a)).names == dict(enumerate(MODEL))
    p = write_raster(tmp_path / "band.tif", a, t)
    with rasterio.open(p, "r+") as ds:
        ds.update_tags(1, CLASS_0="lake", CLASS_2="forest")
    assert open_class_map(p).names == {0: "lake", 2: "forest"}
    p = write_raster(tmp_path / "aux.tif", a, t)
    cats = "".join(f"<Category>{n}</Category>" for n in ["", "water", "land"])
    Path(p + ".aux.xml").write_text(f'<PAMDataset><PAMRasterBand band="1"><CategoryNames>{cats}'
                                    "</CategoryNames></PAMRasterBand></PAMDataset>")
    assert open_class_map(p).names == {1: "water", 2: "land"}
    p = write_raster(tmp_path / "rat.tif", a, t)
    rat = ('<GDALRasterAttributeTable><FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>5</Usage>'
           '</FieldDefn><FieldDefn index="1"><Name>Class</Name><Type>2</Type><Usage>2</Usage></FieldDefn>'
           '<Row index="0"><F>3</F><F>urban</F></Row><Row index="1"><F>7</F><F>water</F></Row>'
           "</GDALRasterAttributeTable>")
    Path(p + ".aux.xml").write_text(f'<PAMDataset><PAMRasterBand band="1">{rat}</PAMRasterBand></PAMDataset>')
    assert open_class_map(p).names == {3: "urban", 7: "water"}
    p = write_raster(tmp_path / "none.tif", a, t)
    with pytest.raises(InputError, match="no class names"):
        open_class_map(p)


@pytest.mark.parametrize("case, msg", [
    ("float", "the class map is float32; expected an integer class raster"),
    ("nocrs", "the class map has no CRS"),
])
def test_class_map_entry_checks(tmp_path, case, msg):
    a = np.zeros((2, 2), np.float32 if case == "float" else np.uint8)
    p = write_raster(tmp_path / f"{case}.tif", a, Affine(4, 0, X0, 0, -4, Y0), names=MODEL,
                     crs=None if case == "nocrs" else "EPSG:32633")
    with pytest.raises(InputError, match=msg):
        open_class_map(p)


def test_norm_name():
    assert norm_name(" Green area ") == norm_name("green-area") == "green_area"


def test_a_failed_class_map_read_is_the_one_pixel_read_line(tmp_path, monkeypatch):
    import rasterio.io
    from rasterio.errors import RasterioError

    grid = open_class_map(class_map(tmp_path / "c.tif", np.zeros((2, 3))))

    def broken(self, *a, **k):
        raise RasterioError("Read failed. See previous exception for details.") from OSError(
            "c.tif, band 1: IReadBlock failed at X offset 0, Y offset 0")

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", broken)
    with pytest.raises(InputError, match=r"c.tif: cannot read the pixels at column 0, row 1 \(c.tif, band 1: "
                                         r"IReadBlock failed.*re-download or re-export it"):
        grid.read_rows(1, 2)
