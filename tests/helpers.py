"""Builders for tests: a hand-made ONNX colour model with a known answer and
tiny GeoTIFFs painted patch by patch."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine

from geoseg.contract import CONTRACT_KEY, ModelContract, Scaling

CLASS_NAMES = ("cloudy", "desert", "green_area", "water")
CLASS_RGB = np.array([[240, 240, 240], [220, 190, 110], [40, 140, 60], [30, 90, 190]], np.float32)
COLORS = ("#f0f0f0", "#e3c16f", "#2e8b3a", "#1f5fbf")
# reflectance of the classes in blue, green, red, near-infrared (a reflectance test model's signatures)
CLASS_REFL = np.array([[0.50, 0.50, 0.50, 0.50], [0.25, 0.30, 0.35, 0.40], [0.03, 0.06, 0.04, 0.35],
                       [0.06, 0.05, 0.03, 0.01]], np.float32)
MS_BANDS = ("blue", "green", "red", "nir")


def make_contract(patch: int = 8, **kw) -> ModelContract:
    d = dict(
        class_names=CLASS_NAMES, class_colors=COLORS, patch_size=patch,
        scaling={"uint8": Scaling("identity"), "uint16": Scaling("linear", scale=255 / 10000)},
        name="test-colour-model", training_resolution_m=None,
    )
    d.update(kw)
    return ModelContract(**d)


def make_reflectance_contract(patch: int = 8, **kw) -> ModelContract:
    """The contract of a 4-band (blue, green, red, nir) reflectance model:
    reflectance is the model input; uncalibrated 8-bit values x 0.4/255."""
    d = dict(
        class_names=CLASS_NAMES, class_colors=COLORS, patch_size=patch, bands=MS_BANDS, input_range=(0.0, 1.5),
        scaling={"reflectance": Scaling("identity"), "uint8": Scaling("linear", scale=0.4 / 255)},
        name="test-reflectance-model", training_resolution_m=None, input_kind="reflectance",
    )
    d.update(kw)
    return ModelContract(**d)


def make_model(path, patch: int = 8, contract: ModelContract | None | bool = None, layout="NHWC",
               input_patch: int | None = None, temperature: float = 200.0, dtype: str = "float32",
               batch: int | str = "N", contract_dtype: str | None = None, reflectance: bool = False) -> str:
    """ONNX model: mean colour of the patch -> softmax over negative squared
    distances to the class colours.  ``contract=False`` writes no contract;
    ``dtype="uint8"``: uint8 input cast to float in the graph; ``batch``: the
    graph's batch dimension (a fixed size, or symbolic); ``contract_dtype``:
    the contract's input_dtype when it is to disagree with the graph's.
    ``reflectance``: a 4-band (blue, green, red, nir) model of the classes'
    reflectance (:data:`CLASS_REFL`, :func:`make_reflectance_contract`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    sig = CLASS_REFL if reflectance else CLASS_RGB
    if reflectance and temperature == 200.0:
        temperature = 0.002  # reflectance distances are 1e5 times smaller than 0-255 ones
    nb = sig.shape[1]
    ip = input_patch or patch
    shape = [batch, ip, ip, nb] if layout == "NHWC" else [batch, nb, ip, ip]
    axes = [1, 2] if layout == "NHWC" else [2, 3]
    w = (2 * sig.T / temperature).astype(np.float32)  # (bands, K)
    b = (-(sig ** 2).sum(1) / temperature).astype(np.float32)
    first = "input"
    nodes = []
    if dtype == "uint8":
        nodes.append(helper.make_node("Cast", ["input"], ["input_f"], to=TensorProto.FLOAT))
        first = "input_f"
    nodes += [
        helper.make_node("ReduceMean", [first], ["m"], axes=axes, keepdims=0),
        helper.make_node("MatMul", ["m", "W"], ["mw"]),
        helper.make_node("Add", ["mw", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    g = helper.make_graph(
        nodes, "colour",
        [helper.make_tensor_value_info("input", TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, len(CLASS_NAMES)])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    if contract is not False:
        make = make_reflectance_contract if reflectance else make_contract
        c = contract or make(patch, input_layout=layout, input_dtype=contract_dtype or dtype)
        m.metadata_props.add(key=CONTRACT_KEY, value=c.to_json())
    onnx.save(m, str(path))
    return str(path)


def paint(classes: np.ndarray, patch: int, dtype="uint8", noise: float = 6.0, seed: int = 0,
          scale: float = 1.0) -> np.ndarray:
    """(3, H, W) image where patch (i, j) has the colour of class ``classes[i, j]``."""
    rng = np.random.default_rng(seed)
    rgb = CLASS_RGB[classes]  # (r, c, 3)
    img = np.repeat(np.repeat(rgb, patch, axis=0), patch, axis=1)
    img = img + rng.normal(0, noise, img.shape)
    img = np.clip(img, 0, 255) * scale
    return np.moveaxis(img, -1, 0).astype(dtype)


def paint_reflectance(classes: np.ndarray, patch: int, scale: float = 1e-4, offset: float = 0.0,
                      dtype="uint16", noise: float = 0.005, seed: int = 0) -> np.ndarray:
    """(4, H, W) blue, green, red, nir values whose reflectance (value x
    ``scale`` + ``offset``) is the class of ``classes[i, j]`` in patch (i, j)."""
    rng = np.random.default_rng(seed)
    img = np.repeat(np.repeat(CLASS_REFL[classes], patch, axis=0), patch, axis=1)
    img = np.clip(img + rng.normal(0, noise, img.shape), 0, 1.5)
    vals = (img - offset) / scale
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(np.dtype(dtype))
        vals = np.clip(np.round(vals), info.min, info.max)
    return np.moveaxis(vals, -1, 0).astype(dtype)


def write_scene(path, img: np.ndarray, crs="EPSG:32633", transform=None, nodata=None,
                tiled=False, block=16, colorinterp=True, descriptions=None, scales=None, offsets=None,
                tags=None, **extra) -> str:
    transform = transform or Affine(10.0, 0, 500000.0, 0, -10.0, 6000000.0)
    prof = dict(driver="GTiff", width=img.shape[2], height=img.shape[1], count=img.shape[0],
                dtype=img.dtype, crs=crs, transform=transform, nodata=nodata)
    if tiled:
        prof.update(tiled=True, blockxsize=block, blockysize=block, compress="deflate")
    prof.update(extra)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(img)
        if colorinterp and img.shape[0] >= 3:
            from rasterio.enums import ColorInterp as CI

            ci = [CI.red, CI.green, CI.blue] + [CI.undefined] * (img.shape[0] - 3)
            dst.colorinterp = ci
        for i, d in enumerate(descriptions or ()):
            dst.set_band_description(i + 1, d)
        if scales is not None:
            dst.scales = scales
        if offsets is not None:
            dst.offsets = offsets
        if tags:
            dst.update_tags(**tags)
    return str(path)


IMAGE_COLOURS = {"desert": (210, 180, 110), "water": (30, 70, 160), "green_area": (40, 120, 50)}


def make_image_dataset(root):
    """3 classes x 14 images, mixed sizes, one CMYK JPEG (Adobe inverted), one corrupt
    file, one text file, a file whose extension lies, a duplicate pair and a
    near-duplicate (re-encoded) pair."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(0)
    for c, rgb in IMAGE_COLOURS.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(14):
            size = 64 if c != "desert" else 96
            # structure (a smooth random field) and texture, like a real picture
            coarse = rng.normal(0, 1, (4, 4, 1))
            smooth = np.kron(coarse, np.ones((size // 4, size // 4, 1)))
            a = np.clip(np.array(rgb) + 30 * smooth + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / c / f"{c}_{i}.jpg", quality=95)
    a = np.asarray(Image.open(root / "desert" / "desert_0.jpg"))
    Image.fromarray(a).convert("CMYK").save(root / "desert" / "cmyk.jpg", quality=95)
    (root / "water" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (root / "water" / "notes.txt").write_text("not an image")
    (root / "green_area" / "png_named.jpg").write_bytes((root / "green_area" / "green_area_0.jpg").read_bytes()[:10] + b"x")
    (root / "water" / "water_0 (1).jpg").write_bytes((root / "water" / "water_0.jpg").read_bytes())
    Image.open(root / "water" / "water_1.jpg").save(root / "water" / "water_1_again.jpg", quality=80)
    return root


def write_rgba(path, rgb: np.ndarray, alpha: np.ndarray, **kw) -> str:
    """An RGB scene with an alpha band (colour interpretation red, green, blue, alpha)."""
    from rasterio.enums import ColorInterp as CI

    write_scene(path, np.concatenate([rgb, alpha[None].astype(rgb.dtype)]), colorinterp=False, **kw)
    with rasterio.open(path, "r+") as d:
        d.colorinterp = [CI.red, CI.green, CI.blue, CI.alpha]
    return str(path)


def run_cli(*args):
    """``geoseg ARGS...`` through click's runner (stdout and stderr apart)."""
    from click.testing import CliRunner

    from geoseg.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result) -> str:
    """Assert a command failed with exit code 1 and exactly one ``geoseg: error:`` line; return it."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("geoseg: error: "), lines
    return lines[0]


def hold_blocks(monkeypatch):
    """Make the serve engine's block task wait: returns (started, release)
    events; a block sets ``started`` and computes only once ``release`` is set."""
    import threading

    from geoseg.serve.engine import pipeline

    p = pipeline()
    real = p.classify_block
    started, release = threading.Event(), threading.Event()

    def slow_block(job):
        started.set()
        release.wait(30)
        return real(job)

    monkeypatch.setattr(p, "classify_block", slow_block)
    return started, release
