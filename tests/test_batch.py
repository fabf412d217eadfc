"""Folders, reruns, interruptions, lost workers, and identical outputs (batch issue)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.batch import classify_many, find_inputs
from geoseg.errors import InputError
from geoseg.scheduling import Runner
from geoseg.pipeline import ClassifyOptions
from helpers import paint, write_scene

STABLE = ("_classes.tif", "_probs.tif", "_polygons.gpkg", "_quicklook.png", "_classes.qml", "_classes.tif.aux.xml")


def digests(folder) -> dict:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            if f.endswith(STABLE):
                p = os.path.join(root, f)
                out[os.path.relpath(p, folder)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


@pytest.fixture
def scenes(tmp_path):
    d = tmp_path / "scenes"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(3):
        write_scene(d / f"s{i}.tif", paint(rng.integers(0, 4, (12, 10)), 8, seed=i), tiled=True, block=16)
    write_scene(d / "sub" / "s0.tif", paint(rng.integers(0, 4, (5, 5)), 8))
    (d / "notes.txt").write_text("")  # not matched in folders
    return d


def test_find_inputs_folders_lists_and_recursion(scenes, tmp_path):
    found = find_inputs([str(scenes)], "out")
    assert [os.path.basename(t.path) for t in found] == ["s0.tif", "s1.tif", "s2.tif"]
    rec = find_inputs([str(scenes)], "out", recursive=True)
    assert len(rec) == 4
    assert {t.outdir for t in rec} == {"out", os.path.join("out", "sub")}
    lst = tmp_path / "list.txt"
    lst.write_text(f"# scenes\n{scenes / 's1.tif'}\nscenes/s2.tif\n")
    assert [os.path.basename(t.path) for t in find_inputs([str(lst)], "out")] == ["s1.tif", "s2.tif"]
    assert len(find_inputs([str(scenes)], "out", pattern="s1*")) == 1
    with pytest.raises(InputError, match="would overwrite"):
        find_inputs([str(scenes / "s0.tif"), str(scenes / "sub" / "s0.tif")], "out")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_scene_lists_saved_by_windows_editors(scenes, tmp_path, encoding):
    lst = tmp_path / "list.txt"
    lst.write_bytes("scenes/s1.tif\r\n# a comment\r\nscenes/s2.tif\r\n".encode(encoding))
    found = find_inputs([str(lst)], "out")
    assert [t.path for t in found] == [str(scenes / "s1.tif"), str(scenes / "s2.tif")]


def test_a_missing_scene_of_a_list_names_the_list(scenes, tmp_path, model8):
    lst = tmp_path / "list.txt"
    lst.write_text("scenes/s1.tif\nscenes/gone.tif\n")
    with Runner("synchronous") as r:
        run = classify_many([str(lst)], tmp_path / "o", model8, ClassifyOptions(polygons=False), runner=r)
    assert [s.status for s in run.scenes] == ["done", "failed"]
    assert run.scenes[1].error.endswith(f"gone.tif: file not found; check the path of the scene (listed in {lst})")


def test_scene_list_in_another_encoding_is_one_clear_error(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes("sc\u00e8ne.tif\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"list.txt: the scene list is not UTF-8 text \(byte 2: .*save it as UTF-8"):
        find_inputs([str(lst)], "out")


def test_rerun_skips_and_redoes_changed(scenes, tmp_path, model8):
    out = tmp_path / "out"
    with Runner("synchronous") as r:
        run1 = classify_many([str(scenes)], out, model8, runner=r)
        assert [s.status for s in run1.scenes] == ["done"] * 3
        run2 = classify_many([str(scenes)], out, model8, runner=r)
        assert [s.status for s in run2.scenes] == ["skipped"] * 3
        # a changed source, a damaged output and other options are redone
        os.utime(scenes / "s0.tif", ns=(time.time_ns(), time.time_ns() + 10**9))
        with open(out / "s1_classes.tif", "r+b") as f:
            f.seek(500)
            f.write(b"\xde\xad\xbe\xef")
        run3 = classify_many([str(scenes)], out, model8, runner=r)
        assert [s.status for s in run3.scenes] == ["done", "done", "skipped"]
        run4 = classify_many([str(scenes)], out, model8, ClassifyOptions(stride=4), runner=r)
        assert [s.status for s in run4.scenes] == ["done"] * 3
    m = json.loads((out / "s2_manifest.json").read_text())
    assert m["model_sha256"] and m["options"]["stride"] == 4 and m["outputs"]["classes"]["sha256"]


def test_byte_identical_across_workers_and_blocks(scenes, tmp_path, model8):
    ref = None
    for sched, workers, block in (("synchronous", 1, None), ("processes", 1, 2), ("processes", 2, 5),
                                  ("processes", 4, 3), ("threads", 2, 1)):
        out = tmp_path / f"{sched}{workers}-{block}"
        with Runner(sched, workers) as r:
            run = classify_many([str(scenes)], out, model8, ClassifyOptions(block_cells=block, stride=4), runner=r)
        assert run.ok
        d = digests(out)
        assert len(d) == 3 * len(STABLE)
        if ref is None:
            ref = d
        assert d == ref, (sched, workers, block)


def test_scene_tasks_write_the_same_bytes_on_the_workers(scenes, tmp_path, model8):
    """--scene-tasks: each scene runs whole on a worker process, which writes
    its outputs; the caller gets small results only, and the bytes are those
    of the default mode."""
    # the reference in a fresh interpreter, as the workers are: a process that
    # imported TensorFlow (the training tests' modules) writes GeoPackages
    # without an R-tree (TensorFlow's SQLite lacks the module)
    code = ("import sys; from geoseg.batch import classify_many; from geoseg.pipeline import ClassifyOptions\n"
            "run = classify_many([sys.argv[1]], sys.argv[2], sys.argv[3], ClassifyOptions(stride=4), "
            "scheduler='synchronous', progress=False)\nsys.exit(0 if run.ok else 1)")
    subprocess.run([sys.executable, "-c", code, str(scenes), str(tmp_path / "ref"), model8], check=True, timeout=600)
    with Runner("synchronous") as r:  # the same run's statistics, for the results' check below
        ref = classify_many([str(scenes)], tmp_path / "ref-stats", model8, ClassifyOptions(stride=4), runner=r)
    with Runner("processes", 2) as r:
        run = classify_many([str(scenes)], tmp_path / "scenes", model8, ClassifyOptions(stride=4), runner=r,
                            scene_tasks=True)
        worker_pids = set(r.client.run(os.getpid).values())
    assert run.ok and [s.status for s in run.scenes] == ["done"] * 3
    assert digests(tmp_path / "scenes") == digests(tmp_path / "ref")
    assert len(digests(tmp_path / "scenes")) == 3 * len(STABLE)
    # the results carry statistics, not pixels, and the manifests are written by the caller
    assert all(a.stats["classified_cells"] == b.stats["classified_cells"] for a, b in zip(run.scenes, ref.scenes))
    assert os.getpid() not in worker_pids
    assert sorted(p.name for p in (tmp_path / "scenes").glob("*_manifest.json")) == [
        "s0_manifest.json", "s1_manifest.json", "s2_manifest.json"]


def test_scene_tasks_report_a_failed_scene_and_go_on(scenes, tmp_path, model8):
    (scenes / "broken.tif").write_bytes(b"not a tiff")
    with Runner("processes", 2) as r:
        run = classify_many([str(scenes)], tmp_path / "o", model8, runner=r, scene_tasks=True)
    st = {s.name: s.status for s in run.scenes}
    assert st == {"broken": "failed", "s0": "done", "s1": "done", "s2": "done"}
    err = next(s.error for s in run.scenes if s.name == "broken")
    assert "broken.tif: not a readable raster" in err


class KillingRunner(Runner):
    """Kills one worker process after a few blocks have come back."""

    killed = False

    def stream(self, fn, jobs, in_flight=None):
        for i, res in enumerate(super().stream(fn, jobs, in_flight)):
            if i == 3 and not self.killed:
                pids = self.client.run(os.getpid)
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                KillingRunner.killed = True
            yield res


def test_worker_lost_mid_run(tmp_path, model8):
    rng = np.random.default_rng(11)
    p = write_scene(tmp_path / "big.tif", rng.integers(0, 255, (3, 160, 200), dtype=np.uint8))
    opts = ClassifyOptions(block_cells=2, stride=4)
    with Runner("synchronous") as r:
        classify_many([p], tmp_path / "ref", model8, opts, runner=r)
    with KillingRunner("processes", 2) as r:
        run = classify_many([p], tmp_path / "killed", model8, opts, runner=r)
    assert KillingRunner.killed
    assert run.ok, run.scenes[0].error
    assert digests(tmp_path / "killed") == digests(tmp_path / "ref")


def test_sigkill_then_rerun_completes_identically(tmp_path, model8):
    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):
        write_scene(d / f"scene{i}.tif", paint(rng.integers(0, 4, (40, 40)), 8, seed=i))
    cmd = [sys.executable, "-m", "geoseg", "classify", str(d), "-o", str(tmp_path / "out"), "-m", model8,
           "--scheduler", "synchronous", "--stride", "4", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (tmp_path / "out").exists() and any(f.endswith("_manifest.json") for f in os.listdir(tmp_path / "out")):
            break
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = os.listdir(tmp_path / "out")
    finished = [f for f in names if f.endswith("_manifest.json")]
    assert 1 <= len(finished) < 8, names
    # every final-named file is complete
    for f in names:
        p = tmp_path / "out" / f
        if f.startswith("."):
            continue
        if f.endswith(".tif"):
            with rasterio.open(p) as s:
                s.read()
        elif f.endswith(".json"):
            json.loads(p.read_text())
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rep = json.loads((tmp_path / "out" / "run.json").read_text())
    assert rep["n_failed"] == 0 and rep["n_skipped"] == len(finished) and rep["n_done"] == 8 - len(finished)
    assert not [f for f in os.listdir(tmp_path / "out") if ".tmp" in f]
    # an undisturbed run gives the same bytes
    subprocess.run(cmd[:6] + [str(tmp_path / "clean")] + cmd[7:], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    assert digests(tmp_path / "out") == digests(tmp_path / "clean")


def test_scene_names_agree_whatever_the_status(tmp_path, model8):
    """d/x.dat: done, skipped and failed results all carry the stem x.dat,
    the same stem as its products and its manifest (skipped and failed once
    used another)."""
    d = tmp_path / "d"
    d.mkdir()
    x = write_scene(d / "x.dat", paint(np.random.default_rng(2).integers(0, 4, (4, 5)), 8))
    out = tmp_path / "out"
    with Runner("synchronous") as r:
        done = classify_many([x], out, model8, runner=r)
        skipped = classify_many([x], out, model8, runner=r)
        (d / "x.dat").write_text("not a raster any more")
        failed = classify_many([x], out, model8, runner=r)
    assert [(s.status, s.name) for s in done.scenes + skipped.scenes + failed.scenes] == [
        ("done", "x.dat"), ("skipped", "x.dat"), ("failed", "x.dat")]
    assert "not a readable raster" in failed.scenes[0].error
    assert (out / "x.dat_classes.tif").exists() and (out / "x.dat_manifest.json").exists()
    assert os.path.basename(done.scenes[0].outputs["classes"]) == "x.dat_classes.tif"
    assert {os.path.basename(v) for v in done.scenes[0].outputs.values()} >= {
        "x.dat_probs.tif", "x.dat_polygons.gpkg", "x.dat_stats.json", "x.dat_quicklook.png"}
    rep = json.loads((out / "run.json").read_text())
    assert [s["name"] for s in rep["scenes"]] == ["x.dat"]


def test_python_api_result_objects(scenes, tmp_path, model8):
    import geoseg

    res = geoseg.classify_scene(scenes / "s0.tif", tmp_path / "o", model8,
                                geoseg.ClassifyOptions(), runner=Runner("synchronous"))
    assert res.status == "done" and res.n_patches == 120 and os.path.exists(res.outputs["polygons"])
    run = geoseg.classify_many([str(scenes / "s1.tif"), str(tmp_path / "missing.tif")], tmp_path / "o",
                               model8, scheduler="synchronous")
    assert [s.status for s in run.scenes] == ["done", "failed"] and not run.ok
    assert "file not found" in run.scenes[1].error


def test_existing_cluster_by_address(scenes, tmp_path, model8):
    """--scheduler tcp://HOST:PORT uses a running dask.distributed cluster (here on loopback)."""
    from click.testing import CliRunner
    from distributed import LocalCluster

    from geoseg.cli import main

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        r = CliRunner().invoke(main, ["classify", str(scenes), "-o", str(tmp_path / "tcp"), "-m", model8,
                                      "--scheduler", cluster.scheduler_address, "-q"])
    assert r.exit_code == 0, r.output
    with Runner("synchronous") as sync:
        classify_many([str(scenes)], tmp_path / "sync", model8, runner=sync)
    assert digests(tmp_path / "tcp") == digests(tmp_path / "sync")


@pytest.mark.parametrize("case", ["empty_folder", "blank_list", "no_match"])
def test_a_run_with_no_scene_writes_nothing(tmp_path, scenes, model8, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.txt").write_text("\n   \n")
    given, pattern = {"empty_folder": (tmp_path / "empty", None), "blank_list": (tmp_path / "blank.txt", None),
                      "no_match": (scenes, "*.jp2")}[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("an earlier run")
    with pytest.raises(InputError) as e:
        classify_many([str(given)], out, model8, ClassifyOptions(), scheduler="synchronous", pattern=pattern,
                      progress=False)
    assert str(e.value).startswith(f"{given}: no scene found; expected GeoTIFF files")
    assert os.listdir(out) == ["run.json"] and (out / "run.json").read_text() == "an earlier run"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("case", ["below_a_file", "empty_path"])
def test_an_output_folder_that_cannot_be_made_stops_the_run_in_one_line(tmp_path, scenes, model8, case):
    from geoseg.errors import OutputError

    (tmp_path / "afile").write_text("x")
    out, msg = {"below_a_file": (str(tmp_path / "afile" / "sub"), f"{tmp_path / 'afile' / 'sub'}: cannot create "
                                 "output folder (Not a directory); expected a folder geoseg can write into"),
                "empty_path": ("", "the output folder is an empty path; expected a folder")}[case]
    with pytest.raises(OutputError) as e:
        classify_many([str(scenes)], out, model8, ClassifyOptions(), scheduler="synchronous", progress=False)
    assert str(e.value).startswith(msg)


def test_a_folder_classified_into_itself_again_skips_its_outputs(tmp_path, model8):
    d = tmp_path / "scenes"
    d.mkdir()
    write_scene(d / "s.tif", paint(np.random.default_rng(1).integers(0, 4, (4, 5)), 8))
    first = classify_many([str(d)], d, model8, ClassifyOptions(), scheduler="synchronous", progress=False)
    assert first.ok and (d / "s_classes.tif").exists() and (d / "s_probs.tif").exists()
    again = classify_many([str(d)], d, model8, ClassifyOptions(), scheduler="synchronous", progress=False)
    assert [(r.name, r.status) for r in again.scenes] == [("s", "skipped")]


def test_assets_without_a_stac_item_input_warns(tmp_path, scenes, model8):
    from geoseg.errors import GeosegWarning

    with pytest.warns(GeosegWarning, match=r"--assets red,green,blue applies to STAC item inputs \(.json\) only; "
                                           r"no input is one, so it is ignored"):
        run = classify_many([str(scenes / "s1.tif")], tmp_path / "out", model8,
                            ClassifyOptions(assets=("red", "green", "blue")), scheduler="synchronous", progress=False)
    assert run.ok


def test_remote_scene_tasks_leave_the_output_folder_to_the_workers(tmp_path):
    # --scene-tasks on a tcp:// cluster: the workers write OUTDIR, which this machine may not see
    from geoseg.batch import _make_outdir
    from geoseg.errors import OutputError

    (tmp_path / "afile").write_text("x")
    out = str(tmp_path / "afile" / "sub")
    assert _make_outdir(out, here=False) is None and not os.path.exists(out)
    with pytest.raises(OutputError, match="cannot create output folder"):
        _make_outdir(out)


def test_a_folder_of_outputs_only_says_so(tmp_path, model8, caplog, monkeypatch):
    import logging

    monkeypatch.setattr(logging.getLogger("geoseg"), "propagate", True)  # CLI tests turn it off (and set -q)
    d = tmp_path / "scenes"
    d.mkdir()
    write_scene(d / "s.tif", paint(np.random.default_rng(1).integers(0, 4, (4, 5)), 8))
    assert classify_many([str(d)], tmp_path / "out", model8, ClassifyOptions(), scheduler="synchronous",
                         progress=False).ok
    with caplog.at_level(logging.WARNING, logger="geoseg"), pytest.raises(InputError, match="no scene found"):
        classify_many([str(tmp_path / "out")], tmp_path / "again", model8, ClassifyOptions(),
                      scheduler="synchronous", progress=False)
    assert f"{tmp_path / 'out'}: holds only geoseg's outputs (2 class or probability raster(s)), no scene" in caplog.text
