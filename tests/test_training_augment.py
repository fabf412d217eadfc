"""Sensor augmentation (geoseg.training.augment) and the extra training data
(geoseg.training.data.load_extra / parse_extra_map)."""

import os

import numpy as np
import pytest
from PIL import Image

from geoseg.training import data as D
from geoseg.training.augment import NONE, SensorAugment, zoom_size


def test_zoom_size_bounds():
    assert zoom_size(64, 1.0) == 64
    assert zoom_size(64, 0.5) == 32
    assert zoom_size(64, 2.0) == 127  # one reflection gives at most 2 * size - 1
    assert zoom_size(64, 0.01) == 8
    assert zoom_size(64, 1.5) == 96


def test_presets():
    d = SensorAugment().to_dict()
    assert d["zoom"] == (0.5, 2.0) and 0 < d["p_zoom"] <= 1
    assert NONE.p_zoom == 0 and NONE.gain == 0 and NONE.noise == 0 and NONE.p_stretch == 0


def test_parse_extra_map():
    assert D.parse_extra_map("eurosat") == D.EUROSAT_EXTRA
    assert D.EUROSAT_EXTRA == {"AnnualCrop": "green_area", "HerbaceousVegetation": "green_area",
                               "Pasture": "green_area", "PermanentCrop": "green_area", "River": "water"}
    assert D.parse_extra_map(" River=water, Pasture=green_area ,") == {"River": "water", "Pasture": "green_area"}
    with pytest.raises(ValueError, match="FOLDER=CLASS"):
        D.parse_extra_map("River")


def _folder(root, name, colours):
    os.makedirs(root / name)
    for i, c in enumerate(colours):
        a = np.zeros((64, 64, 3), np.uint8)
        a[..., :] = c
        a[i % 64, :, 0] = 255  # some structure, so images differ
        Image.fromarray(a).save(root / name / f"{name}_{i}.png")


def test_load_extra_maps_limits_and_excludes(tmp_path):
    extra = tmp_path / "eurosat"
    _folder(extra, "River", [(10, 20, 30 + 20 * i) for i in range(5)])
    _folder(extra, "Pasture", [(40, 90 + 20 * i, 40) for i in range(4)])
    _folder(extra, "Highway", [(99, 99, 99)])
    # the prepared data set holds River_1 (say, a test image): it must be left out
    im, _ = D.decode_rgb(str(extra / "River" / "River_1.png"))
    sha, near = D.pixel_hashes(im)
    recs = [D.Record("water/x.png", "water", sha, near, 64, 64, "RGB", 0, "test")]
    classes = ["cloudy", "desert", "green_area", "water"]
    x, y, doc = D.load_extra(str(extra), {"River": "water", "Pasture": "green_area"}, classes, recs, 32)
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.uint8
    assert sorted(y.tolist()) == [2, 2, 2, 2, 3, 3, 3, 3]
    assert doc["excluded"] == 1
    assert doc["per_folder"] == {"Pasture": 4, "River": 4}
    assert doc["per_class"] == {"green_area": 4, "water": 4}
    x2, y2, doc2 = D.load_extra(str(extra), {"River": "water"}, classes, [], 64, limit_per_folder=2)
    assert x2.shape == (2, 64, 64, 3) and doc2["per_folder"] == {"River": 2}
    with pytest.raises(ValueError, match="not in the data set's classes"):
        D.load_extra(str(extra), {"River": "lake"}, classes, [], 64)
    with pytest.raises(ValueError, match="no folder"):
        D.load_extra(str(extra), {"Forest": "green_area"}, classes, [], 64)


@pytest.mark.train
def test_sensor_augment_shapes_ranges_and_identity():
    tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
    from geoseg.training.augment import colour, rescale, sensor_augment, stretch

    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((64, 64, 3)), tf.float32)
    # everything off: the image comes back as it is
    np.testing.assert_array_equal(sensor_augment(tf, x, NONE).numpy(), x.numpy())
    tf.random.set_seed(0)
    for _ in range(20):
        y = sensor_augment(tf, x, SensorAugment(p_stretch=0.5)).numpy()
        assert y.shape == (64, 64, 3) and y.dtype == np.float32
        assert y.min() >= 0.0 and y.max() <= 1.0
    # rescale keeps the size; zoom 1 is the identity; zooming out a constant image keeps it constant
    np.testing.assert_array_equal(rescale(tf, x, tf.constant(1.0)).numpy(), x.numpy())
    c = tf.fill((64, 64, 3), 0.25)
    for z in (0.5, 0.7, 1.5, 1.99):
        out = rescale(tf, c, tf.constant(z)).numpy()
        assert out.shape == (64, 64, 3)
        np.testing.assert_allclose(out, 0.25, atol=1e-6)
    # a zoom-in by 2 of a checkerboard of 1 px doubles its period: one 2x2 block of equal values
    board = tf.constant((np.indices((64, 64)).sum(0) % 2)[..., None].repeat(3, -1), tf.float32)
    zoomed = rescale(tf, board, tf.constant(2.0)).numpy()  # zoom-out by 2: averages to grey
    assert abs(float(zoomed[8:-8, 8:-8].mean()) - 0.5) < 0.02 and float(zoomed[8:-8, 8:-8].std()) < 0.05
    # the stretch is (x - pivot) * contrast + target, clipped
    s = stretch(tf, tf.constant([[[0.1, 0.3, 0.9]]]), 2.0, 0.3, 0.4).numpy()
    np.testing.assert_allclose(s, [[[0.0, 0.4, 1.0]]], atol=1e-6)
    # colour with only a gain: a pure per-band multiplication
    tf.random.set_seed(1)
    g = colour(tf, tf.fill((4, 4, 3), 0.5), SensorAugment(gain=0.2, brightness=0.0, offset=0.0, gamma=(1.0, 1.0),
                                                          saturation=(1.0, 1.0), hue=0.0, p_haze=0.0,
                                                          p_blur=0.0, noise=0.0)).numpy()
    assert np.all(g >= 0.4 - 1e-6) and np.all(g <= 0.6 + 1e-6)
    assert np.allclose(g, g[0, 0])  # one gain per band, the same over the image


def test_scale_only_preset():
    from geoseg.training.augment import SCALE_ONLY

    d = SCALE_ONLY.to_dict()
    assert d["zoom"] == (0.5, 2.0) and d["p_zoom"] == 0.5
    assert all(d[k] == 0 for k in ("gain", "brightness", "offset", "hue", "p_haze", "p_blur", "noise", "p_stretch"))
    assert d["gamma"] == (1.0, 1.0) and d["saturation"] == (1.0, 1.0)


def test_cli_train_flags():
    from click.testing import CliRunner

    from geoseg.training.cli import train_cmd

    out = CliRunner().invoke(train_cmd, ["--help"]).output
    for flag in ("--scale-augment", "--sensor-augment", "--stretch-augment", "--extra-data", "--extra-map",
                 "--extra-limit", "--mix-cells"):
        assert flag in out


@pytest.mark.train
def test_water_colour_keeps_texture_and_applies_to_water_only():
    tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
    from geoseg.training.augment import WATER_COLOURS, sensor_augment, water_colour

    rng = np.random.default_rng(0)
    x = tf.constant(0.3 + 0.05 * rng.standard_normal((64, 64, 3)), tf.float32)
    tf.random.set_seed(0)
    for _ in range(10):
        y = water_colour(tf, x).numpy()
        # the mean is one of the palette's colours, jittered (x 0.8-1.2, +-0.03)
        m = y.mean(axis=(0, 1))
        assert any(np.all(m >= 0.8 * np.array(c) - 0.035) and np.all(m <= 1.2 * np.array(c) + 0.035)
                   for c in WATER_COLOURS)
        # the texture is the image's own, scaled by 0.6-1.4
        dev_x, dev_y = x.numpy() - x.numpy().mean(axis=(0, 1)), y - m
        ratio = dev_y.std() / dev_x.std()
        assert 0.55 < ratio < 1.45 and np.corrcoef(dev_x.ravel(), dev_y.ravel())[0, 1] > 0.95
    # only the water label, only with the probability
    a = SensorAugment(zoom=(1.0, 1.0), p_zoom=0.0, gain=0.0, brightness=0.0, offset=0.0, gamma=(1.0, 1.0),
                      saturation=(1.0, 1.0), hue=0.0, p_haze=0.0, haze=0.0, p_blur=0.0, noise=0.0,
                      p_water_colour=1.0, water_class=3)
    np.testing.assert_array_equal(sensor_augment(tf, x, a, tf.constant(2)).numpy(), x.numpy())
    assert not np.array_equal(sensor_augment(tf, x, a, tf.constant(3)).numpy(), x.numpy())


@pytest.mark.train
def test_mix_cells_minority_share_and_label_kept():
    tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
    from geoseg.training.augment import mix_cells, mix_mask

    tf.random.set_seed(0)
    share = tf.constant(np.linspace(0.05, 0.45, 32), tf.float32)
    m = mix_mask(tf, 32, 64, share).numpy()
    assert m.shape == (32, 64, 64, 1) and set(np.unique(m)) <= {0.0, 1.0}
    # each mask covers the share it was asked for (ties at the cut may add a few pixels)
    np.testing.assert_allclose(m.mean(axis=(1, 2, 3)), share.numpy(), atol=0.01)
    # every image keeps its label and at least 55 % of its own pixels; the rest is the next image's
    x = tf.constant(np.arange(8, dtype=np.float32)[:, None, None, None] * np.ones((8, 16, 16, 3), np.float32))
    y = tf.range(8)
    xo, yo = mix_cells(tf, x, y, 1.0)
    xo = xo.numpy()
    np.testing.assert_array_equal(yo.numpy(), np.arange(8))
    for i in range(8):
        own = (xo[i] == i).mean()
        assert 0.55 <= own <= 0.95 + 1e-6 and np.all((xo[i] == i) | (xo[i] == (i - 1) % 8))
    # probability 0: the batch as it was
    np.testing.assert_array_equal(mix_cells(tf, x, y, 0.0)[0].numpy(), x.numpy())
    # a skipped class neither takes a part (image 3) nor gives one (image 4 would take image 3's)
    xs = mix_cells(tf, x, y, 1.0, skip=(3,))[0].numpy()
    np.testing.assert_array_equal(xs[3:5], x.numpy()[3:5])
    assert all((xs[i] != i).any() for i in (0, 1, 2, 5, 6, 7))


def test_target_stretch_turns_bright_cloud_into_the_targets_top():
    tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
    from geoseg.training.augment import TARGETS, target_stretch

    x = np.full((64, 64, 3), 0.3, np.float32)
    x[:40] = 0.95  # a mostly-cloud image: its 98th percentile is the cloud
    for _ in range(5):
        y = target_stretch(tf, tf.constant(x)).numpy() * 255
        top = np.array([t[1] for t in TARGETS])
        assert (y[:40] >= top - 1e-3).all() and (y <= 255).all() and (y >= 0).all()
        assert y[0, 0, 0] > y[0, 0, 2]  # red's target top (222) above blue's (182): the pinkish grey
