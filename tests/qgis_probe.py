"""Open geoseg outputs in a real QGIS (PyQGIS) and report what a user sees.

Run with the system Python, where PyQGIS lives (the project's virtualenv
cannot import ``qgis``)::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_probe.py \
        [--scene SCENE.tif] [--render OUT.png] [--on-map FILE,...] FILE...

Each FILE is loaded as QGIS loads a file dropped onto its window: a raster
with ``QgsRasterLayer(path, name)`` (default options: the ``.qml`` with the
same stem is applied, else QGIS's default renderer), a GeoPackage through
its sublayers (``QgsProviderRegistry.querySublayers``), each vector sublayer
with ``QgsVectorLayer(uri, name, "ogr")`` (default options: its default style
is loaded from the ``layer_styles`` table, else from a ``.qml``).

Prints one JSON object on stdout: per FILE (keyed as given) the renderer, its classes
(value, label, colour, alpha), opacity, legend entries, nodata handling and
the alpha QGIS really renders on nodata and data cells, CRS and extent; for
GeoPackage layers whether the default style came from the database.  With
``--render`` it draws ``--on-map`` files (top first; default: every FILE)
over ``--scene`` into a PNG.

Known PyQGIS 3.22 quirks avoided: ``layer.error().summary()`` and
``QgsApplication.exitQgis()`` can crash, so errors are reported from
``isValid()`` and the process ends with ``os._exit``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp/runtime-" + str(os.getuid()))


def _color(c) -> dict:
    return {"hex": c.name().lower(), "alpha": c.alpha()}


def _extent(rect) -> list[float]:
    return [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]


def _render(layers, extent, crs, size):
    """Render ``layers`` (top first) into a transparent ARGB32 QImage."""
    from qgis.core import QgsMapRendererCustomPainterJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    ms = QgsMapSettings()
    ms.setLayers(layers)
    ms.setDestinationCrs(crs)
    ms.setOutputSize(QSize(*size))
    ms.setExtent(extent)
    ms.setBackgroundColor(QColor(0, 0, 0, 0))
    img = QImage(QSize(*size), QImage.Format_ARGB32)
    img.fill(QColor(0, 0, 0, 0))
    painter = QPainter(img)
    job = QgsMapRendererCustomPainterJob(ms, painter)
    job.renderSynchronously()
    painter.end()
    return img


def _rendered_alpha(layer, band: int) -> dict:
    """Render the raster alone, cell by cell, and report the alpha drawn on
    nodata cells and on data cells (sampled)."""
    w, h = layer.width(), layer.height()
    if max(w, h) > 2048:
        return {"skipped": f"{w}x{h} cells: too large to check cell by cell"}
    k = max(1, min(8, 1024 // max(w, h)))
    ext = layer.extent()
    block = layer.dataProvider().block(band, ext, w, h)
    img = _render([layer], ext, layer.crs(), (w * k, h * k))
    nod, dat = [], []
    for r in range(h):
        for c in range(w):
            (nod if block.isNoData(r, c) else dat).append((r, c))
    step_n, step_d = max(1, len(nod) // 500), max(1, len(dat) // 500)
    a_nod = [img.pixelColor(c * k + k // 2, r * k + k // 2).alpha() for r, c in nod[::step_n]]
    a_dat = [img.pixelColor(c * k + k // 2, r * k + k // 2).alpha() for r, c in dat[::step_d]]
    return {
        "nodata_cells": len(nod),
        "data_cells": len(dat),
        "nodata_alpha_max": max(a_nod) if a_nod else None,
        "data_alpha_min": min(a_dat) if a_dat else None,
        "data_alpha_max": max(a_dat) if a_dat else None,
    }


def probe_raster(path: str) -> tuple[dict, object]:
    from qgis.core import QgsRasterLayer

    name = os.path.splitext(os.path.basename(path))[0]
    layer = QgsRasterLayer(path, name)
    qml = os.path.splitext(path)[0] + ".qml"
    out: dict = {"path": path, "kind": "raster", "valid": layer.isValid(), "qml_sidecar": os.path.exists(qml)}
    if not layer.isValid():
        return out, None
    prov = layer.dataProvider()
    ren = layer.renderer()
    out.update(
        renderer=ren.type(),
        opacity=ren.opacity(),
        crs=layer.crs().authid(),
        extent=_extent(layer.extent()),
        size=[layer.width(), layer.height()],
        band_count=layer.bandCount(),
        band_names=[layer.bandName(b) for b in range(1, layer.bandCount() + 1)],
        color_table_entries=len(prov.colorTable(1)),
        legend_entries=len(ren.legendSymbologyItems()),
        legend_labels=[lab for lab, _ in ren.legendSymbologyItems()],
    )
    band = 1
    if ren.type() == "paletted":
        band = ren.band()
        out["classes"] = [{"value": int(c.value), "label": c.label, **_color(c.color)} for c in ren.classes()]
    elif ren.type() == "singlebandpseudocolor":
        band = ren.band()
        fn = ren.shader().rasterShaderFunction()
        out["classification"] = [ren.classificationMin(), ren.classificationMax()]
        out["ramp_type"] = int(fn.colorRampType())
        out["items"] = [{"value": i.value, "label": i.label, **_color(i.color)} for i in fn.colorRampItemList()]
    out["band"] = band
    out["band_name"] = layer.bandName(band)
    out["nodata"] = {
        "source_has": bool(prov.sourceHasNoDataValue(band)),
        "source_value": prov.sourceNoDataValue(band) if prov.sourceHasNoDataValue(band) else None,
        "use_source": bool(prov.useSourceNoDataValue(band)),
    }
    tr = ren.rasterTransparency()
    out["transparent_values"] = (
        [[p.min, p.max, p.percentTransparent] for p in tr.transparentSingleValuePixelList()] if tr else []
    )
    out["rendered"] = _rendered_alpha(layer, band)
    # JSON has no NaN: the probabilities' nodata
    v = out["nodata"]["source_value"]
    if v is not None and v != v:
        out["nodata"]["source_value"] = "nan"
    return out, layer


def probe_gpkg(path: str) -> tuple[dict, list]:
    from qgis.core import QgsMapLayerType, QgsProviderRegistry, QgsVectorLayer

    reg = QgsProviderRegistry.instance()
    subs = reg.querySublayers(path)
    out: dict = {
        "path": path,
        "kind": "geopackage",
        "sublayers": [{"name": s.name(), "type": int(s.type()), "flags": int(s.flags()), "uri": s.uri()} for s in subs],
        "layers": [],
    }
    layers = []
    for s in subs:
        if s.type() != QgsMapLayerType.VectorLayer or s.providerKey() != "ogr":
            continue
        layer = QgsVectorLayer(s.uri(), s.name(), "ogr")
        info: dict = {"name": s.name(), "uri": s.uri(), "valid": layer.isValid()}
        out["layers"].append(info)
        if not layer.isValid():
            continue
        info["is_spatial"] = layer.isSpatial()
        info["feature_count"] = layer.featureCount()
        info["fields"] = [f.name() for f in layer.fields()]
        if not layer.isSpatial():
            continue
        layers.append(layer)
        ren = layer.renderer()
        n, ids, names, _descs, _err = layer.listStylesInDatabase()
        db_qml = reg.providerMetadata("ogr").loadStyle(s.uri(), "")  # 3.22: (uri, errCause) -> str
        info.update(
            renderer=ren.type(),
            opacity=layer.opacity(),
            crs=layer.crs().authid(),
            extent=_extent(layer.extent()),
            legend_entries=len(ren.legendSymbolItems()),
            db_styles=list(names)[: max(n, 0)],
            db_default_style_found=bool(db_qml),
            qml_sidecar=os.path.exists(os.path.splitext(path)[0] + ".qml"),
        )
        if ren.type() == "categorizedSymbol":
            info["class_attribute"] = ren.classAttribute()
            info["categories"] = [
                {"value": c.value(), "label": c.label(), "render": c.renderState(), **_color(c.symbol().color())}
                for c in ren.categories()
            ]
        # what the layer's default style came from, as QGIS says it when
        # asked again ("Loaded from Provider": the layer_styles table)
        msg, ok = layer.loadDefaultStyle()
        info["default_style_message"] = msg
        info["default_style_from_db"] = bool(ok) and msg == "Loaded from Provider"
    return out, layers


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--scene", help="the source scene, drawn under the outputs")
    ap.add_argument("--render", help="PNG to draw the outputs over the scene into")
    ap.add_argument("--on-map", help="comma-separated FILEs to draw (top first); default: all")
    ap.add_argument("--width", type=int, default=800, help="width of the rendered PNG in pixels")
    args = ap.parse_args(argv)

    from qgis.core import Qgis, QgsApplication, QgsProject

    app = QgsApplication([], False)
    app.initQgis()
    report: dict = {"qgis": Qgis.version(), "files": {}}
    rc = 0
    try:
        from osgeo import gdal

        report["gdal"] = gdal.__version__
    except ImportError:
        report["gdal"] = None
    try:
        loaded: dict[str, list] = {}
        for f in args.files:
            if f.lower().endswith(".gpkg"):
                info, lyrs = probe_gpkg(f)
            else:
                info, lyr = probe_raster(f)
                lyrs = [lyr] if lyr is not None else []
            report["files"][f] = info
            loaded[f] = lyrs
        if args.render:
            from qgis.core import QgsRasterLayer

            order = args.on_map.split(",") if args.on_map else args.files
            layers = [ly for f in order for ly in loaded.get(f, [])]
            scene = None
            if args.scene:
                scene = QgsRasterLayer(args.scene, "scene")
                report["scene"] = {"valid": scene.isValid(), "renderer": scene.renderer().type() if scene.isValid() else None}
                if scene.isValid():
                    layers.append(scene)
            ref = scene if scene is not None and scene.isValid() else (layers[0] if layers else None)
            if ref is None:
                raise RuntimeError("nothing valid to render")
            ext = ref.extent()
            for ly in layers:
                ext.combineExtentWith(ly.extent())
            w = args.width
            h = max(1, round(w * ext.height() / ext.width()))
            img = _render(layers, ext, ref.crs(), (w, h))
            ok = img.save(args.render, "PNG")
            report["render"] = {"path": args.render, "saved": bool(ok), "size": [w, h],
                                "layers": [ly.name() for ly in layers]}
    except Exception as exc:  # noqa: BLE001 - reported as JSON, the caller decides
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        rc = 2
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    QgsProject.instance().clear()
    return rc


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    os._exit(code)
