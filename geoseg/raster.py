"""Raster I/O: opening and validating scenes, reading windows with their
validity masks, and the single writer of the class and probability rasters.

One of the I/O modules (see the README's layout: the pure modules never open
a file).  Open datasets never leave a function: tasks receive a
:class:`SceneInfo` (plain, picklable data) and open the file themselves.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Literal, NoReturn

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from . import styles
from .bands import check_sensor_family, choose_bands, family_from_tags, is_rgb, unused_nir
from .checks import check_georeferenced, check_nodata_value, check_pixel_dtype
from .contract import ModelContract, Scaling
from .errors import BandWarning, InputError, MaskWarning, OutputError, ScalingWarning, first_line, ignoring
from .naming import scene_stem
from .patches import band_percentiles
from .sources import gdal_path, is_remote, remote_error

log = logging.getLogger(__name__)

MaskKind = Literal["user", "alpha", "per-dataset", "nodata", "none"]
"""Where a scene's validity comes from: ``user`` (``--nodata``), the file's
``alpha`` band, its internal ``per-dataset`` mask, its ``nodata`` value, or
``none`` (every pixel is data)."""


@dataclass(frozen=True)
class SceneInfo:
    """What a task needs to know about a scene; picklable (no open handles)."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str
    transform: Affine
    bidx: tuple[int, ...]
    nodata: float | None  # the value used for masking, if masking by value
    mask_by_value: bool  # validity by comparing pixels with ``nodata`` (--nodata, a nodata value shadowing an alpha band, an integer nodata value)
    mask_kind: MaskKind
    tile: int | None  # internal tile side, if square tiles
    res: tuple[float, float] = (1.0, 1.0)
    is_geographic: bool = False
    band_choice: str = ""  # how the bands were found (:class:`geoseg.bands.BandChoice`)
    band_names: tuple[str, ...] = ()  # the model band each chosen band feeds
    scale_offset: tuple[tuple[float, float], ...] = ()  # the chosen bands' GDAL scale and offset
    tags: tuple[tuple[str, str], ...] = ()  # the file's sensor and calibration tags (:mod:`geoseg.reflectance`)

    @property
    def name(self) -> str:
        """The stem the scene's outputs are named by (:func:`geoseg.naming.scene_stem`)."""
        return scene_stem(self.path)


def _not_found_hint(path: str, what: str) -> str:
    """The way out of a local path that does not exist, for the usual slips:
    a URL scheme geoseg does not read, a GDAL /vsi path of an archive, an
    unexpanded ``~``, a trailing ``/``, a name that differs only in case."""
    scheme = path.split("://", 1)[0] if "://" in path else ""
    if scheme == "file":
        return f"expected a path: pass {path[len('file://'):] or '/'} (without file://)"
    if scheme:
        return (f"{scheme}:// is not a source geoseg reads; expected a local path, http(s)://, s3://, gs:// or "
                "az://: download the file first")
    if path.startswith("/vsi"):
        return f"expected a local path or a URL ({path.split('/')[1]} paths are not read): extract the file first"
    if path.startswith("~"):
        return f"the ~ was not expanded (quoted?): pass {os.path.expanduser(path)}"
    if path.endswith(("/", os.sep)) and os.path.isfile(path.rstrip("/" + os.sep)):
        return f"{path.rstrip('/' + os.sep)} is a file: drop the trailing /"
    folder, name = os.path.split(path)
    try:
        same = [f for f in os.listdir(folder or ".") if f.lower() == name.lower()]
    except OSError:
        same = []
    if same:
        return f"did you mean {os.path.join(folder, same[0])}? (names are case-sensitive)"
    return f"check the path of the {what}"


def open_raster(path: str, what: str = "scene"):
    """``rasterio.open`` for reading, with geoseg's one-line errors: a missing
    or empty local file, an unreadable raster, or a remote source's 404/403/
    network failure (``path`` may be remote: :mod:`geoseg.sources`).  ``what``
    names the file's role in the messages (scene, class map, reference...)."""
    path = str(path)
    if not is_remote(path):
        if not os.path.exists(path):
            raise InputError(f"{path}: file not found; {_not_found_hint(path, what)}")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise InputError(f"{path}: empty file (0 bytes); expected a GeoTIFF {what}")
    io_errors = _GdalIoErrors()
    env_log = logging.getLogger("rasterio._env")  # where rasterio logs GDAL's warnings
    env_log.addFilter(io_errors)
    try:
        with ignoring(NotGeoreferencedWarning):
            src = rasterio.open(gdal_path(path))
    except RasterioError as exc:
        _raise_remote(path, exc)
        raise InputError(f"{path}: not a readable raster ({first_line(exc)}); expected a GeoTIFF {what}") from None
    finally:
        env_log.removeFilter(io_errors)
    if io_errors.first:
        src.close()
        raise InputError(f"{path}: truncated or corrupt (GDAL: {io_errors.first}); expected a whole GeoTIFF "
                         f"{what}: re-download or re-export it")
    return src


class _GdalIoErrors(logging.Filter):
    """Holds back GDAL's 'IO error during reading' warnings of the calling
    thread while it opens a file (a file cut short after its pixels loses the
    tags at its end: its CRS and geotransform), keeping the first."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread or "IO error" not in (msg := record.getMessage()):
            return True
        if self.first is None:
            self.first = msg.split(": ", 1)[-1][:160]
        return False


def raise_unreadable(path: str, col: int, row: int, exc: BaseException) -> NoReturn:
    """The one-line error of a failed pixel read at (``col``, ``row``) of
    ``path``: a remote source's network failure named as such, else a
    truncated or corrupt file (scenes, references, chips alike)."""
    _raise_remote(path, exc)
    _raise_missing_source(path, exc)
    raise InputError(f"{path}: cannot read the pixels at column {col}, row {row} ({first_line(exc)}); the file may "
                     "be truncated or corrupt: re-download or re-export it") from None


def _raise_missing_source(path: str, exc: BaseException) -> None:
    """Raise the one-line error of a file the scene refers to (a VRT's
    source) that is missing; return otherwise."""
    msg = first_line(exc)
    if "no such file or directory" in msg.lower() and os.path.basename(path) not in msg.split(":")[0]:
        raise InputError(f"{path}: a file it refers to cannot be opened ({msg}); expected every source file of "
                         f"{os.path.basename(path)} to exist: restore the file or fix the paths in "
                         f"{os.path.basename(path)}") from None


def _raise_remote(path: str, exc: BaseException) -> None:
    """Raise the one-line error of a network failure (404, 403, retries
    exhausted) when ``exc`` is one; return otherwise."""
    err = remote_error(path, str(exc))
    if err is not None:
        raise err from None


def open_scene(
    path: str | os.PathLike,
    contract: ModelContract,
    bidx: tuple[int, ...] | None = None,
    nodata: float | None = None,
    family: str | None = None,
    min_side: int | None = -1,
) -> SceneInfo:
    """Open a scene, check it against the model contract and describe it.

    ``path`` is a local file or a remote source (``https://``, ``s3://``,
    ``/vsicurl/``...: see :mod:`geoseg.sources`); the caller enters the GDAL
    settings of its reads (:func:`geoseg.sources.gdal_env`).  ``family``: a
    band-code numbering hint (:func:`geoseg.bands.band_family`, e.g. from
    ``--sensor``).  ``min_side``: the scene must be at least this many pixels
    each way (-1: the contract's patch size; None: not checked here, the
    caller checks with :func:`check_size` once it knows the patch's size in
    source pixels, e.g. after ``--resample auto``).

    Raises
    ------
    InputError
        One line naming the file, what was found, what was expected and the fix.
    """
    path = str(path)
    with open_raster(path, "scene") as src:
        scene = _describe(src, path, contract, bidx, nodata, family)
    if min_side is not None:
        check_size(scene, contract.patch_size if min_side == -1 else min_side)
    return scene


def check_size(scene: SceneInfo, side: int, note: str = "", fix: str = "") -> None:
    """Refuse a scene smaller than one patch of ``side`` source pixels each
    way (``note``: what the side stands for, e.g. after resampling; ``fix``:
    the way out, if any)."""
    if scene.width < side or scene.height < side:
        raise InputError(
            f"{scene.path}: raster is {scene.width}x{scene.height} px, smaller than one "
            f"{side}x{side} patch{note}; expected at least {side}x{side}{fix}"
        )


_TAG_KEYS = ("OFFSET", "BASELINE", "QUANTIFICATION", "SPACECRAFT", "SATELLITE", "PLATFORM", "SENSOR")


def _scene_tags(src, bidx: tuple[int, ...]) -> dict[str, str]:
    """The file's tags that say its sensor or calibration (dataset, then the
    first chosen band's)."""
    tags = {**src.tags(), **src.tags(bidx[0])}
    return {k: str(v)[:80] for k, v in tags.items() if any(w in k.upper() for w in _TAG_KEYS)}


def _describe(src, path, contract, bidx, nodata, family=None) -> SceneInfo:
    check_georeferenced(src, path, "scene", north_up=True)
    ci = [c.name for c in src.colorinterp]
    if family is not None:  # from --sensor: the file must not say it is of another sensor
        check_sensor_family(path, family, list(src.descriptions), src.tags())
    said = family_from_tags(src.tags())
    if family is not None and said is not None and family.startswith("landsat") and said.startswith("landsat"):
        family = said  # a Landsat preset on a Landsat 4-7 file (SPACECRAFT_ID=LANDSAT_5): its own numbering
    choice = choose_bands(path, contract.bands, src.count, ci, list(src.descriptions), bidx, family or said)
    if choice.warning:
        warnings.warn(choice.warning, BandWarning, stacklevel=3)
    nir = unused_nir(contract.bands, ci, list(src.descriptions), family or said)
    if nir is not None:
        log.info("%s: band %d is near-infrared, which this model does not read; `-m multispectral` reads it and "
                 "tells water and cloud apart better (docs/multispectral.md)", path, nir)
    chosen = choice.bidx
    dtypes = {src.dtypes[b - 1] for b in chosen}
    if len(dtypes) != 1:
        raise InputError(f"{path}: the chosen bands {','.join(map(str, chosen))} have mixed dtypes "
                         f"({', '.join(sorted(dtypes))}); expected bands of one dtype: choose such bands with --bidx, "
                         "or convert the file to one dtype (`gdal_translate -ot UInt16 in out.tif`)")
    dtype = dtypes.pop()
    hint = stretch_hint(contract, dtype) if nir is None else None
    if hint:
        log.info("%s: %s", path, hint)
    check_pixel_dtype(path, dtype)
    check_nodata_value(path, nodata, dtype)
    alpha = "alpha" in ci
    mask_kind: MaskKind
    if nodata is not None:
        mask_kind = "user"
    elif src.nodata is not None and alpha:
        # GDAL masks by the nodata value and ignores the alpha band (rasterio
        # would say so with a NodataShadowWarning on every look at the masks)
        mask_kind = "nodata"
        warnings.warn(
            f"{path}: has both a nodata value ({src.nodata:g}) and an alpha band; GDAL masks by the nodata "
            "value and ignores the alpha band (pass --nodata to choose the value, or unset it with "
            "`rio edit-info --unset-nodata` to mask by alpha)", MaskWarning, stacklevel=3,
        )
    else:
        mask_kind = _mask_kind([src.mask_flag_enums[b - 1] for b in chosen])
    tile = None
    bh, bw = src.block_shapes[chosen[0] - 1]
    if bh == bw and bh < src.height:
        tile = bh
    return SceneInfo(
        path=path, width=src.width, height=src.height, count=src.count, dtype=dtype, crs_wkt=src.crs.to_wkt(),
        transform=src.transform, bidx=chosen, nodata=nodata if nodata is not None else src.nodata,
        # GDAL's nodata mask, computed from the values: the same pixels, without
        # rasterio's NodataShadowWarning at every read of a nodata + alpha scene,
        # and without GDAL deriving one mask per band from the values again
        mask_by_value=nodata is not None or (mask_kind == "nodata" and (alpha or _integer_nodata(src, chosen, dtype))),
        mask_kind=mask_kind, tile=tile, res=src.res, is_geographic=bool(src.crs.is_geographic),
        band_choice=choice.how, band_names=choice.names,
        scale_offset=tuple((float(src.scales[b - 1]), float(src.offsets[b - 1])) for b in chosen),
        tags=tuple(sorted(_scene_tags(src, chosen).items())),
    )


def _integer_nodata(src, bands: tuple[int, ...], dtype: str) -> bool:
    """Whether GDAL's nodata masks of ``bands`` are exactly "value != nodata":
    an integer scene whose bands share one nodata value, an integer inside
    the dtype's range (GDAL treats others in ways of its own)."""
    if np.dtype(dtype).kind not in "ui":
        return False
    nds = {src.nodatavals[b - 1] for b in bands}
    if len(nds) != 1 or None in nds:
        return False
    nd = float(nds.pop())
    info = np.iinfo(np.dtype(dtype))
    return nd.is_integer() and info.min <= nd <= info.max


def _mask_kind(flags: list) -> MaskKind:
    """The strongest GDAL mask among the chosen bands' mask flags."""
    for flag, kind in ((MaskFlags.alpha, "alpha"), (MaskFlags.per_dataset, "per-dataset"), (MaskFlags.nodata, "nodata")):
        if any(flag in f for f in flags):
            return kind  # type: ignore[return-value]
    return "none"


def stretch_hint(contract: ModelContract, dtype: str) -> str | None:
    """For an RGB model that stretches ``dtype`` scenes per scene (a
    percentile rule): that the stretch greys bright cloud, and which
    built-in model reads such a scene as reflectance instead; else None."""
    if contract.input_kind == "reflectance" or not is_rgb(contract.bands) or dtype == "uint8":
        return None
    rule, _ = dtype_rule(contract, dtype)
    if rule is None or rule.method != "percentile":
        return None
    return (f"{dtype} pixels are stretched per scene ({rule.describe()}), which turns bright cloud grey; "
            "`-m rgb-reflectance` reads them as reflectance (with --sensor or --reflectance-scale where the file "
            "does not say its calibration) and answers cloud (docs/multispectral.md)")


def dtype_rule(contract: ModelContract, dtype: str) -> tuple[Scaling | None, bool]:
    """The contract's rule for ``dtype`` scenes: its own, else the float rule
    for floats, else for other wide integers (int16 reflectance, uint32 ...,
    which hold the same kind of values as uint16 products) the uint16 rule;
    and whether it is that uint16 stand-in."""
    s = contract.scaling.get(dtype)
    if s is None and dtype.startswith("float"):
        s = contract.scaling.get("float")
    if s is None and dtype != "uint8" and np.issubdtype(np.dtype(dtype), np.integer):
        s = contract.scaling.get("uint16")
        return s, s is not None
    return s, False


def scaling_for(scene: SceneInfo, contract: ModelContract, override: Scaling | None) -> Scaling:
    """The scaling that applies to this scene's dtype, or a clear error.

    A reflectance model's scene gets its default rule to reflectance
    (:func:`geoseg.reflectance.decide` without options; ``geoseg classify``
    decides with its options in :mod:`geoseg.pipeline`)."""
    if override is not None:
        return override
    if contract.input_kind == "reflectance":
        from .reflectance import decide, model_scaling

        rule, warning = decide(scene.path, scene.dtype, len(scene.bidx), file_scale_offset=scene.scale_offset,
                               tags=dict(scene.tags))
        if warning:
            warnings.warn(warning, ScalingWarning, stacklevel=2)
        scaling, affine = model_scaling(rule, contract, scene.path)
        if affine is not None:
            raise InputError(f"{scene.path}: its bands have scales or offsets of their own ({rule.describe()}); "
                             "expected one rule for every band here: classify it with `geoseg classify`")
        return scaling
    s, stand_in = dtype_rule(contract, scene.dtype)
    if stand_in and s is not None:
        warnings.warn(f"{scene.path}: the model declares no scaling for {scene.dtype}; using its uint16 "
                      f"rule ({s.describe()}); choose another with --scaling", ScalingWarning, stacklevel=2)
    if s is None:
        declared = ", ".join(sorted(contract.scaling)) or "none"
        raise InputError(
            f"{scene.path}: scene is {scene.dtype} but the model declares scaling only for "
            f"{declared}; pass --scaling percentile:2,98 or --scaling linear:SCALE"
        )
    return s


def read_window(scene: SceneInfo, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the chosen bands of ``window``, which may run past the scene's edges.

    Returns
    -------
    data
        (band, h, w) array in the source dtype, zeros outside the scene.
    valid
        (h, w) bool: the pixel holds data (not nodata, not masked, finite).
    inside
        (h, w) bool: the pixel lies inside the scene (False for padding).
    """
    h, w = int(window.height), int(window.width)
    r0, c0 = int(window.row_off), int(window.col_off)
    rr0, cc0 = max(0, r0), max(0, c0)
    rr1, cc1 = min(scene.height, r0 + h), min(scene.width, c0 + w)
    nb = len(scene.bidx)
    if rr1 <= rr0 or cc1 <= cc0:
        return np.zeros((nb, h, w), dtype=scene.dtype), np.zeros((h, w), bool), np.zeros((h, w), bool)
    inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
    sl = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
    try:
        with rasterio.open(gdal_path(scene.path)) as src:
            arr = src.read(scene.bidx, window=inner)
            masks = None if scene.mask_by_value or scene.mask_kind == "none" else src.read_masks(scene.bidx, window=inner)
    except RasterioError as exc:
        raise_unreadable(scene.path, int(inner.col_off), int(inner.row_off), exc)
    v = validity(arr, masks, scene)
    if arr.dtype.kind == "f":
        arr = np.where(np.isfinite(arr), arr, 0)
    if arr.shape[1:] == (h, w):  # wholly inside the scene: no padding, no copy
        return arr, v, np.ones((h, w), dtype=bool)
    data = np.zeros((nb, h, w), dtype=scene.dtype)
    valid = np.zeros((h, w), dtype=bool)
    inside = np.zeros((h, w), dtype=bool)
    data[(slice(None),) + sl] = arr
    valid[sl] = v
    inside[sl] = True
    return data, valid, inside


def read_window_resampled(
    scene: SceneInfo, window: Window, out_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ``window`` (which may run past the scene's right and bottom edges)
    resampled to ``out_shape`` (rows, cols) model pixels, and its validity.

    The pixels come from GDAL's resampled read of the window (``out_shape``):
    :attr:`~rasterio.enums.Resampling.average` when reducing (anti-aliased,
    and GDAL leaves the pixels its masks exclude out of the average),
    :attr:`~rasterio.enums.Resampling.bilinear` when enlarging.  The part of
    the window inside the scene is read as a fractional window of whole model
    pixels, so every block samples the same scene-wide model-pixel grid; a
    model pixel that the scene's edge cuts counts as padding.

    Returns
    -------
    data
        (band, rows, cols) model pixels in the source dtype (zeros outside).
    valid_model
        (rows, cols) bool: every source pixel of the model pixel holds data
        (:func:`geoseg.patches.footprint_valid`), so the model never sees a
        value averaged with nodata; others are filled like any gap.
    valid, inside
        (h, w) bool at the source resolution, as :func:`read_window` gives
        them: the cells' validity, the patches' valid fraction and the areas
        are counted in source pixels.
    """
    from .patches import footprint_valid

    h, w = int(window.height), int(window.width)
    r0, c0 = int(window.row_off), int(window.col_off)
    rows, cols = out_shape
    if r0 < 0 or c0 < 0:
        raise ValueError("a resampled window must start inside the scene")
    ry, rx = h / rows, w / cols  # source pixels per model pixel
    nb = len(scene.bidx)
    data = np.zeros((nb, rows, cols), dtype=scene.dtype)
    valid = np.zeros((h, w), dtype=bool)
    inside = np.zeros((h, w), dtype=bool)
    rr1, cc1 = min(scene.height, r0 + h), min(scene.width, c0 + w)
    if rr1 <= r0 or cc1 <= c0:
        return data, np.zeros(out_shape, bool), valid, inside
    inner = Window(c0, r0, cc1 - c0, rr1 - r0)
    # model pixels wholly inside the scene (a hair of tolerance for float division)
    mr, mc = int((rr1 - r0) / ry + 1e-9), int((cc1 - c0) / rx + 1e-9)
    v = _read_inside(scene, inner, (mr, mc), (ry, rx), data)
    valid[: rr1 - r0, : cc1 - c0] = v
    inside[: rr1 - r0, : cc1 - c0] = True
    valid_model = footprint_valid(valid, out_shape)
    valid_model[mr:, :] = False
    valid_model[:, mc:] = False
    return data, valid_model, valid, inside


def _read_inside(scene: SceneInfo, inner: Window, model_px: tuple[int, int], step: tuple[float, float],
                 data: np.ndarray) -> np.ndarray:
    """Read the part ``inner`` of a window inside the scene: its validity at
    the source resolution (returned) and, resampled, its ``model_px`` (rows,
    cols) whole model pixels of ``step`` (rows, cols) source pixels each,
    written into the top-left of ``data``."""
    r0, c0 = int(inner.row_off), int(inner.col_off)
    mr, mc = model_px
    ry, rx = step
    nb = len(scene.bidx)
    method = Resampling.average if ry > 1 else Resampling.bilinear
    need_masks = not (scene.mask_by_value or scene.mask_kind == "none")
    # the values at the source resolution only where the validity needs them
    # (a nodata value given by --nodata, NaN in float scenes); masks are cheap
    need_values = scene.mask_by_value or np.dtype(scene.dtype).kind == "f"
    try:
        with rasterio.open(gdal_path(scene.path)) as src:
            if need_values or need_masks:
                full = src.read(scene.bidx, window=inner) if need_values else np.zeros((nb, 1, 1), scene.dtype)
                v = validity(full, src.read_masks(scene.bidx, window=inner) if need_masks else None, scene)
            else:
                v = np.ones((int(inner.height), int(inner.width)), dtype=bool)
            if mr and mc:
                arr = src.read(scene.bidx, window=Window(c0, r0, mc * rx, mr * ry), out_shape=(nb, mr, mc),
                               resampling=method)
                if arr.dtype.kind == "f":
                    arr = np.where(np.isfinite(arr), arr, 0)
                data[:, :mr, :mc] = arr
    except RasterioError as exc:
        raise_unreadable(scene.path, int(inner.col_off), int(inner.row_off), exc)
    return v


def validity(arr: np.ndarray, masks: np.ndarray | None, scene: SceneInfo) -> np.ndarray:
    """Which pixels hold data: (band, ...) pixels and their GDAL masks -> (...) bool.

    ``--nodata`` (a value, or NaN) decides alone when given; else the file's
    masks (alpha, per-dataset or nodata: a pixel is data where any chosen
    band's mask says so), unless the scene has none; float pixels must also
    be finite.  ``masks`` may be None when they are not needed (``--nodata``,
    or a scene without masks).
    """
    if scene.mask_by_value:
        nd = scene.nodata
        if nd is not None and np.isnan(nd):
            v = ~np.all(np.isnan(arr), axis=0)
        else:
            v = np.any(arr != nd, axis=0)
    elif scene.mask_kind == "none" or masks is None:
        v = np.ones(arr.shape[1:], dtype=bool)
    else:
        v = np.any(masks > 0, axis=0)
    if arr.dtype.kind == "f":
        v &= np.all(np.isfinite(arr), axis=0)
    return v


def scene_percentiles(scene: SceneInfo, low: float, high: float, max_side: int = 1024,
                      factor: float | None = None) -> np.ndarray:
    """(band, 2) ``low`` and ``high`` percentiles of the valid pixels of a
    sample of the scene (:func:`scene_quantiles`)."""
    return scene_quantiles(scene, (low, high), max_side, factor)


def scene_quantiles(scene: SceneInfo, qs: tuple[float, ...], max_side: int = 1024,
                    factor: float | None = None) -> np.ndarray:
    """(band, len(qs)) percentiles ``qs`` of the valid pixels of a sample of the scene.

    With overviews, a decimated read (GDAL takes the overview); without, a
    regular 8 x 8 grid of 128 x 128 px windows: either way bounded time and
    memory whatever the scene size, and deterministic.  ``factor`` (source
    pixels per model pixel, ``--resample auto``): the windows are read
    resampled as the model sees them (average when reducing, bilinear when
    enlarging), 128 x 128 model pixels each where the scene is large enough.
    """
    need_masks = not (scene.mask_by_value or scene.mask_kind == "none")
    with rasterio.open(gdal_path(scene.path)) as src:

        def masks(**kw: object) -> np.ndarray | None:
            return src.read_masks(scene.bidx, **kw) if need_masks else None

        if src.overviews(scene.bidx[0]):
            f = max(1, int(np.ceil(max(scene.width, scene.height) / max_side)))
            shape = (max(1, scene.height // f), max(1, scene.width // f))
            out_shape = (len(scene.bidx),) + shape
            arr = src.read(scene.bidx, out_shape=out_shape, resampling=Resampling.nearest)
            samples = [(arr, masks(out_shape=out_shape, resampling=Resampling.nearest))]
        else:
            n, side = 8, 128
            if factor:
                side = max(1, round(128 * factor))
            rows = np.linspace(0, max(0, scene.height - side), n).astype(int)
            cols = np.linspace(0, max(0, scene.width - side), n).astype(int)
            samples = []
            for r in np.unique(rows):
                for c in np.unique(cols):
                    w = Window(int(c), int(r), min(side, scene.width), min(side, scene.height))
                    if not factor:
                        samples.append((src.read(scene.bidx, window=w), masks(window=w)))
                        continue
                    rs_shape = (len(scene.bidx), max(1, round(w.height / factor)), max(1, round(w.width / factor)))
                    how = Resampling.average if factor > 1 else Resampling.bilinear
                    samples.append((src.read(scene.bidx, window=w, out_shape=rs_shape, resampling=how),
                                    masks(window=w, out_shape=rs_shape, resampling=Resampling.nearest)))
    arr = np.concatenate([a.reshape(a.shape[0], -1) for a, _ in samples], axis=1)
    flat = [m.reshape(m.shape[0], -1) for _, m in samples if m is not None]
    valid = validity(arr, np.concatenate(flat, axis=1) if flat else None, scene)
    if not valid.any():
        raise InputError(f"{scene.path}: the sampled pixels are all nodata; pass --scaling linear:SCALE "
                         "(percentile scaling needs valid pixels)")
    return band_percentiles(arr[:, None, :], valid[None, :], qs)


def check_readable(scene: SceneInfo) -> None:
    """Read one pixel in each corner of the scene (a tile or strip each): a
    truncated TIFF, whose last blocks are missing, fails here before any work.
    Damage elsewhere fails the block that meets it, with the same message."""
    w, h = scene.width, scene.height
    try:
        with rasterio.open(gdal_path(scene.path)) as src:
            for c, r in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
                src.read(scene.bidx, window=Window(c, r, 1, 1))
    except RasterioError as exc:
        _raise_remote(scene.path, exc)
        _raise_missing_source(scene.path, exc)
        raise InputError(
            f"{scene.path}: cannot read pixel data ({first_line(exc)}); the file is truncated "
            "or corrupt: re-download or re-export it"
        ) from None


class GridWriter:
    """The single writer of one scene's class and probability rasters.

    Blocks are written by window into temporary GeoTIFFs as they arrive;
    :meth:`finish` turns them into tiled, compressed COGs under temporary
    names; the caller renames them when every output of the scene is ready.
    """

    def __init__(
        self, class_tmp: str, probs_tmp: str | None, shape: tuple[int, int], transform: Affine,
        crs_wkt: str, contract: ModelContract,
    ) -> None:
        self.class_tmp, self.probs_tmp = class_tmp, probs_tmp
        self.contract = contract
        h, w = shape
        bs = 256 if min(h, w) > 256 else 16 * max(1, min(16, -(-min(h, w) // 16)))
        common = dict(
            driver="GTiff", width=w, height=h, crs=crs_wkt, transform=transform, tiled=True,
            blockxsize=bs, blockysize=bs, compress="deflate", BIGTIFF="IF_SAFER",
        )
        try:
            self._cls = rasterio.open(
                class_tmp + ".part.tif", "w", count=1, dtype="uint8", nodata=255, **common
            )
            self._prb = None
            if probs_tmp:
                self._prb = rasterio.open(
                    probs_tmp + ".part.tif", "w", count=contract.n_classes, dtype="float32",
                    nodata=float("nan"), predictor=3, **common
                )
        except (RasterioError, OSError) as exc:
            raise OutputError(f"{class_tmp}: cannot create output ({first_line(exc)})") from None
        # initialise everything as nodata: blocks fill what they cover
        self._cls.write_colormap(1, self._colormap())

    def _colormap(self) -> dict[int, tuple[int, int, int, int]]:
        return styles.colormap(self.contract)

    def write(self, window: Window, classes: np.ndarray, probs: np.ndarray | None) -> None:
        self._cls.write(classes[None], window=window)
        if self._prb is not None and probs is not None:
            self._prb.write(probs, window=window)

    def finish(self, tags: dict[str, str]) -> None:
        """Close the partial files and write COG copies at the temporary names."""
        from rasterio.shutil import copy as rio_copy

        names = self.contract.class_names
        self._cls.set_band_description(1, "class")
        self._cls.update_tags(**tags, CLASS_NAMES=",".join(names))
        self._cls.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(names)})
        self._cls.close()
        rio_copy(self.class_tmp + ".part.tif", self.class_tmp, driver="COG", compress="DEFLATE",
                 overview_resampling="MODE", blocksize=256, BIGTIFF="IF_SAFER")
        os.remove(self.class_tmp + ".part.tif")
        if self._prb is not None:
            assert self.probs_tmp is not None  # _prb is opened only with a probs_tmp
            for i, n in enumerate(names):
                self._prb.set_band_description(i + 1, n)
            self._prb.update_tags(**tags, CLASS_NAMES=",".join(names))
            self._prb.close()
            rio_copy(self.probs_tmp + ".part.tif", self.probs_tmp, driver="COG",
                     compress="DEFLATE", predictor=3, overview_resampling="AVERAGE",
                     blocksize=256, BIGTIFF="IF_SAFER")
            os.remove(self.probs_tmp + ".part.tif")

    def abort(self) -> None:
        """Close the partial files; the caller's :meth:`OutputPlan.cleanup`
        removes every temporary file, these included."""
        for ds in (self._cls, self._prb):
            try:
                if ds is not None and not ds.closed:
                    ds.close()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass


def read_classes(path: str) -> tuple[np.ndarray, Affine, str]:
    """Read a finished class raster (cell grid, small) for polygonizing."""
    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs.to_wkt()
