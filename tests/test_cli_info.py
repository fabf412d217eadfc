"""`geoseg info MODEL` (geoseg.cli.info)."""

import json

from click.testing import CliRunner

from geoseg.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_info(model8):
    r = run("info", model8)
    assert r.exit_code == 0
    assert "green_area" in r.output and "patch size: 8 px" in r.output
    d = json.loads(run("info", model8, "--json").output)
    assert d["contract"]["class_names"][3] == "water"
