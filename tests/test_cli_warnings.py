"""Warnings on the terminal (geoseg.cli.warnings): one `geoseg: warning:`
line each, never Python's two-line `file:line: XWarning: ...` report."""

import subprocess
import sys

import numpy as np

from helpers import paint, write_rgba


# runtime bug (reported, not fixed here): geoseg.raster.read_window calls
# rasterio's read_masks on such a scene, which warns NodataShadowWarning beside
# geoseg's own MaskWarning, so the CLI prints two warning lines


def test_nodata_and_alpha_give_one_warning_line(tmp_path, model8, truth):
    rgb = paint(truth, 8)
    alpha = np.full(rgb.shape[1:], 255, np.uint8)
    alpha[:, :8] = 0
    p = write_rgba(tmp_path / "rgba_nd.tif", rgb, alpha, nodata=0)
    cmd = [sys.executable, "-m", "geoseg", "classify", p, "-o", str(tmp_path / "out"), "-m", model8,
           "--scheduler", "synchronous"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    err = out.stderr.splitlines()
    warn = [ln for ln in err if ln.startswith("geoseg: warning:")]
    assert len(warn) == 1, out.stderr
    assert "nodata value (0) and an alpha band" in warn[0] and p in warn[0]
    # no raw Python warning report: neither `file.py:12: MaskWarning: ...` nor its source line
    assert not [ln for ln in err if "Warning:" in ln or "Warning(" in ln], out.stderr
    assert not [ln for ln in err if "warnings.warn" in ln or ".py:" in ln], out.stderr
    assert "Traceback" not in out.stderr
    # -q silences it
    out = subprocess.run(cmd + ["--overwrite", "-q"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "warning" not in out.stderr.lower(), out.stderr


def test_capture_warnings_prints_one_line_once(capsys):
    import warnings

    from geoseg.cli.warnings import capture_warnings
    from geoseg.errors import MaskWarning

    with warnings.catch_warnings():  # restores warnings.showwarning afterwards
        warnings.simplefilter("always")
        capture_warnings()
        for _ in range(3):
            warnings.warn("scene.tif: no mask\nsecond line", MaskWarning, stacklevel=1)
        warnings.warn("from a library", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert err == ["geoseg: warning: scene.tif: no mask",
                   "geoseg: warning: from a library (DeprecationWarning)"]


def test_gdal_message_with_and_without_file_name_is_printed_once(capsys):
    """libtiff reports one directory problem twice, once naming the file
    (``CPLE_AppDefined in scene.tif: TIFFReadDirectory:...``) and once not."""
    import logging

    from geoseg.cli.warnings import capture_warnings

    capture_warnings()
    log = logging.getLogger("rasterio")
    msg = "TIFFReadDirectory:Sum of Photometric type-related color channels and ExtraSamples doesn't match"
    log.warning("CPLE_AppDefined in landsat_2020.tif: %s", msg)
    log.warning("CPLE_AppDefined in %s", msg)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert lines == [f"geoseg: warning: GDAL: CPLE_AppDefined in landsat_2020.tif: {msg}"]
