"""Training: EuroSAT pre-training of a backbone, the scratch baseline, and the
two-phase transfer recipe (frozen backbone, then fine-tuning of its top layers
at a low learning rate with BatchNorm in inference mode)."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data_dir: str
    run_dir: str
    arch: str = "mobilenetv2"
    weights: str | None = None  # "imagenet", None or a path
    input_size: int | None = 64  # None: the chips' size (a chips folder), else 64
    epochs: int = 6  # frozen-head phase (scratch: all epochs)
    fine_tune_epochs: int = 10
    fine_tune_fraction: float = 0.3
    batch_size: int = 64
    lr: float = 1e-3
    fine_tune_lr: float = 1e-4
    patience: int = 3
    seed: int = 0
    split_from: str | None = None
    augment: bool = True
    sensor_augment: bool = False  # scale and radiometry of other sensors (training/augment.py)
    stretch_augment: float = 0.0  # with sensor_augment: probability of a scene-like contrast stretch
    scale_augment: bool = False  # ground scale only (augment.SCALE_ONLY); sensor_augment wins if both
    water_colour: float = 0.0  # probability that a water image takes another natural water colour
    mix_cells: float = 0.0  # probability that an image takes a minority part of another (augment.mix_cells)
    mix_skip: tuple[str, ...] = ()  # classes left out of the mixing
    jpeg_augment: float = 0.0  # probability of JPEG artefacts (augment.SensorAugment.p_jpeg)
    extra_data: str | None = None  # a folder of class folders (EuroSAT) ...
    extra_map: dict = field(default_factory=dict)  # ... whose folders join these classes (train split only)
    extra_limit: int | None = None  # at most this many images per extra folder
    extra: dict = field(default_factory=dict)
    # reflectance models (issue 24): chips read as reflectance = DN x scale + offset
    input_kind: str = "dn"  # "dn" (0-255 pixels) or "reflectance"
    reflectance_scale: float | None = None  # None: float chips are reflectance; integer chips need it
    reflectance_offset: float | None = None
    uint8_scale: float = 0.4 / 255  # the contract's rule for uncalibrated 8-bit scenes (reflectance per DN)
    first_conv_init: str = "zero"  # kernels of the bands the RGB backbone lacks: zero or mean
    spectral_indices: bool = False  # NDWI and NDVI as extra input channels of the backbone
    index_stats: bool = False  # per-patch index statistics beside the backbone's features (models.IndexStats)
    feature_dropout: float = 0.0  # with index_stats: probability that an image's backbone features are dropped whole
    index_stats_pool: int = 1  # with index_stats: statistics of pool x pool pixel means (4: 16 times less work)
    init_from: str | None = None  # a model.keras of the same recipe whose weights start this run (soups)
    target_stretch: float = 0.0  # probability of the runtime's uint16 rule on a training image (augment.target_stretch)


def _tf():
    import tensorflow as tf

    return tf


def augment_fn(tf, seed: int, bands: int = 3, sensor=None):
    """Flips, 90-degree rotations and colour jitter (other sensors, other days);
    saturation and hue only for 3-band (RGB) images.  ``sensor``: a
    :class:`geoseg.training.augment.SensorAugment` replaces the colour jitter
    by the sensor augmentation (ground scale and radiometry)."""
    from .augment import sensor_augment

    def aug(x, y):
        x = tf.cast(x, tf.float32) / 255.0
        x = tf.image.random_flip_left_right(x)
        x = tf.image.random_flip_up_down(x)
        x = tf.image.rot90(x, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
        if sensor is not None:
            return sensor_augment(tf, x, sensor, y) * 255.0, y
        x = tf.image.random_brightness(x, 0.08)
        x = tf.image.random_contrast(x, 0.85, 1.15)
        if bands == 3:
            x = tf.image.random_saturation(x, 0.85, 1.15)
            x = tf.image.random_hue(x, 0.02)
        x = tf.clip_by_value(x, 0.0, 1.0) * 255.0
        return x, y

    return aug


def _seed_everything(seed: int) -> None:
    """Seeds (Python, NumPy, TensorFlow) and deterministic TensorFlow ops, so
    that the same command on the same machine writes the same model
    (``make default-model`` reproduces the shipped files)."""
    import keras

    keras.utils.set_random_seed(seed)
    _tf().config.experimental.enable_op_determinism()


def reflectance_augment_fn(tf, params):
    """Flips, 90-degree rotations and :func:`geoseg.training.augment.reflectance_augment`."""
    from .augment import reflectance_augment

    def aug(x, y):
        x = tf.image.random_flip_left_right(x)
        x = tf.image.random_flip_up_down(x)
        x = tf.image.rot90(x, k=tf.random.uniform([], 0, 4, dtype=tf.int32))
        return reflectance_augment(tf, x, params), y

    return aug


def make_dataset(x: np.ndarray, y: np.ndarray, batch: int, train: bool, seed: int, augment: bool = True,
                 sensor=None, mix: float = 0.0, mix_skip: tuple[int, ...] = (), reflectance=None):
    """``reflectance``: a :class:`geoseg.training.augment.ReflectanceAugment`
    (reflectance images, not 0-255 pixels), replacing the colour and sensor
    augmentations."""
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if train:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        if augment and reflectance is not None:
            ds = ds.map(reflectance_augment_fn(tf, reflectance), num_parallel_calls=2)
        elif augment:
            ds = ds.map(augment_fn(tf, seed, int(x.shape[-1]), sensor), num_parallel_calls=2)
        else:
            ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    else:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    ds = ds.batch(batch)
    if train and augment and mix:
        from .augment import mix_cells

        ds = ds.map(lambda a, b: mix_cells(tf, a, b, mix, skip=mix_skip))
    return ds.prefetch(2)


def class_weights(y: np.ndarray, n: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=n).astype(float)
    w = counts.sum() / (n * np.maximum(counts, 1))
    return {i: float(v) for i, v in enumerate(w)}


def _callbacks(run_dir: str, phase: str, patience: int):
    import keras

    return [
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, "model.keras"), monitor="val_loss",
                                        save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, patience - 1), min_lr=1e-6),
        keras.callbacks.CSVLogger(os.path.join(run_dir, f"history_{phase}.csv")),
    ]


def _verbose() -> int:
    return 1 if sys.stdout.isatty() else 2


def versions() -> dict:
    import keras
    import tensorflow as tf

    out = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
           "numpy": np.__version__, "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return out


def _sensor_augment(cfg: TrainConfig, classes: list[str]):
    """The :class:`geoseg.training.augment.SensorAugment` the options ask for
    (None: the plain colour jitter of :func:`augment_fn`)."""
    import dataclasses

    from .augment import NONE, SCALE_ONLY, SensorAugment

    sensor = None
    if cfg.sensor_augment:
        # cfg.extra["sensor_params"]: other strengths than the defaults (experiments)
        sensor = SensorAugment(**{"p_stretch": cfg.stretch_augment, **cfg.extra.get("sensor_params", {})})
    elif cfg.scale_augment:
        sensor = SCALE_ONLY
    extra: dict = {}
    if cfg.jpeg_augment:
        extra["p_jpeg"] = cfg.jpeg_augment
    if cfg.target_stretch:
        extra["p_target_stretch"] = cfg.target_stretch
    if cfg.water_colour:
        if "water" not in classes:
            raise ValueError("--water-colour needs a class called water")
        extra.update(p_water_colour=cfg.water_colour, water_class=classes.index("water"))
    return dataclasses.replace(sensor or NONE, **extra) if extra else sensor


MIN_BACKBONE_SIZE = 32  # the Keras applications' smallest input side


def check_reflectance_config(cfg: TrainConfig) -> None:
    """Options a reflectance model cannot take, refused before any data is read."""
    bad = []
    if cfg.arch not in ("mobilenetv2", "efficientnetb0"):
        bad.append(f"--arch {cfg.arch} (use mobilenetv2 or efficientnetb0)")
    if cfg.extra_data:
        bad.append("--extra-data (8-bit images; add reflectance chips to the chips folder instead)")
    if (cfg.sensor_augment or cfg.scale_augment or cfg.water_colour or cfg.jpeg_augment or cfg.stretch_augment
            or cfg.target_stretch):
        bad.append("--sensor-augment/--scale-augment/--water-colour/--jpeg-augment/--stretch-augment/"
                   "--target-stretch (8-bit "
                   "augmentations; reflectance input has its own: gain, offset, haze, ground scale)")
    if cfg.first_conv_init not in ("zero", "mean"):
        bad.append(f"first-conv init {cfg.first_conv_init!r} (zero or mean)")
    if not (cfg.uint8_scale > 0 and np.isfinite(cfg.uint8_scale)):
        bad.append(f"--uint8-scale {cfg.uint8_scale} (a positive reflectance per 8-bit step, e.g. 0.0015686)")
    if bad:
        raise ValueError(f"--input-kind reflectance does not take {'; '.join(bad)}")


def train(cfg: TrainConfig) -> dict:
    """Prepare the data (or reuse ``split_from``), train, evaluate on the test
    split, and write everything into ``cfg.run_dir``.  Returns the report."""
    import keras

    from . import data as D
    from .evaluate import evaluate_arrays
    from .models import RGB_ORDER, build_scratch, build_transfer, freeze_but_first_conv, set_fine_tune

    if cfg.arch == "scratch" and cfg.weights is not None:
        raise ValueError(f"--weights {cfg.weights}: weights are for the pretrained backbones (mobilenetv2, "
                         "efficientnetb0, resnet50); --arch scratch starts from random weights: leave --weights out")
    if cfg.init_from and cfg.arch == "scratch":
        raise ValueError(f"--init-from {cfg.init_from}: for the transfer recipes (mobilenetv2, efficientnetb0, "
                         "resnet50); --arch scratch trains in one phase from random weights: leave --init-from out")
    if cfg.init_from and not os.path.isfile(cfg.init_from):
        raise ValueError(f"--init-from {cfg.init_from}: no such file; expected the model.keras of a `geoseg train` "
                         "run of the same recipe")
    if cfg.epochs == 0 and not cfg.init_from:
        raise ValueError("--epochs 0: the head would stay untrained; give --init-from RUN/model.keras (a run whose "
                         "head is trained), or --epochs 1 or more")
    if cfg.epochs == 0 and (cfg.fine_tune_epochs == 0 or cfg.weights is None):
        raise ValueError("--epochs 0: nothing to train (fine-tuning needs --fine-tune-epochs 1 or more and a "
                         "pre-trained backbone, --weights); give both, or --epochs 1 or more")
    if cfg.arch != "scratch" and cfg.input_size is not None and cfg.input_size < MIN_BACKBONE_SIZE:
        raise ValueError(f"--input-size {cfg.input_size}: the {cfg.arch} backbone needs at least {MIN_BACKBONE_SIZE} "
                         f"px; pass --input-size {MIN_BACKBONE_SIZE} or more, or --arch scratch")
    refl = cfg.input_kind == "reflectance"
    if refl:
        check_reflectance_config(cfg)
    elif cfg.spectral_indices or cfg.index_stats:
        flag = "--spectral-indices" if cfg.spectral_indices else "--index-stats"
        raise ValueError(f"{flag}: only with --input-kind reflectance (indices of reflectance bands)")
    if cfg.index_stats_pool != 1 and not cfg.index_stats:
        raise ValueError(f"--index-stats-pool {cfg.index_stats_pool}: only with --index-stats")
    if cfg.feature_dropout and not cfg.index_stats:
        raise ValueError(f"--feature-dropout {cfg.feature_dropout}: only with --index-stats (the head must have the "
                         "statistics to classify from when the backbone's features are dropped)")
    os.makedirs(cfg.run_dir, exist_ok=True)
    _seed_everything(cfg.seed)
    t0 = time.perf_counter()
    records, x, classes = D.prepare(cfg.data_dir, cfg.run_dir, cfg.input_size, cfg.seed, cfg.split_from,
                                    (cfg.reflectance_scale, cfg.reflectance_offset) if refl else None)
    size, n_bands = int(x.shape[1]), int(x.shape[-1])
    if cfg.arch != "scratch" and size < MIN_BACKBONE_SIZE:
        raise ValueError(f"{cfg.data_dir}: chips of {size} px; the {cfg.arch} backbone needs at least "
                         f"{MIN_BACKBONE_SIZE} px: cut chips of {MIN_BACKBONE_SIZE} px or more, or use --arch scratch")
    with open(os.path.join(cfg.run_dir, "data_report.json")) as f:
        chips = json.load(f).get("chips")
    y = np.array([classes.index(r.label) for r in records], np.int64)
    split = np.array([r.split for r in records])
    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    x_tr, y_tr = x[tr], y[tr]
    extra_doc = None
    if cfg.extra_data:
        # extra training images (EuroSAT land cover -> satellite4 classes): train
        # split only, and never an image whose exact or near hash is in this
        # data set (its validation/test images above all)
        xe, ye, extra_doc = D.load_extra(cfg.extra_data, cfg.extra_map, classes, records, size,
                                         cfg.extra_limit, cfg.seed)
        x_tr, y_tr = np.concatenate([x_tr, xe]), np.concatenate([y_tr, ye])
        log.info("extra training images: %s", extra_doc["per_class"])
    t_prep = time.perf_counter() - t0
    log.info("split: train %d, val %d, test %d", len(x_tr), va.sum(), te.sum())
    sensor = None if refl else _sensor_augment(cfg, classes)
    refl_aug = None
    if refl:
        from .augment import ReflectanceAugment

        refl_aug = ReflectanceAugment(**cfg.extra.get("reflectance_params", {}), bands=tuple(chips["band_names"]))
    unknown = sorted(set(cfg.mix_skip) - set(classes))
    if unknown:
        raise ValueError(f"--mix-skip: {cfg.data_dir} has no class called {', '.join(unknown)} "
                         f"(classes: {', '.join(classes)}); name classes it has, or leave --mix-skip out")
    ds_tr = make_dataset(x_tr, y_tr, cfg.batch_size, True, cfg.seed, cfg.augment, sensor, cfg.mix_cells,
                         tuple(classes.index(c) for c in cfg.mix_skip), refl_aug)
    ds_va = make_dataset(x[va], y[va], cfg.batch_size, False, cfg.seed)
    cw = class_weights(y_tr, len(classes))
    histories = []
    t1 = time.perf_counter()
    if cfg.arch == "scratch":
        model = build_scratch(len(classes), size, cfg.seed, bands=n_bands)
        model.compile(keras.optimizers.Adam(cfg.lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
        h = model.fit(ds_tr, shuffle=False, validation_data=ds_va, epochs=cfg.epochs + cfg.fine_tune_epochs,
                      class_weight=cw, callbacks=_callbacks(cfg.run_dir, "scratch", cfg.patience + 1),
                      verbose=_verbose())
        histories.append(("scratch", h.history))
    else:
        pretrained = cfg.weights is not None
        model, backbone = build_transfer(cfg.arch, len(classes), size, cfg.weights, cfg.seed,
                                         bn_inference=pretrained, bands=n_bands,
                                         band_names=chips["band_names"] if refl else None, reflectance=refl,
                                         first_conv_init=cfg.first_conv_init,
                                         spectral_indices=cfg.spectral_indices, index_stats=cfg.index_stats,
                                         feature_dropout=cfg.feature_dropout,
                                         index_stats_pool=cfg.index_stats_pool)
        # a random backbone has nothing to keep frozen: train it whole
        backbone.trainable = not pretrained
        new_bands = refl and bool(set(chips["band_names"]) - set(RGB_ORDER))
        if pretrained and new_bands:  # the new bands' kernels learn from the first phase on
            freeze_but_first_conv(backbone, cfg.arch)
        if cfg.init_from:
            from .soup import load_init_weights

            load_init_weights(model, cfg.init_from)
        if cfg.epochs > 0:  # 0: the head of --init-from is kept, fine-tuning only
            model.compile(keras.optimizers.Adam(cfg.lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
            h = model.fit(ds_tr, shuffle=False, validation_data=ds_va, epochs=cfg.epochs, class_weight=cw,
                          callbacks=_callbacks(cfg.run_dir, "head", cfg.patience), verbose=_verbose())
            histories.append(("head", h.history))
        if cfg.fine_tune_epochs > 0 and pretrained:
            n = set_fine_tune(backbone, cfg.fine_tune_fraction)
            log.info("fine-tuning %d backbone layers at lr %g", n, cfg.fine_tune_lr)
            model.compile(keras.optimizers.Adam(cfg.fine_tune_lr), "sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            h = model.fit(ds_tr, shuffle=False, validation_data=ds_va, epochs=cfg.fine_tune_epochs, class_weight=cw,
                          callbacks=_callbacks(cfg.run_dir, "finetune", cfg.patience), verbose=_verbose())
            histories.append(("finetune", h.history))
    t_train = time.perf_counter() - t1
    # the checkpoint holds the best epoch; EarlyStopping restored it in memory too
    model.save(os.path.join(cfg.run_dir, "model.keras"))
    with open(os.path.join(cfg.run_dir, "history.json"), "w") as f:
        json.dump([{"phase": p, **{k: [float(v) for v in vs] for k, vs in hist.items()}} for p, hist in histories], f)
    # data_dir as given (it is quoted in the exported contract: no machine's
    # paths); data_dir_abs finds it from another working directory
    cfg_doc = {**asdict(cfg), "data_dir_abs": os.path.abspath(cfg.data_dir), "input_size": size, "classes": classes,
               "versions": versions(),
               "sensor_augment_params": None if sensor is None else sensor.to_dict(), "extra_data_used": extra_doc,
               "timings_s": {"prepare": t_prep, "train": t_train}}
    if chips:  # what the export's contract needs: band order, scaling, ground pixel size
        cfg_doc.update(data_kind="chips", bands=chips["band_names"],
                       scaling={chips["scaling_key"]: chips["scaling"]},
                       training_resolution_m=chips["pixel_size_m"], chips=chips)
    if refl:  # the contract of a reflectance model (export): input kind, rules, input range
        rule = chips["reflectance_rule"]
        cfg_doc.update(input_kind="reflectance", reflectance_scale=rule["scale"], reflectance_offset=rule["offset"],
                       input_range=list(D.REFLECTANCE_RANGE),
                       scaling={"reflectance": {"method": "identity"},
                                "uint8": {"method": "linear", "scale": float(np.float32(cfg.uint8_scale)),
                                          "offset": 0.0}},
                       reflectance_augment_params=refl_aug.to_dict() if refl_aug else None)
    with open(os.path.join(cfg.run_dir, "config.json"), "w") as f:
        json.dump(cfg_doc, f, indent=2)
    rep = evaluate_arrays(model, x[te], y[te], [records[i] for i in np.flatnonzero(te)], classes,
                          cfg.run_dir, histories=histories, extra={"config": cfg_doc})
    log.info("test accuracy %.4f; training took %.0f s", rep["accuracy"], t_train)
    return rep


def pretrain(eurosat_dir: str, out: str, exclude_manifests: list[str], arch: str = "mobilenetv2",
             size: int = 64, epochs: int = 5, batch_size: int = 64, seed: int = 0, lr: float = 1e-3,
             limit_per_class: int | None = None, weights: str | None = None) -> dict:
    """Pre-train a backbone on EuroSAT RGB (10 classes) and save its weights to
    ``out`` (``.weights.h5``).  Every image whose exact or near hash appears in
    the validation or test split of any manifest in ``exclude_manifests`` is
    left out, so the transfer source never saw the 4-class evaluation images."""
    import keras

    from . import data as D
    from .models import build_transfer

    _seed_everything(seed)
    exclude: set[str] = set()
    for m in exclude_manifests:
        for r in D.read_manifest(m):
            if r.split in ("val", "test"):
                exclude.update((r.sha, r.near))
    t0 = time.perf_counter()
    x, y, classes, n_ex = D.load_folder(eurosat_dir, size, exclude_hashes=exclude,
                                        limit_per_class=limit_per_class, seed=seed)
    log.info("EuroSAT: %d images, %d excluded (in a validation/test split)", len(x), n_ex)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    nv = max(1, len(x) // 10)
    va, tr = idx[:nv], idx[nv:]
    # BatchNorm learns its statistics while pre-training, also when it starts
    # from weights (ImageNet, or an earlier pre-training run to continue)
    model, backbone = build_transfer(arch, len(classes), size, weights, seed, dropout=0.1,
                                     bn_inference=False)
    backbone.trainable = True
    # Keras' MobileNetV2 uses BatchNorm momentum 0.999: from scratch its moving
    # statistics would lag the weights for thousands of steps (validation
    # collapses to one class); 0.9 tracks them within an epoch
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    ds_tr = make_dataset(x[tr], y[tr], batch_size, True, seed)
    ds_va = make_dataset(x[va], y[va], batch_size, False, seed)
    h = model.fit(ds_tr, shuffle=False, validation_data=ds_va, epochs=epochs, verbose=_verbose(), callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=1)])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if not out.endswith(".weights.h5"):
        raise ValueError(f"{out}: backbone weights must be saved as NAME.weights.h5")
    backbone.save_weights(out)
    doc = {"eurosat_dir": eurosat_dir, "arch": arch, "input_size": size, "n_images": int(len(x)),
           "n_excluded": int(n_ex), "classes": classes, "epochs_run": len(h.history["loss"]),
           "val_accuracy": float(max(h.history["val_accuracy"])), "seconds": time.perf_counter() - t0,
           "exclude_manifests": exclude_manifests, "seed": seed, "versions": versions()}
    with open(out[: -len(".weights.h5")] + ".json", "w") as f:
        json.dump(doc, f, indent=2)
    return doc
