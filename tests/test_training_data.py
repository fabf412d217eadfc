"""Preparing image datasets (geoseg.training.data) on a tiny synthetic dataset
(skipped without the train extra)."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = pytest.mark.train

from geoseg.training import data as D  # noqa: E402
from helpers import make_image_dataset  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_image_dataset(tmp_path_factory.mktemp("data"))


def test_cmyk_decodes_to_right_colours(dataset):
    im, mode = D.decode_rgb(str(dataset / "desert" / "cmyk.jpg"))
    assert mode == "CMYK"
    with Image.open(dataset / "desert" / "desert_0.jpg") as ref_im:
        ref = np.asarray(ref_im, float).mean((0, 1))
    got = np.asarray(im, float).mean((0, 1))
    assert np.abs(got - ref).max() < 12  # not inverted, not a colour cast


def test_prepare_rejects_and_keeps_duplicates_together(dataset, tmp_path):
    recs, x, classes = D.prepare(str(dataset), str(tmp_path), size=32, seed=1)
    assert classes == ["desert", "green_area", "water"]
    assert x.shape == (len(recs), 32, 32, 3) and x.dtype == np.uint8
    with open(tmp_path / "rejected.csv", newline="") as f:
        rejected = {r["file"]: r["reason"] for r in csv.DictReader(f)}
    assert "cannot decode" in rejected[os.path.join("water", "corrupt.jpg")]
    assert "not an image extension" in rejected[os.path.join("water", "notes.txt")]
    assert os.path.join("green_area", "png_named.jpg") in rejected
    by_file = {r.file: r for r in recs}
    for a, b in (("water_0.jpg", "water_0 (1).jpg"), ("water_1.jpg", "water_1_again.jpg")):
        ra, rb = by_file[os.path.join("water", a)], by_file[os.path.join("water", b)]
        assert ra.group == rb.group and ra.split == rb.split
    rep = json.loads((tmp_path / "data_report.json").read_text())
    assert rep["groups_split_across_sets"] == 0 and rep["duplicate_groups"] >= 2
    assert {r.split for r in recs} == {"train", "val", "test"}
    # the same seed gives the same split
    recs2, _, _ = D.prepare(str(dataset), str(tmp_path / "again"), size=32, seed=1)
    assert [r.split for r in recs] == [r.split for r in recs2]


def test_sixteen_bit_images_are_rejected_with_the_reason(dataset, tmp_path):
    # Pillow's convert("RGB") turns a 16-bit grey PNG all white: never train on that
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    grey16 = (np.arange(64 * 64).reshape(64, 64) * 15).astype(np.uint16)
    Image.fromarray(grey16).save(data / "water" / "deep.png")
    recs, _, _ = D.prepare(str(data), str(tmp_path / "run"), size=32, seed=1)
    assert os.path.join("water", "deep.png") not in {r.file for r in recs}
    with open(tmp_path / "run" / "rejected.csv", newline="") as f:
        why = {r["file"]: r["reason"] for r in csv.DictReader(f)}[os.path.join("water", "deep.png")]
    assert why.startswith("I;16 image (values beyond 8 bits)") and "geoseg chips" in why
    # a class left with no usable image is refused, naming it and the first reason; no run folder is made
    for f in (data / "water").iterdir():
        f.unlink()
    Image.fromarray(grey16).save(data / "water" / "deep.png")
    with pytest.raises(ValueError, match=r"the class folder 'water' has no usable image \(1 rejected, e.g. "
                                         r"water/deep.png: I;16 image"):
        D.prepare(str(data), str(tmp_path / "run2"), size=32, seed=1)
    assert not (tmp_path / "run2").exists()


def test_split_from_a_manifest_of_other_images_is_refused(dataset, tmp_path):
    import shutil

    D.prepare(str(dataset), str(tmp_path / "run"), size=32, seed=1)
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(other / "water" / "water_2.jpg")  # same name, new pixels
    with pytest.raises(ValueError, match=r"manifest.csv: 1 image\(s\) differ from the ones this manifest split, "
                                         r"e.g. water.water_2.jpg"):
        D.prepare(str(other), str(tmp_path / "run2"), size=32, split_from=str(tmp_path / "run" / "manifest.csv"))


def test_report_plots_with_class_names_the_font_lacks(tmp_path):
    # matplotlib warns per glyph its font lacks (CJK class names): a raw warning
    # on the user's terminal; the test configuration turns warnings into errors
    from geoseg.training.evaluate import evaluate_arrays

    class Fixed:  # a "model" whose predictions are known
        def predict(self, x, batch_size=None, verbose=0):
            return np.tile([[0.9, 0.1]], (len(x), 1)).astype(np.float32)

    x = np.zeros((4, 8, 8, 3), np.uint8)
    rep = evaluate_arrays(Fixed(), x, np.array([0, 0, 1, 1]), None, ["\u7eff\u5730", "water"], str(tmp_path))
    assert rep["accuracy"] == 0.5 and (tmp_path / "confusion.png").exists() and (tmp_path / "errors.png").exists()


def test_resize_is_antialiased():
    # a 1-px checkerboard has no landscape content: down-sampled it must turn grey
    a = (np.indices((128, 128)).sum(0) % 2 * 255).astype(np.uint8)
    im = Image.fromarray(np.stack([a] * 3, -1))
    out = D.resize_rgb(im, 32)
    assert out.std() < 10 and abs(out.mean() - 127.5) < 10
