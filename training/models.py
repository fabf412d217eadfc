"""Keras models: a from-scratch CNN baseline and transfer models on a
pre-trained backbone.  Every model takes raw RGB pixels (0-255, as float32
or uint8) and does its own preprocessing, so the runtime never re-implements
scaling.  Augmentation is done in the input pipeline, not in the model, so
the exported graph holds only inference ops.
"""

from __future__ import annotations

import logging
import os
import warnings

import keras
import numpy as np
from keras import layers

log = logging.getLogger(__name__)

ARCHS = ("mobilenetv2", "efficientnetb0", "resnet50", "scratch")
MOBILENET_ALPHA = 0.5


@keras.saving.register_keras_serializable(package="geoseg")
class CaffePreprocess(layers.Layer):
    """ResNet50's ImageNet preprocessing (RGB->BGR, mean subtraction) as a
    serialisable layer (a Lambda layer would not reload from .keras)."""

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        x = keras.ops.flip(x, axis=-1)
        return x - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype="float32")


def preprocessing(arch: str) -> layers.Layer:
    if arch == "mobilenetv2":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")
    if arch == "efficientnetb0":
        return layers.Identity(name="preprocess")  # EfficientNet rescales inside
    if arch == "resnet50":
        return CaffePreprocess(name="preprocess")
    return layers.Rescaling(1 / 255.0, name="preprocess")


def build_backbone(arch: str, size: int, weights: str | None) -> keras.Model:
    """The backbone without its top.  ``weights``: ``"imagenet"`` (Keras
    downloads or finds the file in ``$KERAS_HOME/models``), ``None``, or the
    path of a ``.weights.h5``/``.h5`` file (a backbone pre-trained by
    ``geoseg pretrain``, or an ImageNet file)."""
    kw = dict(include_top=False, input_shape=(size, size, 3), pooling="avg")
    keras_weights = weights if weights in ("imagenet", None) else None
    if arch == "mobilenetv2":
        m = keras.applications.MobileNetV2(weights=keras_weights, alpha=MOBILENET_ALPHA, **kw)
    elif arch == "efficientnetb0":
        m = keras.applications.EfficientNetB0(weights=keras_weights, **kw)
    elif arch == "resnet50":
        m = keras.applications.ResNet50(weights=keras_weights, **kw)
    else:
        raise ValueError(f"no backbone for arch {arch!r}")
    if weights not in ("imagenet", None):
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{weights}: backbone weights file not found")
        before = [w.copy() for w in m.get_weights()]
        # Keras warns per layer it skips ("Skipping nested container ..."): held
        # back; how much was loaded is counted below and decides
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                try:
                    m.load_weights(weights)
                except ValueError:  # an ImageNet file of another variant: take what matches
                    m.load_weights(weights, skip_mismatch=True)
            except (ValueError, OSError) as exc:
                raise ValueError(f"{weights}: not a Keras weights file of a {arch} backbone "
                                 f"({str(exc).splitlines()[0][:120]}); expected the .weights.h5 of "
                                 f"`geoseg pretrain --arch {arch}` or an ImageNet .h5") from None
        loaded = sum(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
        if loaded < len(before) // 2:
            raise ValueError(f"{weights}: only {loaded} of the {len(before)} weight tensors of the {arch} backbone "
                             f"were in it; expected the .weights.h5 of `geoseg pretrain --arch {arch}`")
        log.info("backbone weights loaded from %s (%d of %d tensors)", weights, loaded, len(before))
    m._name = "backbone"
    return m


REFLECTANCE_WHITE = 0.275
"""Top-of-atmosphere reflectance that EuroSAT RGB (the backbone's
pre-training data) encodes as 255: its class medians per band match EuroSAT
MS reflectance x 255 / 0.27-0.28 (measured on Forest, SeaLake, Industrial,
AnnualCrop).  A reflectance model scales its input by this, so the RGB
backbone sees what it was trained on."""


def reflectance_preprocessing(arch: str) -> layers.Layer:
    """Reflectance (0-1.5) -> what ``arch``'s pre-trained backbone expects of
    0-255 RGB pixels, every band alike."""
    k = 255.0 / REFLECTANCE_WHITE
    if arch == "mobilenetv2":
        return layers.Rescaling(k / 127.5, offset=-1.0, name="preprocess")
    if arch == "efficientnetb0":
        return layers.Rescaling(k, name="preprocess")
    raise ValueError(f"--arch {arch}: reflectance input is supported for mobilenetv2 and efficientnetb0")


def normalized_difference(a, b, eps: float = 1e-3):
    """(a - b) / (a + b), -1 to 1; 0 where both are 0 (NDWI: green, nir; NDVI: nir, red)."""
    return (a - b) / (a + b + eps)


@keras.saving.register_keras_serializable(package="geoseg")
class SpectralIndices(layers.Layer):
    """Normalised-difference indices of reflectance bands as extra channels:
    NDWI = (green - nir) / (green + nir) and NDVI = (nir - red) / (nir + red)
    (-1 to 1; 0 where both bands are 0).  They do not change with a common
    gain, so an uncalibrated 8-bit scene or a hazy one gives the network the
    same water and vegetation evidence as a calibrated one."""

    def __init__(self, green: int, red: int, nir: int, **kw):
        super().__init__(**kw)
        self.green, self.red, self.nir = int(green), int(red), int(nir)

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        g, r, n = x[..., self.green : self.green + 1], x[..., self.red : self.red + 1], x[..., self.nir : self.nir + 1]
        return keras.ops.concatenate([normalized_difference(g, n), normalized_difference(n, r)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "green": self.green, "red": self.red, "nir": self.nir}


INDEX_BANDS = ("ndwi", "ndvi")


@keras.saving.register_keras_serializable(package="geoseg")
class IndexStats(layers.Layer):
    """Per-patch statistics of reflectance bands beside the backbone's
    features (``--index-stats``): what a per-patch classifier of water and
    vegetation indices reads, given to the head directly.

    For a patch of blue, green, red, nir reflectance: the share of its pixels
    with NDWI above -0.1, 0, 0.1, 0.2 and NDVI above 0.1, 0.3, 0.5 (soft
    steps, 0.02 wide), the mean and spread of NDWI and NDVI, the mean
    visible and near-infrared reflectance and the share of bright pixels
    (visible mean above 0.3).  A cell's majority class is often a matter of
    such a share (a cell half water is water or land by a few pixels), which
    the convolutional features average away; the index shares do not change
    with a common gain (uncalibrated 8-bit scenes)."""

    NDWI_STEPS = (-0.1, 0.0, 0.1, 0.2)
    NDVI_STEPS = (0.1, 0.3, 0.5)
    WIDTH = 0.02
    BRIGHT = 0.3

    def __init__(self, blue: int, green: int, red: int, nir: int, pool: int = 1, **kw):
        super().__init__(**kw)
        self.blue, self.green, self.red, self.nir = int(blue), int(green), int(red), int(nir)
        self.pool = int(pool)

    def call(self, x):
        ops = keras.ops
        x = ops.cast(x, "float32")
        if self.pool > 1:  # statistics of pool x pool means: pool**2 times less work
            x = ops.average_pool(x, self.pool, strides=self.pool, padding="valid", data_format="channels_last")
        b, g = x[..., self.blue], x[..., self.green]
        r, n = x[..., self.red], x[..., self.nir]
        ndwi, ndvi = normalized_difference(g, n), normalized_difference(n, r)
        vis = (b + g + r) / 3.0

        def share(v, t):
            return ops.mean(ops.sigmoid((v - t) / self.WIDTH), axis=(1, 2))

        def spread(v):
            m = ops.mean(v, axis=(1, 2), keepdims=True)
            return ops.sqrt(ops.mean(ops.square(v - m), axis=(1, 2)) + 1e-6)

        feats = [share(ndwi, t) for t in self.NDWI_STEPS] + [share(ndvi, t) for t in self.NDVI_STEPS]
        feats += [ops.mean(ndwi, axis=(1, 2)), ops.mean(ndvi, axis=(1, 2)), spread(ndwi), spread(ndvi),
                  ops.mean(vis, axis=(1, 2)), ops.mean(n, axis=(1, 2)), share(vis, self.BRIGHT)]
        return ops.stack(feats, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.NDWI_STEPS) + len(self.NDVI_STEPS) + 7)

    def get_config(self):
        return {**super().get_config(), "blue": self.blue, "green": self.green, "red": self.red, "nir": self.nir,
                "pool": self.pool}


FIRST_CONV = {"mobilenetv2": "Conv1", "efficientnetb0": "stem_conv"}
RGB_ORDER = ("red", "green", "blue")  # the band order of the Keras backbones' first kernel


def extend_first_conv(kernel: np.ndarray, band_names: list[str], init: str = "zero") -> np.ndarray:
    """A first-convolution kernel (kh, kw, 3, f) over red, green, blue ->
    (kh, kw, len(band_names), f): each band named red, green or blue takes
    its kernel, every other band (near-infrared, ...) zeros (``init="zero"``:
    the network starts as the RGB one) or the mean of the three (``"mean"``)."""
    if init not in ("zero", "mean"):
        raise ValueError(f"first-convolution init {init!r}: expected zero or mean")
    out = np.zeros(kernel.shape[:2] + (len(band_names),) + kernel.shape[3:], kernel.dtype)
    for i, b in enumerate(band_names):
        if b in RGB_ORDER:
            out[:, :, i] = kernel[:, :, RGB_ORDER.index(b)]
        elif init == "mean":
            out[:, :, i] = kernel.mean(axis=2)
    return out


def build_backbone_bands(arch: str, size: int, weights: str | None, band_names: list[str],
                         init: str = "zero") -> keras.Model:
    """The ``arch`` backbone for bands ``band_names`` (e.g. blue, green, red,
    nir): the RGB backbone with ``weights``, its first convolution extended
    by :func:`extend_first_conv` (the other layers' weights copied)."""
    missing = [c for c in RGB_ORDER if c not in band_names]
    if weights is not None and missing:
        raise ValueError(f"bands {', '.join(band_names)}: a pre-trained RGB backbone needs bands named red, green "
                         f"and blue among them (missing {', '.join(missing)})")
    rgb = build_backbone(arch, size, weights)
    kw = dict(include_top=False, input_shape=(size, size, len(band_names)), pooling="avg", weights=None)
    with warnings.catch_warnings():  # "usually expects 1 or 3 input channels": 4 is the point here
        warnings.simplefilter("ignore")
        if arch == "mobilenetv2":
            m = keras.applications.MobileNetV2(alpha=MOBILENET_ALPHA, **kw)
        elif arch == "efficientnetb0":
            m = keras.applications.EfficientNetB0(**kw)
        else:
            raise ValueError(f"--arch {arch}: {len(band_names)}-band backbones are mobilenetv2 or efficientnetb0")
    src = {layer.name: layer for layer in rgb.layers}
    for layer in m.layers:
        w = src[layer.name].get_weights() if layer.name in src else []
        if not w:
            continue
        if layer.name == FIRST_CONV[arch]:
            w = [extend_first_conv(w[0], band_names, init)] + w[1:]
        elif any(a.shape != b.shape for a, b in zip(w, layer.get_weights())):
            # EfficientNet normalises its input per band inside (3 means and variances)
            continue
        layer.set_weights(w)
    m._name = "backbone"
    return m


def freeze_but_first_conv(backbone: keras.Model, arch: str) -> None:
    """Every backbone layer frozen but the first convolution (so the new
    bands' kernels learn while the pre-trained layers stay)."""
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name == FIRST_CONV[arch]


def build_scratch(n_classes: int, size: int, seed: int = 0, bands: int = 3) -> keras.Model:
    """The seeds' from-scratch CNN, made sound: BatchNorm, global pooling,
    dropout; any number of input bands (0-255 each)."""
    inp = keras.Input((size, size, bands), name="input")
    x = preprocessing("scratch")(inp)
    for i, f in enumerate((32, 64, 128, 128)):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        # momentum 0.9: with ~60 steps an epoch, Keras' default 0.99 leaves the moving
        # statistics far from the batch statistics (inference accuracy collapses)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3, seed=seed)(x)
    out = layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="scratch")


def build_transfer(arch: str, n_classes: int, size: int, weights: str | None, seed: int = 0,
                   dropout: float = 0.2, bn_inference: bool = True, bands: int = 3,
                   band_names: list[str] | None = None, reflectance: bool = False,
                   first_conv_init: str = "zero", spectral_indices: bool = False,
                   index_stats: bool = False, feature_dropout: float = 0.0,
                   index_stats_pool: int = 1) -> tuple[keras.Model, keras.Model]:
    """Backbone + new head.  The backbone is called with ``training=False`` so its
    BatchNorm layers stay in inference mode, also when fine-tuned
    (``bn_inference=False`` only for pre-training a backbone from scratch,
    where BatchNorm must learn its statistics).

    The backbones and their preprocessing take 3 bands (RGB); other band
    counts are refused with the fix (``--arch scratch``), unless
    ``reflectance``: then the input is reflectance of ``band_names`` (any
    count holding red, green and blue), scaled by
    :func:`reflectance_preprocessing`, and the backbone's first convolution
    is extended to the other bands (:func:`build_backbone_bands`);
    ``spectral_indices`` adds NDWI and NDVI channels (:class:`SpectralIndices`);
    ``index_stats`` gives the head per-patch index statistics beside the
    backbone's features (:class:`IndexStats`, of ``index_stats_pool`` squared
    pixel means); ``feature_dropout`` drops a
    training image's backbone features whole with that probability, so the
    head also learns to classify from the statistics alone (at inference
    both are there)."""
    if reflectance:
        names = list(band_names or [])
        if len(names) != bands:
            raise ValueError(f"{bands} bands but {len(names)} band names ({', '.join(names)})")
        if spectral_indices or index_stats:
            need = ("blue", "green", "red", "nir") if index_stats else ("green", "red", "nir")
            missing = [b for b in need if b not in names]
            if missing:
                raise ValueError(f"spectral indices need bands named {', '.join(need)} (missing "
                                 f"{', '.join(missing)} in {', '.join(names)})")
        rgbn = [names.index(b) for b in ("blue", "green", "red", "nir")] if index_stats else []
        inp = keras.Input((size, size, bands), name="input")
        x = reflectance_preprocessing(arch)(inp)
        if spectral_indices:
            idx = SpectralIndices(names.index("green"), names.index("red"), names.index("nir"), name="indices")(inp)
            x = layers.Concatenate(name="bands_and_indices")([x, idx])
            names = names + list(INDEX_BANDS)
        backbone = build_backbone_bands(arch, size, weights, names, first_conv_init)
        x = backbone(x, training=False) if bn_inference else backbone(x)
        x = layers.Dropout(dropout, seed=seed)(x)
        if index_stats:
            if feature_dropout > 0:
                x = layers.Dropout(feature_dropout, noise_shape=(None, 1), seed=seed + 1, name="feature_dropout")(x)
            stats = IndexStats(*rgbn, pool=index_stats_pool, name="index_stats")(inp)
            # to unit spread, as the backbone's features have: else their 1280 weights outvote these 14
            stats = layers.BatchNormalization(name="stats_norm")(stats)
            x = layers.Concatenate(name="features_and_stats")([x, stats])
        out = layers.Dense(n_classes, activation="softmax", name="probs")(x)
        return keras.Model(inp, out, name=f"{arch}_reflectance"), backbone
    if bands != 3:
        raise ValueError(f"--arch {arch} takes 3 bands (red, green, blue), the data has {bands}: use --arch scratch "
                         "(any band count), or cut chips with --bands of the red, green and blue bands")
    backbone = build_backbone(arch, size, weights)
    inp = keras.Input((size, size, 3), name="input")
    x = preprocessing(arch)(inp)
    x = backbone(x, training=False) if bn_inference else backbone(x)
    x = layers.Dropout(dropout, seed=seed)(x)
    out = layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=f"{arch}_transfer"), backbone


def set_fine_tune(backbone: keras.Model, fraction: float) -> int:
    """Unfreeze the top ``fraction`` of the backbone's layers, BatchNorm excepted;
    returns how many layers are trainable."""
    backbone.trainable = True
    n = len(backbone.layers)
    start = int(n * (1 - fraction))
    count = 0
    for i, layer in enumerate(backbone.layers):
        train = i >= start and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = train
        count += int(train)
    return count
