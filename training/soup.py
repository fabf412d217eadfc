"""Weight averaging ("model soup", Wortsman et al. 2022) of `geoseg train`
runs of one recipe: one model with the same graph (no cost at run time)
whose weights are the mean of the runs' weights.

It only works when the runs stay in one basin of the loss: fine-tuned from
the *same* starting weights, head included.  Runs that trained their own
head from another seed (and on another split) do not: their average is worse
than either (docs/multispectral.md, "Ideas tried").  The recipe that shares
the start: one run with ``--fine-tune-epochs 0`` (the head phase), then
fine-tuning runs ``--init-from HEAD/model.keras --epochs 0 --split-from
HEAD/manifest.csv --seed K``, then::

    python -m geoseg.training.soup -o SOUP_DIR RUN_DIR RUN_DIR [...]

SOUP_DIR gets ``model.keras``, the first run's ``config.json`` (plus
``soup_of``) and ``manifest.csv``, so ``geoseg export SOUP_DIR/model.keras``
works as for a run folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any

import numpy as np

# what must agree between the runs of a soup (their config.json)
SAME = ("arch", "classes", "bands", "input_kind", "input_size", "spectral_indices", "index_stats",
        "reflectance_scale", "reflectance_offset", "uint8_scale")
FLAGS = ("spectral_indices", "index_stats")  # absent from the config.json of runs older than the flag: False


def _setting(cfg: dict, key: str) -> Any:
    """A run's ``config.json`` value of ``key`` (a flag newer than the run: False)."""
    return cfg.get(key, False if key in FLAGS else None)


def _load(path: str) -> Any:
    import keras

    from . import models  # noqa: F401 - registers the custom layers

    try:
        return keras.models.load_model(path)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: cannot load the Keras model ({str(exc).splitlines()[0][:120]}); expected the "
                         "model.keras of a `geoseg train` run folder") from None


def _check_shapes(ref: list[np.ndarray], other: list[np.ndarray], ref_name: str, name: str) -> None:
    shapes_a, shapes_b = [w.shape for w in ref], [w.shape for w in other]
    if shapes_a != shapes_b:
        diff = next((i for i, (a, b) in enumerate(zip(shapes_a, shapes_b)) if a != b), min(len(ref), len(other)))
        raise ValueError(f"{name}: not the architecture of {ref_name} ({len(other)} weight tensors vs {len(ref)}; "
                         f"first difference at tensor {diff}); give runs of one recipe (same --arch, bands, "
                         "--spectral-indices)")


def load_init_weights(model: Any, path: str) -> None:
    """Set ``model``'s weights (head included) to those of the Keras model at
    ``path`` (``--init-from``); a model of another architecture is refused."""
    src = _load(path)
    w = src.get_weights()
    _check_shapes(model.get_weights(), w, "the model this run builds", path)
    model.set_weights(w)


def average_weights(weight_lists: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several models' weight lists (same shapes)."""
    return [np.mean(np.stack(ws), axis=0).astype(ws[0].dtype) for ws in zip(*weight_lists)]


def _config(run_dir: str) -> dict:
    p = os.path.join(run_dir, "config.json")
    try:
        with open(p) as f:
            return dict(json.load(f))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p}: cannot read the run's config ({exc.__class__.__name__}); expected a `geoseg train` "
                         "run folder (model.keras, config.json, manifest.csv)") from None


def soup(run_dirs: list[str], out_dir: str) -> dict:
    """Average the weights of the ``model.keras`` of ``run_dirs`` (at least
    two runs of one recipe) into ``out_dir``; returns what was written."""
    if len(run_dirs) < 2:
        raise ValueError(f"a soup needs at least two run folders, got {len(run_dirs)}")
    cfgs = [_config(d) for d in run_dirs]
    for d, c in zip(run_dirs[1:], cfgs[1:]):
        bad = [k for k in SAME if _setting(c, k) != _setting(cfgs[0], k)]
        if bad:
            raise ValueError(f"{d}: not the recipe of {run_dirs[0]} ({', '.join(f'{k} {_setting(c, k)!r} vs {_setting(cfgs[0], k)!r}' for k in bad)}); "
                             "a soup averages runs of one recipe")
    models = [_load(os.path.join(d, "model.keras")) for d in run_dirs]
    weights = [m.get_weights() for m in models]
    for d, w in zip(run_dirs[1:], weights[1:]):
        _check_shapes(weights[0], w, run_dirs[0], d)
    avg = average_weights(weights)
    same = sum(all(np.array_equal(w[i], weights[0][i]) for w in weights[1:]) for i in range(len(avg)))
    os.makedirs(out_dir, exist_ok=True)
    model = models[0]
    model.set_weights(avg)
    tmp = os.path.join(out_dir, "model.tmp.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(out_dir, "model.keras"))
    doc = {"soup_of": list(run_dirs), "seeds": [c.get("seed") for c in cfgs], "tensors": len(avg),
           "tensors_equal_in_all_runs": same}
    cfg = {**cfgs[0], "run_dir": out_dir, "soup_of": doc["soup_of"], "soup_seeds": doc["seeds"]}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    manifest = os.path.join(run_dirs[0], "manifest.csv")
    if os.path.exists(manifest):  # the export's parity check reads the first run's test split
        shutil.copyfile(manifest, os.path.join(out_dir, "manifest.csv"))
    with open(os.path.join(out_dir, "soup.json"), "w") as f:
        json.dump(doc, f, indent=2)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m geoseg.training.soup", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders of `geoseg train` (model.keras, config.json)")
    ap.add_argument("-o", "--output", required=True, help="folder for the averaged model.keras")
    a = ap.parse_args(argv)
    from .quiet import import_tensorflow

    import_tensorflow()
    try:
        doc = soup(a.runs, a.output)
    except ValueError as exc:
        print(f"geoseg soup: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.output}/model.keras: mean of {len(a.runs)} runs (seeds {doc['seeds']}); "
          f"{doc['tensors_equal_in_all_runs']} of {doc['tensors']} weight tensors were equal in all runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
