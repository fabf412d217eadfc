"""All benchmarks in one run, so the ratios hold on a noisy machine.

    python bench/run_all.py [--quick] [--model MODEL.onnx]

Writes docs/benchmarks.md (and bench/out/results.json).  Large scenes are
made in bench/out/ (not committed).  Each end-to-end measurement runs in a
fresh process, so peak RSS is that run's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from scenes import make_large, source_tile  # noqa: E402

PY = sys.executable


def log(*a):
    print(*a, flush=True)


def _real_patches(model: str, scene: str, n: int = 2048) -> np.ndarray:
    """``n`` distinct patches cut from the top of the benchmark scene, ready
    in the model's input layout and dtype (its contract's)."""
    import rasterio
    from rasterio.windows import Window

    from geoseg.contract import Scaling
    from geoseg.model import load_model
    from geoseg.patches import to_model_input

    c = load_model(model).contract
    p = c.patch_size
    with rasterio.open(scene) as src:
        per_row = src.width // p
        rows = min(int(np.ceil(n / per_row)), src.height // p)
        a = src.read(window=Window(0, 0, per_row * p, rows * p))
    raw = a.reshape(3, rows, p, per_row, p).transpose(1, 3, 0, 2, 4).reshape(-1, 3, p, p)[:n]  # (n, band, p, p)
    return to_model_input(raw, None, Scaling("identity"), c.input_range, None, c.input_layout, c.input_dtype)


def _session(model: str, threads: int):
    from geoseg.model import new_session

    return new_session(model, threads)


def _batches(patches: np.ndarray, b: int) -> list[np.ndarray]:
    """Distinct ready-made batches (the pool of patches cut into batches of ``b``)."""
    return [patches[i : i + b] for i in range(0, len(patches) - b + 1, b)]


def _spin(sess, name, xs, stop, counts, i):
    k = i
    while time.perf_counter() < stop:
        x = xs[k % len(xs)]
        sess.run(None, {name: x})
        counts[i] += len(x)
        k += 1


def ort_ceiling(model: str, scene: str, batches=(16, 32, 64, 128, 256, 512), threads: int = 2,
                seconds: float = 5.0, arrangements=("one", "many")) -> dict:
    """onnxruntime alone on ready-made batches of real patches (no I/O): 2048
    distinct patches of the benchmark scene, cut into batches and cycled
    through, in two arrangements of the same cores: one session with
    ``threads`` threads, and ``threads`` sessions of 1 thread side by side
    (geoseg's default).  The ceiling is the best of all."""
    import threading

    patches = _real_patches(model, scene)
    res: dict = {}
    name = _session(model, 1).get_inputs()[0].name
    for arrangement in arrangements:
        for b in batches:
            xs = _batches(patches, b)
            n_sess = 1 if arrangement == "one" else threads
            sessions = [_session(model, threads if arrangement == "one" else 1) for _ in range(n_sess)]
            for s in sessions:
                s.run(None, {name: xs[0]})
            counts = [0] * n_sess
            stop = time.perf_counter() + seconds
            t0 = time.perf_counter()
            ts = [threading.Thread(target=_spin, args=(sessions[i], name, xs, stop, counts, i)) for i in range(n_sess)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            label = f"1 session x {threads} threads" if arrangement == "one" else f"{threads} sessions x 1 thread"
            res[f"{label}, batch {b}"] = sum(counts) / (time.perf_counter() - t0)
    best = max(res, key=res.get)
    return {"per_config": res, "best": best, "patches_per_s": res[best], "threads": threads}


RUN_CLASSIFY = r"""
import json, sys, time
from geoseg.batch import classify_many
from geoseg.scheduling import Runner
from geoseg.pipeline import ClassifyOptions
args = json.loads(sys.argv[1])
opts = ClassifyOptions(overwrite=True, stride=args.get("stride"), polygons=args.get("polygons", True),
                       block_px=args.get("block_px", 2048), **({"batch_size": args["batch_size"]} if "batch_size" in args else {}))
def hwm_mb():
    # peak RSS of this process image (VmHWM); ru_maxrss would carry the
    # parent's peak across fork + exec on Linux
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

t0 = time.perf_counter()
workers_mb = 0.0
scheduler = args["scheduler"]
if scheduler == "distributed-threads":
    # experiment: the thread pool's tasks on an in-process dask.distributed
    # cluster (the runtime accepts a Client the caller made)
    import logging
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=1, threads_per_worker=args.get("workers") or 2, processes=False,
                           dashboard_address=None, silence_logs=logging.ERROR)
    scheduler = Client(cluster, set_as_default=False)
with Runner(scheduler, args.get("workers"), args.get("ort_threads") or (1 if args["scheduler"] == "distributed-threads" else None)) as r:
    t1 = time.perf_counter()
    run = classify_many([args["scene"]], args["out"], args["model"], opts, runner=r, progress=False)
    if r.scheduler == "processes":
        workers_mb = max(r.client.run(hwm_mb).values())
t2 = time.perf_counter()
s = run.scenes[0]
assert s.status == "done", s.error
print("RESULT " + json.dumps({"wall": t2 - t0, "cluster_start": t1 - t0, "scene_s": s.seconds,
      "patches": s.n_patches, "patches_per_s_tiles": s.patches_per_s, "timings": s.stats["timings_s"],
      "maxrss_mb": hwm_mb(), "children_maxrss_mb": workers_mb}))
"""


def geoseg_run(scene: str, model: str, out: str, env: dict | None = None, **kw) -> dict:
    args = {"scene": scene, "model": model, "out": out, "scheduler": "threads", **kw}
    p = subprocess.run([PY, "-c", RUN_CLASSIFY, json.dumps(args)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, **(env or {})})
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[7:])
    with __import__("rasterio").open(scene) as s:
        r["mpx"] = s.width * s.height / 1e6
    r["patches_per_s"] = r["patches"] / r["wall"]
    r["mpx_per_s"] = r["mpx"] / r["wall"]
    return r


NAIVE = r"""
import json, sys, time
import numpy as np, onnxruntime as ort, rasterio
from rasterio.windows import Window
scene, model, p = sys.argv[1], sys.argv[2], int(sys.argv[3])
so = ort.SessionOptions(); so.intra_op_num_threads = 2
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
name, nchw, u8 = inp.name, inp.shape[1] == 3, inp.type == "tensor(uint8)"   # what the model takes
t0 = time.perf_counter()
with rasterio.open(scene) as src:
    h, w = src.height // p, src.width // p
    out = np.zeros((h, w), np.uint8)
    prof = src.profile
    for r in range(0, h, 16):          # a row of 16-patch-high strips
        rows = min(16, h - r)
        a = src.read(window=Window(0, r * p, w * p, rows * p))
        x = a.reshape(3, rows, p, w, p)
        x = (x.transpose(1, 3, 0, 2, 4).reshape(-1, 3, p, p) if nchw
             else x.transpose(1, 3, 2, 4, 0).reshape(-1, p, p, 3))
        x = np.ascontiguousarray(x, dtype=np.uint8 if u8 else np.float32)
        probs = np.concatenate([sess.run(None, {name: x[i:i + 64]})[0] for i in range(0, len(x), 64)])
        out[r:r + rows] = probs.argmax(1).reshape(rows, w)
prof.update(count=1, width=w, height=h, transform=prof["transform"] * prof["transform"].scale(p), dtype="uint8",
            nodata=None, compress="deflate", tiled=False, photometric="MINISBLACK")
prof.pop("blockxsize", None); prof.pop("blockysize", None)
with rasterio.open(sys.argv[4], "w", **prof) as dst:
    dst.write(out[None])
print("RESULT " + json.dumps({"wall": time.perf_counter() - t0, "patches": h * w}))
"""


def naive_run(scene, model, patch, out) -> dict:
    p = subprocess.run([PY, "-c", NAIVE, scene, model, str(patch), out], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    r = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    r["patches_per_s"] = r["patches"] / r["wall"]
    return r


SEEDS = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import cv2, numpy as np, keras
sys.path.insert(0, sys.argv[4])
from geoseg.training.models import CaffePreprocess  # noqa
scene, model_path, p = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = keras.models.load_model(model_path)
t0 = time.perf_counter()
img = cv2.cvtColor(cv2.imread(scene, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)   # the whole image in memory
h, w = img.shape[0] // p, img.shape[1] // p
patches = [img[r*p:(r+1)*p, c*p:(c+1)*p] for r in range(h) for c in range(w)]
t_load = time.perf_counter() - t0
n = int(sys.argv[5])                                     # patch by patch, as the seed notebooks did
t1 = time.perf_counter()
for x in patches[:n]:
    model.predict(x[None].astype("float32"), verbose=0)
per_patch = n / (time.perf_counter() - t1)
t2 = time.perf_counter()
model.predict(np.stack(patches).astype("float32"), batch_size=64, verbose=0)
batched = len(patches) / (time.perf_counter() - t2)
print("RESULT " + json.dumps({"patches": len(patches), "timed_single": n, "per_patch_patches_per_s": per_patch,
      "batched_patches_per_s": batched, "load_s": t_load}))
"""


def seeds_run(scene, keras_model, patch, n_single) -> dict:
    p = subprocess.run([PY, "-c", SEEDS, scene, keras_model, str(patch), ROOT, str(n_single)],
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def make_effnet(size: int) -> str:
    """An untrained EfficientNetB0 classifier exported like the default model
    (for speed only; its answers mean nothing)."""
    out = os.path.join(OUT, f"effnetb0_{size}.onnx")
    if os.path.exists(out):
        return out
    code = f"""
import os, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
from geoseg.training.models import build_transfer
from geoseg.export.convert import export_model
m, _ = build_transfer("efficientnetb0", 4, {size}, None)
d = {os.path.join(OUT, "effnet_run")!r}
os.makedirs(d, exist_ok=True)
m.save(os.path.join(d, "model.keras"))
json.dump({{"classes": ["cloudy", "desert", "green_area", "water"], "arch": "efficientnetb0"}}, open(os.path.join(d, "config.json"), "w"))
export_model(os.path.join(d, "model.keras"), {out!r}, name="efficientnetb0-untrained")
"""
    subprocess.run([PY, "-c", code], check=True, cwd=ROOT, capture_output=True)
    return out


def versions() -> dict:
    import dask
    import onnxruntime
    import rasterio

    return {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__, "dask": dask.__version__,
            "numpy": np.__version__}


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small scenes, for a smoke run")
    ap.add_argument("--model", default=os.path.join(ROOT, "geoseg", "models", "default.onnx"))
    ap.add_argument("--keras", default=_existing(os.path.join(ROOT, "runs", "transfer", "model.keras")),
                    help="the Keras model of the default ONNX model (seeds' way; default: runs/transfer/model.keras "
                    "if present, made by the training recipe)")
    ap.add_argument("--int8", default=_existing(os.path.join(ROOT, "geoseg", "models", "default.int8.onnx")))
    ap.add_argument("--effnet", default=None, help="an EfficientNetB0 ONNX model (speed only)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip")
    ap.add_argument("--pairs", type=int, default=5, help="end-to-end runs, each bracketed by ceiling runs")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    skip = set(a.skip.split(",")) if a.skip else set()
    big, huge, mid, small = (2048, 4096, 1024, 512) if a.quick else (16384, 32768, 8192, 1024)
    from geoseg.model import load_model

    patch = load_model(a.model).contract.patch_size
    R: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "versions": versions(), "model": a.model, "patch": patch, "sizes": [big, huge, mid, small]}
    log("making scenes ...")
    t = time.perf_counter()
    s_big = make_large(os.path.join(OUT, f"scene_{big}.tif"), big)
    s_mid = make_large(os.path.join(OUT, f"scene_{mid}.tif"), mid)
    s_small = make_large(os.path.join(OUT, f"scene_{small}.tif"), small)
    R["scene_source"] = source_tile()[1]
    log(f"  {time.perf_counter() - t:.0f} s")

    log("1. ceiling ...")
    R["ceiling"] = ort_ceiling(a.model, s_big)
    log("  ", R["ceiling"])
    log("2. geoseg end-to-end ...")
    # the machine's speed drifts by 10-20 % over tens of seconds (shared
    # host), so each end-to-end run is bracketed by short ceiling runs of the
    # best arrangement, and its ratio is to the mean of the two; the median
    # of the pairs is the figure of record
    best = R["ceiling"]["best"]
    arr = "one" if best.startswith("1 session") else "many"
    bsz = int(best.rsplit(" ", 1)[1])
    around = [ort_ceiling(a.model, s_big, batches=(bsz,), arrangements=(arr,))["patches_per_s"]]

    def bracketed(scene: str, n: int, label: str, out: str) -> list[dict]:
        """``n`` geoseg runs, each followed by a ceiling run; a run's ratio is
        to the mean of the ceilings just before and after it."""
        rs = []
        for i in range(n):
            r = geoseg_run(scene, a.model, os.path.join(OUT, out))
            around.append(ort_ceiling(a.model, s_big, batches=(bsz,), arrangements=(arr,))["patches_per_s"])
            r["ceiling_around"] = (around[-2] + around[-1]) / 2
            r["ratio_to_ceiling"] = r["patches_per_s"] / r["ceiling_around"]
            rs.append(r)
            log(f"   {label}run {i + 1}: {r['patches_per_s']:.0f} patches/s, ceiling around it "
                f"{r['ceiling_around']:.0f}, ratio {r['ratio_to_ceiling']:.3f}")
        return rs

    runs = bracketed(s_big, a.pairs, "", "e2e")
    if "raw" not in skip:
        # diagnostic: the same pixels stored uncompressed, so decoding costs
        # almost nothing; the gap between the two ratios is what decoding
        # deflate + predictor 2 costs on the same cores
        s_raw = make_large(os.path.join(OUT, f"scene_{big}_raw.tif"), big, compress=None)
        raws = bracketed(s_raw, max(1, a.pairs // 2), "uncompressed ", "e2e_raw")
        R["e2e_raw"] = {"pairs": [{k: r[k] for k in ("patches_per_s", "ceiling_around", "ratio_to_ceiling", "wall",
                                                     "timings")} for r in raws]}
    order = sorted(range(len(runs)), key=lambda k: runs[k]["ratio_to_ceiling"])
    R["e2e"] = dict(runs[order[len(runs) // 2]])
    R["e2e"]["pairs"] = [{k: r[k] for k in ("patches_per_s", "mpx_per_s", "ceiling_around", "ratio_to_ceiling", "wall",
                                            "timings")} for r in runs]
    R["e2e"]["ceilings_measured_around"] = around
    log("  ", {k: R["e2e"][k] for k in ("wall", "patches_per_s", "mpx_per_s", "ratio_to_ceiling", "maxrss_mb")})
    if "naive" not in skip:
        log("4. careful naive script ...")
        R["naive"] = naive_run(s_big, a.model, patch, os.path.join(OUT, "naive.tif"))
        after = ort_ceiling(a.model, s_big, batches=(bsz,), arrangements=(arr,))["patches_per_s"]
        R["naive"]["ceiling_around"] = (around[-1] + after) / 2
        log("  ", R["naive"])
    if "seeds" not in skip and a.keras:
        log("3. the seeds' way ...")
        R["seeds"] = seeds_run(s_small, a.keras, patch, 64 if not a.quick else 16)
        R["seeds"]["geoseg_over_per_patch"] = R["e2e"]["patches_per_s"] / R["seeds"]["per_patch_patches_per_s"]
        R["seeds"]["geoseg_over_batched"] = R["e2e"]["patches_per_s"] / R["seeds"]["batched_patches_per_s"]
        log("  ", R["seeds"])
    if "memory" not in skip:
        log("5. memory ...")
        s_huge = make_large(os.path.join(OUT, f"scene_{huge}.tif"), huge)
        R["memory_huge"] = geoseg_run(s_huge, a.model, os.path.join(OUT, "huge"))
        R["memory"] = {"small_mb": R["e2e"]["maxrss_mb"], "large_mb": R["memory_huge"]["maxrss_mb"],
                       "ratio": R["memory_huge"]["maxrss_mb"] / R["e2e"]["maxrss_mb"]}
        log("  ", R["memory"])
    if "scaling" not in skip:
        log("6. scaling ...")
        sc = {}
        for name, kw in (("threads (thread pool), 2 workers x 1 ort thread", dict(scheduler="threads", workers=2)),
                         ("in-process dask.distributed cluster, 2 threads x 1 ort thread",
                          dict(scheduler="distributed-threads", workers=2)),
                         ("threads, 1 worker x 2 ort threads", dict(scheduler="threads", workers=1)),
                         ("threads, 1 worker x 1 ort thread", dict(scheduler="threads", workers=1, ort_threads=1)),
                         ("processes (local dask.distributed cluster), 2 workers", dict(scheduler="processes", workers=2)),
                         ("processes (local dask.distributed cluster), 1 worker", dict(scheduler="processes", workers=1)),
                         ("synchronous", dict(scheduler="synchronous")),
                         ("threads, stride = patch/2 (4x the patches)", dict(scheduler="threads", workers=2, stride=patch // 2))):
            r = geoseg_run(s_mid, a.model, os.path.join(OUT, "scaling"), **kw)
            sc[name] = {k: r[k] for k in ("wall", "patches", "patches_per_s", "mpx_per_s", "cluster_start", "maxrss_mb", "children_maxrss_mb")}
            log("  ", name, sc[name])
        R["scaling"] = sc
    if "variants" not in skip:
        log("7. model variants ...")
        var = {"float (default)": {"ceiling": R["ceiling"]["patches_per_s"], "size_mb": os.path.getsize(a.model) / 1e6}}
        if not a.effnet:
            try:
                a.effnet = make_effnet(patch)
            except (subprocess.CalledProcessError, OSError) as exc:
                log("   no EfficientNetB0 model:", exc)
        for name, m in (("int8", a.int8), ("EfficientNetB0 (untrained, speed only)", a.effnet)):
            if m and os.path.exists(m):
                c = ort_ceiling(m, s_big)
                r = geoseg_run(s_mid, m, os.path.join(OUT, "variants"))
                var[name] = {"ceiling": c["patches_per_s"], "e2e_patches_per_s": r["patches_per_s"],
                             "size_mb": os.path.getsize(m) / 1e6}
                log("  ", name, var[name])
        r = geoseg_run(s_mid, a.model, os.path.join(OUT, "variants"))
        var["float (default)"]["e2e_patches_per_s"] = r["patches_per_s"]
        R["variants"] = var
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(R, f, indent=2)
    from report import write_markdown

    write_markdown(R, os.path.join(ROOT, "docs", "benchmarks.md" if not a.quick else "benchmarks-quick.md"))
    log("wrote", "docs/benchmarks.md" if not a.quick else "docs/benchmarks-quick.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
