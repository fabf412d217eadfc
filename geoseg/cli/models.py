"""``geoseg models``: the built-in models that ``-m NAME`` takes."""

from __future__ import annotations

import textwrap

import click

from ..errors import GeosegError
from .options import fail


@click.command("models", short_help="List the built-in models (-m NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(as_json):
    """List the built-in models: name, bands, input, classes, training
    resolution and data, and the scene suite's figures where it scored them
    (``geoseg/models/NAME.suite.json``).  ``geoseg classify -m NAME`` uses one."""
    import json

    from ..builtin import BUILTINS, describe

    try:
        rows = [describe(b) for b in BUILTINS.values()]
    except GeosegError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for i, d in enumerate(rows):
        if i:
            click.echo("")
        click.echo(f"{d['name']}" + ("" if d["installed"] else "  (not installed)"))
        click.echo(f"  for:        {d['use']}")
        if not d["installed"]:
            click.echo(f"  file:       {d['path']} (missing)")
            continue
        res = d["training_resolution_m"]
        click.echo(f"  bands:      {', '.join(d['bands'])} ({'reflectance' if d['input_kind'] == 'reflectance' else 'pixel values'})")
        click.echo(f"  classes:    {', '.join(d['classes'])}")
        click.echo(f"  trained at: {f'{res:g} m' if res else 'unknown'}, {d['patch_size']} px patches")
        data = textwrap.wrap(d["training_data"] or "not recorded in the contract", 88)
        if len(data) > 3:
            data = data[:3]
            data[-1] += " ... (--json: all of it)"
        click.echo("  data:       " + "\n              ".join(data))
        suite = d["suite"]
        if suite:
            click.echo("  suite:")
            for k, v in sorted(suite.items()):
                click.echo(f"    {k:40s} {v:.4g}")
        else:
            click.echo("  suite:      not scored (bench/model_suite.py writes the figures)")
        click.echo(f"  card:       {d['card']}")
