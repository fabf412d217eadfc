"""Training chips of an RGB model that reads reflectance (issue 23): 64 px,
3 bands (blue, green, red), float32 reflectance, a chips folder (``chips.csv``
+ class folders) for ``geoseg train --input-kind reflectance``.

The RGB default reads 16-bit and float scenes through a per-scene stretch
that greys bright clouds (docs/training.md, "Clouds in 16-bit and float
scenes"); a model that reads reflectance gets each scene's calibration
instead (``--sensor``, ``--reflectance-scale``, the file's scale/offset,
float as is).  Its chips, all in reflectance:

- the 4-class set (8-bit RGB), every image of a ``geoseg prepare`` manifest,
  brought to 64 px as training does, reflectance = DN x 0.275/255 (the
  EuroSAT RGB encoding, :data:`~training.msdata.EUROSAT_RGB_SCALE`), **with
  the manifest's split** (``split.csv`` beside the chips, for
  ``--split-from``): the suite's test split stays out of training;
- EuroSAT RGB images of the default recipe's extra classes, a seeded sample
  per folder, same encoding, training split only, none whose pixels equal a
  4-class image's;
- the multispectral model's chips (``python -m geoseg.training.msdata``)
  with their near-infrared band dropped: Sentinel-2 EuroSAT MS, Landsat-8
  38-Cloud training patches (real cloud reflectance), the Brandenburg west
  half, synthetic water/land cells; not its 4-class desert images (they are
  in the first source, with their split).  Split 70/15/15 by their groups
  (seeded hash of the group).

A model trained on these takes ``--uint8-scale 0.275/255`` so an 8-bit scene
(and the 4-class test split) reaches it as the 4-class images did.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys

import numpy as np

from geoseg.bands import RGB

from .msdata import EUROSAT_RGB_SCALE, Writer

BANDS = ("blue", "green", "red")  # the multispectral chips' order, less near-infrared
EXTRA_MAP = {"Residential": "desert", "Industrial": "desert", "Highway": "desert", "AnnualCrop": "green_area",
             "Pasture": "green_area", "HerbaceousVegetation": "green_area", "PermanentCrop": "green_area",
             "River": "water"}  # the default recipe's --extra-map
FROM_RGB = [RGB.index(b) for b in BANDS]  # BANDS from an RGB image's red, green, blue
MS_SKIP_SCENES = ("desert4",)
SPLIT_COLUMNS = ["file", "class", "split", "sha1", "near_sha1", "group", "width", "height", "mode"]


def _hash_split(group: str, seed: int) -> str:
    u = int(hashlib.sha1(f"{seed}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if u < 0.7 else ("val" if u < 0.85 else "test")


def build(sat4: str, manifest: str, eurosat_rgb: str, ms_chips: str, out: str, extra_limit: int = 400,
          seed: int = 0, sat4_repeat: int = 1, ms_sources: tuple[str, ...] | None = None) -> dict:
    """Write the chips folder ``out`` (module docstring); ``sat4_repeat``: each
    4-class *training* image written that many times (its weight in training
    against the other sources; validation and test images once);
    ``ms_sources``: the multispectral chips' sources taken (their ``scene``
    column: ``cloud38``, ``brandenburg``, ``eurosat_ms``, ``mixture``; None:
    all).  Returns what was written (also ``sources.json``)."""
    from geoseg.chips import read_chip

    from .data import decode_rgb, read_manifest, resize_rgb

    w = Writer(out, BANDS)
    split_rows: list[dict] = []
    doc: dict = {"bands": list(BANDS), "uint8_reflectance": EUROSAT_RGB_SCALE, "sat4_repeat": sat4_repeat,
                 "ms_sources": None if ms_sources is None else list(ms_sources)}
    seen: set[str] = set()

    def add(x: np.ndarray, cls: str, source: str, name: str, group: str, split: str) -> None:
        w.add(x, cls, source, name, group)
        split_rows.append({"file": w.rows[-1]["chip"], "class": cls, "split": split, "sha1": "", "near_sha1": "",
                           "group": len(split_rows), "width": x.shape[2], "height": x.shape[1], "mode": "F"})

    def image(path: str) -> tuple[str, np.ndarray]:
        """An 8-bit image brought to 64 px as training does: its pixels' sha1 and (BANDS, 64, 64) reflectance."""
        rgb = resize_rgb(decode_rgb(path)[0], 64)
        return hashlib.sha1(rgb.tobytes()).hexdigest(), np.moveaxis(rgb * np.float32(EUROSAT_RGB_SCALE), -1, 0)[FROM_RGB]

    recs = read_manifest(manifest)
    for r in recs:
        digest, x = image(os.path.join(sat4, r.file))
        seen.add(digest)
        add(x, r.label, "sat4", digest[:12], f"sat4:{r.group}", r.split)
        for k in range(1, sat4_repeat if r.split == "train" else 1):
            add(x, r.label, "sat4", f"{digest[:12]}_copy{k}", f"sat4:{r.group}", r.split)
    doc["sat4"] = {"manifest": manifest, "n": len(recs)}

    rng = np.random.default_rng(seed)
    doc["eurosat_rgb"] = {}
    for folder, cls in EXTRA_MAP.items():
        files = sorted(os.listdir(os.path.join(eurosat_rgb, folder)))
        if extra_limit and len(files) > extra_limit:
            files = [files[i] for i in sorted(rng.choice(len(files), extra_limit, replace=False))]
        n = 0
        for f in files:
            digest, x = image(os.path.join(eurosat_rgb, folder, f))
            if digest in seen:
                continue
            seen.add(digest)
            add(x, cls, "eurosat_rgb", f"{folder}_{os.path.splitext(f)[0]}", f"eurosat_rgb:{folder}/{f}", "train")
            n += 1
        doc["eurosat_rgb"][folder] = {"class": cls, "n": n}

    with open(os.path.join(ms_chips, "chips.json")) as f:
        ms_bands = json.load(f)["bands"]
    take = [ms_bands.index(b) for b in BANDS]
    n_ms: dict[str, int] = {}
    with open(os.path.join(ms_chips, "chips.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if row["scene"] in MS_SKIP_SCENES or (ms_sources is not None and row["scene"] not in ms_sources):
                continue
            x = read_chip(os.path.join(ms_chips, row["chip"]))[0].astype(np.float32)[take]
            name = os.path.splitext(os.path.basename(row["chip"]))[0]
            add(x, row["class"], "ms", name, f"ms:{row['group']}", _hash_split(row["group"], seed))
            n_ms[f"{row['scene']}/{row['class']}"] = n_ms.get(f"{row['scene']}/{row['class']}", 0) + 1
    doc["multispectral_chips"] = {"folder": ms_chips, "bands_taken": list(BANDS), "skipped": list(MS_SKIP_SCENES),
                                  "counts": n_ms}
    w.close(doc)
    with open(os.path.join(out, "split.csv"), "w", newline="", encoding="utf-8") as f:
        dw = csv.DictWriter(f, SPLIT_COLUMNS)
        dw.writeheader()
        dw.writerows(split_rows)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m geoseg.training.rgbdata", description=__doc__.split("\n\n")[0])
    p.add_argument("shared", help="the ../shared folder")
    p.add_argument("--manifest", required=True, help="manifest.csv of `geoseg prepare` on the 4-class set")
    p.add_argument("--ms-chips", required=True, help="chips folder of `python -m geoseg.training.msdata`")
    p.add_argument("-o", "--output", required=True, help="chips folder to write")
    p.add_argument("--extra-limit", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sat4-repeat", type=int, default=1,
                   help="write each 4-class training image this many times (its weight against the other sources)")
    p.add_argument("--ms-sources", default=None,
                   help="comma-separated multispectral chip sources to take (cloud38, brandenburg, eurosat_ms, "
                        "mixture) [default: all]")
    a = p.parse_args(argv)
    if a.sat4_repeat < 1:
        p.error(f"--sat4-repeat {a.sat4_repeat}: expected 1 or more")
    doc = build(os.path.join(a.shared, "data", "satellite4"), a.manifest, os.path.join(a.shared, "data", "eurosat"),
                a.ms_chips, a.output, a.extra_limit, a.seed, a.sat4_repeat,
                None if a.ms_sources is None else tuple(x.strip() for x in a.ms_sources.split(",") if x.strip()))
    print(json.dumps(doc.get("counts", {}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
