"""``geoseg train``, ``geoseg evaluate``, ``geoseg pretrain`` (train extra).

TensorFlow is imported inside the command bodies only.
"""

from __future__ import annotations

import json
import logging
import math

import click

from geoseg.cli.options import fail, quiet_opt, setup_logging, verbose_opt
from geoseg.errors import GeosegError

from .quiet import import_tensorflow


log = logging.getLogger("geoseg")


def _weights(value: str | None):
    if value in (None, "none", "None"):
        return None
    return value



@click.command("prepare", short_help="Clean, de-duplicate and split class folders or a chips folder.")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False))
@click.option("--input-size", type=click.IntRange(16), default=None, help="Image side in px [default: 64; a chips folder: the chips' size].")
@click.option("--seed", type=int, default=0, show_default=True)
@verbose_opt
@quiet_opt
def prepare_cmd(data_dir, run_dir, input_size, seed, verbose, quiet):
    """Write RUN_DIR/manifest.csv, rejected.csv and data_report.md for DATA_DIR
    (class folders of images, or chips from `geoseg chips`: split by their
    spatial groups)."""
    setup_logging(verbose + 1, quiet)
    from .data import prepare

    try:
        records, _, classes = prepare(data_dir, run_dir, input_size, seed)
    except (ValueError, OSError) as exc:
        fail(exc)
    click.echo(f"{len(records)} images in {len(classes)} classes; see {run_dir}/data_report.md")


def _reflectance_params(haze: float | None, haze_share: float | None, band_jitter: float | None = None) -> dict:
    """``TrainConfig.extra`` for other haze or per-band jitter strengths than the defaults."""
    params = {k: v for k, v in (("haze", haze), ("p_haze", haze_share)) if v is not None}
    if band_jitter is not None:  # per-band gain +-J and offset +-0.15 J (defaults 0.1 and 0.015)
        params |= {"gain": band_jitter, "offset": round(0.15 * band_jitter, 6)}
    return {"reflectance_params": params} if params else {}


@click.command("train", short_help="Train a classifier on a folder of class folders.")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--arch", type=click.Choice(["mobilenetv2", "efficientnetb0", "resnet50", "scratch"]), default="mobilenetv2", show_default=True)
@click.option("--weights", default="none", show_default=True, help="imagenet | none | PATH to backbone weights (.weights.h5 from `geoseg pretrain`, or a Keras .h5).")
@click.option("--input-size", type=click.IntRange(16), default=None, help="Model input side in px [default: 64; a chips folder: the chips' size].")
@click.option("--epochs", type=click.IntRange(0), default=6, show_default=True, help="Epochs with the backbone frozen (scratch: epochs + fine-tune epochs; 0 only with --init-from).")
@click.option("--fine-tune-epochs", type=click.IntRange(0), default=10, show_default=True)
@click.option("--fine-tune-fraction", type=click.FloatRange(0, 1), default=0.3, show_default=True, help="Top fraction of backbone layers unfrozen for fine-tuning.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True, help="Learning rate of the first phase.")
@click.option("--fine-tune-lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True, help="Learning rate of fine-tuning.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split-from", type=click.Path(exists=True, dir_okay=False), default=None, help="Reuse the split of this manifest.csv (compare models on one split).")
@click.option("--no-augment", is_flag=True)
@click.option("--scale-augment", is_flag=True, help="Augment the ground scale only: a 64 px image resampled to cover 0.5-2x its ground (anti-aliased), half the time.")
@click.option("--sensor-augment", is_flag=True, help="Augment for other sensors: ground scale 0.5-2x and radiometry (gains, offsets, gamma, saturation, hue, haze, blur, noise); see training/augment.py.")
@click.option("--stretch-augment", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="With --sensor-augment: probability of a contrast stretch like the runtime's per-scene percentile stretch of uint16 scenes.")
@click.option("--target-stretch", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Probability that a training image is shown as the runtime's uint16 rule shows a scene (2-98 %% per band to the default contract's targets 25-222, 46-189, 67-182): bright cloud as the pinkish grey of 16-bit scenes. RGB models.")
@click.option("--patience", type=click.IntRange(1), default=3, show_default=True, help="Early stopping: epochs without a better validation loss before a phase stops (the scratch CNN gets one more).")
@click.option("--mix-cells", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Probability that an image takes a minority part (5-45 %%) of another image of its batch, a blob or a band, keeping its own label: mixed cells as in a scene, scored by their majority class.")
@click.option("--mix-skip", default="", help="Comma-separated classes that --mix-cells leaves out (neither taking nor giving a part), e.g. cloudy.")
@click.option("--jpeg-augment", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Probability of JPEG compression artefacts (quality 30-90), as 8-bit products and web tiles carry.")
@click.option("--water-colour", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Probability that a water image takes another natural water colour (blue to black, algae green, turquoise, turbid; its texture kept): see training/augment.py.")
@click.option("--extra-data", type=click.Path(exists=True, file_okay=False), default=None, help="Folder of class folders (e.g. EuroSAT) whose --extra-map folders join the training split.")
@click.option("--extra-map", default="eurosat", show_default=True, help="FOLDER=CLASS,... for --extra-data ('eurosat': AnnualCrop, HerbaceousVegetation, Pasture, PermanentCrop=green_area, River=water).")
@click.option("--extra-limit", type=click.IntRange(1), default=None, help="At most this many images per --extra-data folder (seeded sample).")
@click.option("--input-kind", type=click.Choice(["dn", "reflectance"]), default="dn", show_default=True, help="reflectance: a multispectral model that reads reflectance (0-1.5) of the chips' bands (a chips folder; a pre-trained RGB backbone has its first convolution extended to the bands beyond red, green, blue).")
@click.option("--reflectance-scale", type=float, default=None, help="With --input-kind reflectance: reflectance = chip DN x SCALE + OFFSET [default: float chips are reflectance; integer chips need it, e.g. 0.0001].")
@click.option("--reflectance-offset", type=float, default=None, help="With --reflectance-scale: the offset [default: 0].")
@click.option("--uint8-scale", type=click.FloatRange(0, min_open=True), default=0.4 / 255, show_default=True, help="With --input-kind reflectance: the contract's rule for uncalibrated 8-bit scenes, reflectance per 8-bit step.")
@click.option("--first-conv-init", type=click.Choice(["zero", "mean"]), default="zero", show_default=True, help="With --input-kind reflectance: first-convolution kernels of the bands an RGB backbone lacks (near-infrared): zeros, or the mean of the RGB kernels.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None, help="Start from the weights (head included) of this model.keras of a run of the same recipe; with --epochs 0 and --split-from its manifest.csv: fine-tuning runs that can be averaged (python -m geoseg.training.soup).")
@click.option("--spectral-indices", is_flag=True, help="With --input-kind reflectance: NDWI and NDVI (from the bands named green, red, nir) as two more input channels of the backbone (they do not change with a common gain: uncalibrated 8-bit or hazy scenes).")
@click.option("--index-stats", is_flag=True, help="With --input-kind reflectance (bands blue, green, red, nir): per-patch statistics (shares of pixels above NDWI and NDVI steps, index means and spreads, brightness) beside the backbone's features, read by the head.")
@click.option("--feature-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True, help="With --index-stats: probability that a training image's backbone features are dropped whole, so the head also learns to classify from the index statistics alone.")
@click.option("--index-stats-pool", type=click.IntRange(1, 16), default=1, show_default=True, help="With --index-stats: compute the statistics on the means of POOL x POOL pixels (4: 16 times less work at run time).")
@click.option("--haze", type=click.FloatRange(0, 0.5), default=None, help="With --input-kind reflectance: haze augmentation, path radiance added up to this reflectance in blue (0.75, 0.55, 0.35 of it in green, red, nir) [default: 0.08].")
@click.option("--band-jitter", type=click.FloatRange(0, 0.5), default=None, help="With --input-kind reflectance: per-band gain in 1 +- J and offset in +- 0.15 J reflectance (a sensor's or calibration's colour change) [default: 0.1]; RGB-only models lose the colour that tells sand from cloud to it.")
@click.option("--haze-share", type=click.FloatRange(0, 1), default=None, help="With --input-kind reflectance: share of the training images given haze [default: 0.3].")
@verbose_opt
@quiet_opt
def train_cmd(data_dir, run_dir, arch, weights, input_size, epochs, fine_tune_epochs, fine_tune_fraction,
              batch_size, lr, fine_tune_lr, seed, split_from, no_augment, scale_augment, sensor_augment, stretch_augment, target_stretch, patience, water_colour, mix_cells, mix_skip, jpeg_augment, extra_data, extra_map,
              extra_limit, input_kind, reflectance_scale, reflectance_offset, uint8_scale, first_conv_init, spectral_indices,
              init_from, index_stats, feature_dropout, index_stats_pool, haze, haze_share, band_jitter, verbose,
              quiet):
    """Prepare DATA_DIR (class folders, or chips from `geoseg chips`: any band
    count with --arch scratch), train, and write the model and its evaluation
    report into RUN_DIR."""
    setup_logging(verbose + 1, quiet)
    for name, value in (("--reflectance-scale", reflectance_scale), ("--reflectance-offset", reflectance_offset)):
        if value is not None and input_kind != "reflectance":
            raise click.BadParameter("only with --input-kind reflectance", param_hint=name)
        if value is not None and not math.isfinite(value):
            raise click.BadParameter(f"{value} is not a finite number", param_hint=name)
    if reflectance_scale is not None and reflectance_scale <= 0:
        raise click.BadParameter(f"{reflectance_scale}: expected a positive scale, e.g. 0.0001",
                                 param_hint="--reflectance-scale")
    for name, flag in (("--spectral-indices", spectral_indices), ("--index-stats", index_stats),
                       ("--haze", haze is not None), ("--haze-share", haze_share is not None),
                       ("--band-jitter", band_jitter is not None)):
        if flag and input_kind != "reflectance":
            raise click.BadParameter("only with --input-kind reflectance", param_hint=name)
    if reflectance_offset is not None and reflectance_scale is None:
        raise click.BadParameter("needs --reflectance-scale", param_hint="--reflectance-offset")
    import_tensorflow()
    from .data import parse_extra_map
    from .train import TrainConfig, train

    try:
        mapping = parse_extra_map(extra_map) if extra_data else {}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--extra-map") from None
    cfg = TrainConfig(data_dir, run_dir, arch, _weights(weights), input_size, epochs, fine_tune_epochs,
                      fine_tune_fraction, batch_size, lr=lr, fine_tune_lr=fine_tune_lr, seed=seed,
                      split_from=split_from, augment=not no_augment, sensor_augment=sensor_augment,
                      stretch_augment=stretch_augment, target_stretch=target_stretch, scale_augment=scale_augment, water_colour=water_colour, mix_cells=mix_cells, jpeg_augment=jpeg_augment,
                      mix_skip=tuple(c.strip() for c in mix_skip.split(",") if c.strip()), patience=patience,
                      extra_data=extra_data, extra_map=mapping, extra_limit=extra_limit, input_kind=input_kind,
                      reflectance_scale=reflectance_scale, reflectance_offset=reflectance_offset,
                      uint8_scale=uint8_scale, first_conv_init=first_conv_init,
                      spectral_indices=spectral_indices, init_from=init_from, index_stats=index_stats,
                      feature_dropout=feature_dropout, index_stats_pool=index_stats_pool,
                      extra=_reflectance_params(haze, haze_share, band_jitter))
    try:
        rep = train(cfg)
    except (ValueError, FileNotFoundError, GeosegError) as exc:
        fail(exc)
    click.echo(f"test accuracy {rep['accuracy']:.4f}; report: {run_dir}/report.md")


@click.command("evaluate", short_help="Evaluate a trained run on its test split or another folder.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), default=None, help="Folder of class folders to evaluate on instead of the test split.")
@verbose_opt
@quiet_opt
def evaluate_cmd(run_dir, data_dir, verbose, quiet):
    """Write report.json / report.md and plots for RUN_DIR's model."""
    setup_logging(verbose, quiet)
    import_tensorflow()
    from .evaluate import evaluate_run

    try:
        rep = evaluate_run(run_dir, data_dir)
    except (ValueError, FileNotFoundError, GeosegError) as exc:
        fail(exc)
    click.echo(json.dumps({"accuracy": rep["accuracy"], "macro": rep["macro"],
                           "recall": {c: v["recall"] for c, v in rep["per_class"].items()}}, indent=2))


@click.command("pretrain", short_help="Pre-train a backbone on EuroSAT (or any class folders).")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out", required=True, help="Backbone weights file, NAME.weights.h5.")
@click.option("--exclude", "exclude", multiple=True, type=click.Path(exists=True, dir_okay=False), help="manifest.csv whose val/test images must be left out (repeatable).")
@click.option("--arch", type=click.Choice(["mobilenetv2", "efficientnetb0", "resnet50"]), default="mobilenetv2", show_default=True)
@click.option("--input-size", type=click.IntRange(32), default=64, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=5, show_default=True)
@click.option("--limit-per-class", type=click.IntRange(1), default=None, help="Use at most this many images per class.")
@click.option("--init-weights", default=None, help="Start from these backbone weights (imagenet, or a .weights.h5 to continue).")
@click.option("--seed", type=int, default=0, show_default=True)
@verbose_opt
@quiet_opt
def pretrain_cmd(data_dir, out, exclude, arch, input_size, epochs, limit_per_class, init_weights, seed, verbose, quiet):
    """Pre-train ARCH on DATA_DIR and save the backbone weights for --weights."""
    setup_logging(verbose + 1, quiet)
    import_tensorflow()
    from .train import pretrain

    try:
        doc = pretrain(data_dir, out, list(exclude), arch, input_size, epochs, seed=seed,
                       limit_per_class=limit_per_class, weights=init_weights)
    except (ValueError, FileNotFoundError, GeosegError) as exc:
        fail(exc)
    click.echo(f"backbone saved to {out} (validation accuracy {doc['val_accuracy']:.4f})")


# the CLI replaces these by a one-line "needs the train extra" where TensorFlow is missing
for _cmd in (prepare_cmd, train_cmd, evaluate_cmd, pretrain_cmd):
    _cmd.requires_extra = "train"  # type: ignore[attr-defined]
