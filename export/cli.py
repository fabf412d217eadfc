"""``geoseg export`` (train extra)."""

from __future__ import annotations

import json
import math

import click

from geoseg.cli.options import fail, quiet_opt, setup_logging, verbose_opt
from geoseg.errors import GeosegError



@click.command("export", short_help="Convert a Keras model to ONNX with a parity check and its contract.")
@click.argument("keras_model", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="MODEL.onnx")
@click.option("--opset", type=click.IntRange(13, 18), default=17, show_default=True)
@click.option("--quantize", type=click.Choice(["int8"]), default=None, help="Also write MODEL.int8.onnx (static QDQ int8), if accurate enough.")
@click.option("--name", default=None, help="Model name stored in the contract.")
@click.option("--training-resolution", type=click.FloatRange(0.001, 100000), default=None, help="Ground pixel size (m) of the training images [default: the chips' pixel size, for a run trained on chips].")
@click.option("--provenance", default=None, help="Training data description stored in the contract.")
@click.option("--input-layout", type=click.Choice(["NCHW", "NHWC"]), default="NCHW", show_default=True,
              help="Layout of the ONNX input (NCHW: what the runtime cuts from rasterio windows without a transposing copy).")
@click.option("--input-dtype", type=click.Choice(["uint8", "float32"]), default=None,
              help="Dtype of the ONNX input (uint8: 8-bit pixels, cast to float inside the graph) [default: uint8; "
                   "float32 for a reflectance model].")
@click.option("--wide-scaling", default=None, help="Contract rule for uint16 and float scenes [default: percentile:2,98]; e.g. percentile:2,98:25-222,46-189,67-182 stretches each band's 2nd-98th percentiles to those values (the training data's range) instead of 0-255.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="Also write the export's figures (parity, int8) as JSON here.")
@verbose_opt
@quiet_opt
def export_cmd(keras_model, out, opset, quantize, name, training_resolution, provenance, input_layout, input_dtype,
               wide_scaling, report_path, verbose, quiet):
    """Export KERAS_MODEL (RUN_DIR/model.keras) to ONNX.  Parity with Keras is
    checked on the run's test images; the export fails if it is not met."""
    setup_logging(verbose + 1, quiet)
    from ..training.quiet import import_tensorflow

    import_tensorflow()
    from geoseg.contract import Scaling

    from .convert import export_model

    if training_resolution is not None and not math.isfinite(training_resolution):
        raise click.BadParameter(f"{training_resolution} is not a number of metres", param_hint="--training-resolution")
    try:
        wide = None if wide_scaling is None else Scaling.parse(wide_scaling)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wide-scaling") from None
    if wide is not None and wide.targets and any(a < 0 or b > 255 for a, b in wide.targets):
        raise click.BadParameter(f"{wide_scaling}: targets are model input values, expected within 0-255",
                                 param_hint="--wide-scaling")
    try:
        res = export_model(keras_model, out, opset, quantize, name, training_resolution, provenance,
                           input_layout=input_layout, input_dtype=input_dtype, wide_scaling=wide)
    except (GeosegError, ValueError, OSError) as exc:
        fail(exc)
    p = res.parity
    click.echo(f"parity: {p.n} images ({p.source}): max |p_keras - p_onnx| = {p.max_abs_diff:.2e}, "
               f"argmax agreement {100 * p.argmax_agreement:.2f}%")
    click.echo(f"wrote {res.path} ({res.size_bytes / 1e6:.2f} MB)")
    if res.quantized:
        click.echo("int8: " + json.dumps({k: v for k, v in res.quantized.items() if k != "path"}))
    if report_path:
        from dataclasses import asdict

        with open(report_path, "w") as f:
            json.dump({"parity": asdict(p), "size_bytes": res.size_bytes, "int8": res.quantized}, f, indent=2)


export_cmd.requires_extra = "train"  # type: ignore[attr-defined]
