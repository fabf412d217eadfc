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
                   dropout: float = 0.2, bn_inference: bool = True, bands: int = 3) -> tuple[keras.Model, keras.Model]:
    """Backbone + new head.  The backbone is called with ``training=False`` so its
    BatchNorm layers stay in inference mode, also when fine-tuned
    (``bn_inference=False`` only for pre-training a backbone from scratch,
    where BatchNorm must learn its statistics).

    The backbones and their preprocessing take 3 bands (RGB); other band
    counts are refused with the fix (``--arch scratch``)."""
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
