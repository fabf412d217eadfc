"""geoseg.chipmanifest: one reader of chips.csv, one path-containment rule
for reading (training) and for --overwrite; bad manifests one case a test."""

from __future__ import annotations

import os

import pytest

from geoseg.chipmanifest import MANIFEST, SIDECAR, chip_file, read_manifest, remove_chips, write_manifest
from geoseg.errors import InputError

HEADER = "chip,class,group\n"


def _folder(tmp_path, rows: str, header: str = HEADER):
    d = tmp_path / "chips"
    (d / "water").mkdir(parents=True)
    (d / "water" / "a.tif").write_bytes(b"x")
    (d / MANIFEST).write_text(header + rows)
    return d


@pytest.mark.parametrize("rel", ["../victim.txt", "/etc/passwd", "water/../../victim.txt", "", "C:/x.tif",
                                 "..\\victim.txt"], ids=["parent", "absolute", "inner-parent", "empty", "drive",
                                                         "backslash-parent"])
def test_chip_paths_that_leave_the_folder_are_refused(tmp_path, rel):
    with pytest.raises(InputError, match=r"chips.csv: chip path .* is not inside the chips folder"):
        chip_file(str(tmp_path), rel, "chips.csv")


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep")
    d = tmp_path / "chips"
    d.mkdir()
    os.symlink(outside, d / "water")
    with pytest.raises(InputError, match="'water/victim.txt' is not inside the chips folder"):
        chip_file(str(d), "water/victim.txt", "chips.csv")


def test_a_chip_inside_is_its_path(tmp_path):
    assert chip_file(str(tmp_path), "water/a.tif", "chips.csv") == os.path.join(str(tmp_path), "water/a.tif")


@pytest.mark.parametrize("header, msg", [
    ("name,class\n", "lacks column(s) chip, group"),
    ("", "lacks column(s) chip, class, group"),
], ids=["no-chip-column", "empty-file"])
def test_manifests_without_the_columns_are_refused(tmp_path, header, msg):
    d = _folder(tmp_path, "", header)
    with pytest.raises(InputError, match=rf"chips.csv: {msg}".replace("(", r"\(").replace(")", r"\)")):
        read_manifest(str(d))


def test_a_binary_manifest_is_refused(tmp_path):
    d = _folder(tmp_path, "")
    (d / MANIFEST).write_bytes(b"\x89\xb6\x00binary")
    with pytest.raises(InputError, match="chips.csv: not a CSV text file"):
        read_manifest(str(d))


def test_remove_chips_removes_the_listed_chips_and_nothing_else(tmp_path):
    d = _folder(tmp_path, "water/a.tif,water,g0\n")
    (d / SIDECAR).write_text("{}")
    (d / "water" / "mine.txt").write_text("not a chip")
    remove_chips(str(d))
    assert sorted(os.listdir(d)) == ["water"] and os.listdir(d / "water") == ["mine.txt"]


def test_remove_chips_removes_nothing_when_one_row_leaves(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    d = _folder(tmp_path, "water/a.tif,water,g0\n../victim.txt,water,g0\n")
    with pytest.raises(InputError, match="'../victim.txt' is not inside the chips folder.*--overwrite removed "
                                         "nothing: clear the folder yourself"):
        remove_chips(str(d))
    assert victim.read_text() == "keep" and (d / "water" / "a.tif").exists() and (d / MANIFEST).exists()


def test_write_then_read(tmp_path):
    rows = [{"chip": "water/a.tif", "class": "water", "group": "s:0:0"}]
    man = write_manifest(str(tmp_path), rows, {"size": 16})
    assert man == os.path.join(str(tmp_path), MANIFEST)
    assert [(r["chip"], r["class"], r["group"]) for r in read_manifest(str(tmp_path))] == [
        ("water/a.tif", "water", "s:0:0")]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
