"""One ONNX model that averages the class probabilities of several geoseg
models of the same classes (issue 23).

The ensemble takes the input of its *first* member, which must read
reflectance (``input_kind: reflectance``): the runtime reads every scene
through its calibration and feeds that.  Each member gets the input it was
trained on, computed inside the graph:

- a reflectance member: its bands picked from the ensemble's bands, its
  ``reflectance`` rule applied (identity or linear);
- an 8-bit member (``input_kind: dn``, uint8 rule identity): the inverse of
  the ensemble's ``uint8`` rule, ``DN = (reflectance - offset) / scale``,
  rounded and clipped to 0-255: an 8-bit scene reaches it exactly as it
  reaches the member alone (the runtime scales 8-bit values by the uint8
  rule, the graph undoes it); a 16-bit or float scene reaches it at that
  fixed gain, bright cloud saturated to 255 instead of greyed by a per-scene
  stretch.

``probs = sum(w_i * probs_i)`` with the weights summing to 1.

    python -m export.ensemble geoseg/models/rgb-reflectance.onnx geoseg/models/default.onnx -o ens.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from geoseg.contract import ModelContract, Scaling


class EnsembleError(ValueError):
    """Members that cannot be averaged in one graph."""


def _check(contracts: list[ModelContract]) -> None:
    first = contracts[0]
    if first.input_kind != "reflectance":
        raise EnsembleError("the first member must read reflectance (input_kind reflectance): the ensemble takes its "
                            "input")
    if first.input_layout != "NCHW":
        raise EnsembleError("the first member's input must be NCHW")
    for c in contracts[1:]:
        if c.class_names != first.class_names:
            raise EnsembleError(f"{c.name}: classes {list(c.class_names)}, expected {list(first.class_names)}")
        if c.patch_size != first.patch_size:
            raise EnsembleError(f"{c.name}: patch size {c.patch_size}, expected {first.patch_size}")
        if set(c.bands) - set(first.bands):
            raise EnsembleError(f"{c.name}: bands {list(c.bands)} not all among {list(first.bands)}")
        if c.input_kind == "dn":
            if c.input_dtype != "uint8" or c.scaling.get("uint8", Scaling()).method != "identity":
                raise EnsembleError(f"{c.name}: an 8-bit member must take uint8 values as they are")
            if first.scaling.get("uint8", Scaling("identity")).method != "linear":
                raise EnsembleError("the first member needs a linear uint8 rule (8-bit values to reflectance)")


def _member_input(first: ModelContract, c: ModelContract, x: str, p: str):
    """Nodes and initializers from the ensemble's input ``x`` to member ``c``'s input; returns (nodes, inits, name)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    idx = [first.bands.index(b) for b in c.bands]
    cur = x
    if idx != list(range(len(first.bands))):
        inits.append(numpy_helper.from_array(np.array(idx, np.int64), p + "band_idx"))
        nodes.append(helper.make_node("Gather", [cur, p + "band_idx"], [p + "bands"], axis=1, name=p + "bands"))
        cur = p + "bands"
    if c.input_kind == "reflectance":
        r = c.reflectance_scaling
        if r.method == "linear" and (r.scale != 1.0 or r.offset != 0.0):
            inits += [numpy_helper.from_array(np.array(r.scale, np.float32), p + "r_scale"),
                      numpy_helper.from_array(np.array(r.offset, np.float32), p + "r_offset")]
            nodes += [helper.make_node("Mul", [cur, p + "r_scale"], [p + "r_mul"]),
                      helper.make_node("Add", [p + "r_mul", p + "r_offset"], [p + "r_lin"])]
            cur = p + "r_lin"
        elif r.method != "identity":
            raise EnsembleError(f"{c.name}: reflectance rule {r.method} is not identity or linear")
        if c.input_dtype != "float32":
            raise EnsembleError(f"{c.name}: a reflectance member must take float32")
    else:
        u = first.scaling["uint8"]
        inits += [numpy_helper.from_array(np.array(u.offset, np.float32), p + "u_offset"),
                  numpy_helper.from_array(np.array(u.scale, np.float32), p + "u_scale"),
                  numpy_helper.from_array(np.array(0.0, np.float32), p + "u_lo"),
                  numpy_helper.from_array(np.array(255.0, np.float32), p + "u_hi")]
        nodes += [helper.make_node("Sub", [cur, p + "u_offset"], [p + "dn_sub"]),
                  helper.make_node("Div", [p + "dn_sub", p + "u_scale"], [p + "dn_div"]),
                  helper.make_node("Round", [p + "dn_div"], [p + "dn_round"]),
                  helper.make_node("Clip", [p + "dn_round", p + "u_lo", p + "u_hi"], [p + "dn_clip"]),
                  helper.make_node("Cast", [p + "dn_clip"], [p + "dn"], to=TensorProto.UINT8)]
        cur = p + "dn"
    if c.input_layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [cur], [p + "nhwc"], perm=[0, 2, 3, 1]))
        cur = p + "nhwc"
    return nodes, inits, cur


def build(paths: list[str], weights: list[float] | None = None, name: str | None = None):
    """The ensemble of the models at ``paths`` (an ``onnx.ModelProto``) and its contract."""
    import numpy as np
    import onnx
    from onnx import compose, helper, numpy_helper

    from geoseg.model import load_model

    if len(paths) < 2:
        raise EnsembleError("an ensemble needs two models or more")
    contracts = [load_model(p).contract for p in paths]
    _check(contracts)
    w = np.array(weights if weights is not None else [1.0] * len(paths), np.float64)
    if len(w) != len(paths) or (w <= 0).any() or not np.isfinite(w).all():
        raise EnsembleError(f"weights {list(w)}: expected {len(paths)} positive numbers")
    w = w / w.sum()
    first = contracts[0]
    x = "input"
    nodes: list = []
    inits: list = []
    value_info: list = []
    opsets: dict[str, int] = {}
    ir_versions = []
    outs = []
    for i, (path, c) in enumerate(zip(paths, contracts, strict=True)):
        m = onnx.load(path)
        ir_versions.append(m.ir_version)
        for o in m.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
        p = f"m{i}_"
        m = compose.add_prefix(m, p)
        g = m.graph
        if len(g.input) != 1 or len(g.output) != 1:
            raise EnsembleError(f"{path}: {len(g.input)} inputs, {len(g.output)} outputs; expected 1 and 1")
        n_in, i_in, cur = _member_input(first, c, x, p + "pre_")
        nodes += n_in + [helper.make_node("Identity", [cur], [g.input[0].name])] + list(g.node)
        inits += i_in + list(g.initializer)
        value_info += list(g.value_info)
        inits.append(numpy_helper.from_array(np.array(w[i], np.float32), p + "weight"))
        nodes.append(helper.make_node("Mul", [g.output[0].name, p + "weight"], [p + "weighted"]))
        outs.append(p + "weighted")
    nodes.append(helper.make_node("Sum", outs, ["probs"], name="ensemble_mean"))
    inp = helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, ["N", len(first.bands), first.patch_size,
                                                                     first.patch_size])
    out = helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", len(first.class_names)])
    graph = helper.make_graph(nodes, "geoseg_ensemble", [inp], [out], initializer=inits, value_info=value_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = min(ir_versions)
    onnx.checker.check_model(model)
    members = [{"name": c.name, "weight": round(float(wi), 6), "input_kind": c.input_kind,
                "bands": list(c.bands)} for c, wi in zip(contracts, w, strict=True)]
    extra = {k: v for k, v in first.extra.items() if k not in ("metrics", "parity")}
    extra["ensemble"] = members
    contract = dataclasses.replace(first, name=name or "ensemble-" + "+".join(c.name for c in contracts),
                                   input_name=x, input_layout="NCHW", extra=extra)
    return model, contract


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="ONNX models; the first reads reflectance")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--weights", default=None, help="comma-separated weights, one a model [default: equal]")
    p.add_argument("--name", default=None)
    a = p.parse_args(argv)
    import onnx

    from geoseg.model import write_contract

    weights = None if a.weights is None else [float(v) for v in a.weights.split(",")]
    try:
        model, contract = build(a.models, weights, a.name)
    except EnsembleError as e:
        p.error(str(e))
    tmp = a.output + ".tmp.onnx"
    onnx.save(model, tmp)
    write_contract(tmp, contract)
    os.replace(tmp, a.output)
    print(f"{a.output}: {len(a.models)} models, weights {[m['weight'] for m in contract.extra['ensemble']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
