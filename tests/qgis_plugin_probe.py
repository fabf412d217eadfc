"""Run a geoseg Processing algorithm in a headless QGIS, from the plugin zip.

Usage (the system Python, where PyQGIS lives)::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_plugin_probe.py \
        --zip dist/geoseg-qgis.zip --plugins DIR --alg geoseg:classify --params '{"INPUT": ...}'

Extracts the zip into DIR, imports ``geoseg_qgis`` from there as QGIS
would, ``classFactory(None).initProcessing()``, runs the algorithm with
``processing.runAndLoadResults`` (outputs loaded into the project as in the
desktop) and prints one JSON line: the provider and its algorithms, the
results, the layers the project got (renderer, legend, opacity, style
source) and the feedback.  ``--cancel-after-progress`` cancels the run at
its first progress report and reports the processes left in the geoseg
process group.  Exits with ``os._exit`` (PyQGIS 3.22's exitQgis can crash).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import zipfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp/runtime-" + str(os.getuid()))
sys.path.append("/usr/share/qgis/python/plugins")  # Processing (Debian's python3-qgis)


def group_members(pgid: int) -> list[dict]:
    """Processes (not zombies) whose process group is ``pgid`` (Linux /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            state, pgrp = fields[0], int(fields[2])
            if pgrp == pgid and state != "Z":
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
                out.append({"pid": int(d), "state": state, "cmd": cmd})
        except (OSError, ValueError):
            continue
    return out


def layer_facts(layer) -> dict:
    from qgis.core import QgsMapLayerType

    info = {"name": layer.name(), "source": layer.source(), "valid": layer.isValid(),
            "type": "raster" if layer.type() == QgsMapLayerType.RasterLayer else "vector"}
    ren = layer.renderer()
    info["renderer"] = ren.type() if ren else None
    if info["type"] == "raster":
        info["opacity"] = ren.opacity()
        info["legend"] = [lab for lab, _ in ren.legendSymbologyItems()]
        if ren.type() == "paletted":
            info["classes"] = [[int(c.value), c.label, c.color.name().lower()] for c in ren.classes()]
    else:
        info["opacity"] = layer.opacity()
        info["feature_count"] = layer.featureCount()
        if ren.type() == "categorizedSymbol":
            info["class_attribute"] = ren.classAttribute()
            info["categories"] = [[c.value(), c.symbol().color().name().lower()] for c in ren.categories()]
    return info


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zip", required=True)
    ap.add_argument("--plugins", required=True, help="folder to extract the plugin into")
    ap.add_argument("--alg", action="append", default=[], help="algorithm id (repeatable, with --params each)")
    ap.add_argument("--params", action="append", default=[], help="JSON parameters")
    ap.add_argument("--cancel-after-progress", action="store_true")
    ap.add_argument("--dialog-png", help="render the algorithm's Processing dialog into this PNG (needs a display)")
    ap.add_argument("--dialog-run-png", help="with --dialog-png: then press Run and grab the finished dialog (its log)")
    ap.add_argument("--modeller", help="JSON {scene, model, reference, out, eval}: run a graphical-modeller "
                                       "model chaining geoseg:classify's CLASSES into geoseg:evaluate_scene")
    args = ap.parse_args(argv)

    with zipfile.ZipFile(args.zip) as z:
        z.extractall(args.plugins)
    sys.path.insert(0, args.plugins)

    from qgis.core import Qgis, QgsApplication, QgsProject

    app = QgsApplication([], bool(args.dialog_png))
    app.initQgis()
    report: dict = {"qgis": Qgis.version(), "runs": []}
    rc = 0
    try:
        from processing.core.Processing import Processing

        Processing.initialize()
        import geoseg_qgis

        report["plugin_file"] = geoseg_qgis.__file__
        plugin = geoseg_qgis.classFactory(None)
        plugin.initProcessing()
        prov = QgsApplication.processingRegistry().providerById("geoseg")
        report["provider"] = None if prov is None else {
            "id": prov.id(), "name": prov.name(), "algorithms": sorted(a.id() for a in prov.algorithms())}
        if args.modeller:
            report["modeller"] = run_model(json.loads(args.modeller))
        if args.dialog_png:
            report["dialog"] = render_dialog(args.alg[0], json.loads(args.params[0]) if args.params else {},
                                             args.dialog_png, args.dialog_run_png)
        else:
            import processing
            from geoseg_qgis import runner

            for alg, params in zip(args.alg, args.params):
                fb = Feedback()
                run: dict = {"alg": alg}
                report["runs"].append(run)
                if args.cancel_after_progress:
                    fb.cancel_on_progress = True
                t0 = time.perf_counter()
                try:
                    res = processing.runAndLoadResults(alg, json.loads(params), feedback=fb)
                    run["results"] = {k: v for k, v in (res or {}).items() if isinstance(v, (str, int, float))}
                except Exception as exc:  # noqa: BLE001 - the error is the fact reported
                    run["exception"] = f"{type(exc).__name__}: {exc}"
                run["seconds"] = time.perf_counter() - t0
                run["progress"] = fb.progress_values
                run["log"] = fb.log[-50:]
                run["warnings"] = fb.warnings
                pgid = runner.LAST.get("pgid")
                run["geoseg_pid"] = runner.LAST.get("pid")
                run["geoseg_seconds"] = runner.LAST.get("seconds")  # the subprocess alone
                if args.cancel_after_progress and pgid:
                    run["group_at_cancel"] = fb.group_at_cancel
                    time.sleep(0.5)
                    run["left_in_group"] = group_members(pgid)
                run["layers"] = [layer_facts(ly) for ly in QgsProject.instance().mapLayers().values()]
                QgsProject.instance().removeAllMapLayers()
    except Exception as exc:  # noqa: BLE001 - reported as JSON
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        rc = 2
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    QgsProject.instance().clear()
    return rc


def _feedback_class():
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.progress_values: list[float] = []
            self.log: list[str] = []
            self.warnings: list[str] = []
            self.cancel_on_progress = False
            self.group_at_cancel: list[dict] = []
            self.progressChanged.connect(self._progress)

        def _progress(self, value):
            self.progress_values.append(round(float(value), 1))
            if self.cancel_on_progress and 0 < value < 100 and not self.isCanceled():
                from geoseg_qgis import runner

                pgid = runner.LAST.get("pgid")
                self.group_at_cancel = group_members(pgid) if pgid else []
                self.cancel()

        def pushInfo(self, info):  # noqa: N802
            self.log.append(info)
            super().pushInfo(info)

        def pushConsoleInfo(self, info):  # noqa: N802
            self.log.append(info)
            super().pushConsoleInfo(info)

        def pushCommandInfo(self, info):  # noqa: N802
            self.log.append("$ " + info)
            super().pushCommandInfo(info)

        def pushWarning(self, warning):  # noqa: N802
            self.warnings.append(warning)
            super().pushWarning(warning)

        def reportError(self, error, fatalError=False):  # noqa: N802,N803
            self.log.append("ERROR " + error)
            super().reportError(error, fatalError)

    return Feedback


class _Lazy:
    def __call__(self, *a, **k):
        return _feedback_class()(*a, **k)


Feedback = _Lazy()


def run_model(cfg: dict) -> dict:
    """A Processing model (as the graphical modeller builds and saves it):
    classify, then evaluate its class raster; run as one algorithm."""
    import processing
    from qgis.core import (QgsProcessingContext, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource as Source)

    model = QgsProcessingModelAlgorithm("classify and evaluate", "geoseg tests")
    classify = QgsProcessingModelChildAlgorithm("geoseg:classify")
    classify.setChildId("classify")
    for name, value in (("INPUT", cfg["scene"]), ("MODEL", cfg["model"]), ("BANDS", "1,2,3"),
                        ("OUTPUT_FOLDER", cfg["out"])):
        classify.addParameterSources(name, [Source.fromStaticValue(value)])
    model.addChildAlgorithm(classify)
    evaluate = QgsProcessingModelChildAlgorithm("geoseg:evaluate_scene")
    evaluate.setChildId("evaluate")
    evaluate.addParameterSources("INPUT", [Source.fromChildOutput("classify", "CLASSES")])
    for name, value in (("REFERENCE", cfg["reference"]), ("CLASSES", "water"), ("MIN_COVERAGE", 0.5),
                        ("OUTPUT_FOLDER", cfg["eval"])):
        evaluate.addParameterSources(name, [Source.fromStaticValue(value)])
    model.addChildAlgorithm(evaluate)
    out: dict = {"children": sorted(model.childAlgorithms().keys()),
                 "depends": sorted(model.dependsOnChildAlgorithms("evaluate"))}
    fb = Feedback()
    try:
        res = processing.run(model, {}, feedback=fb, context=QgsProcessingContext())
        child = (res or {}).get("CHILD_RESULTS", {})
        out["child_results"] = {k: {n: v for n, v in r.items() if isinstance(v, (str, int, float))}
                                for k, r in child.items()}
    except Exception as exc:  # noqa: BLE001 - reported
        out["exception"] = f"{type(exc).__name__}: {exc}"
    out["log"] = fb.log[-30:]
    return out


def render_dialog(alg_id: str, params: dict, png: str, run_png: str | None = None) -> dict:
    """Open the algorithm's Processing dialog (as the toolbox does), fill in
    ``params`` and grab it into ``png``; with ``run_png``, press Run, wait
    for the algorithm (run as a background task, as in the desktop) and grab
    the dialog again, its log showing."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QApplication

    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.gui import QgsCollapsibleGroupBox
    from qgis.PyQt import sip
    from qgis.PyQt.QtWidgets import QGroupBox

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    params = dict(params)
    if isinstance(params.get("INPUT"), str) and os.path.exists(params["INPUT"]):
        # as in the desktop: the scene is a layer of the project
        layer = QgsRasterLayer(params["INPUT"], os.path.splitext(os.path.basename(params["INPUT"]))[0])
        QgsProject.instance().addMapLayer(layer)
        params["INPUT"] = layer
    dlg = AlgorithmDialog(alg)
    panel = dlg.mainWidget()
    if params:
        panel.setParameters(params)
    dlg.show()
    QApplication.processEvents()
    for box in dlg.findChildren(QGroupBox):  # open "Advanced Parameters"
        if box.metaObject().className() == "QgsCollapsibleGroupBox":
            sip.cast(box, QgsCollapsibleGroupBox).setCollapsed(False)
    dlg.setMinimumSize(900, 820)
    dlg.resize(900, 820)
    for _ in range(30):
        QApplication.processEvents()
        time.sleep(0.05)
    ok = dlg.grab().save(png, "PNG")
    out = {"saved": bool(ok), "size": [dlg.width(), dlg.height()], "title": dlg.windowTitle()}
    if run_png:
        from processing.core.ProcessingConfig import ProcessingConfig

        ProcessingConfig.setSettingValue(ProcessingConfig.KEEP_DIALOG_OPEN, True)
        done: list = []
        dlg.algorithmFinished.connect(lambda ok_, res: done.append((ok_, res)))
        dlg.runAlgorithm()
        end = time.monotonic() + 300
        while not done and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.05)
        for _ in range(20):
            QApplication.processEvents()
            time.sleep(0.05)
        out["run"] = {"finished": bool(done), "ok": bool(done and done[0][0]),
                      "saved": bool(dlg.grab().save(run_png, "PNG")),
                      "layers": sorted(ly.name() for ly in QgsProject.instance().mapLayers().values())}
    return out


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    os._exit(code)
