"""docs/benchmarks.md from bench/out/results.json."""

from __future__ import annotations

import json
import sys


def _f(v, nd=0):
    return f"{v:,.{nd}f}" if isinstance(v, (int, float)) else str(v)


def _share(pr: dict, threads: int) -> str:
    t = pr.get("timings")
    if not t or not pr.get("wall"):
        return ""
    return f"{t.get('infer', 0) / (threads * pr['wall']):.3f}"


def write_markdown(R: dict, path: str) -> None:
    big, huge, mid, small = R["sizes"]
    P = R["patch"]
    L = ["# Benchmarks", "",
         f"Measured {R['date']} on {R['machine']['cpus']} CPUs ({R['machine']['platform']}); "
         + ", ".join(f"{k} {v}" for k, v in R["versions"].items()) + ".", "",
         f"Model: `{R['model'].split('/')[-1]}` ({P} px patches).  Scenes: {R['scene_source']}, "
         "RGB uint8, tiled 512, deflate + predictor 2.  All figures come from one run of "
         "`make bench` (`bench/run_all.py`), so the ratios compare like with like; each "
         "end-to-end figure is one run in a fresh process (wall time including cluster start, "
         "reading, inference, writing every output, polygons and quicklook).", ""]
    c, e = R["ceiling"], R["e2e"]
    L += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    L.append(f"| end-to-end >= 0.90 of the onnxruntime ceiling (median of {len(e.get('pairs', [e]))} bracketed runs) | {e['ratio_to_ceiling']:.2f} | "
             f"{'yes' if e['ratio_to_ceiling'] >= 0.9 else 'no'} |")
    if "seeds" in R:
        s = R["seeds"]
        L.append(f"| >= 100x the seeds' per-patch loop | {s['geoseg_over_per_patch']:.0f}x | "
                 f"{'yes' if s['geoseg_over_per_patch'] >= 100 else 'no'} |")
    if "memory" in R:
        m = R["memory"]
        L.append(f"| peak RSS {huge}² / {big}² <= 1.15 | {m['ratio']:.2f} | {'yes' if m['ratio'] <= 1.15 else 'no'} |")
        L.append(f"| peak RSS <= 1.5 GB | {m['large_mb']:.0f} MB | {'yes' if m['large_mb'] <= 1536 else 'no'} |")
    L += ["", "## 1-2. Ceiling and end-to-end", "",
          "| what | patches/s | Mpx/s | ratio to ceiling |", "|---|---|---|---|"]
    L.append(f"| onnxruntime alone, ready batches, best of {len(c['per_config'])} arrangements of "
             f"{c['threads']} threads ({c['best']}) | "
             f"{_f(c['patches_per_s'])} | {_f(c['patches_per_s'] * P * P / 1e6, 1)} | 1.00 |")
    ref = e.get("ceiling_around", c["patches_per_s"])
    L.append(f"| the same arrangement, measured just before and after the median end-to-end run (mean) | "
             f"{_f(ref)} | {_f(ref * P * P / 1e6, 1)} | 1.00 |")
    L.append(f"| geoseg classify, {big}² scene, all outputs (median run) | {_f(e['patches_per_s'])} | {_f(e['mpx_per_s'], 1)} | "
             f"{e['ratio_to_ceiling']:.2f} |")
    if "naive" in R:
        n = R["naive"]
        L.append(f"| careful naive script (sequential rasterio + onnxruntime, no Dask), {big}² | "
                 f"{_f(n['patches_per_s'])} | {_f(n['patches_per_s'] * P * P / 1e6, 1)} | "
                 f"{n['patches_per_s'] / n.get('ceiling_around', c['patches_per_s']):.2f} |")
    L += ["", "The ceiling's arrangements (patches/s): " + "; ".join(f"{k}: {_f(v)}" for k, v in c["per_config"].items()) + ".", ""]
    if e.get("pairs"):
        L += ["The machine's speed drifts by 10-20 % within a minute (a shared host), so each end-to-end run is "
              "bracketed by two 5 s ceiling runs of the best arrangement and compared with their mean; "
              "the median ratio is the figure of record.  Ceilings measured, in order: "
              + ", ".join(_f(v) for v in e["ceilings_measured_around"]) + ".", "",
              "The last column needs no ceiling run: the share of the run's wall time the worker threads "
              "spent inside onnxruntime (inference summed over tasks / (threads x wall)), measured within "
              "the run itself and so free of the drift; it differs from the ratio by how fast onnxruntime "
              "ran in situ compared with alone.", "",
              "| run | geoseg patches/s | ceiling around it | ratio | inference share of wall |",
              "|---|---|---|---|---|"]
        for i, pr in enumerate(e["pairs"]):
            L.append(f"| {i + 1} | {_f(pr['patches_per_s'])} | {_f(pr['ceiling_around'])} | {pr['ratio_to_ceiling']:.3f} | "
                     f"{_share(pr, c['threads'])} |")
        L.append("")
    if R.get("e2e_raw"):
        L += [f"Diagnostic: the same {big}² scene stored uncompressed (tiled 512), so that decoding costs "
              "almost nothing; the difference from the runs above is what decoding deflate + predictor 2 "
              "costs on the same cores.", "",
              "| run (uncompressed scene) | geoseg patches/s | ceiling around it | ratio | inference share of wall | "
              "read + decode, summed s |", "|---|---|---|---|---|---|"]
        for i, pr in enumerate(R["e2e_raw"]["pairs"]):
            L.append(f"| {i + 1} | {_f(pr['patches_per_s'])} | {_f(pr['ceiling_around'])} | {pr['ratio_to_ceiling']:.3f} | "
                     f"{_share(pr, c['threads'])} | {pr['timings'].get('read', 0):.2f} |")
        L.append("")
    t = e["timings"]
    L += [f"Where the end-to-end time goes ({big}² scene, {e['patches']:,} patches, wall {e['wall']:.1f} s):", "",
          "| part | seconds |", "|---|---|"]
    L.append(f"| cluster start | {e['cluster_start']:.2f} |")
    L.append(f"| tiles: read + infer + write, wall | {t.get('tiles_wall', 0):.2f} |")
    L.append(f"| &nbsp; of which inference (summed over tasks) | {t.get('infer', 0):.2f} |")
    L.append(f"| &nbsp; of which read + decode (summed over tasks) | {t.get('read', 0):.2f} |")
    L.append(f"| &nbsp; of which writing blocks (writer thread) | {t.get('write', 0):.2f} |")
    L.append(f"| COG finishing of class and probability rasters | {t.get('finish_rasters', 0):.2f} |")
    L.append(f"| polygons | {t.get('polygons', 0):.2f} |")
    L.append(f"| quicklook | {t.get('quicklook', 0):.2f} |")
    if "seeds" in R:
        s = R["seeds"]
        L += ["", f"## 3. The seeds' way ({small}² scene: whole image read with OpenCV, Keras `model.predict`)", "",
              "| what | patches/s | geoseg end-to-end is |", "|---|---|---|",
              f"| Keras predict patch by patch (timed on {s['timed_single']} patches) | {s['per_patch_patches_per_s']:.1f} | "
              f"{s['geoseg_over_per_patch']:.0f}x faster |",
              f"| Keras predict batched (64) | {s['batched_patches_per_s']:.0f} | {s['geoseg_over_batched']:.1f}x faster |"]
    if "memory" in R:
        m = R["memory"]
        L += ["", "## 5. Memory (default options, threads scheduler, peak RSS of the whole process)", "",
              "| scene | peak RSS |", "|---|---|",
              f"| {big}² ({big * big * 3 / 1e9:.1f} GB of pixels) | {m['small_mb']:.0f} MB |",
              f"| {huge}² ({huge * huge * 3 / 1e9:.1f} GB of pixels) | {m['large_mb']:.0f} MB |",
              f"| ratio | {m['ratio']:.2f} |"]
    if "scaling" in R:
        L += ["", f"## 6. Scaling ({mid}² scene)", "",
              "One run each, not bracketed by ceiling runs: with the machine's drift, differences under about "
              "20 % between rows are not significant (compare the inference shares above, which are stable).", "",
              "| configuration | patches | wall s | patches/s | cluster start s | peak RSS MB (main / largest worker process) |",
              "|---|---|---|---|---|---|"]
        for k, v in R["scaling"].items():
            L.append(f"| {k} | {v['patches']:,} | {v['wall']:.1f} | {_f(v['patches_per_s'])} | {v['cluster_start']:.1f} | "
                     f"{v['maxrss_mb']:.0f} / {v['children_maxrss_mb']:.0f} |")
    if "variants" in R:
        L += ["", f"## 7. Model variants (ceiling: onnxruntime alone; end-to-end on the {mid}² scene)", "",
              "| model | size MB | ceiling patches/s | end-to-end patches/s |", "|---|---|---|---|"]
        for k, v in R["variants"].items():
            L.append(f"| {k} | {v['size_mb']:.1f} | {_f(v['ceiling'])} | {_f(v.get('e2e_patches_per_s', ''))} |")
    L += ["", "Raw figures: `bench/out/results.json` of the run (not committed).  What the profiles "
          "showed, what was fixed and why a target is missed: `docs/performance-notes.md`.", ""]
    with open(path, "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    write_markdown(json.load(open(sys.argv[1])), sys.argv[2])
