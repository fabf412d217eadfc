"""Data preparation: decode, clean, de-duplicate, split and resize.

The step writes, into the run folder:

- ``manifest.csv``: file, class, split, pixel hash, duplicate group, original
  size and mode, for every kept image (a run can be reproduced and audited);
- ``rejected.csv``: every file that was dropped, with the reason;
- ``data_report.json`` / ``.md``: counts per class and split, duplicates,
  CMYK conversions, original sizes per class.

No TensorFlow here: Pillow and NumPy only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
             ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP"}
MIN_SIDE = 16


@dataclass
class Record:
    file: str  # path relative to the data folder
    label: str
    sha: str = ""  # hash of the decoded RGB pixels
    near: str = ""  # hash of a coarse thumbnail (near-exact duplicates)
    width: int = 0
    height: int = 0
    mode: str = ""
    group: int = -1
    split: str = ""


def class_folders(data_dir: str) -> list[str]:
    names = sorted(d for d in os.listdir(data_dir)
                   if os.path.isdir(os.path.join(data_dir, d)) and not d.startswith("."))
    if len(names) < 2:
        raise ValueError(f"{data_dir}: found {len(names)} class folder(s), expected at least 2 "
                         "(DATA_DIR/CLASS_NAME/image files)")
    return names


def decode_rgb(path: str) -> tuple[Image.Image, str]:
    """Open an image file and return it as RGB with its original mode.

    CMYK JPEGs are converted explicitly; Pillow reads Adobe (APP14) CMYK
    JPEGs as inverted CMYK and un-inverts them, so the result has the right
    colours either way.  Raises ``ValueError`` with the reason if the file is
    not a decodable image or its extension lies about its format.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise ValueError("empty file")
    try:
        im = Image.open(io.BytesIO(raw))
        fmt = im.format
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode ({str(exc).splitlines()[0][:80]})") from None
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXT and fmt and IMAGE_EXT[ext] != fmt:
        raise ValueError(f"extension {ext} but content is {fmt}")
    mode = im.mode
    im = ImageOps.exif_transpose(im)
    if mode == "CMYK":
        rgb = im.convert("RGB")
    elif mode in ("RGBA", "LA", "P", "PA"):
        rgb = im.convert("RGBA").convert("RGB")
    else:
        rgb = im.convert("RGB")
    return rgb, mode


def resize_rgb(im: Image.Image, size: int) -> np.ndarray:
    """Bring an image to ``size`` x ``size`` the same way for every source size:
    a centred square crop, then an anti-aliased resize (Lanczos on down-sampling,
    which low-pass filters first; bicubic when up-sampling)."""
    w, h = im.size
    if w != h:
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if im.size != (size, size):
        method = Image.Resampling.LANCZOS if im.size[0] > size else Image.Resampling.BICUBIC
        im = im.resize((size, size), method)
    return np.asarray(im, dtype=np.uint8)


def pixel_hashes(im: Image.Image) -> tuple[str, str]:
    """Exact hash of the decoded pixels, and a near-duplicate hash: a 16x16
    thumbnail quantised to 32 levels (survives re-compression and resizing)."""
    a = np.asarray(im, dtype=np.uint8)
    exact = hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()
    t = np.asarray(im.resize((16, 16), Image.Resampling.BOX), dtype=np.uint8) // 8
    near = hashlib.sha1(t.tobytes()).hexdigest()
    return exact, near


def scan(data_dir: str, size: int) -> tuple[list[Record], list[dict], np.ndarray]:
    """Decode every file; return kept records, rejected files, and the resized
    (n, size, size, 3) uint8 array of the kept images (same order)."""
    classes = class_folders(data_dir)
    records, rejected, arrays = [], [], []
    for label in classes:
        folder = os.path.join(data_dir, label)
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            rel = os.path.join(label, name)
            if not os.path.isfile(path) or name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext not in IMAGE_EXT:
                rejected.append({"file": rel, "label": label, "reason": f"not an image extension ({ext or 'none'})"})
                continue
            try:
                im, mode = decode_rgb(path)
            except ValueError as exc:
                rejected.append({"file": rel, "label": label, "reason": str(exc)})
                continue
            if min(im.size) < MIN_SIDE or max(im.size) > 8 * min(im.size):
                rejected.append({"file": rel, "label": label, "reason": f"degenerate size {im.size[0]}x{im.size[1]}"})
                continue
            exact, near = pixel_hashes(im)
            records.append(Record(rel, label, exact, near, im.size[0], im.size[1], mode))
            arrays.append(resize_rgb(im, size))
    x = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return records, rejected, x


def thumbnails(x: np.ndarray, side: int = 16) -> np.ndarray:
    """(n, side*side*3) float32 thumbnails of (n, h, w, 3) uint8 images (box average)."""
    n, h, w, _ = x.shape
    f = h // side
    t = x[:, : f * side, : f * side].reshape(n, side, f, side, f, 3).astype(np.float32).mean((2, 4))
    return t.reshape(n, -1)


def near_duplicate_pairs(x: np.ndarray, min_corr: float = 0.97, max_mad: float = 4.0,
                         chunk: int = 1024) -> list[tuple[int, int]]:
    """Pairs of images that are the same picture up to re-compression or
    resizing: thumbnails whose structure correlates (> ``min_corr``) and whose
    values agree (mean absolute difference < ``max_mad`` grey levels).  Flat
    images (sea, cloud) have no structure to correlate and are not paired."""
    t = thumbnails(x)
    # structure within each band: remove every band's own mean (the colour),
    # or all images of one colour would correlate
    n = len(t)
    tb = t.reshape(n, -1, 3)
    z = (tb - tb.mean(1, keepdims=True)).reshape(n, -1)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    flat = norm[:, 0] / np.sqrt(z.shape[1]) < 1.0  # under 1 grey level of spatial variation
    z = z / np.maximum(norm, 1e-6)
    pairs = []
    for i0 in range(0, len(z), chunk):
        c = z[i0 : i0 + chunk] @ z.T
        ii, jj = np.nonzero(c > min_corr)
        for i, j in zip(ii + i0, jj):
            if i < j and not flat[i] and not flat[j] and np.abs(t[i] - t[j]).mean() < max_mad:
                pairs.append((int(i), int(j)))
    return pairs


def group_duplicates(records: list[Record], x: np.ndarray | None = None) -> int:
    """Union images with the same exact or near hash, or that are near-duplicate
    pairs (:func:`near_duplicate_pairs` over ``x``), into groups (in place);
    returns the number of groups holding more than one image."""
    parent = list(range(len(records)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in ("sha", "near"):
        first: dict[str, int] = {}
        for i, r in enumerate(records):
            k = getattr(r, key)
            if k in first:
                parent[find(i)] = find(first[k])
            else:
                first[k] = i
    if x is not None and len(x):
        for i, j in near_duplicate_pairs(x):
            parent[find(i)] = find(j)
    roots: dict[int, int] = {}
    for i, r in enumerate(records):
        r.group = roots.setdefault(find(i), len(roots))
    sizes = Counter(r.group for r in records)
    return sum(1 for s in sizes.values() if s > 1)


def split_groups(records: list[Record], fractions=(0.7, 0.15, 0.15), seed: int = 0) -> None:
    """Stratified, seeded train/val/test split that keeps every duplicate group on
    one side (in place).  A group goes to the split of its majority label that is
    furthest below its target."""
    names = ("train", "val", "test")
    rng = np.random.default_rng(seed)
    groups: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.group].append(r)
    by_label: dict[str, list[int]] = defaultdict(list)
    for g, rs in groups.items():
        by_label[Counter(r.label for r in rs).most_common(1)[0][0]].append(g)
    for label in sorted(by_label):
        gids = sorted(by_label[label])
        rng.shuffle(gids)
        total = sum(len(groups[g]) for g in gids)
        target = np.array(fractions) * total
        have = np.zeros(3)
        for g in gids:
            k = int(np.argmax(target - have))
            for r in groups[g]:
                r.split = names[k]
            have[k] += len(groups[g])


def write_manifest(path: str, records: list[Record]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "split", "sha1", "near_sha1", "group", "width", "height", "mode"])
        for r in records:
            w.writerow([r.file, r.label, r.split, r.sha, r.near, r.group, r.width, r.height, r.mode])
    os.replace(tmp, path)


def read_manifest(path: str) -> list[Record]:
    with open(path, newline="", encoding="utf-8") as f:
        return [Record(row["file"], row["class"], row["sha1"], row["near_sha1"], int(row["width"]),
                       int(row["height"]), row["mode"], int(row["group"]), row["split"])
                for row in csv.DictReader(f)]


def prepare(data_dir: str, run_dir: str, size: int = 64, seed: int = 0,
            split_from: str | None = None) -> tuple[list[Record], np.ndarray, list[str]]:
    """The data-preparation step; returns records, images and class names.

    ``split_from``: a manifest whose split assignment is reused (same split
    for several models, e.g. the scratch baseline and the transfer model).
    """
    os.makedirs(run_dir, exist_ok=True)
    classes = class_folders(data_dir)
    records, rejected, x = scan(data_dir, size)
    n_dup_groups = group_duplicates(records, x)
    if split_from:
        old = {r.file: r.split for r in read_manifest(split_from)}
        missing = [r.file for r in records if r.file not in old]
        if missing:
            raise ValueError(f"{split_from}: {len(missing)} image(s) are not in this manifest, e.g. {missing[0]}")
        for r in records:
            r.split = old[r.file]
        spans = defaultdict(set)
        for r in records:
            spans[r.group].add(r.split)
        bad = [g for g, sp in spans.items() if len(sp) > 1]
        if bad:
            example = [r.file for r in records if r.group == bad[0]]
            raise ValueError(
                f"{split_from}: {len(bad)} duplicate group(s) span several splits (e.g. {example}); "
                "the split leaks: make a new one with `geoseg prepare`")
    else:
        split_groups(records, seed=seed)
    write_manifest(os.path.join(run_dir, "manifest.csv"), records)
    with open(os.path.join(run_dir, "rejected.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["file", "label", "reason"])
        w.writeheader()
        w.writerows(rejected)
    report = data_report(records, rejected, classes, n_dup_groups, size)
    with open(os.path.join(run_dir, "data_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(run_dir, "data_report.md"), "w", encoding="utf-8") as f:
        f.write(data_report_md(report))
    log.info("prepared %d images (%d rejected, %d duplicate groups)", len(records), len(rejected), n_dup_groups)
    return records, x, classes


def data_report(records, rejected, classes, n_dup_groups, size) -> dict:
    per = {c: Counter() for c in classes}
    sizes = {c: Counter() for c in classes}
    modes = {c: Counter() for c in classes}
    for r in records:
        per[r.label][r.split] += 1
        sizes[r.label][f"{r.width}x{r.height}"] += 1
        modes[r.label][r.mode] += 1
    group_sizes = Counter(r.group for r in records)
    dup_images = sum(s for s in group_sizes.values() if s > 1)
    leaks = 0
    by_group = defaultdict(set)
    for r in records:
        by_group[r.group].add(r.split)
    leaks = sum(1 for s in by_group.values() if len(s) > 1)
    return {
        "input_size": size,
        "classes": classes,
        "kept": len(records),
        "rejected": len(rejected),
        "rejected_files": rejected,
        "duplicate_groups": n_dup_groups,
        "images_in_duplicate_groups": dup_images,
        "groups_split_across_sets": leaks,
        "per_class_split": {c: dict(per[c]) for c in classes},
        "original_sizes": {c: dict(sizes[c]) for c in classes},
        "original_modes": {c: dict(modes[c]) for c in classes},
    }


def data_report_md(rep: dict) -> str:
    lines = ["# Data preparation report", "",
             f"Kept {rep['kept']} images, rejected {rep['rejected']}; "
             f"{rep['duplicate_groups']} duplicate groups ({rep['images_in_duplicate_groups']} images), "
             f"groups split across sets: {rep['groups_split_across_sets']}. "
             f"Every image resized to {rep['input_size']} px (centre crop, anti-aliased).", "",
             "| class | train | val | test | original sizes | modes |", "|---|---|---|---|---|---|"]
    for c in rep["classes"]:
        s = rep["per_class_split"][c]
        lines.append(f"| {c} | {s.get('train', 0)} | {s.get('val', 0)} | {s.get('test', 0)} | "
                     f"{', '.join(f'{k}: {v}' for k, v in rep['original_sizes'][c].items())} | "
                     f"{', '.join(f'{k}: {v}' for k, v in rep['original_modes'][c].items())} |")
    if rep["rejected_files"]:
        lines += ["", "## Rejected files", "", "| file | reason |", "|---|---|"]
        lines += [f"| {r['file']} | {r['reason']} |" for r in rep["rejected_files"]]
    return "\n".join(lines) + "\n"


def load_folder(folder: str, size: int, classes: list[str] | None = None, exclude_hashes: set[str] | None = None,
                limit_per_class: int | None = None, seed: int = 0):
    """Decode a folder of class folders (e.g. EuroSAT) to arrays, skipping
    undecodable files and images whose exact or near hash is in ``exclude_hashes``.
    Returns (x, y, class_names, n_excluded)."""
    classes = classes or class_folders(folder)
    rng = np.random.default_rng(seed)
    xs, ys, n_ex = [], [], 0
    for i, c in enumerate(classes):
        names = sorted(os.listdir(os.path.join(folder, c)))
        if limit_per_class and len(names) > limit_per_class:
            names = sorted(rng.choice(names, limit_per_class, replace=False))
        for n in names:
            p = os.path.join(folder, c, n)
            try:
                im, _ = decode_rgb(p)
            except (ValueError, OSError):
                continue
            if exclude_hashes:
                e, nr = pixel_hashes(im)
                if e in exclude_hashes or nr in exclude_hashes:
                    n_ex += 1
                    continue
            xs.append(resize_rgb(im, size))
            ys.append(i)
    return np.stack(xs), np.array(ys, np.int64), classes, n_ex
