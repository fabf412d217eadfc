"""``geoseg info``: print a model's contract."""

from __future__ import annotations

import click

from ..errors import GeosegError
from .options import fail


@click.command("info", short_help="Print the contract of an ONNX model.")
@click.argument("model", type=click.Path(dir_okay=False), required=False, metavar="[NAME|MODEL.onnx]")
@click.option("--json", "as_json", is_flag=True, help="Print the contract as JSON.")
def info(model, as_json):
    """Print a model's contract: classes and colours, patch size, bands,
    input kind and scaling, training resolution and metrics.  The model is a
    built-in name (`geoseg models`) or an .onnx file [default: default]."""
    import json

    from ..model import load_model, resolve_model_path

    try:
        m = load_model(resolve_model_path(model))
    except GeosegError as exc:
        fail(exc)
    c = m.contract
    if as_json:
        click.echo(json.dumps({"path": m.path, "sha256": m.sha256, "contract": c.to_dict()}, indent=2))
        return
    click.echo(f"model:      {m.path}")
    click.echo(f"sha256:     {m.sha256}")
    click.echo(f"size:       {m.size_bytes / 1e6:.2f} MB")
    click.echo(f"name:       {c.name}")
    click.echo(f"input:      {c.input_name} {list(m.input_shape)} {c.input_layout} {c.input_dtype}, range {list(c.input_range)}")
    click.echo(f"patch size: {c.patch_size} px")
    click.echo(f"bands:      {', '.join(c.bands)} (--bidx gives the scene's bands in this order)")
    if c.input_kind == "reflectance":
        u8 = c.scaling.get("uint8")
        click.echo(f"input kind: reflectance: each scene is turned into reflectance (--reflectance-scale, --sensor, the "
                   f"file's or STAC item's scale/offset, float as is, other integers x 0.0001), then "
                   f"{c.reflectance_scaling.describe()} to the model input"
                   + (f"; uncalibrated 8-bit scenes: {u8.describe()} from their values" if u8 else ""))
    else:
        click.echo("input kind: pixel values (dn), scaled by the rule of the scene's dtype")
    click.echo("scaling:    " + "; ".join(f"{k}: {v.to_dict()}" for k, v in c.scaling.items()))
    click.echo(f"min valid:  {c.min_valid_fraction}")
    res = f"{c.training_resolution_m:g} m per pixel" if c.training_resolution_m else "unknown"
    click.echo(f"trained at: {res}")
    click.echo("classes:")
    for i, (n, col) in enumerate(zip(c.class_names, c.class_colors)):
        click.echo(f"  {i:3d}  {col}  {n}")
    for k, v in sorted(c.extra.items()):
        txt = json.dumps(v) if not isinstance(v, str) else v
        click.echo(f"{k + ':':11s} {txt if len(txt) < 300 else txt[:297] + '...'}")
