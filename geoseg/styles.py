"""QGIS and GDAL styles of geoseg's outputs, built from the model contract.

Pure: every builder returns a string from class names and colours; the one
function that touches a file, :func:`write_layer_styles`, stores styles in a
GeoPackage with :mod:`sqlite3` (stdlib).

What QGIS does with each (measured with QGIS 3.22 / GDAL 3.6, see
``docs/qgis.md``):

* ``NAME_classes.qml`` (:func:`classes_qml`): QGIS loads a ``.qml`` with the
  same stem as a raster when the raster is opened.  A paletted renderer,
  semi-transparent so the scene shows through, one legend entry per class,
  255 (nodata) transparent.
* ``NAME_classes.tif.aux.xml`` (:func:`classes_aux_xml`): without the
  ``.qml``, QGIS builds its paletted legend from GDAL's colour table.  A
  GeoTIFF palette always holds 256 entries (so 256 legend rows); a PAM
  ``<ColorTable>`` in the ``.aux.xml`` overrides the TIFF's, and GDAL (and so
  QGIS) then report only the classes.  Category names alone, or a raster
  attribute table, do not shorten the legend of QGIS 3.22.
* ``NAME_probs.qml`` (:func:`probs_qml`): one class's probability, 0 to 1,
  from transparent to the class colour.
* the ``layer_styles`` table of ``NAME_polygons.gpkg``
  (:func:`polygons_layer_style`, :func:`write_layer_styles`): QGIS loads the
  default style of a GeoPackage layer from that table, as QGIS itself writes
  it ("Save as default" in the layer's style menu).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from xml.sax.saxutils import escape, quoteattr

from .contract import ModelContract
from .errors import OutputError

QGIS_VERSION = "3.22.0"
"""The QGIS version written into the styles: the oldest long-term release they
were checked with.  Newer QGIS versions read them (and upgrade them)."""

DEFAULT_OPACITY = 0.7
"""Opacity of the class map and polygons: the scene stays visible beneath."""

NODATA = 255
"""The class rasters' nodata value: no palette entry, rendered transparent."""

GPKG_DATASET_OPTIONS = {"VERSION": "1.2"}
"""GDAL dataset creation options of the polygons' GeoPackage.

GDAL >= 3.7 writes GeoPackage 1.4 by default, whose R-tree triggers the
validator of GDAL < 3.7 rejects ("rtree_..._update1 trigger missing") and
which QGIS on GDAL < 3.7 warns about; version 1.2 of the same data is valid
for both.  Pass as ``gdf.to_file(path, driver="GPKG", engine="pyogrio",
dataset_options=GPKG_DATASET_OPTIONS)`` (pyogrio also sorts a bare
``VERSION="1.2"`` keyword into the dataset options)."""

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"


def _rgb(color: str) -> tuple[int, int, int]:
    """``'#RRGGBB'`` -> ``(r, g, b)``."""
    if len(color) != 7 or not color.startswith("#"):
        raise ValueError(f"colour {color!r} is not '#RRGGBB'")
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _rgba(color: str, alpha: int = 255) -> str:
    """``'#RRGGBB'`` -> QGIS's ``'r,g,b,a'``."""
    r, g, b = _rgb(color)
    return f"{r},{g},{b},{alpha}"


def _check_opacity(opacity: float) -> float:
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity {opacity} is not between 0 and 1")
    return float(opacity)


def _check_categories(values: Sequence[int], labels: Sequence[str], colors: Sequence[str]) -> None:
    if not (len(values) == len(labels) == len(colors)):
        raise ValueError(
            f"{len(values)} values, {len(labels)} labels and {len(colors)} colours: expected as many of each"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"values {list(values)} repeat")
    bad = [v for v in values if not 0 <= int(v) <= 254]
    if bad:
        raise ValueError(f"values {bad} are not categories of a uint8 raster (0..254; 255 is nodata)")
    for c in colors:
        _rgb(c)


# --- rasters ----------------------------------------------------------------
def _raster_qml(renderer: str) -> str:
    """A raster layer style around one ``<rasterrenderer>`` element, laid out
    as QGIS 3.22 saves it (nearest-neighbour resampling: categories and
    probabilities are never blended between cells)."""
    return f"""{_DOCTYPE}
<qgis version="{QGIS_VERSION}" styleCategories="AllStyleCategories" hasScaleBasedVisibilityFlag="0" minScale="1e+08" maxScale="0">
  <pipe>
    <provider>
      <resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour" zoomedOutResamplingMethod="nearestNeighbour" maxOversampling="2"/>
    </provider>
{renderer}
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" invertColors="0" colorizeOn="0" colorizeRed="255" colorizeGreen="128" colorizeBlue="128" colorizeStrength="100"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


_MINMAX = """      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>"""


def categories_qml(
    values: Sequence[int],
    labels: Sequence[str],
    colors: Sequence[str],
    opacity: float = DEFAULT_OPACITY,
    band: int = 1,
) -> str:
    """QGIS paletted style of a uint8 categorical raster.

    Parameters
    ----------
    values : sequence of int
        The category values (0..254), in legend order.
    labels : sequence of str
        Legend label of each value.
    colors : sequence of str
        ``'#RRGGBB'`` of each value, kept exactly in the palette.
    opacity : float
        Opacity of the whole layer, 0..1 (the colours stay exact; QGIS blends
        the layer over what lies beneath).
    band : int
        The band rendered (1-based).

    Returns
    -------
    str
        The ``.qml`` text.  Values without an entry, 255 (nodata) among them,
        are transparent; 255 is also listed as a transparent pixel value, so
        it stays transparent if the file loses its nodata value.
    """
    _check_categories(values, labels, colors)
    opacity = _check_opacity(opacity)
    entries = "\n".join(
        f'        <paletteEntry value="{int(v)}" label={quoteattr(str(lab))} color="{c.lower()}" alpha="255"/>'
        for v, lab, c in zip(values, labels, colors)
    )
    renderer = f"""    <rasterrenderer type="paletted" band="{int(band)}" opacity="{opacity:g}" alphaBand="-1" nodataColor="">
      <rasterTransparency>
        <singleValuePixelList>
          <pixelListEntry min="{NODATA}" max="{NODATA}" percentTransparent="100"/>
        </singleValuePixelList>
      </rasterTransparency>
{_MINMAX}
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>"""
    return _raster_qml(renderer)


def classes_qml(contract: ModelContract, opacity: float = DEFAULT_OPACITY) -> str:
    """QGIS style of ``NAME_classes.tif``: one legend entry per class of the
    model (value ``k`` = class ``k``), its contract colour, ``opacity`` for
    the layer, 255 transparent.  See :func:`categories_qml`."""
    return categories_qml(range(contract.n_classes), contract.class_names, contract.class_colors, opacity)


def _band_of(contract: ModelContract, band: int | str) -> int:
    if isinstance(band, str):
        if band not in contract.class_names:
            raise ValueError(f"class {band!r} is not one of {', '.join(contract.class_names)}")
        return contract.class_names.index(band) + 1
    if not 1 <= int(band) <= contract.n_classes:
        raise ValueError(f"band {band} is not between 1 and {contract.n_classes} (one band per class)")
    return int(band)


def probs_qml(contract: ModelContract, band: int | str = 1, opacity: float = 1.0) -> str:
    """QGIS style of ``NAME_probs.tif``: the probability of one class.

    Parameters
    ----------
    contract : ModelContract
        The model's classes and colours.
    band : int or str
        The class shown: its band number (1-based, band ``k + 1`` is class
        ``k``) or its name.  The other bands stay in the file, named by class
        (QGIS lists them as ``Band 2: desert``...); pick another in the
        layer's symbology.
    opacity : float
        Opacity of the layer, 0..1.

    Returns
    -------
    str
        The ``.qml`` text: a single-band pseudocolour renderer, fixed range
        0 to 1 (not stretched to the scene), interpolated from the class
        colour fully transparent at 0 to the class colour opaque at 1, so low
        probabilities let the scene show through.  NaN (nodata) is
        transparent.
    """
    b = _band_of(contract, band)
    opacity = _check_opacity(opacity)
    color = contract.class_colors[b - 1].lower()
    c0, c1 = _rgba(color, 0), _rgba(color, 255)
    renderer = f"""    <rasterrenderer type="singlebandpseudocolor" band="{b}" opacity="{opacity:g}" alphaBand="-1" classificationMin="0" classificationMax="1" nodataColor="">
      <rasterTransparency/>
{_MINMAX}
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="0" maximumValue="1" labelPrecision="2">
          <colorramp type="gradient" name="[source]">
            <Option type="Map">
              <Option type="QString" name="color1" value="{c0}"/>
              <Option type="QString" name="color2" value="{c1}"/>
              <Option type="QString" name="discrete" value="0"/>
              <Option type="QString" name="rampType" value="gradient"/>
            </Option>
            <prop k="color1" v="{c0}"/>
            <prop k="color2" v="{c1}"/>
            <prop k="discrete" v="0"/>
            <prop k="rampType" v="gradient"/>
          </colorramp>
          <item value="0" label="0" color="{color}" alpha="0"/>
          <item value="1" label="1" color="{color}" alpha="255"/>
        </colorrampshader>
      </rastershader>
    </rasterrenderer>"""
    return _raster_qml(renderer)


def categories_aux_xml(
    values: Sequence[int],
    labels: Sequence[str],
    colors: Sequence[str],
    description: str = "class",
    band: int = 1,
) -> str:
    """GDAL PAM sidecar (``FILE.aux.xml``) of a uint8 categorical GeoTIFF.

    It holds the band description, the category names and a colour table
    with entries 0..max(values) only.  GDAL reads a PAM colour table in
    place of the GeoTIFF's own (which always has 256 entries), so QGIS's
    default paletted style, used when no ``.qml`` is present, lists only the
    categories (measured with QGIS 3.22 / GDAL 3.6 and GDAL 3.10).  Values
    between categories get a transparent entry and an empty name; 255
    (nodata) has no entry.

    Returns
    -------
    str
        The ``.aux.xml`` text.
    """
    _check_categories(values, labels, colors)
    by_value = {int(v): (str(lab), c) for v, lab, c in zip(values, labels, colors)}
    top = max(by_value) if by_value else -1
    names, table = [], []
    for v in range(top + 1):
        lab, c = by_value.get(v, ("", None))
        names.append(f"      <Category>{escape(lab)}</Category>")
        r, g, b = _rgb(c) if c else (0, 0, 0)
        table.append(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{255 if c else 0}"/>')
    cats, entries = "\n".join(names), "\n".join(table)
    return f"""<PAMDataset>
  <PAMRasterBand band="{int(band)}">
    <Description>{escape(description)}</Description>
    <ColorInterp>Palette</ColorInterp>
    <CategoryNames>
{cats}
    </CategoryNames>
    <ColorTable>
{entries}
    </ColorTable>
  </PAMRasterBand>
</PAMDataset>
"""


def classes_aux_xml(contract: ModelContract) -> str:
    """The ``.aux.xml`` of ``NAME_classes.tif``: class names and a colour
    table of the classes only (see :func:`categories_aux_xml`)."""
    return categories_aux_xml(range(contract.n_classes), contract.class_names, contract.class_colors)


def colormap(contract: ModelContract) -> dict[int, tuple[int, int, int, int]]:
    """The GeoTIFF colour table of a class raster (for rasterio's
    ``write_colormap``): class colours, every other entry transparent.

    A GeoTIFF palette has 256 entries whatever is given; entries that are no
    class are transparent black, so software that shows the whole palette
    draws nothing for them.
    """
    cmap = {i: (0, 0, 0, 0) for i in range(256)}
    for i, rgb in enumerate(contract.rgb_colors()):
        cmap[i] = (*rgb, 255)
    return cmap


# --- polygons ---------------------------------------------------------------
@dataclass(frozen=True)
class LayerStyle:
    """One row of a GeoPackage's ``layer_styles`` table (QGIS's schema).

    ``geometry_column`` None: taken from the GeoPackage when written.
    """

    table: str
    qml: str
    sld: str
    name: str
    description: str = ""
    geometry_column: str | None = None
    default: bool = True


def _fill_symbol(name: str, color: str) -> str:
    """A QGIS simple-fill symbol in the class colour (outline too)."""
    props = {
        "border_width_map_unit_scale": "3x:0,0,0,0,0,0",
        "color": _rgba(color),
        "joinstyle": "bevel",
        "offset": "0,0",
        "offset_map_unit_scale": "3x:0,0,0,0,0,0",
        "offset_unit": "MM",
        "outline_color": _rgba(color),
        "outline_style": "solid",
        "outline_width": "0.26",
        "outline_width_unit": "MM",
        "style": "solid",
    }
    options = "\n".join(
        f'            <Option type="QString" name="{k}" value="{v}"/>' for k, v in props.items()
    )
    legacy = "\n".join(f'          <prop k="{k}" v="{v}"/>' for k, v in props.items())
    return f"""      <symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
{options}
          </Option>
{legacy}
        </layer>
      </symbol>"""


def categorized_qml(
    field: str, values: Sequence[str], labels: Sequence[str], colors: Sequence[str],
    opacity: float = DEFAULT_OPACITY,
) -> str:
    """QGIS style of a polygon layer: a categorised renderer on ``field``.

    Each value gets a solid fill (and outline) of its colour; features with
    any other value are not drawn.  ``opacity`` is the layer's.
    """
    if not (len(values) == len(labels) == len(colors)):
        raise ValueError(f"{len(values)} values, {len(labels)} labels and {len(colors)} colours")
    opacity = _check_opacity(opacity)
    cats = "\n".join(
        f'      <category render="true" symbol="{i}" value={quoteattr(str(v))} label={quoteattr(str(lab))}/>'
        for i, (v, lab) in enumerate(zip(values, labels))
    )
    symbols = "\n".join(_fill_symbol(str(i), c) for i, c in enumerate(colors))
    return f"""{_DOCTYPE}
<qgis version="{QGIS_VERSION}" styleCategories="AllStyleCategories" hasScaleBasedVisibilityFlag="0" minScale="1e+08" maxScale="0">
  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" forceraster="0" referencescale="-1">
    <categories>
{cats}
    </categories>
    <symbols>
{symbols}
    </symbols>
    <rotation/>
    <sizescale/>
  </renderer-v2>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerOpacity>{opacity:g}</layerOpacity>
  <legend type="default-vector" showLabelLegend="0"/>
  <previewExpression>{escape(_quote_field(field))}</previewExpression>
  <layerGeometryType>2</layerGeometryType>
</qgis>
"""


def _quote_field(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def categorized_sld(
    field: str, values: Sequence[str], labels: Sequence[str], colors: Sequence[str],
    opacity: float = DEFAULT_OPACITY, layer_name: str = "classes",
) -> str:
    """SLD 1.1 of the same style as :func:`categorized_qml` (one rule per
    value, fill opacity = ``opacity``), for software that reads SLD."""
    opacity = _check_opacity(opacity)
    rules = []
    for v, lab, c in zip(values, labels, colors):
        rules.append(f"""    <se:Rule>
     <se:Name>{escape(str(lab))}</se:Name>
     <se:Description>
      <se:Title>{escape(str(lab))}</se:Title>
     </se:Description>
     <ogc:Filter xmlns:ogc="http://www.opengis.net/ogc">
      <ogc:PropertyIsEqualTo>
       <ogc:PropertyName>{escape(field)}</ogc:PropertyName>
       <ogc:Literal>{escape(str(v))}</ogc:Literal>
      </ogc:PropertyIsEqualTo>
     </ogc:Filter>
     <se:PolygonSymbolizer>
      <se:Fill>
       <se:SvgParameter name="fill">{c.lower()}</se:SvgParameter>
       <se:SvgParameter name="fill-opacity">{opacity:g}</se:SvgParameter>
      </se:Fill>
      <se:Stroke>
       <se:SvgParameter name="stroke">{c.lower()}</se:SvgParameter>
       <se:SvgParameter name="stroke-width">1</se:SvgParameter>
       <se:SvgParameter name="stroke-linejoin">bevel</se:SvgParameter>
      </se:Stroke>
     </se:PolygonSymbolizer>
    </se:Rule>""")
    body = "\n".join(rules)
    name = escape(layer_name)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<StyledLayerDescriptor xmlns="http://www.opengis.net/sld" version="1.1.0" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:ogc="http://www.opengis.net/ogc" xmlns:se="http://www.opengis.net/se" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.opengis.net/sld http://schemas.opengis.net/sld/1.1.0/StyledLayerDescriptor.xsd">
 <NamedLayer>
  <se:Name>{name}</se:Name>
  <UserStyle>
   <se:Name>{name}</se:Name>
   <se:FeatureTypeStyle>
{body}
   </se:FeatureTypeStyle>
  </UserStyle>
 </NamedLayer>
</StyledLayerDescriptor>
"""


def polygons_layer_style(
    contract: ModelContract, table: str = "classes", opacity: float = DEFAULT_OPACITY
) -> LayerStyle:
    """The default style of the polygons layer (``NAME_polygons.gpkg``,
    layer ``classes``): categorised on ``class_name`` with the contract's
    colours, every class of the model in the legend."""
    names, colors = contract.class_names, contract.class_colors
    return LayerStyle(
        table=table,
        qml=categorized_qml("class_name", names, names, colors, opacity),
        sld=categorized_sld("class_name", names, names, colors, opacity, layer_name=table),
        name=table,
        description=f"geoseg classes of model {contract.name}",
    )


# --- GeoPackage -------------------------------------------------------------
# The table exactly as QGIS creates it through GDAL's GeoPackage driver
# (QgsOgrProviderMetadata::saveStyle: an attributes layer "layer_styles",
# FID "id"; GDAL registers it in gpkg_contents as data_type 'attributes',
# srs_id 0, and adds no gpkg_extensions row).
_LAYER_STYLES_DDL = (
    'CREATE TABLE "layer_styles" ( "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
    '"f_table_catalog" TEXT(256), "f_table_schema" TEXT(256), "f_table_name" TEXT(256), '
    '"f_geometry_column" TEXT(256), "styleName" TEXT(30), "styleQML" TEXT, "styleSLD" TEXT, '
    '"useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), "ui" TEXT(30), '
    "\"update_time\" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
)
# GDAL's feature-count triggers (present when gpkg_ogr_contents is)
_COUNT_TRIGGERS = (
    'CREATE TRIGGER "trigger_insert_feature_count_layer_styles" AFTER INSERT ON "layer_styles" '
    "BEGIN UPDATE gpkg_ogr_contents SET feature_count = feature_count + 1 "
    "WHERE lower(table_name) = lower('layer_styles'); END",
    'CREATE TRIGGER "trigger_delete_feature_count_layer_styles" AFTER DELETE ON "layer_styles" '
    "BEGIN UPDATE gpkg_ogr_contents SET feature_count = feature_count - 1 "
    "WHERE lower(table_name) = lower('layer_styles'); END",
)


def _gpkg_time(timestamp: str | None) -> str:
    """ISO 8601 as GeoPackage stores it (``2024-01-31T12:00:00.000Z``)."""
    if timestamp is None:
        t = datetime.now(timezone.utc)
    else:
        t = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        t = t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _create_layer_styles(con: sqlite3.Connection, when: str) -> None:
    """The ``layer_styles`` table, its ``gpkg_contents`` row and, where GDAL
    keeps feature counts, its ``gpkg_ogr_contents`` row and count triggers."""
    con.execute(_LAYER_STYLES_DDL)
    con.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change, "
        "min_x, min_y, max_x, max_y, srs_id) VALUES ('layer_styles', 'attributes', 'layer_styles', "
        "'', ?, NULL, NULL, NULL, NULL, 0)", (when,))
    if _has_table(con, "gpkg_ogr_contents"):
        con.execute("INSERT INTO gpkg_ogr_contents (table_name, feature_count) VALUES ('layer_styles', 0)")
        for sql in _COUNT_TRIGGERS:
            con.execute(sql)


def _write_style(con: sqlite3.Connection, path: str, s: LayerStyle, geom_cols: dict[str, str], when: str) -> None:
    """One style row, replacing the table's earlier style of that name (and,
    for a default style, the default flag of its others)."""
    if s.table not in geom_cols:
        raise OutputError(
            f"{path}: has no layer {s.table!r} to style (layers: {', '.join(sorted(geom_cols)) or 'none'})"
        )
    geom = s.geometry_column or geom_cols[s.table]
    key = (s.table, geom)
    if s.default:
        con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_schema = '' AND "
                    "f_table_name = ? AND f_geometry_column = ?", key)
    con.execute("DELETE FROM layer_styles WHERE f_table_schema = '' AND f_table_name = ? AND "
                "f_geometry_column = ? AND styleName = ?", (*key, s.name))
    con.execute(
        "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
        "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
        "VALUES ('', '', ?, ?, ?, ?, ?, ?, ?, '', NULL, ?)",
        (s.table, geom, s.name, s.qml, s.sld, 1 if s.default else 0, s.description, when))


def write_layer_styles(path: str | os.PathLike, styles: Sequence[LayerStyle], timestamp: str | None = None) -> None:
    """Store QGIS styles in the ``layer_styles`` table of a GeoPackage.

    The table, its ``gpkg_contents`` row (``attributes``) and GDAL's
    ``gpkg_ogr_contents`` count are written as QGIS writes them, so the file
    stays valid for GDAL's ``validate_gpkg.py``.  A style replaces an earlier
    one of the same table and name; a default style clears the default flag
    of the table's other styles.

    Parameters
    ----------
    path : str or path-like
        An existing GeoPackage (closed by every other writer).
    styles : sequence of LayerStyle
        The rows to write.
    timestamp : str, optional
        ISO 8601 time stored as ``update_time`` and the table's
        ``last_change`` (default: now), so equal inputs give equal files.

    Raises
    ------
    OutputError
        The file is no GeoPackage, or a style names a table it lacks.
    """
    path = os.fspath(path)
    when = _gpkg_time(timestamp)
    if not os.path.isfile(path):
        raise OutputError(f"{path}: no such GeoPackage; write the layers before their styles")
    con = sqlite3.connect(path)
    try:
        with con:
            if not _has_table(con, "gpkg_contents") or not _has_table(con, "gpkg_geometry_columns"):
                raise OutputError(
                    f"{path}: not a GeoPackage (no gpkg_contents table); write it with the GPKG driver first"
                )
            geom_cols = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
            if not _has_table(con, "layer_styles"):
                _create_layer_styles(con, when)
            for s in styles:
                _write_style(con, path, s, geom_cols, when)
            con.execute("UPDATE gpkg_contents SET last_change = ? WHERE table_name = 'layer_styles'", (when,))
    except sqlite3.DatabaseError as exc:
        raise OutputError(f"{path}: cannot write layer styles ({exc}); is it a GeoPackage?") from None
    finally:
        con.close()
