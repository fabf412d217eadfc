import json

import pytest

from geoseg.contract import ModelContract, Scaling
from geoseg.errors import ModelError
from helpers import make_contract


def test_round_trip():
    c = make_contract(16, training_resolution_m=10.0, extra={"metrics": {"accuracy": 0.99}})
    d = ModelContract.from_json(c.to_json())
    assert d == c
    assert json.loads(c.to_json())["metrics"]["accuracy"] == 0.99


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.pop("class_names"), "lacks class_names"),
    (lambda d: d.update(class_colors=["#fff"] * 4), "not '#RRGGBB'"),
    (lambda d: d.update(class_colors=["#ffffff"] * 3), "4 class names but 3 colours"),
    (lambda d: d.update(schema="other"), "schema"),
    (lambda d: d.update(input_layout="NWHC"), "input_layout"),
    (lambda d: d.update(scaling={"uint16": {"method": "magic"}}), "scaling method"),
    (lambda d: d.update(class_names=["a", "a", "b", "c"]), "must be distinct, non-empty strings"),
    (lambda d: d.update(class_names=[1, 2, 3, 4]), "must be distinct, non-empty strings"),
    (lambda d: d.update(patch_size="64"), "patch_size '64' must be a positive whole number"),
    (lambda d: d.update(patch_size=0), "patch_size 0 must be"),
    (lambda d: d.update(training_resolution_m=-10), "training_resolution_m -10 must be a positive number"),
    (lambda d: d.update(training_resolution_m=0), "training_resolution_m 0 must be"),
    (lambda d: d.update(min_valid_fraction=2), "min_valid_fraction 2 must be a number from 0 to 1"),
])
def test_invalid_contracts(mutate, msg):
    d = make_contract().to_dict()
    mutate(d)
    with pytest.raises(ModelError, match=msg):
        ModelContract.from_dict(d, "m.onnx")


def test_scaling_parse():
    assert Scaling.parse("linear:0.0255").scale == pytest.approx(0.0255)
    assert Scaling.parse("percentile:1,99").high == 99
    assert Scaling.parse("identity").method == "identity"
    with pytest.raises(ValueError):
        Scaling.parse("gamma:2")
    # a linear rule that would turn every pixel into NaN or one value
    for bad in ("linear:inf", "linear:nan", "linear:0", "linear:0.5,nan"):
        with pytest.raises(ValueError, match=r"needs a finite, non-zero scale and a finite offset"):
            Scaling.parse(bad)
    with pytest.raises(ModelError, match="model.onnx: linear scaling needs"):
        Scaling.from_dict({"method": "linear", "scale": 0}, where="model.onnx")


@pytest.mark.parametrize("text,msg", [
    ("linear:x", "scaling 'linear:x': 'x' is not a list of numbers; expected identity, linear:SCALE[,OFFSET] or "
                 "percentile:LOW,HIGH"),
    ("percentile:2,high", "scaling 'percentile:2,high': '2,high' is not a list of numbers"),
    ("percentile:98,2", "scaling 'percentile:98,2': percentile scaling needs 0 <= low < high <= 100 "
                        "(e.g. percentile:2,98)"),
    ("percentile:-5,200", "scaling 'percentile:-5,200': percentile scaling needs 0 <= low < high <= 100"),
], ids=["linear_word", "percentile_word", "percentile_reversed", "percentile_beyond"])
def test_scaling_parse_errors_name_the_spec(text, msg):
    with pytest.raises(ValueError) as e:
        Scaling.parse(text)
    assert str(e.value).startswith(msg)


def test_percentile_targets_round_trip_and_parse():
    s = Scaling.parse("percentile:2,98:25-222,46-189,67-182")
    assert s.method == "percentile" and (s.low, s.high) == (2.0, 98.0)
    assert s.targets == ((25.0, 222.0), (46.0, 189.0), (67.0, 182.0))
    assert s.describe() == "percentile:2,98:25-222,46-189,67-182"
    d = s.to_dict()
    assert d == {"method": "percentile", "low": 2.0, "high": 98.0,
                 "targets": [[25.0, 222.0], [46.0, 189.0], [67.0, 182.0]]}
    assert Scaling.from_dict(json.loads(json.dumps(d))) == s
    # without targets nothing changes: no key, the same rule as before
    assert "targets" not in Scaling.parse("percentile:2,98").to_dict()
    assert Scaling.parse("percentile:2,98").targets is None


@pytest.mark.parametrize("bad", [
    {"method": "percentile", "targets": [[10, 5]]},
    {"method": "percentile", "targets": []},
    {"method": "percentile", "targets": [[1, 2, 3]]},
    {"method": "linear", "scale": 1, "targets": [[0, 255]]},
])
def test_percentile_targets_rejected(bad):
    with pytest.raises(ModelError, match="targets"):
        Scaling.from_dict(bad)


def test_percentile_targets_bad_spec():
    with pytest.raises(ValueError, match="OUT_LOW-OUT_HIGH"):
        Scaling.parse("percentile:2,98:25-222,46")


def test_input_kind_dn_is_not_written():
    # absent means "dn": every earlier model's contract JSON (and identity hash) is unchanged
    c = make_contract()
    assert c.input_kind == "dn" and "input_kind" not in c.to_dict()
    assert ModelContract.from_json(c.to_json()) == c


def test_input_kind_reflectance_round_trip():
    from helpers import make_reflectance_contract

    c = make_reflectance_contract()
    d = c.to_dict()
    assert d["input_kind"] == "reflectance" and d["bands"] == ["blue", "green", "red", "nir"]
    back = ModelContract.from_json(c.to_json())
    assert back == c and back.reflectance_scaling == Scaling("identity")
    assert "input_kind" not in back.extra


def test_reflectance_scaling_defaults_to_identity():
    assert make_contract(input_kind="reflectance", scaling={}).reflectance_scaling == Scaling("identity")


@pytest.mark.parametrize("mutate,msg", [
    ({"input_kind": "radiance"}, r"input_kind 'radiance' is not one of dn, reflectance"),
    ({"input_kind": "reflectance", "scaling": {"reflectance": {"method": "percentile"}}},
     r"scaling\[reflectance\] must be identity or linear"),
])
def test_invalid_input_kind(mutate, msg):
    d = {**make_contract().to_dict(), **mutate}
    with pytest.raises(ModelError, match=msg):
        ModelContract.from_dict(d, "m.onnx")
