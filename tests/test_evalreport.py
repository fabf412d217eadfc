"""geoseg.evalreport: the renderings of an evaluate-scene report."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

from geoseg.evalreport import draw_confusion, report_markdown, summary_lines
from geoseg.evaluation import evaluate_scene

NAMES = ("cloudy", "desert", "green_area", "water")


def _raster(path, arr, cell):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(cell, 0, 500000, 0, -cell, 6000000), nodata=255) as dst:
        dst.write(arr[None])
        dst.update_tags(CLASS_NAMES=",".join(NAMES))
    return str(path)


def _report(tmp_path):
    cm = _raster(tmp_path / "c.tif", np.array([[3, 3], [1, 2]], np.uint8), 4.0)
    ref = _raster(tmp_path / "r.tif", np.array([[3, 1], [1, 2]], np.uint8), 4.0)
    return evaluate_scene(cm, ref, tmp_path / "out").report


def test_report_markdown_holds_the_figures_and_codes(tmp_path):
    md = report_markdown(_report(tmp_path))
    assert "| overall accuracy | 0.750 |" in md and "## Confusion matrix (cells)" in md
    assert "4 left out (class map value without a class name)" in md


def test_draw_confusion_is_a_png(tmp_path):
    draw_confusion(str(tmp_path / "m.png"), _report(tmp_path))
    with Image.open(tmp_path / "m.png") as im:
        assert im.format == "PNG" and im.width > 200


def test_summary_lines(tmp_path):
    lines = summary_lines(_report(tmp_path), str(tmp_path / "out"))
    assert lines[0].startswith("c.tif vs r.tif (all classes): 4 cells")
    assert lines[1].startswith("overall accuracy 0.750")
