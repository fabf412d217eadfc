"""Where the multispectral model's time goes against the RGB default model's
(issue 24: throughput within 10 %), with or without an earlier copy of the
code to compare.

Each child process classifies one scene with both built-in models in turn
(synchronous scheduler, one onnxruntime thread, no polygons, quicklook or
probabilities), ``--reps`` pairs after a warm-up, and reports per patch: the
process CPU time (``getrusage``) and the thread CPU time of onnxruntime
(``run_batch``), of the model-input step (``to_model_input``) and of the
window reads (``read_window``); "rest" is the CPU time outside onnxruntime.
The two models alternate inside a process, so both meet the same load; with
``--before DIR`` (a copy of ``geoseg/`` of an earlier commit:
``git archive COMMIT geoseg | tar -x -C DIR``, with the current model files
copied into ``DIR/geoseg/models``), children of that code and of this one
alternate too.  Medians over every pair are printed.

    python bench/ms_throughput_parts.py [--rounds 3] [--reps 6] [--before /tmp/before] [--synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.ms_throughput import mosaic, synthetic  # noqa: E402

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import geoseg.pipeline as P
from geoseg.pipeline import ClassifyOptions, classify_scene
from geoseg.scheduling import Runner
acc = {}
def wrap(name):
    f = getattr(P, name)
    def g(*a, **k):
        t = time.thread_time()
        try:
            return f(*a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + time.thread_time() - t
    setattr(P, name, g)
for n in ("run_batch", "to_model_input", "read_window"):
    wrap(n)
scene, out, reps, ro, mo = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
def opts(o):
    o = dict(o)
    if o.get("bidx"): o["bidx"] = tuple(o["bidx"])
    return ClassifyOptions(polygons=False, quicklook=False, probs=False, overwrite=True, **o)
res = {m: {} for m in ("default", "multispectral")}
with Runner("synchronous", ort_threads=1) as r:
    for m, o in (("default", ro), ("multispectral", mo)):
        classify_scene(scene, out + m, m, opts(o), r)  # warm-up: sessions, imports
    for _ in range(reps):
        for m, o in (("default", ro), ("multispectral", mo)):
            acc.clear()
            t0 = resource.getrusage(resource.RUSAGE_SELF)
            x = classify_scene(scene, out + m, m, opts(o), r)
            t1 = resource.getrusage(resource.RUSAGE_SELF)
            n = x.stats["patches"]["computed"]
            cpu = t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime
            for k, v in (("cpu", cpu), *acc.items(), ("rest", cpu - acc["run_batch"])):
                res[m].setdefault(k, []).append(v / n * 1000)
print(json.dumps(res))
"""
PARTS = ("run_batch", "to_model_input", "read_window", "rest")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--before", default=None, help="a copy of geoseg/ of an earlier commit (its parent folder)")
    ap.add_argument("--naip", default=os.path.join("..", "shared", "scenes", "naip_m_4709963_se_14_1_20200831.tif"))
    ap.add_argument("--synthetic", action="store_true", help="also the synthetic 2048 px uint16 scene")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ms_parts_")
    cases: list[tuple[str, str, dict, dict]] = []
    if os.path.exists(a.naip):
        cases.append(("NAIP 8-bit, 2 x 2 mosaic", mosaic(a.naip, os.path.join(tmp, "naip4.tif")), {},
                      {"bidx": [3, 2, 1, 4]}))
    if a.synthetic or not cases:
        cases.append(("synthetic 2048 px uint16", synthetic(os.path.join(tmp, "s.tif")), {"bidx": [3, 2, 1]},
                      {"bidx": [1, 2, 3, 4], "reflectance_scale": 1e-4}))
    versions = [("before", os.path.abspath(a.before)), ("this", "")] if a.before else [("this", "")]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    med = statistics.median
    for name, scene, ro, mo in cases:
        res: dict = {}
        for _ in range(a.rounds):
            for v, path in versions:
                env = dict(os.environ, PYTHONPATH=path or here)
                r = subprocess.run([sys.executable, "-c", CHILD, scene, os.path.join(tmp, v), str(a.reps),
                                    json.dumps(ro), json.dumps(mo)], env=env, capture_output=True, text=True,
                                   check=True, cwd=tmp)
                d = json.loads(r.stdout.strip().splitlines()[-1])
                for m in d:
                    for k in d[m]:
                        res.setdefault(v, {}).setdefault(m, {}).setdefault(k, []).extend(d[m][k])
        for v, _ in versions:
            d, m = res[v]["default"], res[v]["multispectral"]
            parts = ", ".join(f"{k} {med(d[k]):.3f} vs {med(m[k]):.3f}" for k in PARTS)
            print(f"{name}, {v} code: n={len(d['cpu'])} pairs; CPU ms/patch default {med(d['cpu']):.3f}, "
                  f"multispectral {med(m['cpu']):.3f} -> multispectral throughput {med(d['cpu']) / med(m['cpu']):.3f} x "
                  f"(fastest {min(d['cpu']) / min(m['cpu']):.3f}, median of pairs "
                  f"{med([x / y for x, y in zip(d['cpu'], m['cpu'])]):.3f}); ms/patch default vs multispectral: {parts}")


if __name__ == "__main__":
    main()
