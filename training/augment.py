"""Sensor augmentation: make a 64 px training image look like a patch of
another sensor's scene, as the runtime would hand it to the model.

A patch the runtime classifies differs from a EuroSAT-like training tile in
two ways the labels do not care about:

- **ground scale**: a 64 px patch covers 320 m of a 5 m NAIP scene, 640 m of
  a 10 m Sentinel-2 scene, 1.9 km of a 30 m Landsat scene;
  :func:`rescale` resamples an image so it covers ``zoom`` times its ground
  (``zoom`` < 1: a crop enlarged, as a finer sensor sees it; ``zoom`` > 1:
  the image mirrored outwards and reduced with an anti-aliasing filter);
- **radiometry**: 8-bit products are stretched differently (per-band gains and
  offsets, gamma, saturation, white balance), the runtime's per-scene
  percentile stretch of uint16 reflectance moves every band on its own, the
  atmosphere adds haze, sensors add blur and noise.  :func:`colour` draws one
  such change per image.

Both take and return float32 images scaled 0-1 (h, w, 3); the train input
pipeline (:func:`geoseg.training.train.augment_fn`) converts from and to the
model's 0-255.  TensorFlow is imported by the caller and passed in, so this
module imports without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SensorAugment:
    """Strengths of the sensor augmentation (0 / 1 / (1, 1) switch a part off)."""

    zoom: tuple[float, float] = (0.5, 2.0)  # ground covered, relative to the image (log-uniform)
    p_zoom: float = 0.5
    gain: float = 0.08  # per-band gain in [1 - gain, 1 + gain] (white balance, band stretch)
    brightness: float = 0.15  # common gain in [1 - b, 1 + b]
    offset: float = 0.03  # per-band offset in [-offset, offset] (of full scale)
    gamma: tuple[float, float] = (0.85, 1.2)  # log-uniform
    saturation: tuple[float, float] = (0.8, 1.25)
    hue: float = 0.015
    p_haze: float = 0.15
    haze: float = 0.2  # blend towards a bright bluish grey by up to this much
    p_blur: float = 0.15
    noise: float = 0.01  # gaussian noise sigma up to this (of full scale)
    p_stretch: float = 0.0  # probability of a contrast stretch like the runtime's per-scene one
    contrast: tuple[float, float] = (1.0, 2.5)  # its contrast gain (log-uniform)
    p_jpeg: float = 0.0  # probability of JPEG compression artefacts (quality 30-90), as 8-bit products carry
    p_water_colour: float = 0.0  # probability that a water image is given another water colour
    water_class: int = -1  # the label that :func:`water_colour` applies to (-1: none)
    p_target_stretch: float = 0.0  # probability of the runtime's uint16 rule (:func:`target_stretch`), applied last

    def to_dict(self) -> dict:
        return asdict(self)


NONE = SensorAugment(zoom=(1.0, 1.0), p_zoom=0.0, gain=0.0, brightness=0.0, offset=0.0, gamma=(1.0, 1.0),
                     saturation=(1.0, 1.0), hue=0.0, p_haze=0.0, haze=0.0, p_blur=0.0, noise=0.0, p_stretch=0.0)
"""No change at all (tests, and a reference point)."""

SCALE_ONLY = SensorAugment(gain=0.0, brightness=0.0, offset=0.0, gamma=(1.0, 1.0), saturation=(1.0, 1.0), hue=0.0,
                           p_haze=0.0, haze=0.0, p_blur=0.0, noise=0.0, p_stretch=0.0)
"""Ground scale only (``--scale-augment``): the one part that helped on the
NAIP scene without costing test accuracy (docs/training.md, issue 13)."""


def zoom_size(size: int, zoom: float) -> int:
    """Side in px of the source window that covers ``zoom`` times an image of
    ``size`` px: a crop for zoom < 1, the image mirrored outwards for zoom > 1
    (at most ``2 * size - 1``, what one reflection can give), at least 8 px."""
    return int(min(max(round(size * zoom), 8), 2 * size - 1))


def rescale(tf, x, zoom):
    """``x`` (h, w, c) float32, square, resampled to cover ``zoom`` times its
    ground at the same size: zoom < 1 crops a centred-at-random window of
    ``zoom_size`` px and enlarges it (bilinear); zoom > 1 reflects the image
    outwards to ``zoom_size`` px and reduces it (area-weighted, anti-aliased)."""
    size = int(x.shape[0])
    s = tf.cast(tf.clip_by_value(tf.round(size * zoom), 8.0, 2.0 * size - 1), tf.int32)

    def zoom_in():
        c = tf.image.random_crop(x, tf.stack([s, s, tf.shape(x)[2]]))
        return tf.image.resize(c, (size, size), method="bilinear")

    def zoom_out():
        pad = s - size
        before = tf.random.uniform([], 0, pad + 1, dtype=tf.int32)
        p = tf.stack([[before, pad - before], [before, pad - before], [0, 0]])
        big = tf.pad(x, p, mode="REFLECT")
        return tf.image.resize(big, (size, size), method="area", antialias=True)

    out = tf.cond(s < size, zoom_in, lambda: tf.cond(s > size, zoom_out, lambda: x))
    return tf.ensure_shape(out, x.shape)


def _blur(tf, x):
    """3x3 binomial blur, edges reflected."""
    k1 = tf.constant([1.0, 2.0, 1.0]) / 4.0
    k = tf.tensordot(k1, k1, axes=0)[:, :, None, None]
    c = int(x.shape[-1])
    k = tf.tile(k, [1, 1, c, 1])
    xp = tf.pad(x[None], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(xp, k, [1, 1, 1, 1], "VALID")[0]


def stretch(tf, x, contrast, pivot, target):
    """A scene's contrast stretch seen in one patch: ``(x - pivot) * contrast
    + target`` per band (``pivot``, ``target`` broadcast over bands), clipped
    to 0-1.  The runtime's percentile stretch of a uint16 scene maps the
    scene's 2nd-98th percentiles of each band to 0-255: for a dim Sentinel-2
    L1C scene that is a gain of about 2 and a large negative offset per band."""
    return tf.clip_by_value((x - pivot) * contrast + target, 0.0, 1.0)


def colour(tf, x, a: SensorAugment):
    """One random radiometric change of ``x`` (h, w, 3) float32 0-1."""
    u = lambda lo, hi, shape=(): tf.random.uniform(shape, lo, hi)  # noqa: E731
    bands = int(x.shape[-1])
    if a.p_stretch:
        c = tf.exp(u(math.log(a.contrast[0]), math.log(a.contrast[1])))
        pivot = u(0.15, 0.5) + u(-0.05, 0.05, (1, 1, bands))
        target = u(0.2, 0.55) + u(-0.05, 0.05, (1, 1, bands))
        x = tf.cond(u(0.0, 1.0) < a.p_stretch, lambda: stretch(tf, x, c, pivot, target), lambda: x)
    if a.gain or a.brightness:
        g = u(1 - a.gain, 1 + a.gain, (1, 1, bands)) * u(1 - a.brightness, 1 + a.brightness)
        x = x * g
    if a.offset:
        x = x + u(-a.offset, a.offset, (1, 1, bands))
    x = tf.clip_by_value(x, 0.0, 1.0)
    if a.gamma != (1.0, 1.0):
        gamma = tf.exp(u(math.log(a.gamma[0]), math.log(a.gamma[1])))
        x = tf.pow(x + 1e-6, gamma)
    if bands == 3:
        if a.saturation != (1.0, 1.0):
            x = tf.image.random_saturation(x, a.saturation[0], a.saturation[1])
        if a.hue:
            x = tf.image.random_hue(x, a.hue)
    if a.p_haze and a.haze:
        hz = u(0.55, 0.85) + u(-0.05, 0.1, (1, 1, bands)) * tf.constant([0.0, 0.5, 1.0][:bands] + [0.0] * (bands - 3))
        w = tf.where(u(0.0, 1.0) < a.p_haze, u(0.0, a.haze), 0.0)
        x = x * (1 - w) + hz * w
    if a.p_blur:
        x = tf.cond(u(0.0, 1.0) < a.p_blur, lambda: _blur(tf, x), lambda: x)
    if a.noise:
        x = x + tf.random.normal(tf.shape(x)) * u(0.0, a.noise)
    x = tf.clip_by_value(x, 0.0, 1.0)
    if a.p_jpeg and bands == 3:
        x = tf.cond(u(0.0, 1.0) < a.p_jpeg, lambda: tf.ensure_shape(tf.image.random_jpeg_quality(x, 30, 90), x.shape),
                    lambda: x)
    return x


WATER_COLOURS = (
    (0.16, 0.25, 0.33),  # deep blue lake or sea
    (0.20, 0.30, 0.28),  # dark blue-green
    (0.26, 0.36, 0.28),  # green (algae)
    (0.34, 0.42, 0.33),  # bright algae green, shallow prairie pond
    (0.30, 0.38, 0.38),  # turquoise, shallow water
    (0.30, 0.33, 0.30),  # grey-green, turbid
    (0.10, 0.12, 0.14),  # near black, deep clear water
)
"""Mean colours (0-1 RGB) of natural water bodies as 8-bit products show
them: sea and lakes from deep blue to black, algae-green and turbid ponds,
shallow turquoise water.  Used by :func:`water_colour`."""


def water_colour(tf, x):
    """Give a water image (h, w, 3) 0-1 another natural water colour: its
    per-band mean is replaced by one of :data:`WATER_COLOURS` (jittered) and
    its texture (the deviations from the mean) scaled by 0.6-1.4, so that
    what stays is what makes water water (a smooth, texture-poor surface),
    not the blue of the EuroSAT lakes."""
    u = lambda lo, hi, shape=(): tf.random.uniform(shape, lo, hi)  # noqa: E731
    palette = tf.constant(WATER_COLOURS, tf.float32)
    i = tf.random.uniform([], 0, len(WATER_COLOURS), dtype=tf.int32)
    target = palette[i] * u(0.8, 1.2) + u(-0.03, 0.03, (3,))
    mean = tf.reduce_mean(x, axis=(0, 1), keepdims=True)
    return tf.clip_by_value((x - mean) * u(0.6, 1.4) + target[None, None, :], 0.0, 1.0)


TARGETS = ((25.0, 222.0), (46.0, 189.0), (67.0, 182.0))
"""The default model's uint16 rule: each band's 2nd-98th scene percentiles to these 8-bit values (red, green,
blue), then clipped to 0-255 (``percentile:2,98:25-222,46-189,67-182``)."""


def target_stretch(tf, x, targets=TARGETS):
    """One (h, w, 3) image 0-1 as the runtime's uint16 rule would show it in a scene: each band's 2nd and
    98th percentiles of the scene to ``targets``, then clipped.  The scene's percentiles are the image's own
    moved by a random amount (its 2nd percentile x 0.3-1.0, its 98th towards the 2nd by up to 30 %): from a
    scene like the image (a cloud image: the cloud at the top target, the pinkish grey the rule makes of
    bright cloud) to one darker than it (the bright parts above the top target, towards white)."""
    bands = int(x.shape[-1])
    v = tf.sort(tf.reshape(x, [-1, bands]), axis=0)
    last = tf.cast(tf.shape(v)[0] - 1, tf.float32)
    lo_img = tf.gather(v, tf.cast(tf.round(0.02 * last), tf.int32))
    hi_img = tf.gather(v, tf.cast(tf.round(0.98 * last), tf.int32))
    lo = lo_img * tf.random.uniform([], 0.3, 1.0)
    hi = lo + (hi_img - lo) * tf.random.uniform([], 0.7, 1.0)
    t = tf.constant(targets, tf.float32) / 255.0
    return tf.clip_by_value((x - lo) / tf.maximum(hi - lo, 1e-3) * (t[:, 1] - t[:, 0]) + t[:, 0], 0.0, 1.0)


def sensor_augment(tf, x, a: SensorAugment, y=None):
    """Scale (with probability ``p_zoom``) then colour, on one (h, w, c) image 0-1; last, with probability
    ``p_target_stretch``, the runtime's uint16 rule (:func:`target_stretch`)."""
    if a.p_zoom and a.zoom != (1.0, 1.0):
        z = tf.exp(tf.random.uniform([], math.log(a.zoom[0]), math.log(a.zoom[1])))
        x = tf.cond(tf.random.uniform([]) < a.p_zoom, lambda: rescale(tf, x, z), lambda: x)
    if y is not None and a.p_water_colour and a.water_class >= 0 and int(x.shape[-1]) == 3:
        hit = tf.logical_and(tf.equal(tf.cast(y, tf.int32), a.water_class), tf.random.uniform([]) < a.p_water_colour)
        x = tf.cond(hit, lambda: water_colour(tf, x), lambda: x)
    x = colour(tf, x, a)
    if a.p_target_stretch and int(x.shape[-1]) == 3:
        x = tf.cond(tf.random.uniform([]) < a.p_target_stretch, lambda: target_stretch(tf, x), lambda: x)
    return x


@dataclass(frozen=True)
class ReflectanceAugment:
    """Augmentation of reflectance images (multispectral models, issue 24):
    other sensors, calibrations and atmospheres change reflectance by a
    common gain, per-band gains and offsets and a haze (path radiance, most
    in the short wavelengths); a finer or coarser sensor changes the ground a
    patch covers.  Values are reflectance (not 0-1 of full scale)."""

    zoom: tuple[float, float] = (0.5, 2.0)  # ground covered (log-uniform), as SensorAugment
    p_zoom: float = 0.5
    brightness: tuple[float, float] = (0.8, 1.25)  # common gain (log-uniform)
    gain: float = 0.1  # per-band gain in [1 - gain, 1 + gain]
    offset: float = 0.015  # per-band offset in [-offset, offset]
    p_haze: float = 0.3
    haze: float = 0.08  # path radiance added to blue, up to this (green, red, nir: 0.75, 0.55, 0.35 of it)
    noise: float = 0.004  # gaussian noise sigma up to this
    top: float = 1.5  # clip (the model's input range)
    bands: tuple[str, ...] = ("blue", "green", "red", "nir")  # the images' band names (the haze is by name)

    def to_dict(self) -> dict:
        return asdict(self)


HAZE_SPECTRUM = (1.0, 0.75, 0.55, 0.35)
"""Relative path radiance of blue, green, red and near-infrared in a hazy
(Rayleigh + aerosol) atmosphere; other bands (red edge, short-wave
infrared...) take the near-infrared's."""


def haze_weights(bands: tuple[str, ...], n: int) -> list[float]:
    """:data:`HAZE_SPECTRUM` for ``n`` image bands named ``bands`` (by name:
    an image of red, green, blue gets blue's haze in its third band)."""
    by_name = dict(zip(("blue", "green", "red", "nir"), HAZE_SPECTRUM, strict=True))
    return [by_name.get(bands[i] if i < len(bands) else "", HAZE_SPECTRUM[-1]) for i in range(n)]


def reflectance_augment(tf, x, a: ReflectanceAugment):
    """One random sensor/atmosphere change of a reflectance image (h, w, c)."""
    u = lambda lo, hi, shape=(): tf.random.uniform(shape, lo, hi)  # noqa: E731
    bands = int(x.shape[-1])
    if a.p_zoom and a.zoom != (1.0, 1.0):
        z = tf.exp(u(math.log(a.zoom[0]), math.log(a.zoom[1])))
        x = tf.cond(u(0.0, 1.0) < a.p_zoom, lambda: rescale(tf, x, z), lambda: x)
    g = tf.exp(u(math.log(a.brightness[0]), math.log(a.brightness[1])))
    if a.gain:
        g = g * u(1 - a.gain, 1 + a.gain, (1, 1, bands))
    x = x * g
    if a.offset:
        x = x + u(-a.offset, a.offset, (1, 1, bands))
    if a.p_haze and a.haze:
        spec = tf.constant(haze_weights(a.bands, bands), tf.float32)
        h = tf.where(u(0.0, 1.0) < a.p_haze, u(0.0, a.haze), 0.0)
        x = x + h * spec[None, None, :]
    if a.noise:
        x = x + tf.random.normal(tf.shape(x)) * u(0.0, a.noise)
    return tf.clip_by_value(x, 0.0, a.top)


def mix_mask(tf, n: int, size: int, share):
    """``n`` masks (n, size, size, 1) float32 0/1, mask ``i`` covering about
    ``share[i]`` of the image: half of them a smooth random blob field (a
    pond, a park, a cloud), half a straight band at a random angle (a river,
    a road, a coast), both cut at the quantile that gives the share."""
    res = tf.random.uniform([], 2, 7, dtype=tf.int32)
    blob = tf.image.resize(tf.random.uniform(tf.stack([n, res, res, 1])), (size, size), method="bicubic")
    c = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    yy, xx = tf.meshgrid(c, c, indexing="ij")
    theta = tf.random.uniform([n, 1, 1], 0.0, math.pi)
    off = tf.random.uniform([n, 1, 1], -size / 4.0, size / 4.0)
    band = -tf.abs(xx[None] * tf.cos(theta) + yy[None] * tf.sin(theta) - off)[..., None]
    field = tf.where(tf.random.uniform([n, 1, 1, 1]) < 0.5, blob, band)
    flat = tf.sort(tf.reshape(field, [n, -1]), axis=1, direction="DESCENDING")
    k = tf.clip_by_value(tf.cast(tf.round(share * size * size), tf.int32), 1, size * size - 1)
    thr = tf.gather(flat, k - 1, axis=1, batch_dims=1)
    return tf.cast(field >= thr[:, None, None, None], tf.float32)


def mix_cells(tf, x, y, p: float, share: tuple[float, float] = (0.05, 0.45), skip: tuple[int, ...] = ()):
    """Mixed cells, as a scene's cells are: with probability ``p`` each image
    of a batch ``x`` (n, h, w, c) takes a minority part (``share`` of its
    area, uniform) of the next image of the batch; the label stays its own,
    the class of the majority of the cell, which is how the scene
    evaluations score a cell (a quay with 30 % harbour water is land).
    Images labelled one of ``skip`` neither take nor give a part (the
    default model skips cloudy: with clouds mixed in, NAIP's pale bare fields
    came out cloudy; docs/training.md)."""
    n, size = tf.shape(x)[0], int(x.shape[1])
    other, y_other = tf.roll(x, 1, axis=0), tf.roll(y, 1, axis=0)
    m = mix_mask(tf, n, size, tf.random.uniform([n], share[0], share[1]))
    use = tf.random.uniform([n]) < p
    for k in skip:
        use = use & tf.not_equal(tf.cast(y, tf.int32), k) & tf.not_equal(tf.cast(y_other, tf.int32), k)
    m = m * tf.cast(use, tf.float32)[:, None, None, None]
    return x * (1.0 - m) + other * m, y
