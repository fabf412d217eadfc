"""Reflectance (multispectral) models: chips of float32 or uint16
reflectance -> geoseg train --input-kind reflectance -> geoseg export
(issue 24), on tiny synthetic chips (skipped without the train extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the train extra is not installed")
pytestmark = [
    pytest.mark.train,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

from geoseg.training import data as D  # noqa: E402
from geoseg.training.msdata import Writer  # noqa: E402

SIZE = 32
SPECTRA = {"water": (0.08, 0.06, 0.04, 0.02), "green_area": (0.05, 0.08, 0.05, 0.35),
           "desert": (0.20, 0.25, 0.32, 0.38)}


def write_chips(root, dtype="float32", n=12, seed=0) -> str:
    """A chips folder of 4-band (blue, green, red, nir) chips: ``n`` per class,
    each its own split group; float32 reflectance or uint16 reflectance x 10000."""
    from affine import Affine

    rng = np.random.default_rng(seed)
    w = Writer(str(root))
    for cls, spec in SPECTRA.items():
        for i in range(n):
            x = np.array(spec, np.float32)[:, None, None] * rng.uniform(0.8, 1.2) + rng.normal(0, 0.01, (4, SIZE, SIZE))
            x = np.clip(x, 0.001, 1).astype(np.float32)
            w.add(x, cls, "test", f"{i:02d}", f"{cls}{i}", "EPSG:32633", Affine(10, 0, 500000 + 400 * i, 0, -10, 6e6),
                  10.0)
    w.close({})
    if dtype == "uint16":  # the same chips as DN = reflectance x 10000
        import rasterio

        for r in w.rows:
            p = f"{root}/{r['chip']}"
            with rasterio.open(p) as src:
                a, prof, names = src.read(), src.profile, src.descriptions
            prof.update(dtype="uint16")
            with rasterio.open(p, "w", **prof) as dst:
                dst.write(np.round(a * 10000).astype(np.uint16))
                for b, nm in enumerate(names, 1):
                    dst.set_band_description(b, nm)
    return str(root)


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    return write_chips(tmp_path_factory.mktemp("refl") / "chips")


@pytest.fixture(scope="module")
def run(chips, tmp_path_factory):
    from geoseg.training.train import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("reflrun") / "run"
    cfg = TrainConfig(chips, str(run_dir), arch="mobilenetv2", weights=None, input_size=None, epochs=1,
                      fine_tune_epochs=0, batch_size=8, input_kind="reflectance")
    rep = train(cfg)
    return run_dir, rep


def test_extend_first_conv_maps_rgb_kernels_to_named_bands():
    from geoseg.training.models import extend_first_conv

    k = np.random.default_rng(0).normal(size=(3, 3, 3, 5)).astype(np.float32)  # red, green, blue
    z = extend_first_conv(k, ["blue", "green", "red", "nir"], "zero")
    assert z.shape == (3, 3, 4, 5)
    np.testing.assert_array_equal(z[:, :, 0], k[:, :, 2])
    np.testing.assert_array_equal(z[:, :, 2], k[:, :, 0])
    np.testing.assert_array_equal(z[:, :, 3], 0)
    m = extend_first_conv(k, ["blue", "green", "red", "nir"], "mean")
    np.testing.assert_allclose(m[:, :, 3], k.mean(axis=2))


def test_four_band_backbone_with_zero_nir_computes_the_rgb_backbone():
    """With a zero near-infrared kernel the extended backbone gives the RGB
    backbone's features for the same red, green and blue (any NIR)."""
    from pathlib import Path

    from geoseg.training.models import build_backbone, build_backbone_bands

    path = str(Path(__file__).parents[1] / "training" / "backbones" / "mobilenetv2_eurosat_e14.weights.h5")
    rgb = build_backbone("mobilenetv2", SIZE, path)
    four = build_backbone_bands("mobilenetv2", SIZE, path, ["blue", "green", "red", "nir"], "zero")
    x = np.random.default_rng(2).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    nir = np.random.default_rng(3).uniform(-1, 1, (2, SIZE, SIZE, 1)).astype(np.float32)
    x4 = np.concatenate([x[..., ::-1], nir], -1)  # blue, green, red, nir
    np.testing.assert_allclose(four.predict(x4, verbose=0), rgb.predict(x, verbose=0), atol=1e-5)


def test_reflectance_augment_keeps_shape_and_range():
    from geoseg.training.augment import ReflectanceAugment, reflectance_augment

    x = tf.constant(np.full((SIZE, SIZE, 4), 0.3, np.float32))
    y = reflectance_augment(tf, x, ReflectanceAugment()).numpy()
    assert y.shape == (SIZE, SIZE, 4) and y.min() >= 0 and y.max() <= 1.5
    off = ReflectanceAugment(p_zoom=0, brightness=(1, 1), gain=0, offset=0, p_haze=0, noise=0)
    np.testing.assert_allclose(reflectance_augment(tf, x, off).numpy(), x.numpy())


@pytest.mark.parametrize("bands, want", [
    (("blue", "green", "red", "nir"), [1.0, 0.75, 0.55, 0.35]),
    (("red", "green", "blue"), [0.55, 0.75, 1.0]),  # blue's haze in the third band
    (("blue", "green", "red", "nir", "swir16"), [1.0, 0.75, 0.55, 0.35, 0.35]),
])
def test_haze_follows_the_band_names(bands, want):
    from geoseg.training.augment import haze_weights

    assert haze_weights(bands, len(bands)) == want


def test_prepare_reads_float_chips_as_reflectance(chips, tmp_path):
    recs, x, classes = D.prepare(chips, str(tmp_path), size=None, reflectance=(None, None))
    assert x.dtype == np.float32 and x.shape == (36, SIZE, SIZE, 4)
    water = x[[r.label == "water" for r in recs]]
    assert 0.01 < float(water[..., 3].mean()) < 0.04  # NIR of water as written, not stretched to 0-255
    rep = json.loads((tmp_path / "data_report.json").read_text())["chips"]
    assert rep["scaling_key"] == "reflectance" and rep["reflectance_rule"] == {"scale": 1.0, "offset": 0.0}
    assert rep["band_names"] == ["blue", "green", "red", "nir"]


def test_uint16_chips_take_the_given_reflectance_scale(tmp_path):
    chips = write_chips(tmp_path / "u16", "uint16", n=6)
    _, x, _ = D.prepare(chips, str(tmp_path / "a"), size=None, reflectance=(1e-4, 0.0))
    assert 0.0 < float(x.min()) and float(x.max()) < 0.6


@pytest.mark.parametrize("kind, data, match", [
    ("uint16", "chips", "hold digital numbers, not reflectance; pass --reflectance-scale"),
    ("float32", "folders", "reflectance input needs a chips folder"),
])
def test_reflectance_data_errors(tmp_path, kind, data, match):
    from helpers import make_image_dataset

    src = write_chips(tmp_path / "c", kind, n=6) if data == "chips" else str(make_image_dataset(tmp_path / "f"))
    with pytest.raises(ValueError, match=match):
        D.prepare(src, str(tmp_path / "run"), size=None, reflectance=(None, None))


def test_train_writes_the_reflectance_contract_fields(run):
    run_dir, rep = run
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["input_kind"] == "reflectance" and cfg["bands"] == ["blue", "green", "red", "nir"]
    assert cfg["scaling"] == {"reflectance": {"method": "identity"},
                              "uint8": {"method": "linear", "scale": float(np.float32(0.4 / 255)), "offset": 0.0}}
    assert cfg["input_range"] == [0.0, 1.5] and cfg["training_resolution_m"] == 10.0
    assert set(rep["per_class"]) == set(SPECTRA)


def test_export_writes_a_reflectance_contract(run, tmp_path):
    from geoseg.model import load_model
    from geoseg.export.convert import export_model

    run_dir, _ = run
    out = str(tmp_path / "ms.onnx")
    res = export_model(str(run_dir / "model.keras"), out, input_dtype=None)
    assert res.parity.ok and res.parity.source.startswith("test split")
    c = load_model(out).contract
    assert c.input_kind == "reflectance" and c.bands == ("blue", "green", "red", "nir")
    assert c.input_dtype == "float32" and c.input_range == (0.0, 1.5)
    assert c.scaling["reflectance"].method == "identity"
    assert c.scaling["uint8"].method == "linear" and c.scaling["uint8"].scale == pytest.approx(0.4 / 255)
    assert c.training_resolution_m == 10.0


@pytest.mark.parametrize("kw, match", [
    ({"quantize": "int8"}, "not offered for reflectance models"),
    ({"input_dtype": "uint8"}, "takes float32 reflectance"),
])
def test_export_refuses_what_a_reflectance_model_cannot_take(run, tmp_path, kw, match):
    from geoseg.export.convert import ExportError, export_model

    run_dir, _ = run
    with pytest.raises(ExportError, match=match):
        export_model(str(run_dir / "model.keras"), str(tmp_path / "x.onnx"), **{"input_dtype": None, **kw})
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("args, match", [
    (["--reflectance-scale", "0.0001"], "only with --input-kind reflectance"),
    (["--input-kind", "reflectance", "--reflectance-offset", "-0.1"], "needs --reflectance-scale"),
    (["--input-kind", "reflectance", "--reflectance-scale", "-1"], "expected a positive scale"),
    (["--input-kind", "reflectance", "--arch", "scratch"], "does not take --arch scratch"),
    (["--index-stats"], "only with --input-kind reflectance"),
    (["--input-kind", "reflectance", "--feature-dropout", "0.5"], "only with --index-stats"),
    (["--haze", "0.15"], "only with --input-kind reflectance"),
    (["--band-jitter", "0.02"], "only with --input-kind reflectance"),
    (["--input-kind", "reflectance", "--index-stats-pool", "4"], "only with --index-stats"),
])
def test_train_cli_refuses_reflectance_options_that_cannot_work(chips, tmp_path, args, match):
    from helpers import run_cli

    r = run_cli("train", chips, "-o", str(tmp_path / "run"), *args)
    assert r.exit_code != 0 and match in (r.output + r.stderr)
    assert "Traceback" not in r.output + r.stderr


def test_spectral_indices_layer_gives_ndwi_and_ndvi():
    from geoseg.training.models import SpectralIndices

    x = np.array([[[[0.05, 0.10, 0.04, 0.02], [0.05, 0.08, 0.05, 0.40], [0.0, 0.0, 0.0, 0.0]]]], np.float32)
    out = np.asarray(SpectralIndices(1, 2, 3)(x))
    np.testing.assert_allclose(out[0, 0, :2], [[0.08 / 0.12, -0.02 / 0.06], [-0.32 / 0.48, 0.35 / 0.45]], atol=2e-2)
    np.testing.assert_array_equal(out[0, 0, 2], [0.0, 0.0])  # nodata: no division by zero


def test_spectral_indices_model_trains_and_exports_with_parity(chips, tmp_path):
    from geoseg.export.convert import export_model
    from geoseg.training.train import TrainConfig, train

    run_dir = tmp_path / "run"
    train(TrainConfig(chips, str(run_dir), arch="mobilenetv2", weights=None, input_size=None, epochs=1,
                      fine_tune_epochs=0, batch_size=8, input_kind="reflectance", spectral_indices=True))
    res = export_model(str(run_dir / "model.keras"), str(tmp_path / "i.onnx"), input_dtype=None)
    assert res.parity.ok and res.contract["bands"] == ["blue", "green", "red", "nir"]


def test_index_stats_layer_gives_index_shares_and_brightness():
    from geoseg.training.models import IndexStats

    water, land = (0.08, 0.06, 0.04, 0.02), (0.05, 0.08, 0.05, 0.35)
    x = np.empty((1, 4, 4, 4), np.float32)
    x[0, :, :1] = water  # a quarter of the patch is water
    x[0, :, 1:] = land
    out = np.asarray(IndexStats(0, 1, 2, 3)(x))[0]
    assert out.shape == (14,)
    np.testing.assert_allclose(out[1], 0.25, atol=1e-3)  # share of NDWI > 0
    np.testing.assert_allclose(out[5], 0.75, atol=1e-3)  # share of NDVI > 0.3
    np.testing.assert_allclose(out[11], 0.25 * 0.06 + 0.75 * 0.06, atol=1e-4)  # mean visible reflectance
    np.testing.assert_allclose(out[12], 0.25 * 0.02 + 0.75 * 0.35, atol=1e-4)  # mean nir
    np.testing.assert_allclose(np.asarray(IndexStats(0, 1, 2, 3)(x * 3.0))[0, :7], out[:7], atol=1e-3)  # gain-free
    pooled = np.asarray(IndexStats(0, 1, 2, 3, pool=2)(x))[0]  # 2 x 2 means: the water column mixes with land
    np.testing.assert_allclose(pooled[11:13], out[11:13], atol=1e-5)  # means unchanged
    assert pooled[1] < 0.05  # every 2 x 2 mean of the water column takes as much land: NDWI < 0 there


def test_index_stats_model_trains_and_exports_with_parity(chips, tmp_path):
    from geoseg.export.convert import export_model
    from geoseg.training.train import TrainConfig, train

    run_dir = tmp_path / "run"
    train(TrainConfig(chips, str(run_dir), arch="mobilenetv2", weights=None, input_size=None, epochs=1,
                      fine_tune_epochs=0, batch_size=8, input_kind="reflectance", spectral_indices=True,
                      index_stats=True, feature_dropout=0.5))
    assert json.loads((run_dir / "config.json").read_text())["index_stats"] is True
    res = export_model(str(run_dir / "model.keras"), str(tmp_path / "s.onnx"), input_dtype=None)
    assert res.parity.ok and res.contract["bands"] == ["blue", "green", "red", "nir"]



def test_haze_options_reach_the_reflectance_augmentation():
    from geoseg.training.augment import ReflectanceAugment
    from geoseg.training.cli import _reflectance_params

    extra = _reflectance_params(0.15, 0.5)
    aug = ReflectanceAugment(**extra["reflectance_params"])
    assert (aug.haze, aug.p_haze) == (0.15, 0.5)
    assert _reflectance_params(None, None) == {}  # the defaults stay ReflectanceAugment's


def test_band_jitter_sets_per_band_gain_and_offset():
    from geoseg.training.augment import ReflectanceAugment
    from geoseg.training.cli import _reflectance_params

    aug = ReflectanceAugment(**_reflectance_params(None, None, 0.02)["reflectance_params"])
    assert (aug.gain, aug.offset, aug.haze) == (0.02, 0.003, ReflectanceAugment().haze)
