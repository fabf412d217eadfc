"""The multispectral model's training chips (issue 24): 64 px, 4 bands (blue,
green, red, near-infrared), float32 top-of-atmosphere reflectance, written
as a chips folder (``chips.csv`` + class folders, the format of ``geoseg
chips``) that ``geoseg train --input-kind reflectance`` reads.

``python -m geoseg.training.msdata SHARED -o DATA_DIR`` builds it from
``../shared`` (see :func:`build`); every source, its class map and what was
left out is written to ``DATA_DIR/sources.json``.  Sources:

- EuroSAT MS (Sentinel-2 L1C, 10 m): vegetated classes -> green_area,
  SeaLake -> water, Residential/Industrial -> desert (bare or built-up land,
  the default model's definition since issue 13); River and Highway chips are
  mostly the land around the river or road, so they are labelled by their
  majority (water share NDWI > 0, else vegetation share NDVI > 0.3) or left
  out when neither holds.
- 38-Cloud (Landsat-8 L1TP, 30 m; TOA = DN x 2.0e-5 - 0.1): only the
  patches ``bench/cloud38_split.json`` lists as ``train``; 64 px tiles at a
  32 px step inside each quadrant of a patch (a quadrant is a split group):
  cloud share >= 0.5 -> cloudy; clear tiles (cloud < 0.05) labelled water or
  green_area when 60 % of their pixels say so by NDWI / NDVI, else left out.
- Brandenburg (Sentinel-2 L1C, 10 m, February): chips of the WEST half of
  the 10 m grid cut by ``geoseg chips`` with the OSM polygons
  (``--stride 16 --min-purity 0.5``), relabelled by :data:`OSM_MAP` (the
  suite's map); the east half is the suite's.
- Brandenburg by index (``--brandenburg-index-chips``, off by default): the
  same west half cut into 64 px tiles at a 32 px step inside 256 px blocks
  (a block is a split group) and labelled by the 38-Cloud rule, with the
  clouds of s2cloudless (:func:`s2cloudless_mask`, computed on the west
  half only) in place of a cloud mask: cloud share >= 0.5 -> cloudy; clear
  tiles (cloud < 0.05) with 60 % of their pixels NDWI > 0 -> water; others
  left out (green_area and desert come from the OSM chips).  Real
  Sentinel-2 winter lakes and cloud, which EuroSAT (no cloud) and the OSM
  chips (no water chip passes their purity) lack.  Added after the
  mixtures, so the mixtures are the same with and without them.
- Thin cloud (``--cloud-mixtures N``, off by default): ground chips seen
  through a 38-Cloud training tile of cloud, x = (1 - a) ground + a cloud,
  a uniform in 0.2-0.8, cloudy where a >= 0.5 (:func:`add_cloud_mixtures`);
  written last, so every other chip is the same with and without them.
- Arid land: the 4-class set's desert images (8-bit RGB, no near-infrared):
  reflectance = DN x 0.275/255 (the EuroSAT RGB encoding, measured on
  EuroSAT MS vs RGB class medians) x a brightness gain (log-uniform 1.0-1.8:
  bright sand is 0.25-0.45 in red TOA), near-infrared from a bare-soil line
  nir = a x red + b + noise: a, b fitted on bare pixels (NDVI -0.05-0.12,
  NDWI < -0.02, red > 0.06) of EuroSAT MS (a 1.087, b 0.013, residual sd
  0.018) and of the Brandenburg west half in winter (a 1.216, b -0.002); each
  image draws a between the two.

The scenes the suite scores (sen1floods11_spain, s2_amsterdam, NAIP, the
held-back 38-Cloud patches, the Brandenburg east half) are never read here.
Mixed water/land cells come from ``--mix-cells`` at training time.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import logging
import os
import sys
import warnings

import numpy as np

log = logging.getLogger(__name__)

BANDS = ("blue", "green", "red", "nir")
COLUMNS = ("chip", "class", "scene", "col_off", "row_off", "width", "height", "left", "bottom", "right", "top",
           "crs", "pixel_size_x", "pixel_size_y", "purity", "group")  # chips.csv, as `geoseg chips` writes it
SIZE = 64
EUROSAT_MAP = {"AnnualCrop": "green_area", "Forest": "green_area", "HerbaceousVegetation": "green_area",
               "Pasture": "green_area", "PermanentCrop": "green_area", "SeaLake": "water",
               "Residential": "desert", "Industrial": "desert", "River": "majority", "Highway": "majority"}
OSM_MAP = {"forest": "green_area", "farm": "green_area", "meadow": "green_area", "grass": "green_area",
           "scrub": "green_area", "orchard": "green_area", "vineyard": "green_area", "water": "water",
           "residential": "desert", "industrial": "desert", "quarry": "desert"}
EUROSAT_RGB_SCALE = 0.275 / 255  # reflectance of one 8-bit step in EuroSAT RGB (and the desert JPEGs, assumed)
SOIL_LINES = ((1.087, 0.0133), (1.216, -0.0017))  # (slope, intercept): EuroSAT MS bare pixels, Brandenburg west
SOIL_RESIDUAL_SD = 0.018
DESERT_GAIN = (1.0, 1.8)
BRANDENBURG_WEST_COLS = 768  # of the 1536 columns of the 10 m bands
BRANDENBURG_PREFIX = "T33UUU_20170216T102101_"
# s2cloudless (Sentinel Hub's Sentinel-2 cloud detector): its ten L1C bands; its 10 m averaging and dilation with
# the probability threshold of Earth Engine's s2cloudless tutorial (the library's 0.4 takes bright bare winter fields
# of the Brandenburg tile for cloud: docs/training.md, "The Brandenburg reference gets its clouds")
S2_CLOUD_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
S2_CLOUD_THRESHOLD, S2_CLOUD_AVERAGE_OVER, S2_CLOUD_DILATION = 0.65, 4, 2


def indices(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NDWI (McFeeters) and NDVI of a (4, h, w) blue, green, red, nir array."""
    _, g, r, n = x
    with np.errstate(divide="ignore", invalid="ignore"):
        return (g - n) / np.maximum(g + n, 1e-6), (n - r) / np.maximum(n + r, 1e-6)


def majority_label(x: np.ndarray, share: float = 0.5) -> str | None:
    ndwi, ndvi = indices(x)
    if (ndwi > 0).mean() >= share:
        return "water"
    if (ndvi > 0.3).mean() >= share:
        return "green_area"
    return None


class Writer:
    """Writes float32 chips (``bands``, default blue, green, red, nir) and their chips.csv rows."""

    def __init__(self, out: str, bands: tuple[str, ...] = BANDS):
        self.out, self.rows, self.bands = out, [], tuple(bands)
        self._read: dict[str, np.ndarray] = {}
        os.makedirs(out, exist_ok=True)

    def chip(self, row: dict) -> np.ndarray:
        """The pixels of a chip written here (float32, read once)."""
        from geoseg.chips import read_chip

        if row["chip"] not in self._read:
            self._read[row["chip"]] = read_chip(os.path.join(self.out, row["chip"]))[0].astype(np.float32)
        return self._read[row["chip"]]

    def add(self, x: np.ndarray, cls: str, source: str, name: str, group: str, crs=None, transform=None,
            pixel_size: float | None = None) -> None:
        import rasterio
        from affine import Affine
        from rasterio.enums import ColorInterp

        x = np.asarray(x, np.float32)
        rel = f"{cls}/{source}_{name}.tif"
        path = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # no georeference known: a nominal pixel grid (readers then warn about nothing)
        t = transform or Affine(pixel_size or 1.0, 0, 0, 0, -(pixel_size or 1.0), 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path, "w", driver="GTiff", width=x.shape[2], height=x.shape[1], count=len(self.bands),
                               dtype="float32", crs=crs, transform=t, compress="deflate") as dst:
                dst.write(x)
                dst.colorinterp = [getattr(ColorInterp, b, ColorInterp.undefined) if b in ("red", "green", "blue")
                                   else ColorInterp.undefined for b in self.bands]
                for i, b in enumerate(self.bands, 1):
                    dst.set_band_description(i, b)
                dst.update_tags(CLASS=cls, SOURCE=source, UNITS="top-of-atmosphere reflectance")
        self.rows.append({"chip": rel, "class": cls, "scene": source, "col_off": 0, "row_off": 0,
                          "width": x.shape[2], "height": x.shape[1], "left": "", "bottom": "", "right": "",
                          "top": "", "crs": "" if crs is None else str(crs),
                          "pixel_size_x": "" if pixel_size is None else pixel_size,
                          "pixel_size_y": "" if pixel_size is None else pixel_size, "purity": "",
                          "group": group})

    def close(self, doc: dict) -> None:
        self.rows.sort(key=lambda r: (r["class"], r["chip"]))
        with open(os.path.join(self.out, "chips.csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(self.rows)
        doc["counts"] = {}
        for r in self.rows:
            key = f"{r['scene']}/{r['class']}"
            doc["counts"][key] = doc["counts"].get(key, 0) + 1
        with open(os.path.join(self.out, "chips.json"), "w", encoding="utf-8") as f:
            json.dump({"block_size": "per source (see sources.json)", "bands": list(self.bands)}, f, indent=2)
        with open(os.path.join(self.out, "sources.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)


def add_eurosat_ms(w: Writer, root: str, doc: dict) -> None:
    import rasterio

    left: dict[str, int] = {}
    for folder, target in sorted(EUROSAT_MAP.items()):
        for f in sorted(glob.glob(os.path.join(root, folder, "*.tif"))):
            with rasterio.open(f) as src:
                x = src.read([2, 3, 4, 8]).astype(np.float32) * 1e-4  # B02, B03, B04, B08
                crs, t = src.crs, src.transform
            cls = majority_label(x) if target == "majority" else target
            if cls is None:
                left[folder] = left.get(folder, 0) + 1
                continue
            stem = os.path.splitext(os.path.basename(f))[0]
            w.add(x, cls, "eurosat_ms", stem, f"eurosat_ms:{stem}", crs, t, 10.0)
    doc["eurosat_ms"] = {"folder": root, "map": EUROSAT_MAP, "left_out_no_majority": left,
                         "reflectance": "DN x 1e-4 (L1C TOA), bands 2, 3, 4, 8"}


def _read1(path: str) -> np.ndarray:
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 38-Cloud patches have no georeference
        with rasterio.open(path) as src:
            return src.read(1)


def block_tiles(height: int, width: int, block: int, step: int = 32):
    """(k, r, c) of the SIZE px tiles at ``step`` inside each ``block`` x ``block`` block of a height x width
    grid (k: the block's index, row by row; a block is a split group, so overlapping tiles share one)."""
    blocks = [(r0, c0) for r0 in range(0, height - block + 1, block) for c0 in range(0, width - block + 1, block)]
    for k, (r0, c0) in enumerate(blocks):
        for r in range(r0, r0 + block - SIZE + 1, step):
            for c in range(c0, c0 + block - SIZE + 1, step):
                yield k, r, c


def tile_label(tile: np.ndarray, cloud_share: float, clear: tuple[str, ...] = ("water", "green_area")) -> str | None:
    """The 38-Cloud rule for a tile under a cloud mask: cloudy where half of it is cloud; where it is clear
    (< 5 % cloud) its :func:`majority_label` at 60 % if that is one of ``clear``; else None (left out)."""
    if cloud_share >= 0.5:
        return "cloudy"
    cls = majority_label(tile, 0.6) if cloud_share < 0.05 else None
    return cls if cls in clear else None


def add_cloud38(w: Writer, root: str, split_file: str, doc: dict, step: int = 32) -> None:
    with open(split_file, encoding="utf-8") as f:
        split = json.load(f)
    train = split["train"]
    held = set(split.get("heldback", split.get("held_back", [])))
    if held & set(train):
        raise ValueError(f"{split_file}: patches both held back and train: {sorted(held & set(train))}")
    left = 0
    for name in train:
        stem = name[:-4] if name.upper().endswith(".TIF") else name
        dn = np.stack([_read1(os.path.join(root, f"train_{b}", f"{b}_{stem}.TIF"))
                       for b in ("blue", "green", "red", "nir")]).astype(np.float32)
        gt = _read1(os.path.join(root, "train_gt", f"gt_{stem}.TIF")) > 0
        x = np.where(dn > 0, dn * 2.0e-5 - 0.1, 0.0).astype(np.float32)
        valid = (dn > 0).all(0)
        for q, r, c in block_tiles(x.shape[1], x.shape[2], x.shape[1] // 2, step):  # q: the patch's quadrant
            if not valid[r : r + SIZE, c : c + SIZE].all():
                continue
            tile = x[:, r : r + SIZE, c : c + SIZE]
            cls = tile_label(tile, float(gt[r : r + SIZE, c : c + SIZE].mean()))
            if cls is None:
                left += 1
                continue
            w.add(tile, cls, "cloud38", f"{stem[9:40]}_r{r:03d}_c{c:03d}", f"cloud38:{stem}:{q}", pixel_size=None)
    doc["cloud38"] = {"folder": root, "split_file": split_file, "patches": train, "tile_step": step,
                      "left_out": left, "rule": "cloud share >= 0.5: cloudy; < 0.05: water / green_area by "
                      "60 % NDWI > 0 / NDVI > 0.3, else left out; 0.05-0.5 left out",
                      "reflectance": "DN x 2.0e-5 - 0.1 (Landsat-8 C1 L1 TOA)"}


def add_brandenburg(w: Writer, chips_dir: str, doc: dict) -> None:
    from geoseg.chips import read_chip, read_chips_manifest

    rows, _ = read_chips_manifest(chips_dir)
    left: dict[str, int] = {}
    for r in rows:
        cls = OSM_MAP.get(r["class"])
        if cls is None:
            left[r["class"]] = left.get(r["class"], 0) + 1
            continue
        if int(float(r["col_off"])) + SIZE > BRANDENBURG_WEST_COLS:
            raise ValueError(f"{chips_dir}: chip {r['chip']} reaches into the held-back east half")
        x, _ = read_chip(os.path.join(chips_dir, r["chip"]))
        stem = os.path.splitext(os.path.basename(r["chip"]))[0]
        w.add(x, cls, "brandenburg", f"{r['class']}_{stem}", f"brandenburg:{r['group']}", r["crs"], None, 10.0)
    doc["brandenburg"] = {"chips": chips_dir, "map": OSM_MAP, "left_out": left,
                          "region": f"columns 0-{BRANDENBURG_WEST_COLS - 1} of the 10 m grid (west half)"}


def s2cloudless_mask(prefix: str, window, read_window=None):
    """s2cloudless's cloud mask (bool, ``window`` of the 10 m grid) of the L1C product whose band files are
    ``{prefix}{band}.jp2``, and the window's transform.

    The ten bands of S2_CLOUD_BANDS as reflectance (DN / 10000: baselines before 04.00), every band brought to
    the 10 m grid by bilinear resampling over ``read_window`` (default: the whole product, so the window's
    edges see their neighbours), the detector run with S2_CLOUD_THRESHOLD, S2_CLOUD_AVERAGE_OVER and
    S2_CLOUD_DILATION.  Needs ``s2cloudless`` (dev extra).
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.windows import Window
    from s2cloudless import S2PixelCloudDetector

    with rasterio.open(f"{prefix}B04.jp2") as s:
        w, h, t = s.width, s.height, s.transform
    rw = read_window or Window(0, 0, w, h)
    bands = []
    for b in S2_CLOUD_BANDS:
        with rasterio.open(f"{prefix}{b}.jp2") as s:
            a = s.read(1, out_shape=(h, w), resampling=Resampling.bilinear).astype(np.float32) / 10000.0
        bands.append(a[rw.toslices()])
    det = S2PixelCloudDetector(threshold=S2_CLOUD_THRESHOLD, average_over=S2_CLOUD_AVERAGE_OVER,
                               dilation_size=S2_CLOUD_DILATION, all_bands=False)
    mask = det.get_cloud_masks(np.stack(bands, axis=-1)[None])[0].astype(bool)
    r, c = int(window.row_off - rw.row_off), int(window.col_off - rw.col_off)
    window_t = t @ Affine.translation(window.col_off, window.row_off)
    return mask[r : r + int(window.height), c : c + int(window.width)], window_t


def add_brandenburg_index(w: Writer, shared: str, doc: dict, step: int = 32, block: int = 256) -> None:
    """Water and cloud tiles of the Brandenburg west half by NDWI and s2cloudless (module docstring)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    prefix = os.path.join(shared, "scenes", "s2_brandenburg", BRANDENBURG_PREFIX)
    with rasterio.open(f"{prefix}B04.jp2") as s:
        height, crs = s.height, s.crs
    west = Window(0, 0, BRANDENBURG_WEST_COLS, height)
    cloud, transform = s2cloudless_mask(prefix, west, read_window=west)
    bands = []
    for b in ("B02", "B03", "B04", "B08"):
        with rasterio.open(f"{prefix}{b}.jp2") as s:
            bands.append(s.read(1, window=west))
    x = np.stack(bands)
    valid = (x > 0).all(0)
    x = x.astype(np.float32) * 1e-4
    counts: dict[str, int] = {"cloudy": 0, "water": 0, "left_out": 0}
    for _, r, c in block_tiles(height, BRANDENBURG_WEST_COLS, block, step):
        if not valid[r : r + SIZE, c : c + SIZE].all():
            continue
        tile = x[:, r : r + SIZE, c : c + SIZE]
        cls = tile_label(tile, float(cloud[r : r + SIZE, c : c + SIZE].mean()), ("water",))
        if cls is None:
            counts["left_out"] += 1
            continue
        counts[cls] += 1
        group = f"brandenburg_index:{r - r % block}:{c - c % block}"
        w.add(tile, cls, "brandenburg_index", f"r{r:04d}_c{c:04d}", group, crs,
              transform @ Affine.translation(c, r), 10.0)
    doc["brandenburg_index"] = {"region": f"columns 0-{BRANDENBURG_WEST_COLS - 1} of the 10 m grid (west half)",
                                "tile_step": step, "group_block": block, "counts": counts,
                                "cloud": f"s2cloudless, threshold {S2_CLOUD_THRESHOLD}, average_over "
                                f"{S2_CLOUD_AVERAGE_OVER}, dilation {S2_CLOUD_DILATION}, on the west half",
                                "rule": "cloud share >= 0.5: cloudy; < 0.05 and 60 % NDWI > 0: water; else left out"}


def brandenburg_west(shared: str, work: str) -> tuple[str, str]:
    """The Brandenburg west half as one float32 reflectance GeoTIFF (B02, B03,
    B04, B08 x 1e-4) and its chips cut by ``geoseg chips`` with the OSM
    polygons (64 px, step 16, purity 0.5): (scene path, chips folder)."""
    import rasterio
    from rasterio.windows import Window

    from geoseg.chips import ChipConfig, make_chips

    root = os.path.join(shared, "scenes", "s2_brandenburg")
    files = [os.path.join(root, f"T33UUU_20170216T102101_{b}.jp2") for b in ("B02", "B03", "B04", "B08")]
    os.makedirs(work, exist_ok=True)
    scene = os.path.join(work, "brandenburg_west.tif")
    srcs = [rasterio.open(f) for f in files]
    try:
        win = Window(0, 0, BRANDENBURG_WEST_COLS, srcs[0].height)
        a = np.stack([s.read(1, window=win) for s in srcs]).astype(np.float32) * 1e-4
        prof = dict(driver="GTiff", width=int(win.width), height=int(win.height), count=4, dtype="float32",
                    crs=srcs[0].crs, transform=srcs[0].window_transform(win), compress="deflate")
    finally:
        for s in srcs:
            s.close()
    with rasterio.open(scene, "w", **prof) as dst:
        dst.write(a)
        for i, b in enumerate(BANDS, 1):
            dst.set_band_description(i, b)
    chips = os.path.join(work, "brandenburg_west_chips")
    labels = os.path.join(root, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    make_chips([scene], labels, chips, ChipConfig(size=SIZE, stride=16, min_purity=0.5, field="fclass",
                                                  overwrite=True))
    return scene, chips


SHRUB_SPECTRUM = (0.04, 0.06, 0.04, 0.32)  # blue, green, red, nir of green vegetation, TOA (EuroSAT MS Forest medians
# are 0.082, 0.067, 0.040, 0.273; crops' NIR 0.30)


def add_desert(w: Writer, root: str, doc: dict, seed: int = 0, limit: int | None = None,
               veg_max: float = 0.0) -> None:
    from .data import decode_rgb, resize_rgb

    rng = np.random.default_rng(seed)
    n = 0
    files = sorted(glob.glob(os.path.join(root, "*")))
    if limit and len(files) > limit:  # a seeded sample: the other classes have a few hundred chips each
        files = [files[i] for i in sorted(rng.choice(len(files), limit, replace=False))]
    for f in files:
        try:
            im, _ = decode_rgb(f)
        except (ValueError, OSError):
            continue
        rgb = resize_rgb(im, SIZE).astype(np.float32)
        gain = float(np.exp(rng.uniform(*np.log(DESERT_GAIN))))
        refl = rgb * EUROSAT_RGB_SCALE * gain
        t = rng.uniform()
        a = SOIL_LINES[0][0] + t * (SOIL_LINES[1][0] - SOIL_LINES[0][0])
        b = SOIL_LINES[0][1] + t * (SOIL_LINES[1][1] - SOIL_LINES[0][1])
        red = refl[..., 0]
        nir = a * red + b + rng.normal(0, SOIL_RESIDUAL_SD, red.shape).astype(np.float32)
        x = np.stack([refl[..., 2], refl[..., 1], red, np.clip(nir, 0, None)])
        if veg_max:  # sparse shrubs (semi-arid land): a linear mixture with a vegetation spectrum
            fv = rng.uniform(0, veg_max)
            x = (1 - fv) * x + fv * np.array(SHRUB_SPECTRUM, np.float32)[:, None, None]
        name = os.path.splitext(os.path.basename(f))[0]
        group = name.replace(" (1)", "").replace("(1)", "") if " (1)" in name else name
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        w.add(x, "desert", "desert4", digest, f"desert4:{group}")
        n += 1
    doc["desert4"] = {"folder": root, "n": n, "limit": limit, "sparse_vegetation_max": veg_max,
                      "shrub_spectrum": SHRUB_SPECTRUM, "reflectance": f"DN x 0.275/255 x gain (log-uniform {DESERT_GAIN})",
                      "nir": {"soil_lines": SOIL_LINES, "residual_sd": SOIL_RESIDUAL_SD,
                              "measured_on": ["EuroSAT MS bare/built pixels (NDVI -0.05-0.12, NDWI < -0.02, red > "
                                              "0.06), 102621 px, red 0.10-0.32",
                                              "s2_brandenburg west half, same rule and blue < 0.17, 52498 px, "
                                              "red 0.09-0.16"]}}


def water_spectra(shared: str, split_file: str, brandenburg_scene: str | None, n: int = 400,
                  seed: int = 0) -> tuple[np.ndarray, dict]:
    """``n`` real water pixel spectra (blue, green, red, nir reflectance):
    pixels with NDWI > 0.05, NIR < 0.15 and blue < 0.25 (clear to turbid
    water, no snow or cloud) of EuroSAT MS SeaLake/River chips,
    of the 38-Cloud training patches' clear pixels and of the Brandenburg west
    half, an equal share from each source that has any."""
    import rasterio

    rng = np.random.default_rng(seed)
    pools: dict[str, list[np.ndarray]] = {"eurosat_ms": [], "cloud38": [], "brandenburg_west": []}

    def take(src: str, x: np.ndarray, mask: np.ndarray | None = None) -> None:
        ndwi, _ = indices(x)
        m = (ndwi > 0.05) & (x[3] < 0.15) & (x[0] < 0.25) & (x > 0).all(0)
        if mask is not None:
            m &= mask
        px = x[:, m].T
        if len(px):
            pools[src].append(px[rng.choice(len(px), min(len(px), 200), replace=False)])

    for folder in ("SeaLake", "River"):
        for f in sorted(glob.glob(os.path.join(shared, "data", "eurosat_ms", folder, "*.tif"))):
            with rasterio.open(f) as s:
                take("eurosat_ms", s.read([2, 3, 4, 8]).astype(np.float32) * 1e-4)
    with open(split_file, encoding="utf-8") as fh:
        train = json.load(fh)["train"]
    root = os.path.join(shared, "data", "cloud38")
    for name in train:
        dn = np.stack([_read1(os.path.join(root, f"train_{b}", f"{b}_{name}.TIF"))
                       for b in ("blue", "green", "red", "nir")]).astype(np.float32)
        gt = _read1(os.path.join(root, "train_gt", f"gt_{name}.TIF")) == 0
        take("cloud38", np.where(dn > 0, dn * 2.0e-5 - 0.1, 0.0).astype(np.float32), gt)
    if brandenburg_scene:
        with rasterio.open(brandenburg_scene) as s:
            if s.width > BRANDENBURG_WEST_COLS:
                raise ValueError(f"{brandenburg_scene}: wider than the west half ({s.width} columns)")
            take("brandenburg_west", s.read().astype(np.float32))
    got = {k: np.concatenate(v) for k, v in pools.items() if v}
    per = n // max(1, len(got))
    out = np.concatenate([v[rng.choice(len(v), per, replace=len(v) < per)] for v in got.values()])
    doc = {k: {"pixels": int(len(v)), "median": np.median(v, 0).round(4).tolist()} for k, v in got.items()}
    return out.astype(np.float32), doc


def mix_mask_np(rng: np.random.Generator, size: int, share: float) -> np.ndarray:
    """A (size, size) bool mask covering ``share`` of the cell: a smooth blob
    field (a pond, a lake shore) or a straight band (a river, a coast)."""
    from PIL import Image

    if rng.uniform() < 0.5:
        res = int(rng.integers(2, 7))
        low = (rng.uniform(size=(res, res)) * 255).astype(np.float32)
        field = np.asarray(Image.fromarray(low, mode="F").resize((size, size), Image.Resampling.BICUBIC))
    else:
        c = np.arange(size) - (size - 1) / 2
        yy, xx = np.meshgrid(c, c, indexing="ij")
        t, off = rng.uniform(0, np.pi), rng.uniform(-size / 4, size / 4)
        field = -np.abs(xx * np.cos(t) + yy * np.sin(t) - off)
    k = int(np.clip(round(share * size * size), 1, size * size - 1))
    thr = np.sort(field.ravel())[::-1][k - 1]
    return field >= thr


def add_water_mixtures(w: Writer, doc: dict, spectra: np.ndarray, n: int = 600, seed: int = 0,
                       colour_jitter: bool = False, brightness_max: float = 2.0, water_share: float = 2 / 3) -> None:
    """Synthetic water/land cells from the chips already written: a water
    chip (EuroSAT MS SeaLake or a water-majority River chip), 70 % of the
    time re-coloured to a real water spectrum of :func:`water_spectra` times
    a brightness 0.7-``brightness_max`` (log-uniform; NDWI kept: turbid water,
    and the bright water of uncalibrated 8-bit products) with its
    texture kept (scaled 0.5-1.2), takes a land chip's part by a blob or band
    mask; a cell's label is its majority: water share 0.5-1.0 -> water
    (``water_share`` of them, two thirds by default), 0.1-0.5 -> the land
    chip's class.  Each mixture is in its water chip's split group."""

    rng = np.random.default_rng(seed)
    water = [r for r in w.rows if r["class"] == "water"]
    land = [r for r in w.rows if r["class"] in ("green_area", "desert")]
    if not water or not land:
        raise ValueError("water mixtures need water and land chips")
    counts = {"water": 0, "land": 0}
    for i in range(n):
        rw, rl = water[rng.integers(len(water))], land[rng.integers(len(land))]
        xw, xl = w.chip(rw).copy(), w.chip(rl)
        if rng.uniform() < 0.7:
            target = spectra[rng.integers(len(spectra))] * np.exp(rng.uniform(np.log(0.7), np.log(brightness_max)))
            if colour_jitter:  # other water colours (algae, sediment): visible bands x 0.75-1.35 each,
                # NIR x 0.6-1.6 but kept below 0.9 x green (NDWI > 0.05: still water by its spectrum)
                target = target * np.concatenate([rng.uniform(0.75, 1.35, 3), rng.uniform(0.6, 1.6, 1)])
                target[3] = min(target[3], 0.9 * target[1])
            mean = xw.mean((1, 2), keepdims=True)
            xw = np.clip((xw - mean) * rng.uniform(0.5, 1.2) + target[:, None, None], 0.0, None)
        is_water = rng.uniform() < water_share
        share_water = rng.uniform(0.5, 1.0) if is_water else rng.uniform(0.1, 0.5)
        m = mix_mask_np(rng, xw.shape[1], share_water)
        x = np.where(m[None], xw, xl)
        cls = "water" if is_water else rl["class"]
        counts["water" if is_water else "land"] += 1
        w.add(x, cls, "mixture", f"{i:04d}", rw["group"], pixel_size=None)
    doc["mixtures"] = {"n": n, "counts": counts, "water_share": water_share, "colour_jitter": colour_jitter, "brightness_max": brightness_max, "rule": add_water_mixtures.__doc__.split("\n\n")[0].strip()
                       if add_water_mixtures.__doc__ else "", "water_spectra": doc.get("water_spectra")}


def add_cloud_mixtures(w: Writer, doc: dict, n: int = 400, seed: int = 0, alpha: tuple[float, float] = (0.2, 0.8)
                       ) -> None:
    """Synthetic thin-cloud cells from the chips already written: a land or water chip seen through a
    38-Cloud cloud chip (the training patches' cloudy tiles) with opacity ``a`` (uniform in ``alpha``), by
    the linear mixing model x = (1 - a) x ground + a x cloud; a cell is cloudy where a >= 0.5 (the cloud
    is more of what the sensor sees than the ground), else its ground chip's class.  In the ground chip's
    split group."""

    rng = np.random.default_rng(seed + 7)
    clouds = [r for r in w.rows if r["class"] == "cloudy" and r["scene"] == "cloud38"]
    ground = [r for r in w.rows if r["class"] in ("green_area", "desert", "water") and r["scene"] != "mixture"]
    if not clouds or not ground:
        raise ValueError("cloud mixtures need 38-Cloud cloudy tiles and ground chips")
    counts = {"cloudy": 0, "ground": 0}
    for i in range(n):
        rc, rg = clouds[rng.integers(len(clouds))], ground[rng.integers(len(ground))]
        c, g = w.chip(rc), w.chip(rg)
        if c.shape != g.shape:
            continue
        a = float(rng.uniform(*alpha))
        cls = "cloudy" if a >= 0.5 else rg["class"]
        counts["cloudy" if cls == "cloudy" else "ground"] += 1
        w.add((1 - a) * g + a * c, cls, "cloudmix", f"{i:04d}", rg["group"], pixel_size=None)
    doc["cloud_mixtures"] = {"n": n, "alpha": list(alpha), "counts": counts,
                             "rule": "x = (1 - a) ground + a cloud (38-Cloud training tiles); a >= 0.5: cloudy, "
                             "else the ground chip's class; the ground chip's split group"}


def build(shared: str, out: str, split_file: str, brandenburg_chips: str | None, seed: int = 0,
          desert_limit: int | None = 400, brandenburg_scene: str | None = None, mixtures: int = 600,
          colour_jitter: bool = False, brightness_max: float = 2.0, desert_veg_max: float = 0.0,
          brandenburg_index: bool = False, cloud_mixtures: int = 0, mixture_water_share: float = 2 / 3) -> dict:
    w = Writer(out)
    doc: dict = {"bands": list(BANDS), "units": "top-of-atmosphere reflectance (float32)", "size": SIZE,
                 "held_back_never_read": ["scenes/sen1floods11_spain", "scenes/s2_amsterdam", "scenes/naip_*",
                                          "cloud38 heldback patches", "s2_brandenburg east half"]}
    add_eurosat_ms(w, os.path.join(shared, "data", "eurosat_ms"), doc)
    add_cloud38(w, os.path.join(shared, "data", "cloud38"), split_file, doc)
    if brandenburg_chips:
        add_brandenburg(w, brandenburg_chips, doc)
    add_desert(w, os.path.join(shared, "data", "satellite4", "desert"), doc, seed, desert_limit, desert_veg_max)
    if mixtures:
        spectra, doc["water_spectra"] = water_spectra(shared, split_file, brandenburg_scene, seed=seed)
        add_water_mixtures(w, doc, spectra, mixtures, seed, colour_jitter, brightness_max, mixture_water_share)
    if brandenburg_index:  # after the mixtures: they draw from the chips written so far
        add_brandenburg_index(w, shared, doc)
    if cloud_mixtures:  # last: every chip before is the same with and without them
        add_cloud_mixtures(w, doc, cloud_mixtures, seed)
    w.close(doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m geoseg.training.msdata", description=__doc__.splitlines()[0])
    p.add_argument("shared", help="the ../shared folder")
    p.add_argument("-o", "--output", required=True, help="chips folder to write")
    p.add_argument("--split", default="bench/cloud38_split.json", help="38-Cloud train / held-back split")
    p.add_argument("--brandenburg-chips", default=None,
                   help="chips of the Brandenburg west half cut by `geoseg chips` (fclass folders)")
    p.add_argument("--work", default=None, help="folder for the Brandenburg west half and its chips (built here "
                   "when --brandenburg-chips is not given)")
    p.add_argument("--desert-limit", type=int, default=400, help="at most this many 4-class desert images")
    p.add_argument("--brandenburg-scene", default=None,
                   help="the Brandenburg west half as one 4-band reflectance GeoTIFF (water spectra)")
    p.add_argument("--mixtures", type=int, default=600, help="synthetic water/land cells")
    p.add_argument("--desert-veg-max", type=float, default=0.0,
                   help="desert images mixed with up to this share of a shrub spectrum (semi-arid land)")
    p.add_argument("--water-brightness-max", type=float, default=2.0,
                   help="mixtures' re-coloured water: brightness gain 0.7 to this")
    p.add_argument("--water-colour-jitter", action="store_true",
                   help="mixtures' water takes other colours (per-band gains, NDWI kept above 0.05)")
    p.add_argument("--brandenburg-index-chips", action="store_true",
                   help="also water (NDWI) and cloud (s2cloudless) tiles of the Brandenburg west half")
    p.add_argument("--cloud-mixtures", type=int, default=0,
                   help="synthetic thin-cloud cells: ground chips seen through 38-Cloud cloud (opacity 0.2-0.8)")
    p.add_argument("--mixture-water-share", type=float, default=2 / 3,
                   help="share of the mixtures that are mostly water (the others: 10-50 %% water, the land's class)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not 0.0 <= a.mixture_water_share <= 1.0:
        p.error(f"--mixture-water-share {a.mixture_water_share}: expected 0-1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.work and not a.brandenburg_chips:
        a.brandenburg_scene, a.brandenburg_chips = brandenburg_west(a.shared, a.work)
    doc = build(a.shared, a.output, a.split, a.brandenburg_chips, a.seed, a.desert_limit, a.brandenburg_scene,
                a.mixtures, a.water_colour_jitter, a.water_brightness_max, a.desert_veg_max,
                a.brandenburg_index_chips, a.cloud_mixtures, a.mixture_water_share)
    print(json.dumps(doc["counts"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
