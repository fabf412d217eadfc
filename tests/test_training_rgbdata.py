"""The RGB reflectance chips builder (geoseg.training.rgbdata) on a tiny
4-class folder, EuroSAT folders and multispectral chips built here."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from geoseg.training import msdata as M
from geoseg.training import rgbdata as R


@pytest.fixture
def sources(tmp_path):
    sat4, eurosat, ms = tmp_path / "sat4", tmp_path / "eurosat", tmp_path / "ms"
    rows = []
    for i, (cls, split) in enumerate([("cloudy", "train"), ("water", "test"), ("desert", "val")]):
        (sat4 / cls).mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), [200, 100, 50 + i], np.uint8)).save(sat4 / cls / f"{i}.png")
        rows.append({"file": f"{cls}/{i}.png", "class": cls, "split": split, "sha1": "", "near_sha1": "",
                     "group": i, "width": 64, "height": 64, "mode": "RGB"})
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, R.SPLIT_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    for j, folder in enumerate(R.EXTRA_MAP):
        (eurosat / folder).mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), [10, 20, j], np.uint8)).save(eurosat / folder / "a.png")
    # one EuroSAT image equal to a 4-class image: left out
    Image.fromarray(np.full((64, 64, 3), [200, 100, 50], np.uint8)).save(eurosat / "River" / "dup.png")
    mw = M.Writer(str(ms))
    spec = np.array([0.1, 0.2, 0.3, 0.4], np.float32)[:, None, None]
    mw.add(np.broadcast_to(spec, (4, 64, 64)), "green_area", "eurosat_ms", "g", "g1")
    mw.add(np.broadcast_to(spec, (4, 64, 64)) * 2, "desert", "desert4", "d", "d1")
    mw.close({})
    return tmp_path


def test_chips_carry_red_green_blue_reflectance_and_the_manifest_split(sources):
    out = sources / "chips"
    R.build(str(sources / "sat4"), str(sources / "manifest.csv"), str(sources / "eurosat"), str(sources / "ms"),
            str(out))
    from geoseg.chips import read_chip

    with open(out / "chips.csv", newline="") as f:
        chips = {r["chip"]: r for r in csv.DictReader(f)}
    with open(out / "split.csv", newline="") as f:
        split = {r["file"]: r["split"] for r in csv.DictReader(f)}
    assert set(chips) == set(split)
    by_source: dict[str, list[str]] = {}
    for k, r in chips.items():
        by_source.setdefault(r["scene"], []).append(k)
    # 3 4-class images, one EuroSAT image per folder (the duplicate left out), the MS chip but not its desert4 one
    assert (len(by_source["sat4"]), len(by_source["eurosat_rgb"]), len(by_source["ms"])) == (3, 8, 1)
    assert sorted(split[k] for k in by_source["sat4"]) == ["test", "train", "val"]
    assert all(split[k] == "train" for k in by_source["eurosat_rgb"])
    water = next(k for k in by_source["sat4"] if chips[k]["class"] == "water")
    x, names = read_chip(str(out / water))
    assert names == ["blue", "green", "red"] and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], np.array([51, 100, 200]) * M.EUROSAT_RGB_SCALE, rtol=1e-6)
    assert split[water] == "test"
    y, _ = read_chip(str(out / by_source["ms"][0]))
    np.testing.assert_allclose(y[:, 0, 0], [0.1, 0.2, 0.3], rtol=1e-6)  # blue, green, red of blue, green, red, nir


def test_sat4_repeat_copies_training_images_only(sources):
    out = sources / "chips"
    R.build(str(sources / "sat4"), str(sources / "manifest.csv"), str(sources / "eurosat"), str(sources / "ms"),
            str(out), sat4_repeat=3)
    with open(out / "split.csv", newline="") as f:
        sat4 = [r["split"] for r in csv.DictReader(f) if "/sat4_" in r["file"]]
    assert sorted(sat4) == ["test", "train", "train", "train", "val"]


def test_ms_sources_limits_the_multispectral_chips(sources):
    out = sources / "chips"
    R.build(str(sources / "sat4"), str(sources / "manifest.csv"), str(sources / "eurosat"), str(sources / "ms"),
            str(out), ms_sources=("cloud38",))
    with open(out / "chips.csv", newline="") as f:
        assert not [r for r in csv.DictReader(f) if r["scene"] == "ms"]
