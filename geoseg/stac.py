"""STAC: the Item written beside a scene's outputs, and STAC Items as input.

Output: ``NAME_item.json``, a STAC Item (pystac) with the projection, raster
and classification extensions: the products as assets with roles, the class
list on the class raster, the source's CRS (``proj:code``, ``proj:wkt2``),
bbox and geometry in lon/lat, and a ``derived_from`` link to the source.

Input: a STAC Item document (local or remote ``*.json``).  Its RGB assets
(by ``eo:bands`` common names ``red``/``green``/``blue``, else by asset keys
``red``/``green``/``blue``, else a ``visual`` asset, or the assets named with
``--assets``) are stacked into a small VRT (written by hand: rasterio has no
``buildvrt``) that references them where they are, so reads stay ranged
requests on the remote files.  The VRT is written into the output folder as
``ITEM_ID.vrt`` and classified like any scene (the outputs are named by the
item's id).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from .errors import InputError, first_line
from .sources import GdalConfig, gdal_env, gdal_path, is_remote, read_json, scene_config

RGB = ("red", "green", "blue")
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}
_MEDIA = {
    "classes": "image/tiff; application=geotiff; profile=cloud-optimized",
    "probs": "image/tiff; application=geotiff; profile=cloud-optimized",
    "polygons": "application/geopackage+sqlite3",
    "stats": "application/json",
    "quicklook": "image/png",
    "classes_qml": "application/xml",
    "probs_qml": "application/xml",
}
_ROLES = {"classes": ["data"], "probs": ["data"], "polygons": ["data"], "stats": ["metadata"],
          "quicklook": ["overview", "visual"], "classes_qml": ["style"], "probs_qml": ["style"]}


# --- STAC Items as input ------------------------------------------------------
@dataclass(frozen=True)
class StacInput:
    """A STAC Item resolved into a classifiable scene (a VRT of its RGB assets)."""

    item: str  # the item document, as given
    item_id: str
    vrt: str  # the VRT written into the output folder
    assets: tuple[str, ...]  # the asset keys used
    datetime: datetime | None
    scale_offset: tuple[tuple[float, float], ...] = ()  # raster:bands (scale, offset) of each VRT band


@dataclass(frozen=True)
class _Pick:
    key: str
    href: str
    bands: tuple[int, ...]  # bands of the asset, in the model's order (all bands for a whole asset)
    names: tuple[str, ...] = ()  # the model band names of ``bands`` (written as the VRT bands' descriptions)


def _common_names(asset: Any) -> list[str | None]:
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    return [(b.get("common_name") or b.get("eo:common_name")) if isinstance(b, dict) else None for b in bands]


def _raster_bands(asset: Any) -> list[tuple[float, float]]:
    """(scale, offset) of each band of an asset's ``raster:bands`` (1, 0 where unsaid)."""
    out = []
    for b in asset.extra_fields.get("raster:bands") or []:
        b = b if isinstance(b, dict) else {}
        try:
            out.append((float(b.get("scale", 1.0)), float(b.get("offset", 0.0))))
        except (TypeError, ValueError):
            out.append((1.0, 0.0))
    return out


def choose_assets(item: Any, names: tuple[str, ...] | None = None, want: tuple[str, ...] = RGB) -> list[_Pick]:
    """The assets holding the item's bands ``want`` (the model's: red, green
    and blue by default), by ``eo:bands`` common names, else by asset keys;
    a ``visual`` asset for red, green and blue.

    Raises
    ------
    InputError
        Naming the item's assets and ``--assets`` when none match.
    """
    assets = item.assets
    ident = item.get_self_href() or item.id

    def href(key: str) -> str:
        return assets[key].get_absolute_href() or assets[key].href

    if names:
        missing = [n for n in names if n not in assets]
        if missing:
            raise InputError(f"{ident}: no asset {', '.join(missing)} in the STAC item; it has "
                             f"{', '.join(sorted(assets))}")
        if len(names) == 1:
            return [_Pick(names[0], href(names[0]), ())]
        if len(names) == len(want):
            return [_Pick(n, href(n), (1,), (w,)) for n, w in zip(names, want)]
        raise InputError(f"{ident}: --assets names {len(names)} assets; expected {len(want)} ({','.join(want)}) "
                         f"or 1 (an asset holding them all)")
    # eo:bands common names: one-band assets, or one asset with every band
    single: dict[str, str] = {}
    for key, a in assets.items():
        cn = _common_names(a)
        if len(cn) == 1 and cn[0] in want:
            single.setdefault(cn[0], key)
    if all(c in single for c in want):
        return [_Pick(single[c], href(single[c]), (1,), (c,)) for c in want]
    for key, a in assets.items():
        cn = _common_names(a)
        if all(c in cn for c in want):
            return [_Pick(key, href(key), tuple(cn.index(c) + 1 for c in want), want)]
    lower = {k.lower(): k for k in assets}
    if all(c in lower for c in want):
        return [_Pick(lower[c], href(lower[c]), (1,), (c,)) for c in want]
    visual = lower.get("visual") or next((k for k, a in assets.items() if "visual" in (a.roles or [])), None)
    if visual and want == RGB:
        return [_Pick(visual, href(visual), ())]
    what = "red/green/blue or visual" if want == RGB else "/".join(want)
    raise InputError(f"{ident}: no {what} asset in the STAC item (assets: "
                     f"{', '.join(sorted(assets))}); choose them with --assets {','.join(want)}")


def load_item(source: str, config: GdalConfig = ()) -> Any:
    """A STAC Item (pystac) from a local or remote document."""
    import pystac

    doc = read_json(source, config)
    if doc.get("type") != "Feature":
        raise InputError(f"{source}: JSON of type {doc.get('type')!r}; expected a STAC Item (type 'Feature')")
    try:
        item = pystac.Item.from_dict(doc, migrate=False)
    except (KeyError, ValueError, TypeError, pystac.STACError) as exc:
        raise InputError(f"{source}: not a valid STAC Item ({first_line(exc)}); expected a STAC Item with an id, "
                         "a geometry, properties.datetime (or start_datetime and end_datetime) and assets: fix the "
                         "document, or classify the asset files themselves") from None
    item.set_self_href(source if is_remote(source) else os.path.abspath(source))
    return item


def _describe_asset(pick: _Pick, config: GdalConfig) -> dict[str, Any]:
    import rasterio
    from rasterio.errors import RasterioError

    from .sources import remote_error

    try:
        with gdal_env(scene_config(pick.href, config)), rasterio.open(gdal_path(pick.href)) as src:
            return {"width": src.width, "height": src.height, "transform": src.transform,
                    "crs": src.crs.to_wkt() if src.crs else "", "dtypes": src.dtypes, "count": src.count,
                    "nodata": src.nodata, "block": src.block_shapes[0], "colorinterp": list(src.colorinterp),
                    "scales": src.scales, "offsets": src.offsets, "descriptions": src.descriptions}
    except RasterioError as exc:
        err = remote_error(pick.href, str(exc), config)
        if err is not None:
            raise err from None
        raise InputError(f"{pick.href}: asset {pick.key!r} is not a readable raster "
                         f"({str(exc).splitlines()[0][:160]}); expected a GeoTIFF at the asset's href (a relative "
                         "href is read from the item's folder): fix the href, or choose other assets with "
                         "--assets") from None


def vrt_xml(picks: list[_Pick], config: GdalConfig = ()) -> str:
    """A VRT stacking the picked asset bands (one grid: refused otherwise)."""
    descs = [_describe_asset(p, config) for p in picks]
    d0 = descs[0]
    for p, d in zip(picks[1:], descs[1:]):
        if (d["width"], d["height"]) != (d0["width"], d0["height"]) or not d["transform"].almost_equals(d0["transform"]):
            raise InputError(f"{p.href}: asset {p.key!r} is {d['width']}x{d['height']} px on another grid than "
                             f"{picks[0].key!r} ({d0['width']}x{d0['height']}); expected RGB assets on one grid "
                             "(resample them to one resolution first)")
    t = d0["transform"]
    lines = [f'<VRTDataset rasterXSize="{d0["width"]}" rasterYSize="{d0["height"]}">']
    if d0["crs"]:
        lines.append(f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(d0["crs"])}</SRS>')
    lines.append(f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>")
    n = 0
    for p, d in zip(picks, descs):
        bands = p.bands or tuple(range(1, d["count"] + 1))
        for i, b in enumerate(bands):
            n += 1
            dtype = d["dtypes"][b - 1]
            by, bx = d["block"]
            name = p.names[i] if i < len(p.names) else None
            if name is None and len(picks) == 3:  # RGB assets (--assets red,green,blue)
                name = RGB[n - 1]
            elif name is None and p.bands:
                name = RGB[i] if i < 3 else None
            ci = name.capitalize() if name in RGB else d["colorinterp"][b - 1].name.capitalize()
            lines.append(f'  <VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "Float64")}" band="{n}">')
            desc = name if name and name not in RGB else d["descriptions"][b - 1]
            if desc:
                lines.append(f"    <Description>{escape(desc)}</Description>")
            if (d["scales"][b - 1], d["offsets"][b - 1]) != (1.0, 0.0):  # the asset's own calibration
                lines.append(f"    <Offset>{d['offsets'][b - 1]!r}</Offset>")
                lines.append(f"    <Scale>{d['scales'][b - 1]!r}</Scale>")
            if d["nodata"] is not None:
                lines.append(f"    <NoDataValue>{d['nodata']!r}</NoDataValue>")
            lines.append(f"    <ColorInterp>{ci}</ColorInterp>")
            lines.append("    <SimpleSource>")
            lines.append(f'      <SourceFilename relativeToVRT="0">{escape(gdal_path(p.href))}</SourceFilename>')
            lines.append(f"      <SourceBand>{b}</SourceBand>")
            lines.append(f'      <SourceProperties RasterXSize="{d["width"]}" RasterYSize="{d["height"]}" '
                         f'DataType="{_GDAL_TYPES.get(dtype, "Float64")}" BlockXSize="{bx}" BlockYSize="{by}"/>')
            lines.append(f'      <SrcRect xOff="0" yOff="0" xSize="{d["width"]}" ySize="{d["height"]}"/>')
            lines.append(f'      <DstRect xOff="0" yOff="0" xSize="{d["width"]}" ySize="{d["height"]}"/>')
            lines.append("    </SimpleSource>")
            lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def safe_id(item_id: str) -> str:
    """An item id usable as a file stem."""
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id).strip(".")
    return out or "item"


def stac_input(source: str, outdir: str, names: tuple[str, ...] | None = None,
               config: GdalConfig = (), want: tuple[str, ...] = RGB) -> StacInput:
    """Resolve a STAC Item into ``OUTDIR/ITEM_ID.vrt`` (rewritten only when
    its content changes, so a rerun sees the same file) of the assets
    holding the bands ``want`` (the model's)."""
    item = load_item(source, config)
    picks = choose_assets(item, names, tuple(want))
    xml = vrt_xml(picks, config)
    vrt = os.path.join(outdir, safe_id(item.id) + ".vrt")
    os.makedirs(outdir, exist_ok=True)
    try:
        with open(vrt, encoding="utf-8") as f:
            same = f.read() == xml
    except OSError:
        same = False
    if not same:
        tmp = vrt + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(xml)
        os.replace(tmp, vrt)
    when = item.datetime or item.common_metadata.start_datetime
    so: list[tuple[float, float]] = []
    for p in picks:
        rb = _raster_bands(item.assets[p.key])
        for b in p.bands or range(1, len(rb) + 1):
            so.append(rb[b - 1] if b - 1 < len(rb) else (1.0, 0.0))
    return StacInput(source, item.id, vrt, tuple(dict.fromkeys(p.key for p in picks)), when, tuple(so))


# --- the Item of a scene's outputs --------------------------------------------
def scene_item(stem: str, scene: Any, grid: Any, outputs: dict[str, str], contract: Any, when: datetime,
               source: str, provider: str | None = None, reflectance: dict | None = None) -> dict:
    """The STAC Item (a dict) of one scene's outputs.

    Parameters
    ----------
    stem
        The scene's name (the item's id).
    scene
        :class:`~geoseg.raster.SceneInfo` of the source.
    grid
        :class:`~geoseg.windows.PatchGrid` of the outputs.
    outputs
        Product key -> final path (assets are referenced relative to the item).
    contract
        The model contract (the class list).
    when
        The item's datetime (the source's, else the run's).
    source
        The source (path, URL or STAC item) for the ``derived_from`` link.
    provider
        The onnxruntime execution provider that ran the model
        (``geoseg:provider``, e.g. ``cpu``, ``cuda``), when known.
    reflectance
        A reflectance model's rule for the scene (``geoseg:reflectance``).
    """
    import pystac
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    crs = CRS.from_wkt(scene.crs_wkt)
    t = scene.transform
    x0, y1 = t.c, t.f
    x1, y0 = t.c + t.a * scene.width, t.f + t.e * scene.height
    bounds = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    w, s, e, n = (float(v) for v in transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    item = pystac.Item(stem, geometry, [w, s, e, n], when.astimezone(timezone.utc),
                       {"title": f"geoseg classification of {stem}", "geoseg:model": contract.name,
                        "geoseg:classes": list(contract.class_names)})
    if provider:
        item.properties["geoseg:provider"] = provider
    if getattr(scene, "band_names", ()):  # the source band of each model band, and how it was found
        item.properties["geoseg:bands"] = dict(zip(scene.band_names, scene.bidx))
        item.properties["geoseg:band_choice"] = scene.band_choice
    if reflectance:
        item.properties["geoseg:reflectance"] = reflectance
    _add_projection(item, crs, bounds, scene)
    _add_assets(item, outputs, grid, t, contract)
    item.add_link(pystac.Link("derived_from", source, title="source scene"))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def _add_projection(item: Any, crs: Any, bounds: tuple[float, float, float, float], scene: Any) -> None:
    """The item's projection extension: the source scene's CRS, bounds, shape and transform."""
    from pystac.extensions.projection import ProjectionExtension

    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    proj.code = f"EPSG:{epsg}" if epsg else None
    proj.wkt2 = crs.to_wkt(version="WKT2_2019")
    proj.bbox = list(bounds)
    proj.shape = [scene.height, scene.width]
    proj.transform = list(scene.transform)[:6]


def _add_assets(item: Any, outputs: dict[str, str], grid: Any, t: Any, contract: Any) -> None:
    """One asset per product written, with the class grid's projection, raster
    bands and classes for the class and probability rasters."""
    import pystac
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension

    cell_t = grid.cell_transform(t)
    rows, cols = grid.n_cells
    res = abs(cell_t.a)
    for key in ("classes", "probs", "polygons", "stats", "quicklook", "classes_qml", "probs_qml"):
        if key not in outputs:
            continue
        asset = pystac.Asset("./" + os.path.basename(outputs[key]), media_type=_MEDIA[key], roles=_ROLES[key],
                             title=key.replace("_", " "))
        item.add_asset(key, asset)
        if key in ("classes", "probs"):
            ap = ProjectionExtension.ext(asset)
            ap.shape = [rows, cols]
            ap.transform = list(cell_t)[:6]
        if key == "classes":
            RasterExtension.ext(asset, add_if_missing=True).bands = [
                RasterBand.create(nodata=255, data_type=DataType.UINT8, spatial_resolution=res)]
            ClassificationExtension.ext(asset, add_if_missing=True).classes = [
                Classification.create(value=i, name=_class_name(name), description=name,
                                      color_hint=contract.class_colors[i].lstrip("#").upper())
                for i, name in enumerate(contract.class_names)
            ] + [Classification.create(value=255, name="nodata", description="no data", nodata=True)]
        if key == "probs":
            RasterExtension.ext(asset, add_if_missing=True).bands = [
                RasterBand.create(nodata=NoDataStrings.NAN, data_type=DataType.FLOAT32, spatial_resolution=res,
                                  unit="probability of " + name)
                for name in contract.class_names]


def _class_name(name: str) -> str:
    """Classification names match ``^[0-9A-Za-z-_]+$``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "class"
