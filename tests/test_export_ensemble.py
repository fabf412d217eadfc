"""export.ensemble: one ONNX graph averaging members that read different inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import CLASS_NAMES, make_contract, make_model

from export.ensemble import EnsembleError, build
from geoseg.model import load_model, new_session


@pytest.fixture
def members(tmp_path):
    refl = make_model(tmp_path / "refl.onnx", patch=8, layout="NCHW", reflectance=True)
    dn = make_model(tmp_path / "dn.onnx", patch=8, layout="NCHW", dtype="uint8")
    return refl, dn


def _run(path, x):
    s = new_session(str(path), 1)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_ensemble_averages_members_fed_their_own_input(members, tmp_path):
    import onnx

    refl, dn = members
    model, contract = build([refl, dn], [3.0, 1.0])
    out = tmp_path / "ens.onnx"
    onnx.save(model, out)
    x = np.random.default_rng(0).uniform(0, 0.5, (5, 4, 8, 8)).astype(np.float32)
    # the 8-bit member gets red, green, blue as the 8-bit values the reflectance member's uint8 rule maps to x
    scale = load_model(refl).contract.scaling["uint8"].scale
    x_dn = np.clip(np.round(x[:, [2, 1, 0]] / np.float32(scale)), 0, 255).astype(np.uint8)
    expected = 0.75 * _run(refl, x) + 0.25 * _run(dn, x_dn)
    np.testing.assert_allclose(_run(out, x), expected, rtol=1e-5, atol=1e-6)
    assert contract.input_kind == "reflectance" and contract.input_layout == "NCHW"
    assert [m["weight"] for m in contract.extra["ensemble"]] == [0.75, 0.25]


def test_an_eight_bit_image_reaches_the_dn_member_unchanged(members, tmp_path):
    import onnx

    refl, dn = members
    model, _ = build([refl, dn], [1e-9, 1.0])
    out = tmp_path / "ens.onnx"
    onnx.save(model, out)
    v = np.random.default_rng(1).integers(0, 256, (3, 3, 8, 8)).astype(np.uint8)  # red, green, blue values
    scale = np.float32(load_model(refl).contract.scaling["uint8"].scale)
    x = np.concatenate([v[:, ::-1].astype(np.float32) * scale, np.zeros((3, 1, 8, 8), np.float32)], axis=1)
    np.testing.assert_allclose(_run(out, x), _run(dn, v), rtol=1e-4, atol=1e-6)


def test_the_first_member_must_read_reflectance(members):
    refl, dn = members
    with pytest.raises(EnsembleError, match="first member must read reflectance"):
        build([dn, refl])


def test_members_of_other_classes_are_refused(members, tmp_path):
    refl, _ = members
    other = make_model(tmp_path / "other.onnx", patch=8, layout="NCHW", dtype="uint8",
                       contract=dataclasses.replace(make_contract(8, input_layout="NCHW", input_dtype="uint8"),
                                                    class_names=tuple(reversed(CLASS_NAMES))))
    with pytest.raises(EnsembleError, match="classes"):
        build([refl, other])
