"""The scene suite (issue 23): one table of figures no new default model may
regress.

Scores any model (a path, or the built-in names ``default``,
``default.int8``, ``multispectral`` and ``rgb-reflectance``:
``geoseg/models/NAME.onnx``) on
every scene of ../shared that has a reference, through the real CLI as a
user would run it (``geoseg classify`` then ``geoseg evaluate-scene``, as
subprocesses of the venv's ``geoseg``), plus the held-out test split of the
4-class set.  Writes one markdown table and one JSON file; with
``--write-suite-json`` also ``geoseg/models/NAME.suite.json`` for built-ins.

Scenes and references (built once, cached under ``bench/out/suite``):

- ``naip``: NAIP aerial, uint8 RGB+NIR, 5 m; water vs NDWI of bands 2/4
  (``geoseg reference ndwi``).
- ``amsterdam``: Sentinel-2 L1C, uint16 (reflectance x 65535), B04/B03/B02
  (+B08) stacked into one GeoTIFF, ``--nodata 0``; water vs NDWI of B03/B08.
- ``spain``: sen1floods11 Spain, Sentinel-2 L1C, int16 (reflectance x
  10000), 13 bands (RGB = ``-b 4,3,2``); water vs the hand-drawn label
  (1 water, 0 not water, -1 = no label: a copy with nodata -1).
- ``brandenburg_east``: Sentinel-2 L1C tile T33UUU (uint16, x 10000),
  B04/B03/B02/B08 at 10 m, the EAST half only (columns 768-1535; the west
  half is the multispectral model's training region), ``--nodata 0``;
  all classes vs OpenStreetMap land use (``fclass``): forest, farm, meadow,
  grass, scrub, orchard, vineyard -> green_area; water -> water;
  residential, industrial, quarry -> desert; wetland and anything else
  left out (unmapped).  The scene is winter with about a quarter cloud and
  OSM has no cloud: the clouds of s2cloudless (Sentinel Hub's Sentinel-2
  cloud detector, on the tile's ten L1C bands, independent of geoseg's
  models) are drawn over the polygons as ``cloudy`` (they win where they
  overlap), so land cover is scored where the ground is seen and clouds
  where they are.  Threshold 0.65 on the detector's probability (averaged
  over its 4-pixel disk, dilated by 2 pixels): the Earth Engine s2cloudless
  tutorial's MAX_CLOUD_PROBABILITY; the library's default 0.4 also takes
  bright bare winter fields of this scene for cloud (docs/training.md).
  Until 2026-12-05 the reference had no cloud, and cells under the cloud
  were scored as their land use.
- ``cloud38_u16`` / ``cloud38_f32`` / ``cloud38_u8``: the 38-Cloud patches
  held back in ``bench/cloud38_split.json`` (Landsat-8 L1TP B4/B3/B2 (+B5),
  384 px at 30 m); cloudy vs the cloud masks, each patch classified as its
  own scene and the cells pooled.  The patches have no CRS: each is given
  a synthetic georeference (EPSG:32633, 30 m pixels, an arbitrary origin)
  in a copy; the pixels are unchanged.  Three forms of the same pixels:
  ``u16`` the digital numbers as delivered (``--nodata 0``); ``f32`` top-
  of-atmosphere reflectance DN x 2.0e-5 - 0.1 (float32, NaN outside); ``u8``
  an 8-bit true-colour product, reflectance 0-0.4 -> 1-255 (0 = nodata),
  the common x 2.5 "true colour" gain.
- ``test_split``: the 759 held-out test images of ../shared/data/satellite4
  from ``geoseg prepare ../shared/data/satellite4 --seed 0`` (the split every
  default model since session 1 was trained and tested on), decoded and
  brought to 64 px as training does, run through onnxruntime: accuracy and
  the lowest class recall.  RGB models only.

Scenes with no honest reference (listed in the table with the reason):
RGB.byte.tif, rgb8.tif, rgb16.tif, mosaic_cog1.tif (RGB only, no labels),
landsat_2020.tif (4 bands of an undocumented false-colour order), the 38-
Cloud patches not held back (training data), s2_brandenburg's
s2l1c_ref.gpkg (30 polygons of classes 1/2 with no documented meaning).

RGB models read the RGB bands with the scene's own dtype, as ``geoseg
classify`` would (``-b`` picks them; the contract's scaling applies, or
``--scaling`` for non-uint8 scenes; ``--scaling reflectance:GAIN`` gives each
non-uint8 scene ``--scaling linear:`` of its known calibration x GAIN, i.e.
what an RGB model reading reflectance would see).  Models whose contract says
``input_kind: reflectance`` read blue, green, red, NIR (``-b B,G,R,N``)
with the scene's reflectance scale (``--reflectance-scale/-offset``).

    .venv/bin/python bench/model_suite.py [MODEL|NAME ...] [-o bench/out/suite]
        [--md OUT.md] [--json OUT.json] [--scaling RULE] [--scenes a,b]
        [--write-suite-json]

Needs ../shared (GEOSEG_SHARED).  About 1-2 min per model on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from geoseg.bands import RGB, is_rgb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("GEOSEG_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
GEOSEG = os.path.join(os.path.dirname(sys.executable), "geoseg")
MODELS = os.path.join(ROOT, "geoseg", "models")
BUILTINS = ("default", "default.int8", "multispectral", "rgb-reflectance")
SCENES = os.path.join(SHARED, "scenes")
NAIP = os.path.join(SCENES, "naip_m_4709963_se_14_1_20200831.tif")
AMS = os.path.join(SCENES, "s2_amsterdam", "s2_amsterdam_")
SPAIN = os.path.join(SCENES, "sen1floods11_spain", "Spain_7370579_")
BRB = os.path.join(SCENES, "s2_brandenburg", "T33UUU_20170216T102101_")
OSM = os.path.join(SCENES, "s2_brandenburg", "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
CLOUD38 = os.path.join(SHARED, "data", "cloud38")
SAT4 = os.path.join(SHARED, "data", "satellite4")
SPLIT_FILE = os.path.join(HERE, "cloud38_split.json")

OSM_MAP = {"forest": "green_area", "farm": "green_area", "meadow": "green_area", "grass": "green_area",
           "scrub": "green_area", "orchard": "green_area", "vineyard": "green_area", "water": "water",
           "residential": "desert", "industrial": "desert", "quarry": "desert"}
# TOA reflectance of Landsat-8 Collection 1 L1 digital numbers
L8_SCALE, L8_OFFSET = 2.0e-5, -0.1
U8_GAIN = 255 / 0.4  # 8-bit true-colour product: reflectance 0-0.4 -> 0-255

NO_REFERENCE = {
    "RGB.byte.tif": "Landsat-7 RGB only (no NIR band, no labels): no reference can be derived",
    "rgb8.tif / rgb16.tif": "Landsat-8 RGB only (no NIR band, no labels): no reference can be derived",
    "mosaic_cog1.tif": "Landsat-8 RGB only (no NIR band, no labels): no reference can be derived",
    "landsat_2020.tif": "4 uint8 bands of an undocumented false-colour order: which band is NIR is a guess",
    "s2_brandenburg/s2l1c_ref.gpkg": "30 polygons of classes 1 and 2 with no documented meaning",
    "cloud38 (not held back)": "free for training (bench/cloud38_split.json 'train'): not scored",
}


class SuiteError(Exception):
    """A geoseg command of the suite failed (the message is its last error line)."""


def run_geoseg(*args: str) -> None:
    r = subprocess.run([GEOSEG, *args], capture_output=True, text=True)
    if r.returncode:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        raise SuiteError(lines[-1] if lines else f"geoseg {args[0]} exited {r.returncode}")


def _atomic_write(path: str, profile: dict, bands: list[np.ndarray], colorinterp=None) -> str:
    import rasterio

    tmp = path + ".tmp.tif"
    with rasterio.open(tmp, "w", **profile) as dst:
        for i, b in enumerate(bands, 1):
            dst.write(b, i)
        if colorinterp:
            dst.colorinterp = colorinterp
    os.replace(tmp, path)
    return path


def _rgbn_interp(n: int):
    from rasterio.enums import ColorInterp

    return [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined][:n]


# --------------------------------------------------------------------------------------------- scenes


@dataclass
class Part:
    """One classify + evaluate-scene pair (a scene of the suite has one or more)."""

    scene: str
    reference: str
    rgb_bidx: str
    ms_bidx: str | None  # None: the scene has no NIR band
    classify: list[str] = field(default_factory=list)  # extra classify args for every model
    dtype: str = "uint8"
    refl: tuple[float, float] | None = None  # reflectance = DN x scale + offset (None: 8-bit, no calibration)

    @property
    def reflectance(self) -> list[str]:
        """Extra classify args of a reflectance model: the scene's calibration (none for float and 8-bit)."""
        if self.refl is None or self.dtype.startswith("float"):
            return []
        args = ["--reflectance-scale", repr(self.refl[0])]
        return args + (["--reflectance-offset", repr(self.refl[1])] if self.refl[1] else [])

    def rgb_reflectance(self, gain: float) -> list[str]:
        """``--scaling`` of an RGB model fed reflectance x ``gain`` (8-bit scenes: none, the contract's)."""
        if self.refl is None:
            return []
        return ["--scaling", f"linear:{self.refl[0] * gain!r},{self.refl[1] * gain!r}"]


@dataclass
class Scene:
    name: str
    what: str
    evaluate: list[str]  # evaluate-scene args besides the reference
    classes: list[str]  # the model classes scored (IoU each)
    build: Callable[[str], list[Part]]


def _naip(out: str) -> list[Part]:
    ref = os.path.join(out, "naip_water.tif")
    if not os.path.exists(ref):
        run_geoseg("reference", "ndwi", NAIP, "--green", "2", "--nir", "4", "-o", ref)
    return [Part(NAIP, ref, "1,2,3", "3,2,1,4")]


def _stack(path: str, files: list[str], window=None, nodata=None) -> str:
    """Band files (one band each) stacked into one tiled GeoTIFF (R, G, B, NIR)."""
    import rasterio
    from affine import Affine

    if os.path.exists(path):
        return path
    srcs = [rasterio.open(f) for f in files]
    try:
        s0 = srcs[0]
        t = s0.transform
        if window is not None:
            t = t @ Affine.translation(window.col_off, window.row_off)
        transform = t
        h, w = (int(window.height), int(window.width)) if window is not None else (s0.height, s0.width)
        prof = {"driver": "GTiff", "count": len(files), "dtype": s0.dtypes[0], "crs": s0.crs,
                "transform": transform, "width": w, "height": h, "tiled": True, "blockxsize": 256,
                "blockysize": 256, "compress": "deflate", "nodata": nodata}
        bands = [s.read(1, window=window) for s in srcs]
    finally:
        for s in srcs:
            s.close()
    return _atomic_write(path, prof, bands, _rgbn_interp(len(files)))


def _amsterdam(out: str) -> list[Part]:
    ref = os.path.join(out, "ams_water.tif")
    if not os.path.exists(ref):
        run_geoseg("reference", "ndwi", f"{AMS}B03.tif", "--green", "1", "--nir", f"{AMS}B08.tif", "-o", ref)
    scene = _stack(os.path.join(out, "amsterdam_rgbn.tif"), [f"{AMS}{b}.tif" for b in ("B04", "B03", "B02", "B08")])
    return [Part(scene, ref, "1,2,3", "3,2,1,4", ["--nodata", "0"], "uint16", (1 / 65535, 0.0))]


def _spain(out: str) -> list[Part]:
    import rasterio

    ref = os.path.join(out, "spain_water.tif")
    if not os.path.exists(ref):
        with rasterio.open(f"{SPAIN}LabelHand.tif") as s:
            prof = s.profile | {"nodata": -1, "driver": "GTiff"}
            a = s.read(1)
        _atomic_write(ref, prof, [a])
    return [Part(f"{SPAIN}S2Hand.tif", ref, "4,3,2", "2,3,4,8", [], "int16", (1e-4, 0.0))]


def clouds_over(polygons, mask: np.ndarray, transform):
    """``polygons`` (a GeoDataFrame with ``fclass``) with the cloud pixels of ``mask`` (bool, on the grid of
    ``transform``, in their CRS) appended as polygons of ``fclass`` ``cloud``: last, so where they overlap
    the land use, evaluate-scene's vector reference takes the cloud (the later polygon wins)."""
    import geopandas as gpd
    import pandas as pd
    import shapely
    from rasterio.features import shapes

    clouds = [shapely.geometry.shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)]
    cloud = gpd.GeoDataFrame({"fclass": ["cloud"] * len(clouds)}, geometry=clouds, crs=polygons.crs)
    return gpd.GeoDataFrame(pd.concat([polygons[["fclass", "geometry"]], cloud], ignore_index=True),
                            crs=polygons.crs)


def _brandenburg_reference(out: str, window) -> str:
    """OSM land use with s2cloudless's clouds drawn over it (:func:`clouds_over`)."""
    import pyogrio

    path = os.path.join(out, "brandenburg_east_ref.gpkg")
    if os.path.exists(path):
        return path
    from geoseg.training.msdata import s2cloudless_mask

    # over the whole tile, so the window's edges see their neighbours; independent of every geoseg model
    mask, transform = s2cloudless_mask(BRB, window)
    ref = clouds_over(pyogrio.read_dataframe(OSM, columns=["fclass"]), mask, transform)
    tmp = path + ".tmp.gpkg"
    ref.to_file(tmp, driver="GPKG", layer="reference")
    os.replace(tmp, path)
    return path


def _brandenburg(out: str) -> list[Part]:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(f"{BRB}B04.jp2") as s:
        w, h = s.width, s.height
    half = w // 2
    east = Window(half, 0, w - half, h)
    scene = _stack(os.path.join(out, "brandenburg_east_rgbn.tif"), [f"{BRB}{b}.jp2" for b in ("B04", "B03", "B02", "B08")],
                   east, nodata=0)
    return [Part(scene, _brandenburg_reference(out, east), "1,2,3", "3,2,1,4", ["--nodata", "0"], "uint16", (1e-4, 0.0))]


def osm_map() -> str:
    """``--map`` of OSM_MAP for the fclass values the GeoPackage holds (evaluate-scene refuses others), and the
    clouds of the cloud mask (``cloud=cloudy``)."""
    import pyogrio

    present = set(pyogrio.read_dataframe(OSM, columns=["fclass"], read_geometry=False)["fclass"])
    return ",".join([f"{k}={v}" for k, v in OSM_MAP.items() if k in present] + ["cloud=cloudy"])


def heldback_patches() -> list[str]:
    with open(SPLIT_FILE) as f:
        return list(json.load(f)["heldback"])


def _read_plain(path: str) -> np.ndarray:
    """Band 1 of a file with no georeference (rasterio's warning about it is expected)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as s:
            return s.read(1)


def _cloud38_scene(out: str, name: str, form: str) -> tuple[str, str]:
    """The held-back patch ``name`` as a georeferenced R,G,B,NIR GeoTIFF in ``form`` and its cloud reference."""
    from affine import Affine
    from rasterio.crs import CRS

    scene = os.path.join(out, f"cloud38_{form}_{name}.tif")
    ref = os.path.join(out, f"cloud38_gt_{name}.tif")
    if os.path.exists(scene) and os.path.exists(ref):
        return scene, ref
    raw = [_read_plain(os.path.join(CLOUD38, f"train_{b}", f"{b}_{name}.TIF")) for b in ("red", "green", "blue", "nir")]
    gt = _read_plain(os.path.join(CLOUD38, "train_gt", f"gt_{name}.TIF"))
    valid = np.all([r > 0 for r in raw], axis=0)
    h, w = gt.shape
    # synthetic georeference: the patches carry none (the pixels are unchanged)
    base = {"driver": "GTiff", "width": w, "height": h, "crs": CRS.from_epsg(32633),
            "transform": Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 5800000.0), "tiled": True, "blockxsize": 128,
            "blockysize": 128}
    if not os.path.exists(ref):
        g = np.where(valid, gt, 1).astype(np.uint8)
        _atomic_write(ref, base | {"count": 1, "dtype": "uint8", "nodata": 1}, [g])
    if form == "u16":
        bands, prof = raw, base | {"count": 4, "dtype": "uint16", "nodata": 0}
    else:
        refl = [np.where(valid, r.astype(np.float64) * L8_SCALE + L8_OFFSET, np.nan) for r in raw]
        if form == "f32":
            bands, prof = [r.astype(np.float32) for r in refl], base | {"count": 4, "dtype": "float32", "nodata": np.nan}
        else:
            bands = [np.where(valid, np.clip(np.round(np.nan_to_num(r) * U8_GAIN), 1, 255), 0).astype(np.uint8)
                     for r in refl]
            prof = base | {"count": 4, "dtype": "uint8", "nodata": 0}
    _atomic_write(scene, prof, bands, _rgbn_interp(4))
    return scene, ref


def _cloud38(form: str) -> Callable[[str], list[Part]]:
    dtype = {"u16": "uint16", "f32": "float32", "u8": "uint8"}[form]
    refl = {"u16": (L8_SCALE, L8_OFFSET), "f32": (1.0, 0.0), "u8": None}[form]

    def build(out: str) -> list[Part]:
        parts = []
        for name in heldback_patches():
            scene, ref = _cloud38_scene(out, name, form)
            parts.append(Part(scene, ref, "1,2,3", "3,2,1,4", [], dtype, refl))
        return parts

    return build


WATER = ["--classes", "water"]
SUITE: list[Scene] = [
    Scene("naip", "NAIP aerial, North Dakota, uint8, 5 m; water vs NDWI", WATER, ["water"], _naip),
    Scene("amsterdam", "Sentinel-2 L1C Amsterdam, uint16, ~6 m; water vs NDWI", WATER, ["water"], _amsterdam),
    Scene("spain", "Sentinel-2 L1C sen1floods11 Spain, int16, 10 m; water vs hand label",
          ["--classes", "water", "--map", "1=water"], ["water"], _spain),
    Scene("brandenburg_east", "Sentinel-2 L1C T33UUU east half, uint16, 10 m, winter; OSM land use under the "
          "s2cloudless cloud mask (no cell of the east half is mostly OSM water: water is scored in accuracy and "
          "kappa only)",
          ["--field", "fclass", "--map", "@osm"], ["green_area", "desert", "cloudy"], _brandenburg),
    Scene("cloud38_u16", "38-Cloud held-back patches, Landsat-8 L1 DN uint16, 30 m; cloud masks",
          ["--classes", "cloudy", "--map", "255=cloudy"], ["cloudy"], _cloud38("u16")),
    Scene("cloud38_f32", "the same patches as float32 TOA reflectance", ["--classes", "cloudy", "--map", "255=cloudy"],
          ["cloudy"], _cloud38("f32")),
    Scene("cloud38_u8", "the same patches as an 8-bit true-colour product (reflectance 0-0.4)",
          ["--classes", "cloudy", "--map", "255=cloudy"], ["cloudy"], _cloud38("u8")),
]
SCENE_NAMES = [s.name for s in SUITE]


# --------------------------------------------------------------------------------------------- scoring


def resolve_model(m: str) -> tuple[str, str]:
    """(label, path) of a model argument: a built-in name or a path."""
    if m in BUILTINS:
        return m, os.path.join(MODELS, f"{m}.onnx")
    return os.path.splitext(os.path.basename(m))[0], os.path.abspath(m)


def model_contract(path: str) -> dict:
    from geoseg.model import load_model

    return load_model(path).contract.to_dict()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pooled(matrices: list[np.ndarray], labels: list[str], classes: list[str]) -> dict:
    """IoU per class, overall accuracy and Cohen's kappa of summed confusion matrices (rows reference)."""
    m = np.sum(matrices, axis=0).astype(np.float64)
    n = m.sum()
    res: dict = {"cells": int(n)}
    if n == 0:
        return res
    po = np.trace(m) / n
    pe = float((m.sum(0) * m.sum(1)).sum()) / (n * n)
    res["accuracy"] = float(po)
    res["kappa"] = float((po - pe) / (1 - pe)) if pe < 1 else None
    for c in classes:
        i = labels.index(c)
        tp, fp, fn = m[i, i], m[:, i].sum() - m[i, i], m[i, :].sum() - m[i, i]
        # undefined where the reference has none of the class (0 would only count false alarms)
        res[f"{c}_iou"] = float(tp / (tp + fp + fn)) if m[i, :].sum() else None
        res[f"{c}_reference_cells"] = int(m[i, :].sum())
        res[f"{c}_model_share"] = float(m[:, i].sum() / n)
    return res


def classify_args(p: Part, model: str, contract: dict, scaling: str | None = None) -> list[str]:
    """``geoseg classify`` arguments (no ``-o``) of ``model`` on part ``p``, as a user would run it: a
    reflectance model with the scene's calibration (an RGB one on its red, green, blue bands), an 8-bit
    model on the RGB bands with its contract's rule (or ``scaling``, an experiment's override)."""
    args = ["classify", p.scene, "-m", model, "--no-polygons", "--no-quicklook", "--overwrite", "-q", *p.classify]
    if contract.get("input_kind") == "reflectance":
        rgb = is_rgb(contract.get("bands") or [])
        return args + ["-b", _rgb_bidx(p.rgb_bidx, contract["bands"]) if rgb else p.ms_bidx or "", *p.reflectance]
    args += ["-b", p.rgb_bidx]
    if scaling and scaling.startswith("reflectance:"):
        args += p.rgb_reflectance(float(scaling.split(":", 1)[1]))
    elif scaling and p.dtype != "uint8":
        args += ["--scaling", scaling]
    return args


def evaluate_map(sc: Scene, p: Part, classes_tif: str, out: str) -> tuple[list[str], np.ndarray]:
    """``geoseg evaluate-scene`` of a class raster against part ``p``'s reference: (labels, cell confusion)."""
    ev = [osm_map() if v == "@osm" else v for v in sc.evaluate]
    run_geoseg("evaluate-scene", classes_tif, "--reference", p.reference, *ev, "-o", out, "--overwrite", "-q")
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    return rep["confusion"]["labels"], np.array(rep["confusion"]["cells"])


def score_scene(sc: Scene, model: str, label: str, contract: dict, out: str, scaling: str | None) -> dict:
    """Classify every part of ``sc`` with ``model`` and pool the evaluate-scene confusions."""
    reflectance = contract.get("input_kind") == "reflectance"
    rgb = is_rgb(contract.get("bands") or [])  # an RGB model (any order)
    row: dict = {"scene": sc.name, "what": sc.what}
    os.makedirs(os.path.join(out, "scenes"), exist_ok=True)
    try:
        parts = sc.build(os.path.join(out, "scenes"))
    except SuiteError as e:
        return row | {"why": f"reference could not be built: {e}"}
    tag = label + "_" + hashlib.sha1(f"{model}|{scaling}".encode()).hexdigest()[:8]
    mats, labels = [], None
    for i, p in enumerate(parts):
        if reflectance and not rgb and p.ms_bidx is None:
            return row | {"why": "the scene has no near-infrared band for a reflectance model"}
        d = os.path.join(out, "runs", tag, f"{sc.name}_{i}")
        try:
            run_geoseg(*classify_args(p, model, contract, scaling), "--no-probs", "-o", d + "_map")
            stem = os.path.splitext(os.path.basename(p.scene))[0]
            labels, cells = evaluate_map(sc, p, os.path.join(d + "_map", f"{stem}_classes.tif"), d + "_eval")
        except SuiteError as e:
            return row | {"why": str(e)}
        mats.append(cells)
    assert labels is not None
    row.update(_pooled(mats, labels, sc.classes))
    if len(parts) > 1:
        row["parts"] = len(parts)
    return row


def _rgb_bidx(rgb_bidx: str, bands: list[str]) -> str:
    """``-b`` of an RGB model whose contract bands are red, green, blue in ``bands``' order."""
    pos = dict(zip(RGB, rgb_bidx.split(","), strict=True))
    return ",".join(pos[b] for b in bands)


def test_split(model: str, out: str) -> dict:
    """Accuracy and lowest class recall on the 4-class test split (cached pixels)."""
    from geoseg.model import load_model, new_session

    info = load_model(model)
    c = info.contract
    row: dict = {"scene": "test_split", "what": "satellite4 held-out test split (prepare --seed 0), 759 images"}
    cd = c.to_dict()
    reflectance = cd.get("input_kind", "dn") == "reflectance"
    if not is_rgb(cd["bands"]):
        return row | {"why": "RGB JPEGs: not an input of a multi-band model"}
    cache = os.path.join(out, "test_split_64.npz")
    if not os.path.exists(cache):
        split = os.path.join(out, "split")
        if not os.path.exists(os.path.join(split, "manifest.csv")):
            run_geoseg("prepare", SAT4, "-o", split, "--seed", "0", "-q")
        from geoseg.training import data as D

        recs = [r for r in D.read_manifest(os.path.join(split, "manifest.csv")) if r.split == "test"]
        xs = [D.resize_rgb(D.decode_rgb(os.path.join(SAT4, r.file))[0], c.patch_size) for r in recs]
        np.savez_compressed(cache + ".tmp.npz", x=np.stack(xs).astype(np.uint8), y=np.array([r.label for r in recs]))
        os.replace(cache + ".tmp.npz", cache)
    z = np.load(cache)
    raw, y = z["x"][..., [RGB.index(b) for b in cd["bands"]]], [str(v) for v in z["y"]]  # the contract's order
    if reflectance:  # the 8-bit images as the runtime reads an uncalibrated 8-bit scene: the contract's uint8 rule
        from geoseg.patches import to_model_input

        x = to_model_input(np.moveaxis(raw, -1, 1), None, c.scaling["uint8"], tuple(cd["input_range"]), None,
                           "NHWC", "float32")
    else:
        x = raw.astype(np.float32)
    sess = new_session(model, 2)
    name = sess.get_inputs()[0].name
    from geoseg.export.graph import feed

    probs = np.concatenate([sess.run(None, {name: feed(x[i:i + 64], c.input_layout, c.input_dtype)})[0]
                            for i in range(0, len(x), 64)])
    pred = probs.argmax(1)
    truth = np.array([c.class_names.index(v) for v in y])
    recalls = {k: float((pred[truth == i] == i).mean()) for i, k in enumerate(c.class_names) if (truth == i).any()}
    low = min(recalls, key=lambda k: recalls[k])
    return row | {"accuracy": float((pred == truth).mean()), "min_recall": recalls[low], "min_recall_class": low,
                  "recall": recalls, "cells": int(len(truth))}


def figures_of(rows: list[dict]) -> dict[str, float]:
    """{"<scene>/<figure>": value} of the figures a guard compares."""
    figs: dict[str, float] = {}
    for r in rows:
        for k, v in r.items():
            if (k.endswith("_iou") or k in ("accuracy", "kappa", "min_recall")) and isinstance(v, float):
                figs[f"{r['scene']}/{k}"] = round(v, 4)
    return figs


def scene_score(r: dict) -> float | None:
    """A scene's score: the mean IoU of its scored classes (None where none is defined)."""
    ious = [v for k, v in r.items() if k.endswith("_iou") and isinstance(v, float)]
    return float(np.mean(ious)) if ious else None


def mean_scene_iou(rows: list[dict]) -> float | None:
    s = [v for r in rows if r["scene"] != "test_split" and (v := scene_score(r)) is not None]
    return round(float(np.mean(s)), 4) if s else None


def evaluate_model(m: str, out: str, scenes: list[str], scaling: str | None = None,
                   with_test: bool = True, log: Callable[[str], None] = print) -> dict:
    label, path = resolve_model(m)
    if not os.path.exists(path):
        raise SuiteError(f"{path}: no such model")
    contract = model_contract(path)
    rows = []
    for sc in SUITE:
        if sc.name in scenes:
            log(f"  {label}: {sc.name}")
            rows.append(score_scene(sc, path, label, contract, out, scaling))
    if with_test:
        rows.append(test_split(path, out))
    return {"model": label, "path": os.path.relpath(path, ROOT) if path.startswith(ROOT) else path,
            "sha256": _sha256(path), "scaling_override": scaling, "input_kind": contract.get("input_kind", "dn"),
            "scaling": contract.get("scaling"), "figures": figures_of(rows), "mean_scene_iou": mean_scene_iou(rows),
            "rows": rows}


# --------------------------------------------------------------------------------------------- tables


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _cell(r: dict, key: str) -> str:
    if "why" in r:
        return "n/a"
    return _f(r.get(key))


def table_md(results: list[dict]) -> str:
    """One row per scene figure, one column per model."""
    heads = [r["model"] + (f" (--scaling {r['scaling_override']})" if r.get("scaling_override") else "")
             for r in results]
    lines = ["| scene | figure | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(results)]
    order: list[tuple[str, str]] = []
    for res in results:
        for r in res["rows"]:
            keys = [k for k in r if k.endswith("_iou")] + ["accuracy", "kappa", "min_recall"]
            for k in keys:
                if (r["scene"], k) not in order and (k in r or "why" in r) and not (k == "kappa" and r["scene"] ==
                                                                                   "test_split"):
                    if "why" in r and k not in ("accuracy",):
                        continue
                    order.append((r["scene"], k))
    by = [{r["scene"]: r for r in res["rows"]} for res in results]
    for scene, k in order:
        vals = []
        for b in by:
            r = b.get(scene)
            vals.append("not run" if r is None else _cell(r, k))
        lines.append(f"| {scene} | {k.replace('_', ' ')} | " + " | ".join(vals) + " |")
    lines.append("| **mean over scenes** | mean IoU of each scene's scored classes | "
                 + " | ".join(_f(res["mean_scene_iou"]) for res in results) + " |")
    counts = []
    for r in results[0]["rows"] if results else []:
        if r.get("cells"):
            refs = ", ".join(f"{k[: -len('_reference_cells')]} {v}" for k, v in r.items()
                             if k.endswith("_reference_cells"))
            counts.append(f"{r['scene']} {r['cells']}" + (f" ({refs})" if refs else ""))
    if counts:
        lines += ["", "Scored cells (reference cells of each scored class): " + "; ".join(counts)
                  + ".  A figure on few cells moves a lot with one cell."]
    whys = [(res["model"], r["scene"], r["why"]) for res in results for r in res["rows"] if "why" in r]
    if whys:
        lines += ["", "n/a: " + "; ".join(f"{m} on {s}: {w}" for m, s, w in whys)]
    shares = []
    for res in results:
        for r in res["rows"]:
            if r["scene"].startswith("cloud38") and "cloudy_model_share" in r:
                shares.append(f"{res['model']} {r['scene']} {r['cloudy_model_share']:.2f} "
                              f"(reference {r['cloudy_reference_cells'] / r['cells']:.2f})")
    if shares:
        lines += ["", "Share of the scored 38-Cloud cells the model calls cloudy: " + "; ".join(shares) + "."]
    return "\n".join(lines) + "\n"


def scenes_md() -> str:
    lines = ["| scene | what, reference |", "|---|---|"]
    lines += [f"| {s.name} | {s.what} |" for s in SUITE]
    lines += ["| test_split | satellite4 held-out test split (759 images): accuracy, lowest class recall |"]
    lines += ["", "Not scored (no honest reference): "
              + "; ".join(f"{k}: {v}" for k, v in NO_REFERENCE.items()) + "."]
    return "\n".join(lines) + "\n"


TOLERANCE = 0.02  # a figure may fall this much below the bar (two seeds of one recipe differ by about this)
TEST_ACCURACY, TEST_MIN_RECALL = 0.985, 0.97


def rule_check(cand: dict, current: dict, floor: dict | None = None, tol: float = TOLERANCE) -> list[str]:
    """Why ``cand`` may not replace ``current`` by the rule of docs/training.md (empty: it may).

    Every figure of ``current`` (and of ``floor``) must hold within ``tol``; the
    4-class test targets must hold; the mean over the scenes must rise."""
    why = []
    for bar_name, bar in (("current default", current), ("floor", floor)):
        if bar is None:
            continue
        for k, v in bar["figures"].items():
            got = cand["figures"].get(k)
            if got is None:
                why.append(f"{k}: not measured (the {bar_name} has {v:.3f})")
            elif got < v - tol:
                why.append(f"{k}: {got:.3f}, more than {tol} below the {bar_name}'s {v:.3f}")
    acc, rec = cand["figures"].get("test_split/accuracy"), cand["figures"].get("test_split/min_recall")
    if acc is None or acc < TEST_ACCURACY:
        why.append(f"test_split/accuracy: {acc} < {TEST_ACCURACY}")
    if rec is None or rec < TEST_MIN_RECALL:
        why.append(f"test_split/min_recall: {rec} < {TEST_MIN_RECALL}")
    if (cand["mean_scene_iou"] or 0) <= (current["mean_scene_iou"] or 0):
        why.append(f"mean over scenes {cand['mean_scene_iou']} does not rise above {current['mean_scene_iou']}")
    return why


INT8_TOLERANCE, INT8_TEST_POINTS = 0.03, 0.005


def int8_check(q: dict, f: dict) -> list[str]:
    """Why the int8 variant ``q`` may not ship beside its float model ``f`` (empty: it may): within
    0.5 point of it on the test split and within 0.03 on every suite figure."""
    why = []
    for k, v in f["figures"].items():
        tol = INT8_TEST_POINTS if k == "test_split/accuracy" else INT8_TOLERANCE
        got = q["figures"].get(k)
        if got is None or got < v - tol:
            why.append(f"{k}: {got} vs the float model's {v:.3f} (tolerance {tol})")
    return why


def rule_md(results: list[dict]) -> str:
    """The rule applied to results[2:] with results[0] the current default and results[1] the floor."""
    cur, floor = results[0], results[1]
    lines = [f"Rule (docs/training.md), current default = {cur['model']}, floor = {floor['model']}:"]
    by = {r["model"]: r for r in results}
    for cand in results[2:]:
        if cand["model"].endswith(".int8") and cand["model"][: -len(".int8")] in by:
            w = int8_check(cand, by[cand["model"][: -len(".int8")]])
            lines.append(f"- {cand['model']} (int8 rule, against its float model): "
                         + ("PASSES" if not w else "FAILS: " + "; ".join(w)))
            continue
        a = rule_check(cand, cur)
        b = [w for w in rule_check(cand, cur, floor) if w not in a]
        lines.append(f"- {cand['model']}: replacement rule {'PASSES' if not a else 'FAILS: ' + '; '.join(a)}; "
                     f"floor {'held' if not b else 'NOT held: ' + '; '.join(b)}")
    return "\n".join(lines) + "\n"


CARD_START, CARD_END = "<!-- model-suite:start -->", "<!-- model-suite:end -->"


def _fig(res: dict, key: str) -> str:
    return _f(res["figures"].get(key))


def sensors_md(res: dict) -> str:
    """Per kind of scene, what to expect of the model ``res`` (from its suite figures)."""
    f = lambda k: _fig(res, k)  # noqa: E731
    share = {r["scene"]: r.get("cloudy_model_share") for r in res["rows"]}
    ref = {r["scene"]: (r["cloudy_reference_cells"] / r["cells"]) if r.get("cells") and "cloudy_reference_cells" in r
           else None for r in res["rows"]}
    cl = lambda s: (f"cloudy IoU {f(s + '/cloudy_iou')}, cloudy on {_f(share.get(s))} of the cells "  # noqa: E731
                    f"(reference {_f(ref.get(s))})")
    rows = [
        ("8-bit RGB products", f"38-Cloud as an 8-bit true-colour product: {cl('cloud38_u8')}. uint8 pixels are used "
         "as they are (identity): products rendered brighter or darker than the training images shift the classes."),
        ("16-bit reflectance", f"Sentinel-2 L1C: Amsterdam (x 65535) water IoU {f('amsterdam/water_iou')}, "
         f"sen1floods11 Spain (int16 x 10000) water IoU {f('spain/water_iou')}, Brandenburg east (winter, "
         f"OSM under s2cloudless clouds) green_area IoU {f('brandenburg_east/green_area_iou')}, desert (built-up) "
         f"IoU {f('brandenburg_east/desert_iou')}, cloudy IoU {f('brandenburg_east/cloudy_iou')}, accuracy "
         f"{f('brandenburg_east/accuracy')}; the contract's uint16 "
         "rule applies (`geoseg info`)."),
        ("aerial NAIP (uint8, 5 m)", f"water IoU {f('naip/water_iou')} against NDWI, accuracy "
         f"{f('naip/accuracy')}: the algae-green prairie ponds read as green_area."),
        ("Landsat TOA", f"38-Cloud Landsat-8 L1 digital numbers (uint16): {cl('cloud38_u16')}; as float TOA "
         f"reflectance: {cl('cloud38_f32')}. No Landsat water or land-cover reference in ../shared."),
        ("clouds", f"uint16 {f('cloud38_u16/cloudy_iou')}, float {f('cloud38_f32/cloudy_iou')}, 8-bit "
         f"{f('cloud38_u8/cloudy_iou')} cloudy IoU on the held-back 38-Cloud patches (4 patches, 144 cells; "
         "cloud fractions 0.03-1.0)."),
    ]
    return "| kind of scene | what to expect (suite figures) |\n|---|---|\n" + "\n".join(
        f"| {k} | {v} |" for k, v in rows) + "\n"


def card_section(results: list[dict]) -> str:
    """The model card's suite section: the table of ``results`` and, for the first model, per-sensor rows."""
    return "\n".join([
        CARD_START,
        "## Scene suite (issue 23): the figures a new default may not regress",
        "",
        "Run by `make model-suite` (`bench/model_suite.py`): `geoseg classify` and `geoseg evaluate-scene` on every "
        "scene of ../shared with a reference, default options, the contract's scaling; cells are 64 px patches. "
        "The same figures are in `<model>.suite.json`, which `tests/test_model_suite.py` holds each shipped model "
        "to (within 0.02). The rule for replacing the default: docs/training.md.",
        "",
        table_md(results),
        scenes_md(),
        "### What to expect, per kind of scene",
        "",
        sensors_md(results[0]),
        CARD_END,
    ]) + "\n"


def write_card(path: str, results: list[dict]) -> None:
    """Replace (or append) the suite section of the model card at ``path``."""
    with open(path) as f:
        text = f.read()
    sec = card_section(results)
    if CARD_START in text and CARD_END in text:
        a, b = text.index(CARD_START), text.index(CARD_END) + len(CARD_END)
        text = text[:a] + sec.rstrip("\n") + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + sec
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="ONNX paths or built-in names (default, default.int8, multispectral, rgb-reflectance) "
                    "[default: every built-in present]")
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "bench", "out", "suite"))
    ap.add_argument("--md", default=None, help="Markdown table [default: OUTPUT/suite.md].")
    ap.add_argument("--json", default=None, help="JSON results [default: OUTPUT/suite.json].")
    ap.add_argument("--scaling", default=None, help="--scaling for the non-uint8 scenes of RGB models "
                    "[default: the contract's]; reflectance:GAIN: each scene's reflectance (its known "
                    "calibration) x GAIN, i.e. --scaling linear:SCALE*GAIN,OFFSET*GAIN per scene.")
    ap.add_argument("--scenes", default=",".join(SCENE_NAMES), help="Comma-separated scene names.")
    ap.add_argument("--no-test-split", action="store_true")
    ap.add_argument("--write-suite-json", action="store_true",
                    help="Write geoseg/models/NAME.suite.json for each built-in model scored.")
    ap.add_argument("--rule", action="store_true", help="Apply the rule: the first model is the current default, "
                    "the second the floor, the others candidates.")
    ap.add_argument("--card", default=None, help="Write the suite section into this model card (replacing it).")
    a = ap.parse_args(argv)
    if not os.path.isdir(SCENES):
        print(f"{SHARED}: no shared data here; set GEOSEG_SHARED to the folder holding scenes/ and data/",
              file=sys.stderr)
        return 2
    scenes = [s for s in a.scenes.split(",") if s]
    bad = [s for s in scenes if s not in SCENE_NAMES]
    if bad:
        print(f"--scenes: unknown {', '.join(bad)}; expected some of {', '.join(SCENE_NAMES)}", file=sys.stderr)
        return 2
    models = a.models or [m for m in BUILTINS if os.path.exists(os.path.join(MODELS, f"{m}.onnx"))]
    os.makedirs(a.output, exist_ok=True)
    results = []
    for m in models:
        try:
            results.append(evaluate_model(m, a.output, scenes, a.scaling, not a.no_test_split))
        except SuiteError as e:
            print(f"{m}: {e}", file=sys.stderr)
            return 1
    md = table_md(results)
    if a.rule and len(results) > 2:
        md += "\n" + rule_md(results)
    print(md)
    with open(a.md or os.path.join(a.output, "suite.md"), "w") as f:
        f.write(md + "\n" + scenes_md())
    with open(a.json or os.path.join(a.output, "suite.json"), "w") as f:
        json.dump(results, f, indent=2)
    if a.card:
        write_card(a.card, results)
    if a.write_suite_json:
        for res in results:
            if res["model"] in BUILTINS and os.path.abspath(os.path.join(ROOT, res["path"])) == \
                    os.path.join(MODELS, f"{res['model']}.onnx"):
                with open(os.path.join(MODELS, f"{res['model']}.suite.json"), "w") as f:
                    json.dump(res, f, indent=1)
                    f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
