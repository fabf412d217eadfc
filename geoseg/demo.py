"""The demo: a synthetic georeferenced scene, classified with the default model.

The scene is made here, not shipped: organic regions of each class painted
with procedural textures whose colour statistics are those of the training
classes (per-class mean and spread measured on the 4-class training set by
``bench/colour_stats.py``), a 32-pixel nodata border, EPSG:32633 at 10 m.
It is synthetic: the agreement figure the demo prints says how well the
model recognises these textures, not how well it does on real imagery.

Run ``python -m geoseg.demo OUTDIR`` (``make demo``).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

# (mean RGB, texture amplitude RGB, between-image spread RGB) per class,
# measured by bench/colour_stats.py on ../shared/data/satellite4 (64 px inputs)
CLASS_LOOK = {
    "cloudy": ((159.2, 160.4, 150.2), (9.4, 8.5, 9.1), (29.9, 28.5, 30.3)),
    "desert": ((181.8, 153.4, 126.5), (5.0, 4.0, 4.1), (18.5, 20.8, 19.1)),
    "green_area": ((40.5, 65.4, 77.5), (4.4, 4.2, 2.9), (6.4, 8.2, 8.8)),
    "water": ((45.6, 70.8, 87.3), (3.4, 3.3, 2.4), (22.3, 25.5, 16.0)),
}


def _noise(shape: tuple[int, int], scale: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise: a coarse random grid up-sampled bicubically (Pillow)."""
    from PIL import Image

    h, w = shape
    g = rng.standard_normal((max(2, h // scale + 2), max(2, w // scale + 2))).astype(np.float32)
    im = Image.fromarray(g, mode="F").resize((w + 2 * scale, h + 2 * scale), Image.Resampling.BICUBIC)
    return np.asarray(im)[scale : scale + h, scale : scale + w]


def fractal(shape, rng, scales=(64, 16, 4, 1), weights=(1.0, 0.6, 0.4, 0.3)) -> np.ndarray:
    out = sum(wt * _noise(shape, s, rng) for s, wt in zip(scales, weights))
    return (out - out.mean()) / (out.std() + 1e-6)


def make_scene(path: str, size: int = 1024, seed: int = 0, border: int = 32,
               class_names=("cloudy", "desert", "green_area", "water")) -> np.ndarray:
    """Write the demo scene to ``path``; return the painted (size, size) label map
    (255 in the nodata border)."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    fields = np.stack([fractal((size, size), rng, scales=(256, 128), weights=(1.0, 0.5)) for _ in class_names])
    labels = fields.argmax(0).astype(np.uint8)
    img = np.zeros((3, size, size), np.float32)
    for k, name in enumerate(class_names):
        mean, amp, spread = (np.array(v, np.float32) for v in CLASS_LOOK[name])
        m = labels == k
        # slow variation across the region (like image-to-image spread) and texture
        slow = fractal((size, size), rng, scales=(128,), weights=(1.0,))
        tex = {"cloudy": (32, 8, 2), "desert": (8, 2, 1), "green_area": (4, 2, 1), "water": (64, 16, 4)}[name]
        t = fractal((size, size), rng, scales=tex, weights=(1.0, 0.5, 0.3))
        for b in range(3):
            val = mean[b] + 0.5 * spread[b] * slow + 1.5 * amp[b] * t
            img[b][m] = val[m]
    img = np.clip(img, 1, 255).astype(np.uint8)
    labels[:border, :] = labels[-border:, :] = 255
    labels[:, :border] = labels[:, -border:] = 255
    img[:, labels == 255] = 0
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6200000.0)
    tmp = path + ".tmp.tif"
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=transform, nodata=0, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate", predictor=2, photometric="RGB") as dst:
        dst.write(img)
        dst.update_tags(GEOSEG_DEMO="synthetic scene made by geoseg.demo; not real imagery")
    os.replace(tmp, path)
    return labels


def agreement(classes: np.ndarray, labels: np.ndarray, stride: int) -> tuple[float, int]:
    """Share of classified cells whose class is the painted majority label of
    the cell's pixels (cells that are mostly border are left out)."""
    h, w = classes.shape
    lab = np.full((h * stride, w * stride), 255, np.uint8)
    lab[: labels.shape[0], : labels.shape[1]] = labels
    cells = lab.reshape(h, stride, w, stride).transpose(0, 2, 1, 3).reshape(h, w, -1)
    counts = np.stack([(cells == k).sum(-1) for k in range(4)], -1)
    major = counts.argmax(-1)
    ok = (classes != 255) & (counts.max(-1) > stride * stride // 2)
    return float((classes[ok] == major[ok]).mean()) if ok.any() else 0.0, int(ok.sum())


def main(argv: list[str] | None = None) -> int:
    import rasterio

    from .batch import classify_many
    from .model import load_model, resolve_model_path
    from .pipeline import ClassifyOptions

    argv = sys.argv[1:] if argv is None else argv
    outdir = argv[0] if argv else "demo-output"
    os.makedirs(outdir, exist_ok=True)
    scene = os.path.join(outdir, "demo_scene.tif")
    t0 = time.perf_counter()
    labels = make_scene(scene)
    model = load_model(resolve_model_path(None))
    print(f"synthetic demo scene: {scene} (1024 x 1024 px, EPSG:32633, 10 m; not real imagery)")
    print(f"model: {model.path} ({model.contract.name}, sha256 {model.sha256[:12]})")
    run = classify_many([scene], outdir, model, ClassifyOptions(overwrite=True), progress=False)
    res = run.scenes[0]
    if res.status != "done":
        print(f"geoseg: error: {res.error}", file=sys.stderr)
        return 1
    with rasterio.open(res.outputs["classes"]) as src:
        classes = src.read(1)
    stride = res.stats["grid"]["stride"]
    agree, n = agreement(classes, labels, stride)
    print(f"\noutputs in {os.path.abspath(outdir)}:")
    for k, v in res.outputs.items():
        print(f"  {k:12s} {os.path.basename(v)}")
    print("\nclass areas:")
    print(f"  {'class':12s} {'cells':>6s} {'km²':>8s} {'share':>6s}")
    for c in res.stats["classes"]:
        print(f"  {c['name']:12s} {c['cells']:6d} {c['area_km2']:8.2f} {100 * c['area_fraction']:5.1f}%")
    print(f"\nagreement with the painted regions: {100 * agree:.1f}% of {n} cells "
          "(synthetic textures; an honest figure, not an accuracy on real scenes)")
    print(f"done in {time.perf_counter() - t0:.1f} s.  Your own scene: geoseg classify SCENE.tif -o OUTDIR")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
