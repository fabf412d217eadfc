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
