"""`geoseg classify` through click's runner, and every bad input of the classify issue."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geoseg.cli import main
from helpers import make_contract, make_model, paint, write_scene


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


def err_lines(r):
    return [ln for ln in (r.stderr or r.output).splitlines() if "error" in ln.lower()]


def test_classify_cli_end_to_end(tmp_path, model8, scene_u8, truth):
    r = run("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 0, r.output
    assert "1 done" in r.output
    with rasterio.open(tmp_path / "out" / "scene_u8_classes.tif") as s:
        assert (s.read(1) == truth).all()
    for suffix in ("_probs.tif", "_polygons.gpkg", "_stats.json", "_quicklook.png", "_manifest.json"):
        assert (tmp_path / "out" / f"scene_u8{suffix}").exists()
    report = json.loads((tmp_path / "out" / "run.json").read_text())
    assert report["n_done"] == 1
    # a rerun skips the finished scene; --overwrite redoes it
    r = run("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 0 and "1 skipped" in r.output
    r = run("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous", "--overwrite")
    assert r.exit_code == 0 and "1 done" in r.output


def test_options_no_polygons_bidx_stride(tmp_path, model8, truth):
    img = np.concatenate([np.zeros((1,) + paint(truth, 8).shape[1:], np.uint8), paint(truth, 8)])
    p = write_scene(tmp_path / "four.tif", img, colorinterp=False)
    r = run("classify", p, "-o", tmp_path / "o", "-m", model8, "-b", "2,3,4", "--no-polygons",
            "--stride", "4", "--scheduler", "synchronous", "-q")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "o" / "four_polygons.gpkg").exists()
    with rasterio.open(tmp_path / "o" / "four_classes.tif") as s:
        assert s.shape == (truth.shape[0] * 2, truth.shape[1] * 2)



# --- bad inputs ---------------------------------------------------------------
def _bad_scenes(tmp_path, truth):
    """name -> (path, substring expected in the one-line error)."""
    d = tmp_path / "bad"
    d.mkdir()
    good = paint(truth, 8)
    out = {}
    (d / "text.tif").write_text("this is not a raster\n")
    out["text"] = (d / "text.tif", "not a readable raster")
    (d / "empty.tif").write_bytes(b"")
    out["empty"] = (d / "empty.tif", "empty file")
    full = write_scene(d / "full.tif", np.random.default_rng(0).integers(0, 255, (3, 300, 300), dtype=np.uint8))
    data = Path(full).read_bytes()
    (d / "truncated.tif").write_bytes(data[: len(data) // 2])
    os.remove(full)
    out["truncated"] = (d / "truncated.tif", "truncated or corrupt")
    p = d / "nocrs.tif"
    with rasterio.open(p, "w", driver="GTiff", width=48, height=48, count=3, dtype="uint8",
                       transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(good[:, :48, :48])
    out["nocrs"] = (p, "no CRS")
    p = d / "localcrs.tif"
    with rasterio.open(p, "w", driver="GTiff", width=48, height=48, count=3, dtype="uint8",
                       crs=rasterio.crs.CRS.from_wkt('LOCAL_CS["site grid",UNIT["metre",1]]'),
                       transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(good[:, :48, :48])
    out["localcrs"] = (p, "the CRS 'site grid' is a local (engineering) system")
    p = d / "gcps.tif"
    gcps = [rasterio.control.GroundControlPoint(r, c, 500000 + c * 10, 6e6 - r * 10) for r, c in
            ((0, 0), (0, 47), (47, 0))]
    with rasterio.open(p, "w", driver="GTiff", width=48, height=48, count=3, dtype="uint8",
                       gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(good[:, :48, :48])
    out["gcps"] = (p, "georeferenced by 3 ground control points only")
    out["rotated"] = (write_scene(d / "rotated.tif", good, transform=Affine(10, 2, 0, 2, -10, 0)), "rotated, sheared")
    out["twoband"] = (write_scene(d / "twoband.tif", good[:2], colorinterp=False), "model expects 3")
    out["tiny"] = (write_scene(d / "tiny.tif", good[:, :5, :40]), "smaller than one")
    out["complex"] = (write_scene(d / "complex.tif", good.astype(np.complex64)), "bands are complex64 (complex values")
    from PIL import Image

    Image.fromarray(np.moveaxis(good, 0, -1)).save(d / "photo.tif", format="PNG")  # a PNG named .tif
    out["png"] = (d / "photo.tif", "the scene is a PNG image, not a GeoTIFF, and has no CRS or geotransform")
    allnd = np.zeros_like(good)
    out["allnodata"] = (write_scene(d / "allnodata.tif", allnd, nodata=0), "")  # classified as all-nodata
    return out


@pytest.mark.parametrize("case", ["text", "empty", "truncated", "nocrs", "localcrs", "gcps", "rotated", "twoband",
                                  "tiny", "complex", "png"])
def test_bad_scene_one_line_error(tmp_path, model8, truth, case):
    path, msg = _bad_scenes(tmp_path, truth)[case]
    r = run("classify", path, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 1
    lines = err_lines(r)
    assert lines and str(path) in lines[0] and msg in lines[0], r.output
    assert "Traceback" not in r.output
    leftovers = [f for f in os.listdir(tmp_path / "out") if f != "run.json"] if (tmp_path / "out").exists() else []
    assert leftovers == []


# the CLI shows this MaskWarning as a line (its showwarning replaces pytest's
# recorder, so pytest.warns cannot see it): let it be shown, and check the line
@pytest.mark.filterwarnings("always::geoseg.errors.MaskWarning")
def test_all_nodata_scene_gives_nodata_raster(tmp_path, model8, truth):
    path, _ = _bad_scenes(tmp_path, truth)["allnodata"]
    r = run("classify", path, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 0, r.output
    assert "every cell is nodata" in r.output and str(path) in r.output
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("geoseg: warning:")]
    assert len(warn) == 1 and "every cell is nodata" in warn[0] and str(path) in warn[0]
    with rasterio.open(tmp_path / "out" / "allnodata_classes.tif") as s:
        assert (s.read(1) == 255).all()


@pytest.mark.filterwarnings("always::geoseg.errors.MaskWarning")
def test_all_nodata_scene_has_no_main_class_in_the_table(tmp_path, model8, truth):
    path, _ = _bad_scenes(tmp_path, truth)["allnodata"]
    r = run("classify", path, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("allnodata "))
    assert row.split()[:2] == ["allnodata", "done"] and "%" not in row, r.stdout


def test_no_scene_found_is_one_line_and_keeps_the_earlier_run_report(tmp_path, model8):
    (tmp_path / "empty").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text("an earlier run")
    r = run("classify", tmp_path / "empty", "-o", tmp_path / "out", "-m", model8, "-q")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert err_lines(r) == [f"geoseg: error: {tmp_path / 'empty'}: no scene found; expected GeoTIFF files, folders "
                            "holding them (--pattern, --recursive), .txt lists of them or STAC item .json files: "
                            "check the path"]
    assert (tmp_path / "out" / "run.json").read_text() == "an earlier run"


def test_ctrl_c_is_one_line_saying_what_is_left(tmp_path, model8, scene_u8, monkeypatch):
    import geoseg.batch

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(geoseg.batch, "classify_many", interrupted)
    r = run("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 1 and "Aborted" not in r.output
    assert err_lines(r) == [f"geoseg: error: interrupted; {tmp_path / 'out'}: the scenes finished before are complete, "
                            "the scene in progress wrote nothing under its final names (earlier outputs stay as they "
                            "were): run the command again to finish (without --overwrite, finished scenes are skipped)"]


def test_mixed_run_goes_on_and_fails_overall(tmp_path, model8, truth, scene_u8):
    bad = _bad_scenes(tmp_path, truth)
    r = run("classify", bad["text"][0], scene_u8, bad["nocrs"][0], "-o", tmp_path / "out", "-m", model8,
            "--scheduler", "synchronous")
    assert r.exit_code == 1
    rep = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [s["status"] for s in rep["scenes"]] == ["failed", "done", "failed"]
    assert "not a readable raster" in rep["scenes"][0]["error"]
    assert (tmp_path / "out" / "scene_u8_classes.tif").exists()


def test_bad_models(tmp_path, scene_u8):
    notonnx = tmp_path / "model.onnx"
    notonnx.write_text("hello")
    nocontract = make_model(tmp_path / "nocontract.onnx", 8, contract=False)
    mismatch = make_model(tmp_path / "mismatch.onnx", 8, contract=make_contract(16))
    for m, msg in ((notonnx, "not a loadable ONNX model"), (nocontract, "no geoseg contract"),
                   (mismatch, "disagrees with the contract"), (tmp_path / "missing.onnx", "not found")):
        r = run("classify", scene_u8, "-o", tmp_path / "out", "-m", m)
        assert r.exit_code == 1
        assert msg in err_lines(r)[0] and str(m) in err_lines(r)[0]
        r = run("info", m)
        assert r.exit_code == 1 and msg in r.output


def test_unwritable_outdir(tmp_path, model8, scene_u8):
    if os.geteuid() == 0:
        # root writes anywhere: use a path below a file instead
        blocker = tmp_path / "afile"
        blocker.write_text("x")
        out = blocker / "sub"
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
    r = run("classify", scene_u8, "-o", out, "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 1
    assert "cannot create output folder" in (r.stderr or r.output) or "not writable" in (r.stderr or r.output)
    assert len(err_lines(r)) == 1, r.output  # the run stops at once: no failed scene, no run report error


def test_existing_output_without_overwrite(tmp_path, model8, scene_u8):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scene_u8_classes.tif").write_bytes(b"precious")
    r = run("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 1
    assert "output exists; pass --overwrite" in err_lines(r)[0]
    assert (tmp_path / "out" / "scene_u8_classes.tif").read_bytes() == b"precious"


def test_path_with_spaces_and_non_ascii(tmp_path, model8, truth):
    d = tmp_path / "scènes d'été"
    d.mkdir()
    p = write_scene(d / "île de Ré.tif", paint(truth, 8))
    r = run("classify", d, "-o", tmp_path / "sortie à Noël", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / "sortie à Noël" / "île de Ré_classes.tif") as s:
        assert (s.read(1) == truth).all()
    assert p




def test_workers_alone_start_a_process_cluster(tmp_path, model8, scene_u8, monkeypatch):
    import geoseg.scheduling as S

    seen = {}

    class Spy(S.Runner):
        def __init__(self, scheduler="threads", workers=None, ort_threads=None):
            seen.update(scheduler=scheduler, workers=workers)
            super().__init__(scheduler, workers, ort_threads)

    monkeypatch.setattr(S, "Runner", Spy)
    r = run("classify", scene_u8, "-o", tmp_path / "o", "-m", model8, "--workers", "2", "-q")
    assert r.exit_code == 0, r.output
    assert seen == {"scheduler": "processes", "workers": 2}
    r = run("classify", scene_u8, "-o", tmp_path / "o2", "-m", model8, "-q")
    assert r.exit_code == 0 and seen["scheduler"] == "threads"


def test_recursive_equal_names_keep_folders_and_table_shows_paths(tmp_path, model8, truth, monkeypatch):
    """a/scene.tif and b/scene.tif: outputs under a/ and b/, and the summary
    table names them by path, not by the same stem twice."""
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_scene(tmp_path / "in" / sub / "scene.tif", paint(truth, 8))
    monkeypatch.chdir(tmp_path)
    r = run("classify", "in", "--recursive", "-o", "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 0, r.output
    for sub in ("a", "b"):
        with rasterio.open(tmp_path / "out" / sub / "scene_classes.tif") as s:
            assert (s.read(1) == truth).all()
    rows = [ln.split()[0] for ln in r.output.splitlines()[1:3]]
    assert sorted(rows) == [os.path.join("in", "a", "scene.tif"), os.path.join("in", "b", "scene.tif")]


def test_bad_usage_exit_2(tmp_path, model8, scene_u8):
    r = CliRunner().invoke(main, ["classify", str(scene_u8), "-o", str(tmp_path), "-b", "x,y"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["classify", str(scene_u8), "-o", str(tmp_path), "--scheduler", "gpu"])
    assert r.exit_code == 2


def test_resample_auto_cli(tmp_path):
    t = Affine(2.5, 0, 500000.0, 0, -2.5, 6000000.0)
    truth = np.array([[0, 2], [3, 1]])
    p = write_scene(tmp_path / "fine.tif", paint(truth, 64), transform=t)  # 128 x 128 px at 2.5 m
    m = make_model(tmp_path / "m10.onnx", 8, contract=make_contract(8, training_resolution_m=10.0))
    r = run("classify", p, "-o", tmp_path / "out", "-m", m, "--resample", "auto", "--scheduler", "synchronous", "-v")
    assert r.exit_code == 0, r.output
    assert "resampled from 2.5 m to 10 m (32 source px per 8 px patch, average)" in r.stderr
    st = json.loads((tmp_path / "out" / "fine_stats.json").read_text())
    assert st["options"]["resample"] == "auto" and st["options"]["resample_factor"] == 4.0
    with rasterio.open(tmp_path / "out" / "fine_classes.tif") as s:
        assert s.transform == t @ Affine.scale(32) and (s.read(1) == np.repeat(np.repeat(truth, 2, 0), 2, 1)).all()
    r = run("classify", p, "-o", tmp_path / "out2", "-m", m, "--resample", "yes")
    assert r.exit_code == 2 and "'yes' is not one of 'off', 'auto'" in r.output


# --- reflectance models (issue 24) ---------------------------------------------
@pytest.fixture(scope="module")
def ms_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("ms") / "ms8.onnx", 8, reflectance=True)


def test_reflectance_scale_cli(tmp_path, ms_model, truth):
    from helpers import paint_reflectance

    img = paint_reflectance(truth, 8)[[3, 2, 1, 0]]  # nir, red, green, blue
    p = write_scene(tmp_path / "s2.tif", img, colorinterp=False)
    r = run("classify", p, "-o", tmp_path / "out", "-m", ms_model, "--bidx", "4,3,2,1", "--reflectance-scale",
            "0.0001", "--scheduler", "synchronous")
    assert r.exit_code == 0, r.output
    assert not err_lines(r) and "warning" not in r.stderr
    stats = json.loads((tmp_path / "out" / "s2_stats.json").read_text())
    assert stats["reflectance"]["rule"] == "DN x 0.0001 (--reflectance-scale)"
    with rasterio.open(tmp_path / "out" / "s2_classes.tif") as s:
        assert (s.read(1) == truth).all()


@pytest.mark.filterwarnings("always::geoseg.errors.ScalingWarning")
def test_uint16_assumption_is_one_warning_line(tmp_path, ms_model, truth):
    from helpers import paint_reflectance

    p = write_scene(tmp_path / "s2.tif", paint_reflectance(truth, 8), colorinterp=False,
                    descriptions=("blue", "green", "red", "nir"))
    r = run("classify", p, "-o", tmp_path / "out", "-m", ms_model, "--scheduler", "synchronous")
    assert r.exit_code == 0, r.output
    warn = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1 and warn[0].startswith("geoseg: warning: ") and "assuming reflectance = DN x 0.0001" in warn[0]


@pytest.mark.parametrize("args,msg", [
    (["--sensor", "modis"], "--sensor 'modis' is not a preset; expected one of sentinel2-l1c"),
    (["--reflectance-offset", "-0.1"], "--reflectance-offset -0.1 needs --reflectance-scale"),
    (["--sensor", "naip", "--bidx", "1,2,3,4"], "s.tif: --sensor naip is for 8-bit scenes but the scene is uint16"),
    (["--reflectance-scale", "1"], "s.tif: cannot tell which of its 4 bands are blue, green, red, nir"),
])
def test_reflectance_cli_errors_are_one_line(tmp_path, ms_model, truth, args, msg):
    from helpers import one_error_line, paint_reflectance

    p = write_scene(tmp_path / "s.tif", paint_reflectance(truth, 8), colorinterp=False)
    r = run("classify", p, "-o", tmp_path / "out", "-m", ms_model, "-q", *args)
    assert msg in one_error_line(r)


def test_sensor_with_an_rgb_model_is_one_line(tmp_path, model8, scene_u8):
    from helpers import one_error_line

    line = one_error_line(run("classify", scene_u8, "-o", tmp_path / "out", "-m", model8, "--sensor", "naip"))
    assert "takes pixel values (red, green, blue), not reflectance; --sensor applies only to reflectance models" in line


def test_help_lists_every_sensor_preset():
    from geoseg.reflectance import SENSORS

    out = " ".join(run("classify", "--help").output.split())
    assert all(name in out for name in SENSORS)
