"""The multispectral training chips builder (geoseg.training.msdata) on tiny
synthetic chips; the ../shared build itself is `make multispectral-model`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from geoseg.training import msdata as M

WATER = np.array([0.08, 0.06, 0.04, 0.02], np.float32)
LAND = np.array([0.05, 0.08, 0.05, 0.35], np.float32)


def flat(spec, size=M.SIZE):
    return np.broadcast_to(spec[:, None, None], (4, size, size)).astype(np.float32).copy()


@pytest.mark.parametrize("x, want", [(flat(WATER), "water"), (flat(LAND), "green_area"),
                                     (flat(np.array([0.2, 0.25, 0.3, 0.33], np.float32)), None)])
def test_majority_label_by_ndwi_then_ndvi(x, want):
    assert M.majority_label(x) == want


@pytest.mark.parametrize("x, cloud, want", [(flat(LAND), 0.5, "cloudy"), (flat(WATER), 0.0, "water"),
                                            (flat(WATER), 0.2, None), (flat(LAND), 0.0, None)])
def test_index_label_takes_cloud_then_clear_water_only(x, cloud, want):
    assert M.tile_label(x, cloud, ("water",)) == want


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_mix_mask_covers_the_share(share):
    m = M.mix_mask_np(np.random.default_rng(0), 64, share)
    assert m.dtype == bool and abs(m.mean() - share) < 0.02


def test_writer_and_mixtures_label_cells_by_their_majority(tmp_path):
    w = M.Writer(str(tmp_path))
    for i in range(3):
        w.add(flat(WATER), "water", "t", f"w{i}", f"gw{i}")
        w.add(flat(LAND), "green_area", "t", f"l{i}", f"gl{i}")
    doc: dict = {}
    M.add_water_mixtures(w, doc, WATER[None], n=40, seed=0, colour_jitter=True, brightness_max=3.0)
    w.close(doc)
    with open(tmp_path / "chips.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 46 and doc["mixtures"]["counts"]["water"] + doc["mixtures"]["counts"]["land"] == 40
    from geoseg.chips import read_chip

    for r in rows:
        if r["scene"] != "mixture":
            continue
        x, names = read_chip(str(tmp_path / r["chip"]))
        assert names == ["blue", "green", "red", "nir"] and x.dtype == np.float32
        water_share = (x[3] < 0.2).mean()  # the land part is the only one with a bright NIR
        assert (r["class"] == "water") == (water_share >= 0.5), (r, water_share)
        assert r["group"].startswith("gw")  # in its water chip's split group
    assert json.loads((tmp_path / "sources.json").read_text())["counts"]["mixture/water"] > 0


@pytest.mark.parametrize("water_share, want", [(0.0, {"water": 0, "land": 30}), (1.0, {"water": 30, "land": 0})])
def test_mixture_water_share_sets_how_many_cells_are_mostly_water(tmp_path, water_share, want):
    w = M.Writer(str(tmp_path))
    w.add(flat(WATER), "water", "t", "w", "gw")
    w.add(flat(LAND), "green_area", "t", "l", "gl")
    doc: dict = {}
    M.add_water_mixtures(w, doc, WATER[None], n=30, seed=0, water_share=water_share)
    assert doc["mixtures"]["counts"] == want


def test_cloud_mixtures_are_cloudy_where_the_cloud_is_opaque_enough(tmp_path):
    cloud = np.array([0.45, 0.44, 0.43, 0.42], np.float32)
    w = M.Writer(str(tmp_path))
    w.add(flat(cloud), "cloudy", "cloud38", "c0", "gc0")
    for i in range(3):
        w.add(flat(LAND), "green_area", "t", f"l{i}", f"gl{i}")
    doc: dict = {}
    M.add_cloud_mixtures(w, doc, n=30, seed=0)
    mixed = [r for r in w.rows if r["scene"] == "cloudmix"]
    assert len(mixed) == 30 and sum(doc["cloud_mixtures"]["counts"].values()) == 30
    from geoseg.chips import read_chip

    for r in mixed:
        x = read_chip(str(tmp_path / r["chip"]))[0]
        a = float((x[0, 0, 0] - LAND[0]) / (cloud[0] - LAND[0]))  # opacity back from the blue band
        assert 0.2 - 1e-4 <= a <= 0.8 + 1e-4
        assert (r["class"] == "cloudy") == (a >= 0.5), (r, a)
        assert r["group"].startswith("gl")  # in its ground chip's split group
