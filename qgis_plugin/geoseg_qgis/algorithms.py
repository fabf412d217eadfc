"""geoseg's Processing algorithms: each runs one geoseg command.

``geoseg:classify``, ``geoseg:evaluate_scene``, ``geoseg:ndwi_reference``
and ``geoseg:chips`` take the options of ``geoseg classify``,
``geoseg evaluate-scene``, ``geoseg reference ndwi`` and ``geoseg chips``
(same defaults), run the command (:mod:`.runner`), and return the paths of
its outputs; rasters and polygons are loaded into the project with the style
geoseg wrote beside them (``.qml`` sidecars, the GeoPackage's default style).
"""

from __future__ import annotations

import json
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)
from qgis.PyQt.QtCore import QCoreApplication

from . import runner

PROVIDERS = ("auto", "cpu", "cuda", "tensorrt", "rocm", "directml", "coreml", "openvino")  # geoseg.providers
RESAMPLE = ("off", "auto")  # geoseg classify --resample


def tr(text: str) -> str:
    return QCoreApplication.translate("geoseg", text)


class DefaultStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies the style geoseg wrote for a loaded output: the ``.qml``
    beside a raster, the default style stored in a GeoPackage."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS's name
        msg, ok = layer.loadDefaultStyle()
        if not ok:
            feedback.pushInfo(f"{layer.source()}: no geoseg style found ({msg}); QGIS's default style used")
        layer.triggerRepaint()


_KEEP: list = []  # post-processors must outlive the algorithm (QGIS keeps no Python reference)


def load_styled(context: QgsProcessingContext, source: str, name: str, output: str, vector: bool = False) -> None:
    """Load ``source`` into the project when the algorithm ends, styled as geoseg wrote it."""
    details = QgsProcessingContext.LayerDetails(name, context.project(), output)
    details.layerTypeHint = QgsProcessingUtils.LayerHint.Vector if vector else QgsProcessingUtils.LayerHint.Raster
    post = DefaultStyle()
    _KEEP.append(post)
    details.setPostProcessor(post)
    context.addLayerToLoadOnCompletion(source, details)


def style_destination(context: QgsProcessingContext, path: str) -> None:
    """Style a destination layer Processing loads itself (e.g. the NDWI reference)."""
    if context.willLoadLayerOnCompletion(path):
        post = DefaultStyle()
        _KEEP.append(post)
        context.layerToLoadOnCompletionDetails(path).setPostProcessor(post)


class GeosegAlgorithm(QgsProcessingAlgorithm):
    """What every geoseg algorithm shares: running the command."""

    command_help = ""

    def createInstance(self):  # noqa: N802
        return type(self)()

    def group(self):
        return ""

    def groupId(self):  # noqa: N802
        return ""

    def helpUrl(self):  # noqa: N802
        return "https://github.com/geoseg/geoseg/blob/main/docs/qgis.md"

    def shortHelpString(self):  # noqa: N802
        return tr(self.command_help)

    def _file_of(self, layer, name: str) -> str:
        """The file behind a layer parameter (a layer or a file path)."""
        if layer is None:
            raise QgsProcessingException(f"{name}: no layer or file given")
        if layer.providerType() not in ("gdal", "ogr"):
            raise QgsProcessingException(
                f"{name}: layer '{layer.name()}' is not a file GDAL reads ({layer.providerType()} layer); "
                "save it as a GeoTIFF or GeoPackage first (Export > Save As)")
        src = layer.source().split("|")[0]
        if not src.startswith("/vsi") and not os.path.exists(src):
            raise QgsProcessingException(f"{name}: {src} does not exist; expected a local file")
        return src

    def _opt_str(self, parameters, name: str, context) -> str | None:
        if parameters.get(name) in (None, ""):
            return None
        v = self.parameterAsString(parameters, name, context).strip()
        return v or None

    def _opt_num(self, parameters, name: str, context, integer: bool = True):
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsInt(parameters, name, context) if integer else \
            self.parameterAsDouble(parameters, name, context)

    def run_geoseg(self, args: list[str], feedback) -> runner.Result:
        from processing.core.ProcessingConfig import ProcessingConfig

        try:
            exe = runner.find_executable(ProcessingConfig.getSetting(runner.SETTING))
        except runner.GeosegNotFound as exc:
            raise QgsProcessingException(str(exc)) from None
        cmd = [exe, *args]
        feedback.pushCommandInfo(" ".join(f'"{a}"' if " " in a else a for a in cmd))

        def progress(p: dict) -> None:
            total = p.get("total") or 0
            if total:
                feedback.setProgress(100.0 * p["n"] / total)

        def line(text: str) -> None:
            if text.startswith("geoseg: warning: "):
                feedback.pushWarning(text[len("geoseg: "):]) if hasattr(feedback, "pushWarning") else \
                    feedback.reportError(text, False)
            elif not text.startswith("geoseg: error: "):
                feedback.pushConsoleInfo(text)

        try:
            res = runner.run(cmd, progress, line, feedback.isCanceled)
        except runner.Canceled as exc:
            raise QgsProcessingException(str(exc)) from None
        except (runner.GeosegFailed, runner.GeosegNotFound) as exc:
            raise QgsProcessingException(f"geoseg: {exc}") from None
        for text in res.stdout.splitlines():
            feedback.pushConsoleInfo(text)
        feedback.setProgress(100)
        return res


class ClassifyAlgorithm(GeosegAlgorithm):
    command_help = ("Classifies a GeoTIFF scene patch by patch with an ONNX model (geoseg classify) into a class "
                    "raster, class probabilities, polygons per class and statistics, written into the output "
                    "folder as NAME_classes.tif, NAME_probs.tif, NAME_polygons.gpkg, NAME_stats.json. "
                    "The outputs are loaded styled with the model's class colours.\n\n"
                    "Model: empty for geoseg's default model, a built-in model's name (`geoseg models` lists "
                    "them, e.g. multispectral), or an .onnx file. "
                    "Bands: the scene's bands in the model's band order, e.g. 1,2,3 (like --bidx). "
                    "Resample auto (like --resample auto): each patch is read at the model's training "
                    "resolution, for scenes whose pixel size is far from it. "
                    "Runs the geoseg program (GEOSEG_EXECUTABLE, else the Processing setting, else geoseg on PATH).")

    def name(self):
        return "classify"

    def displayName(self):  # noqa: N802
        return tr("Classify scene")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Scene (raster layer or GeoTIFF file)")))
        self.addParameter(QgsProcessingParameterString(
            "MODEL", tr("Model (.onnx file or built-in name; empty: the default model)"), optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "STRIDE", tr("Stride in pixels (empty: the patch size)"), QgsProcessingParameterNumber.Integer,
            optional=True, minValue=1))
        self.addParameter(QgsProcessingParameterString(
            "BANDS", tr("Bands in the model's order, e.g. 1,2,3 (empty: by colour interpretation)"), optional=True))
        advanced = [
            QgsProcessingParameterEnum("RESAMPLE", tr("Resample to the model's training resolution"),
                                       list(RESAMPLE), defaultValue=0),
            QgsProcessingParameterEnum("PROVIDER", tr("Execution provider"), list(PROVIDERS), defaultValue=0),
            QgsProcessingParameterNumber("WORKERS", tr("Worker processes (empty: threads, one per core)"),
                                         QgsProcessingParameterNumber.Integer, optional=True, minValue=1),
            QgsProcessingParameterNumber("MIN_AREA", tr("Drop polygon parts smaller than (m²)"),
                                         QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0),
            QgsProcessingParameterNumber("SIMPLIFY", tr("Simplify polygons by (CRS units)"),
                                         QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0),
            QgsProcessingParameterBoolean("OVERWRITE", tr("Redo a scene whose outputs are up to date"),
                                          defaultValue=False),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer("CLASSES", tr("Class raster")))
        self.addOutput(QgsProcessingOutputRasterLayer("PROBS", tr("Class probabilities")))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", tr("Polygons per class"),
                                                      QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputFile("STATS", tr("Statistics (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        scene = self._file_of(self.parameterAsRasterLayer(parameters, "INPUT", context), "INPUT")
        outdir = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        os.makedirs(outdir, exist_ok=True)
        args = ["classify", scene, "-o", outdir, "--progress-json"]
        model = self._opt_str(parameters, "MODEL", context)
        if model:
            args += ["-m", model]
        stride = self._opt_num(parameters, "STRIDE", context)
        if stride:
            args += ["--stride", str(stride)]
        bands = self._opt_str(parameters, "BANDS", context)
        if bands:
            args += ["--bidx", bands.replace(" ", "")]
        args += ["--resample", RESAMPLE[self.parameterAsEnum(parameters, "RESAMPLE", context)]]
        args += ["--provider", PROVIDERS[self.parameterAsEnum(parameters, "PROVIDER", context)]]
        workers = self._opt_num(parameters, "WORKERS", context)
        if workers:
            args += ["--workers", str(workers)]
        for name, opt in (("MIN_AREA", "--min-area"), ("SIMPLIFY", "--simplify")):
            v = self._opt_num(parameters, name, context, integer=False)
            if v:
                args += [opt, repr(float(v))]
        if self.parameterAsBoolean(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        self.run_geoseg(args, feedback)
        outputs = _scene_outputs(outdir)
        stem = outputs.pop("_name")
        results = {"OUTPUT_FOLDER": outdir, "CLASSES": outputs.get("classes"), "PROBS": outputs.get("probs"),
                   "POLYGONS": outputs.get("polygons"), "STATS": outputs.get("stats")}
        for key, label in (("probs", "probabilities"), ("classes", "classes")):
            if outputs.get(key):
                load_styled(context, outputs[key], f"{stem} {label}", key.upper())
        if outputs.get("polygons"):
            load_styled(context, outputs["polygons"] + "|layername=classes", f"{stem} polygons", "POLYGONS",
                        vector=True)
        return results


def _scene_outputs(outdir: str) -> dict:
    """The outputs of the (one) scene of a classify run, from its run.json."""
    path = os.path.join(outdir, "run.json")
    try:
        with open(path, encoding="utf-8") as f:
            scene = json.load(f)["scenes"][0]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise QgsProcessingException(f"{path}: geoseg wrote no readable run report ({exc})") from None
    name = scene["name"]
    if scene.get("status") == "failed":
        raise QgsProcessingException(f"geoseg: {scene.get('error')}")
    outputs = dict(scene.get("outputs") or {})
    scene_dir = os.path.dirname(outputs["classes"]) if outputs.get("classes") else outdir
    for key, ext in (("classes", ".tif"), ("probs", ".tif"), ("polygons", ".gpkg"), ("stats", ".json")):
        if not outputs.get(key):  # a scene skipped as up to date: its files are there
            p = os.path.join(scene_dir, f"{name}_{key}{ext}")
            outputs[key] = p if os.path.exists(p) else None
    outputs["_name"] = name
    return outputs


class EvaluateSceneAlgorithm(GeosegAlgorithm):
    command_help = ("Scores a geoseg class raster against a reference (geoseg evaluate-scene): a class raster in "
                    "any CRS and grid, or polygons with a class field. Writes report.json, report.md, "
                    "confusion.png and disagreement.tif into the output folder; returns overall accuracy, kappa "
                    "and balanced accuracy, and loads the disagreement map styled.")

    def name(self):
        return "evaluate_scene"

    def displayName(self):  # noqa: N802
        return tr("Evaluate class map against a reference")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Class raster (NAME_classes.tif)")))
        self.addParameter(QgsProcessingParameterMapLayer("REFERENCE", tr("Reference (class raster or polygons)")))
        self.addParameter(QgsProcessingParameterString("FIELD", tr("Class field of polygons"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            "MAP", tr("Reference classes as class-map classes, e.g. wetland=water,1=water"), optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            "MIN_COVERAGE", tr("Minimum reference coverage of a cell"), QgsProcessingParameterNumber.Double,
            defaultValue=0.5, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterString(
            "CLASSES", tr("Score only these classes, e.g. water"), optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", tr("Report folder")))
        self.addOutput(QgsProcessingOutputFile("REPORT", tr("Report (JSON)")))
        self.addOutput(QgsProcessingOutputFile("REPORT_MD", tr("Report (Markdown)")))
        self.addOutput(QgsProcessingOutputFile("CONFUSION", tr("Confusion matrix (PNG)")))
        self.addOutput(QgsProcessingOutputRasterLayer("DISAGREEMENT", tr("Disagreement map")))
        for key, label in (("OVERALL_ACCURACY", "Overall accuracy"), ("KAPPA", "Cohen's kappa"),
                           ("BALANCED_ACCURACY", "Balanced accuracy")):
            self.addOutput(QgsProcessingOutputNumber(key, tr(label)))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        cls = self._file_of(self.parameterAsRasterLayer(parameters, "INPUT", context), "INPUT")
        ref = self._file_of(self.parameterAsLayer(parameters, "REFERENCE", context), "REFERENCE")
        outdir = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        args = ["evaluate-scene", cls, "--reference", ref, "-o", outdir, "--overwrite",
                "--min-coverage", repr(self.parameterAsDouble(parameters, "MIN_COVERAGE", context))]
        for name, opt in (("FIELD", "--field"), ("MAP", "--map"), ("CLASSES", "--classes")):
            v = self._opt_str(parameters, name, context)
            if v:
                args += [opt, v]
        self.run_geoseg(args, feedback)
        report = os.path.join(outdir, "report.json")
        try:
            with open(report, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise QgsProcessingException(f"{report}: geoseg wrote no readable report ({exc})") from None
        dis = os.path.join(outdir, "disagreement.tif")
        if os.path.exists(dis):
            load_styled(context, dis, f"{os.path.splitext(os.path.basename(cls))[0]} disagreement", "DISAGREEMENT")
        return {"REPORT": report, "REPORT_MD": os.path.join(outdir, "report.md"),
                "CONFUSION": os.path.join(outdir, "confusion.png"), "DISAGREEMENT": dis,
                "OVERALL_ACCURACY": doc.get("overall_accuracy"), "KAPPA": doc.get("kappa"),
                "BALANCED_ACCURACY": doc.get("balanced_accuracy"), "OUTPUT_FOLDER": outdir}


class NdwiReferenceAlgorithm(GeosegAlgorithm):
    command_help = ("Water / not-water from NDWI = (green - NIR) / (green + NIR) > threshold (McFeeters 1996) on "
                    "the scene's grid (geoseg reference ndwi): a reference to score class maps against. "
                    "Green and NIR: a band number of the scene or a single-band raster file on the same grid.")

    def name(self):
        return "ndwi_reference"

    def displayName(self):  # noqa: N802
        return tr("NDWI water reference")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Scene")))
        self.addParameter(QgsProcessingParameterString("GREEN", tr("Green band (number or file)"), defaultValue="2"))
        self.addParameter(QgsProcessingParameterString("NIR", tr("Near-infrared band (number or file)"),
                                                       defaultValue="4"))
        self.addParameter(QgsProcessingParameterNumber("THRESHOLD", tr("Water where NDWI >"),
                                                       QgsProcessingParameterNumber.Double, defaultValue=0.0,
                                                       minValue=-1.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", tr("Water reference (GeoTIFF)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        scene = self._file_of(self.parameterAsRasterLayer(parameters, "INPUT", context), "INPUT")
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if not out.lower().endswith((".tif", ".tiff")):
            raise QgsProcessingException(f"{out}: the reference is written as GeoTIFF; choose a .tif name")
        self.run_geoseg(["reference", "ndwi", scene, "--green", self.parameterAsString(parameters, "GREEN", context),
                         "--nir", self.parameterAsString(parameters, "NIR", context), "-o", out, "--overwrite",
                         "--threshold", repr(self.parameterAsDouble(parameters, "THRESHOLD", context))], feedback)
        style_destination(context, out)
        return {"OUTPUT": out}


class ChipsAlgorithm(GeosegAlgorithm):
    command_help = ("Cuts scenes into labelled training chips (geoseg chips): labels are polygons or points with "
                    "a class field, or a class raster. Chips go to OUTPUT_FOLDER/<class>/ with a manifest "
                    "chips.csv, ready for geoseg prepare / geoseg train.")

    def name(self):
        return "chips"

    def displayName(self):  # noqa: N802
        return tr("Training chips from scenes and labels")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("INPUT", tr("Scenes"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMapLayer("LABELS", tr("Labels (polygons, points or class raster)")))
        self.addParameter(QgsProcessingParameterString("FIELD", tr("Class field"), optional=True))
        self.addParameter(QgsProcessingParameterNumber("SIZE", tr("Chip side (px)"),
                                                       QgsProcessingParameterNumber.Integer, defaultValue=64,
                                                       minValue=2))
        self.addParameter(QgsProcessingParameterNumber("STRIDE", tr("Step between chips (px; empty: the size)"),
                                                       QgsProcessingParameterNumber.Integer, optional=True,
                                                       minValue=1))
        self.addParameter(QgsProcessingParameterNumber("MIN_PURITY", tr("Minimum class purity of a chip"),
                                                       QgsProcessingParameterNumber.Double, defaultValue=0.9,
                                                       minValue=0.001, maxValue=1.0))
        self.addParameter(QgsProcessingParameterString("BANDS", tr("Bands to keep, e.g. 1,2,3,4"), optional=True))
        self.addParameter(QgsProcessingParameterNumber("MAX_PER_CLASS", tr("At most this many chips per class"),
                                                       QgsProcessingParameterNumber.Integer, optional=True,
                                                       minValue=1))
        self.addParameter(QgsProcessingParameterNumber("SEED", tr("Seed of the sampling"),
                                                       QgsProcessingParameterNumber.Integer, defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean("OVERWRITE", tr("Replace chips of an earlier run"),
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", tr("Chips folder (DATA_DIR)")))
        self.addOutput(QgsProcessingOutputFile("MANIFEST", tr("Manifest (chips.csv)")))
        self.addOutput(QgsProcessingOutputNumber("N_CHIPS", tr("Chips written")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layers = self.parameterAsLayerList(parameters, "INPUT", context)
        if not layers:
            raise QgsProcessingException("INPUT: no scene given")
        scenes = [self._file_of(ly, "INPUT") for ly in layers]
        labels = self._file_of(self.parameterAsLayer(parameters, "LABELS", context), "LABELS")
        outdir = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        args = ["chips", *scenes, "--labels", labels, "-o", outdir,
                "--size", str(self.parameterAsInt(parameters, "SIZE", context)),
                "--min-purity", repr(self.parameterAsDouble(parameters, "MIN_PURITY", context)),
                "--seed", str(self.parameterAsInt(parameters, "SEED", context))]
        for name, opt in (("STRIDE", "--stride"), ("MAX_PER_CLASS", "--max-per-class")):
            v = self._opt_num(parameters, name, context)
            if v:
                args += [opt, str(v)]
        for name, opt in (("FIELD", "--field"), ("BANDS", "--bands")):
            v = self._opt_str(parameters, name, context)
            if v:
                args += [opt, v]
        if self.parameterAsBoolean(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        self.run_geoseg(args, feedback)
        manifest = os.path.join(outdir, "chips.csv")
        try:
            with open(manifest, encoding="utf-8") as f:
                n = max(0, sum(1 for line in f if line.strip()) - 1)
        except OSError as exc:
            raise QgsProcessingException(f"{manifest}: geoseg wrote no manifest ({exc.strerror})") from None
        return {"MANIFEST": manifest, "N_CHIPS": n, "OUTPUT_FOLDER": outdir}


ALGORITHMS = (ClassifyAlgorithm, EvaluateSceneAlgorithm, NdwiReferenceAlgorithm, ChipsAlgorithm)
