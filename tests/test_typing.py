"""The package type-checks: mypy over ``geoseg/`` (configured in
pyproject.toml's ``[tool.mypy]``) reports no error.

geoseg ships ``py.typed``, so its annotations are part of its interface.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed (it comes with the dev extra)")
def test_mypy_reports_no_errors():
    # no arguments: files, exclusions and options come from pyproject.toml
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"mypy exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
