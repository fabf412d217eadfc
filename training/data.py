"""Data preparation: decode, clean, de-duplicate, split and resize.

Two kinds of data folder:

- class folders of images (JPEG, PNG ...): decoded to RGB, resized;
- a chips folder written by ``geoseg chips`` (``chips.csv`` beside the class
  folders): georeferenced GeoTIFF chips of any band count, uint8 or wider.
  Chips keep their size (it is the model's patch: the ground footprint the
  runtime cuts), are scaled to 0-255 by the rule the contract will carry
  (:func:`chip_scaling`, applied with the runtime's own
  :func:`geoseg.patches.to_model_input`), and are split by the manifest's
  spatial ``group`` (neighbouring windows never straddle the split).

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
    except UnidentifiedImageError:
        raise ValueError("cannot decode (not an image format Pillow reads)") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode ({str(exc).splitlines()[0][:80]})") from None
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXT and fmt and IMAGE_EXT[ext] != fmt:
        raise ValueError(f"extension {ext} but content is {fmt}")
    mode = im.mode
    if mode.startswith("I") or mode == "F":  # Pillow's 16/32-bit integer and float modes
        raise ValueError(f"{mode} image (values beyond 8 bits); expected 8-bit RGB or grey images: convert it to "
                         "8 bits, or cut chips from the GeoTIFF scene with `geoseg chips`")
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


def _assign_groups(records: list[Record], keys: list[list], pairs=()) -> int:
    """Union records that share a value in any of ``keys`` (one list of
    values per key, aligned with ``records``) or form one of ``pairs``; set
    each record's ``group`` (0, 1, ... in order of first appearance) and
    return the number of groups."""
    parent = list(range(len(records)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for values in keys:
        first: dict = {}
        for i, k in enumerate(values):
            if k in first:
                parent[find(i)] = find(first[k])
            else:
                first[k] = i
    for i, j in pairs:
        parent[find(i)] = find(j)
    roots: dict[int, int] = {}
    for i, r in enumerate(records):
        r.group = roots.setdefault(find(i), len(roots))
    return len(roots)


def group_duplicates(records: list[Record], x: np.ndarray | None = None) -> int:
    """Union images with the same exact or near hash, or that are near-duplicate
    pairs (:func:`near_duplicate_pairs` over ``x``), into groups (in place);
    returns the number of groups holding more than one image."""
    pairs = near_duplicate_pairs(x) if x is not None and len(x) else ()
    _assign_groups(records, [[r.sha for r in records], [r.near for r in records]], pairs)
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


# --- chips folders (``geoseg chips``) ------------------------------------------------
CHIP_SCALE_PERCENTILE = 99.5


@dataclass
class ChipSet:
    """What a chips folder tells about its chips (recorded in the data report,
    then in the run's config.json and the exported contract)."""

    size: int
    band_names: list[str]
    dtype: str
    pixel_size_m: float | None
    crs: str
    block_size: str
    n_groups: int
    scaling_key: str = "uint8"
    scaling: dict = None  # type: ignore[assignment]

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def is_chips_dir(data_dir: str) -> bool:
    from geoseg.chips import is_chips_dir as _is

    return _is(data_dir)


def chip_scaling(raw: np.ndarray, dtype: str):
    """The rule that brings chips of ``dtype`` to the 0-255 model input:
    ``(contract key, Scaling)``.  uint8: identity.  Wider integers (key
    ``uint16``) and floats (key ``float``): one linear scale for every band,
    255 / the 99.5th percentile of the (training) pixels ``raw``."""
    from geoseg.contract import Scaling

    if dtype == "uint8":
        return "uint8", Scaling("identity")
    flat = raw.reshape(-1)
    flat = flat[:: max(1, flat.size // 2_000_000)].astype(np.float64)
    flat = flat[np.isfinite(flat)]
    hi = float(np.percentile(flat, CHIP_SCALE_PERCENTILE)) if flat.size else 0.0
    if hi <= 0:
        raise ValueError(f"chips of dtype {dtype} have no positive pixel values; cannot derive a scaling")
    key = "float" if np.dtype(dtype).kind == "f" else "uint16"
    return key, Scaling("linear", scale=float(np.float32(255.0 / hi)), offset=0.0)


def chips_to_input(raw: np.ndarray, scaling) -> np.ndarray:
    """(n, band, p, p) raw chips -> (n, p, p, band) uint8 model input, exactly
    as the runtime converts patches (:func:`geoseg.patches.to_model_input`)."""
    from geoseg.patches import to_model_input

    if not len(raw):
        return np.zeros((0,) + raw.shape[2:] + raw.shape[1:2], np.uint8)
    return to_model_input(raw, None, scaling, (0.0, 255.0), None, "NHWC", "uint8")


REFLECTANCE_RANGE = (0.0, 1.5)  # model input of reflectance models (the contract's input_range)


def reflectance_rule(dtype: str, scale: float | None, offset: float | None) -> tuple[float, float]:
    """(scale, offset) that turn chips of ``dtype`` into reflectance:
    the given ones, else identity for float chips (they are reflectance);
    integer chips need a scale (their DN scale is not in the file)."""
    if scale is not None:
        return float(scale), float(offset or 0.0)
    if np.dtype(dtype).kind == "f":
        return 1.0, float(offset or 0.0)
    raise ValueError(f"chips of dtype {dtype} hold digital numbers, not reflectance; pass --reflectance-scale "
                     "(e.g. 0.0001 for Sentinel-2 L1C, 2.0e-5 with --reflectance-offset -0.1 for Landsat C2 L1)")


def chips_to_reflectance(raw: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """(n, band, p, p) raw chips -> (n, p, p, band) float32 reflectance
    (DN x scale + offset, clipped to :data:`REFLECTANCE_RANGE`, the model's
    input range: what the runtime feeds a reflectance model)."""
    x = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
    x = np.clip(np.nan_to_num(x, nan=0.0), *REFLECTANCE_RANGE)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def read_chip_arrays(data_dir: str, files: list[str]) -> tuple[list[int], list[dict], np.ndarray, list[list[str]]]:
    """Read chips ``files`` (relative to ``data_dir``): indices of the readable
    ones, rejected rows, their (n, band, p, p) raw pixels and band names."""
    from geoseg.chips import read_chip

    ok, rejected, arrays, names = [], [], [], []
    for i, rel in enumerate(files):
        try:
            a, nm = read_chip(os.path.join(data_dir, rel))
        except (ValueError, OSError) as exc:
            rejected.append({"file": rel, "label": "", "reason": str(exc) or "cannot read"})
            continue
        if arrays and (a.shape != arrays[0].shape or a.dtype != arrays[0].dtype):
            rejected.append({"file": rel, "label": "", "reason": f"{a.shape[0]} band(s) {a.shape[2]}x{a.shape[1]} "
                             f"{a.dtype}, unlike the first chip ({arrays[0].shape[0]} band(s) "
                             f"{arrays[0].shape[2]}x{arrays[0].shape[1]} {arrays[0].dtype})"})
            continue
        ok.append(i)
        arrays.append(a)
        names.append(nm)
    x = np.stack(arrays) if arrays else np.zeros((0, 1, 1, 1), np.uint8)
    return ok, rejected, x, names


def _pixel_size(rows: list[dict]) -> float | None:
    """The chips' common ground pixel size in metres (None: geographic CRS or mixed sizes)."""
    from pyproj import CRS

    sizes = {round(float(r["pixel_size_x"]), 6) for r in rows if r.get("pixel_size_x")}
    crss = {r.get("crs", "") for r in rows}
    try:
        if any(CRS.from_user_input(c).is_geographic for c in crss if c):
            return None
    except Exception:  # noqa: BLE001 - an unreadable CRS: no resolution claimed
        return None
    if len(sizes) != 1:
        if sizes:
            log.warning("chips have several pixel sizes (%s); no training resolution recorded",
                        ", ".join(map(str, sorted(sizes))))
        return None
    return sizes.pop()


def group_chip_records(records: list[Record], keys: list[str]) -> int:
    """Union chips of one spatial group (``keys``, the manifest's ``group``)
    and chips with identical pixels into split groups (in place); returns
    the number of groups."""
    return _assign_groups(records, [keys, [r.sha for r in records]])


def scan_chips(data_dir: str, size: int | None):
    """Read a chips folder: records (group = spatial group), rejected rows,
    raw (n, band, p, p) pixels, class names and the :class:`ChipSet`."""
    from geoseg.chips import read_chips_manifest

    rows, side = read_chips_manifest(data_dir)
    man = os.path.join(data_dir, "chips.csv")
    if not rows:
        raise ValueError(f"{man}: no chips listed; cut chips with `geoseg chips`")
    classes = sorted({r["class"] for r in rows})
    if len(classes) < 2:
        raise ValueError(f"{man}: chips of {len(classes)} class(es) ({', '.join(classes)}), expected at least 2")
    ok, rejected, raw, names = read_chip_arrays(data_dir, [r["chip"] for r in rows])
    for rj in rejected:
        rj["label"] = next(r["class"] for r in rows if r["chip"] == rj["file"])
    if not ok:
        raise ValueError(f"{data_dir}: none of the {len(rows)} chips could be read")
    rows = [rows[i] for i in ok]
    chip = int(raw.shape[-1])
    if raw.shape[-2] != chip:
        raise ValueError(f"{data_dir}: chips are {raw.shape[-1]}x{raw.shape[-2]} px; expected square chips")
    if size is not None and size != chip:
        raise ValueError(f"{data_dir}: chips are {chip} px but the input size is {size}; the model's patch must "
                         f"cover the chips' ground footprint: pass --input-size {chip} (or leave it out), or cut "
                         f"chips with --size {size}")
    bad_names = [rows[i]["chip"] for i, nm in enumerate(names) if nm != names[0]]
    if bad_names:
        raise ValueError(f"{data_dir}: chips name their bands differently ({', '.join(names[0])} in "
                         f"{rows[0]['chip']}, other in {bad_names[0]}); cut all chips with the same --bands")
    records = []
    for r, a in zip(rows, raw):
        sha = hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()
        records.append(Record(r["chip"], r["class"], sha, sha, chip, chip, f"{a.dtype}x{a.shape[0]}"))
    n_groups = group_chip_records(records, [r["group"] for r in rows])
    info = ChipSet(size=chip, band_names=list(names[0]), dtype=str(raw.dtype), pixel_size_m=_pixel_size(rows),
                   crs=",".join(sorted({r.get("crs", "") for r in rows})),
                   block_size=str(side.get("block_size", "unknown")), n_groups=n_groups)
    return records, rejected, raw, classes, info


def load_chips_for_run(data_dir: str, files: list[str], labels: list[str], cfg: dict):
    """Chips ``files`` as the run's model input (its recorded scaling):
    (x (n, p, p, band) float32 0-255, y, indices of the files read) or None
    when none can be read."""
    from geoseg.contract import Scaling

    ok, _, raw, _ = read_chip_arrays(data_dir, files)
    if not ok:
        return None
    if cfg.get("input_kind") == "reflectance":
        x = chips_to_reflectance(raw, cfg["reflectance_scale"], cfg.get("reflectance_offset", 0.0))
        return x, np.array([cfg["classes"].index(labels[i]) for i in ok]), ok
    rule = next(iter((cfg.get("scaling") or {"uint8": {"method": "identity"}}).values()))
    x = chips_to_input(raw, Scaling.from_dict(rule)).astype(np.float32)
    y = np.array([cfg["classes"].index(labels[i]) for i in ok])
    return x, y, ok


def write_manifest(path: str, records: list[Record]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "split", "sha1", "near_sha1", "group", "width", "height", "mode"])
        for r in records:
            w.writerow([r.file, r.label, r.split, r.sha, r.near, r.group, r.width, r.height, r.mode])
    os.replace(tmp, path)


def run_data_dir(cfg: dict) -> str:
    """A run's data folder (config.json): ``data_dir`` as it was given when
    it is there from here, else its absolute form (runs since session 7)."""
    d = str(cfg.get("data_dir", ""))
    return d if os.path.isdir(d) else str(cfg.get("data_dir_abs", d))


def read_manifest(path: str) -> list[Record]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [Record(row["file"], row["class"], row["sha1"], row["near_sha1"], int(row["width"]),
                           int(row["height"]), row["mode"], int(row["group"]), row["split"])
                    for row in csv.DictReader(f)]
    except FileNotFoundError:
        raise ValueError(f"{path}: not found; expected the manifest.csv of a `geoseg prepare` or `geoseg train` "
                         "run folder") from None
    except (UnicodeDecodeError, csv.Error, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a manifest.csv of `geoseg prepare` ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:100] if str(exc) else ''}); expected the manifest.csv of a "
                         "run folder") from None


def prepare(data_dir: str, run_dir: str, size: int | None = 64, seed: int = 0,
            split_from: str | None = None, reflectance: tuple[float | None, float | None] | None = None,
            ) -> tuple[list[Record], np.ndarray, list[str]]:
    """The data-preparation step; returns records, images (n, size, size,
    bands) uint8 and class names.

    ``data_dir``: class folders of images, or a chips folder (``geoseg
    chips``; ``size`` None takes the chips' size, another size than theirs
    is refused).  For chips the data report's ``chips`` entry records band
    names, scaling, pixel size and the spatial block size.

    ``split_from``: a manifest whose split assignment is reused (same split
    for several models, e.g. the scratch baseline and the transfer model).

    ``reflectance``: (scale, offset) or (None, None) for a reflectance model
    (chips only): the images are then (n, p, p, band) float32 reflectance
    (:func:`chips_to_reflectance`), the chips entry's scaling key
    ``reflectance`` (identity) and ``reflectance_rule`` the (scale, offset) used.
    """
    chips: ChipSet | None = None
    if reflectance is not None and not is_chips_dir(data_dir):
        raise ValueError(f"{data_dir}: reflectance input needs a chips folder of multispectral GeoTIFFs (chips.csv "
                         "beside class folders, from `geoseg chips`), not class folders of 8-bit images")
    if is_chips_dir(data_dir):
        records, rejected, raw, classes, chips = scan_chips(data_dir, size)
        n_dup_groups = sum(1 for s in Counter(r.group for r in records).values() if s > 1)
        size = chips.size
    else:
        size = 64 if size is None else size
        classes = class_folders(data_dir)
        records, rejected, x = scan(data_dir, size)
        n_dup_groups = group_duplicates(records, x)
        for c in classes:
            if not any(r.label == c for r in records):
                bad = [r for r in rejected if r["label"] == c]
                why = f"{len(bad)} rejected, e.g. {bad[0]['file']}: {bad[0]['reason']}" if bad else "no image files"
                raise ValueError(f"{data_dir}: the class folder {c!r} has no usable image ({why}); expected images "
                                 "in every class folder: fix them, or remove the folder")
    if split_from:
        prev = read_manifest(split_from)
        old = {r.file: r.split for r in prev}
        old_sha = {r.file: r.sha for r in prev}
        missing = [r.file for r in records if r.file not in old]
        if missing:
            raise ValueError(f"{split_from}: {len(missing)} image(s) are not in this manifest, e.g. {missing[0]}")
        changed = [r.file for r in records if old_sha.get(r.file) not in (None, "", r.sha)]
        if changed:
            raise ValueError(f"{split_from}: {len(changed)} image(s) differ from the ones this manifest split, e.g. "
                             f"{changed[0]}; expected the manifest of this data folder: make a new split with "
                             "`geoseg prepare`")
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
    empty = [s for s in ("train", "val", "test") if not any(r.split == s for r in records)]
    if empty:
        n_groups = len({r.group for r in records})
        fix = (f"cut the chips with a smaller --block-size (now {chips.block_size}) or from more scenes"
               if chips is not None and not split_from else
               "use a manifest with images in every split" if split_from else "add images")
        raise ValueError(f"{split_from or data_dir}: the split has no {' and no '.join(empty)} images "
                         f"({len(records)} images in {n_groups} groups that stay on one side); expected each of "
                         f"train, val and test to get a group: {fix}")
    refl_rule = None
    if chips is not None and reflectance is not None:
        refl_rule = reflectance_rule(chips.dtype, *reflectance)
        chips.scaling_key, chips.scaling = "reflectance", {"method": "identity"}
        x = chips_to_reflectance(raw, *refl_rule)
    elif chips is not None:
        # the scaling is learnt from the training split only, then applied to all
        tr = np.array([r.split == "train" for r in records])
        key, rule = chip_scaling(raw[tr] if tr.any() else raw, chips.dtype)
        chips.scaling_key, chips.scaling = key, rule.to_dict()
        x = chips_to_input(raw, rule)
    os.makedirs(run_dir, exist_ok=True)
    write_manifest(os.path.join(run_dir, "manifest.csv"), records)
    with open(os.path.join(run_dir, "rejected.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["file", "label", "reason"])
        w.writeheader()
        w.writerows(rejected)
    report = data_report(records, rejected, classes, n_dup_groups, size)
    if chips is not None:
        report["chips"] = chips.to_dict()
        if refl_rule is not None:
            report["chips"]["reflectance_rule"] = {"scale": refl_rule[0], "offset": refl_rule[1]}
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
    ch = rep.get("chips")
    if ch:
        res = f"{ch['pixel_size_m']:g} m" if ch.get("pixel_size_m") else "unknown"
        lines[2] = (f"Kept {rep['kept']} chips of {ch['size']} px ({', '.join(ch['band_names'])}; {ch['dtype']}, "
                    f"scaled by {ch['scaling_key']} rule {ch['scaling']}; pixel size {res}), rejected "
                    f"{rep['rejected']}. Chips are split by spatial group: blocks of {ch['block_size']} per scene, "
                    f"joined with chips of identical pixels, {ch['n_groups']} groups; groups split across sets: "
                    f"{rep['groups_split_across_sets']}.")
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
    if not xs:
        left = f"{n_ex} left out as images of the data set itself" if n_ex else "no decodable image"
        raise ValueError(f"{folder}: no usable image in {', '.join(classes)} ({left}); expected other images there")
    return np.stack(xs), np.array(ys, np.int64), classes, n_ex


EUROSAT_EXTRA = {"AnnualCrop": "green_area", "HerbaceousVegetation": "green_area", "Pasture": "green_area",
                 "PermanentCrop": "green_area", "River": "water"}
"""EuroSAT folders that are satellite4 classes: vegetated land is green_area,
rivers are water.  Highway, Industrial and Residential have no class here;
Forest and SeaLake are satellite4's own green_area and water."""


def parse_extra_map(text: str) -> dict[str, str]:
    """``"A=b,C=d"`` -> ``{"A": "b", "C": "d"}`` (``--extra-map``); ``"eurosat"``
    is :data:`EUROSAT_EXTRA`."""
    if text.strip().lower() == "eurosat":
        return dict(EUROSAT_EXTRA)
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        src, sep, dst = part.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"--extra-map: {part!r} is not FOLDER=CLASS")
        out[src.strip()] = dst.strip()
    return out


def load_extra(folder: str, mapping: dict[str, str], classes: list[str], records: list[Record], size: int,
               limit_per_folder: int | None = None, seed: int = 0):
    """Extra training images: every folder ``src`` of ``mapping`` under
    ``folder`` as class ``mapping[src]`` (one of ``classes``), at most
    ``limit_per_folder`` each (a seeded sample), leaving out every image whose
    exact or near hash is one of ``records`` (the prepared data set, so no
    validation or test image, nor a copy of a training one, comes back).

    Returns (x (n, size, size, 3) uint8, y (n,) int64, report dict)."""
    bad = sorted({c for c in mapping.values() if c not in classes})
    if bad:
        raise ValueError(f"extra data: class(es) {', '.join(bad)} not in the data set's classes "
                         f"({', '.join(classes)})")
    missing = sorted(s for s in mapping if not os.path.isdir(os.path.join(folder, s)))
    if missing:
        raise ValueError(f"{folder}: no folder(s) {', '.join(missing)}")
    if not mapping:
        raise ValueError("--extra-map: no FOLDER=CLASS pair; expected e.g. River=water,Pasture=green_area, or eurosat")
    exclude = {r.sha for r in records} | {r.near for r in records}
    xs, ys = [], []
    doc = {"folder": folder, "map": dict(mapping), "limit_per_folder": limit_per_folder, "per_folder": {},
           "excluded": 0, "per_class": {}}
    for i, src in enumerate(sorted(mapping)):
        x, _, _, n_ex = load_folder(folder, size, [src], exclude_hashes=exclude,
                                    limit_per_class=limit_per_folder, seed=seed + i)
        xs.append(x)
        ys.append(np.full(len(x), classes.index(mapping[src]), np.int64))
        doc["per_folder"][src] = int(len(x))
        doc["excluded"] += int(n_ex)
        doc["per_class"][mapping[src]] = doc["per_class"].get(mapping[src], 0) + int(len(x))
    return np.concatenate(xs), np.concatenate(ys), doc
