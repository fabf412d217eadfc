"""The model card is written from the model's contract and the run's reports."""

from __future__ import annotations

import pytest

from geoseg.contract import Scaling
from geoseg.export.model_card import _ordinal, _scaling_sentence, write_model_card
from geoseg.model import DEFAULT_MODEL, load_model


def test_ordinals():
    assert [_ordinal(v) for v in (1, 2, 3, 4, 11, 12, 13, 21, 22, 98, 2.5)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "98th", "2.5th"]


def test_scaling_sentence_names_dtypes_with_the_same_rule_together():
    class C:
        scaling = {"uint8": Scaling(), "uint16": Scaling.parse("percentile:2,98:25-222,46-189,67-182"),
                   "float": Scaling.parse("percentile:2,98:25-222,46-189,67-182"), "int16": Scaling.parse("percentile:1,99")}

    text = _scaling_sentence(C)
    assert "float and uint16 scenes are stretched per band from their 2nd-98th percentiles to the training images'" in text
    assert "`percentile:2,98:25-222,46-189,67-182`" in text
    assert "uint8 scenes are used as they are" in text
    assert "int16 scenes are stretched per band from their 1st-99th percentiles to 0-255" in text


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="no default model shipped")
def test_card_of_the_shipped_model(tmp_path):
    scene_eval = [{"model": "default.onnx", "naip": {"iou": 0.25, "precision": 0.474, "recall": None},
                   "amsterdam": {"iou": 0.403, "precision": 0.435, "recall": 0.844}}]
    out = tmp_path / "card.md"
    write_model_card(str(DEFAULT_MODEL), str(out), ["geoseg train ..."], weaknesses=["a weakness"],
                     classes_doc=["water: open water"], scene_eval=scene_eval)
    md = out.read_text()
    info = load_model(DEFAULT_MODEL)
    assert md.startswith(f"# Model card: {info.contract.name}") and info.sha256 in md
    assert "## Classes\n\n- water: open water" in md
    assert "| default.onnx | 0.250 / 0.474 / - | 0.403 / 0.435 / 0.844 |" in md  # a missing figure is "-"
    assert "## Known weaknesses\n\n- a weakness" in md
    assert md.rstrip().endswith("geoseg train ...\n```")
