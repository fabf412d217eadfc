"""notebooks/quickstart.ipynb: committed without outputs, and executed here
(nbclient, the notebook's own folder as working directory) on the shared
NAIP scene: every cell runs, nothing is printed on stderr (no raw
warning), and it shows the quicklook, the class areas, the evaluation
against the NDWI reference and the confusion plot.  The execution skips
where ../shared is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
SCENE = "scenes/naip_m_4709963_se_14_1_20200831.tif"


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.fixture(scope="module")
def executed(shared_dir, tmp_path_factory):
    if not (shared_dir / SCENE).exists():
        pytest.skip(f"{shared_dir / SCENE} not present")
    nbformat = pytest.importorskip("nbformat", reason="the dev extra (nbformat, nbclient, ipykernel) is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra (nbformat, nbclient, ipykernel) is not installed")
    out = tmp_path_factory.mktemp("quickstart")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    old = {k: os.environ.get(k) for k in ("GEOSEG_SHARED", "GEOSEG_NOTEBOOK_OUT")}
    os.environ["GEOSEG_SHARED"] = str(shared_dir)
    os.environ["GEOSEG_NOTEBOOK_OUT"] = str(out)
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, out


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _text(nb) -> str:
    parts = []
    for o in _outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o:
            parts.append(o.data.get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.shared
def test_every_cell_runs_and_nothing_goes_to_stderr(executed):
    nb, _ = executed
    outs = _outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    assert [o.text for o in outs if o.output_type == "stream" and o.name == "stderr"] == []


@pytest.mark.shared
def test_it_shows_quicklook_areas_evaluation_and_confusion(executed):
    nb, out = executed
    images = [o for o in _outputs(nb) if "data" in o and "image/png" in o.data]
    assert len(images) == 3  # quicklook, class areas, confusion matrix
    text = _text(nb)
    assert "done in" in text and "on provider cpu" in text
    for name in ("cloudy", "desert", "green_area", "water", "area_km2"):
        assert name in text
    assert "cells scored: overall accuracy" in text
    assert (out / "classified" / "naip_m_4709963_se_14_1_20200831_quicklook.png").exists()
    report = json.loads((out / "evaluation" / "report.json").read_text())
    assert report["labels"] == ["water", "other"] and report["n_cells"] > 0
    assert f"{report['n_cells']:,} cells scored: overall accuracy {report['overall_accuracy']:.3f}" in text
