"""Edits of a converted ONNX graph: the input the runtime feeds.

tf2onnx gives the Keras model's own input: float32 pixels, channels last
(NHWC), and a Transpose to NCHW before the first convolution.  geoseg's
runtime cuts patches band-first from rasterio windows and its pixels are
8-bit, so the default export puts a uint8 NCHW input in front of the graph:

    input (N, C, H, W) uint8 -> Transpose(0, 2, 3, 1) -> Cast(float) -> [Keras graph]

onnxruntime's transpose optimizer cancels the new Transpose against the
graph's own NHWC -> NCHW one, so the model computes the same thing; the
runtime saves the float32 conversion and a transposing copy of every patch
(about a tenth of a block task's time, docs/performance-notes.md).
"""

from __future__ import annotations

import re

from geoseg.contract import INPUT_DTYPES, INPUT_LAYOUTS

LAYOUTS = INPUT_LAYOUTS
DTYPES = INPUT_DTYPES


def adapt_input(model, layout: str = "NCHW", dtype: str = "uint8"):
    """Return a copy of ``model`` (an ``onnx.ModelProto`` with one NHWC float32
    input) whose input has ``layout`` and ``dtype``; same name, same outputs.

    Raises
    ------
    ValueError
        An unknown layout or dtype, or a model whose input is not NHWC float32.
    """
    import onnx
    from onnx import TensorProto, helper

    if layout not in LAYOUTS:
        raise ValueError(f"input layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if dtype not in DTYPES:
        raise ValueError(f"input dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if len(g.input) != 1:
        raise ValueError(f"the graph has {len(g.input)} inputs, expected 1")
    inp = g.input[0]
    tt = inp.type.tensor_type
    if tt.elem_type != TensorProto.FLOAT or len(tt.shape.dim) != 4:
        raise ValueError("the graph's input is not a 4-d float32 tensor (NHWC pixels expected)")
    if layout == "NHWC" and dtype == "float32":
        return m
    name = inp.name
    dims = list(tt.shape.dim)
    n_dim = dims[0].dim_param or (str(dims[0].dim_value) if dims[0].dim_value else "N")
    h, w, c = (d.dim_value for d in dims[1:])
    cur = name + "__geoseg_raw"
    nodes = []
    if layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [cur], [cur + "_nhwc"], perm=[0, 2, 3, 1],
                                      name="geoseg_input_to_nhwc"))
        cur += "_nhwc"
    if dtype == "uint8":
        nodes.append(helper.make_node("Cast", [cur], [cur + "_float"], to=TensorProto.FLOAT,
                                      name="geoseg_input_to_float"))
        cur += "_float"
    # the graph's nodes read `cur` where they read the input; the new input
    # takes the old name, so the contract's input_name stays right
    last = cur
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == name:
                n.input[i] = last
    for o in g.output:
        if o.name == name:
            raise ValueError("the graph's input is also an output")
    nodes[0].input[0] = name
    shape = [n_dim, c, h, w] if layout == "NCHW" else [n_dim, h, w, c]
    new_in = helper.make_tensor_value_info(name, TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT, shape)
    del g.input[:]
    g.input.append(new_in)
    for k, node in enumerate(nodes):
        g.node.insert(k, node)
    onnx.checker.check_model(m)
    return m


def feed(x, layout: str, dtype: str):
    """NHWC float32 pixels (0-255) as a model input with ``layout`` and
    ``dtype``, converted as the runtime converts patches
    (:func:`geoseg.patches.to_model_input`: rounded for uint8)."""
    from geoseg.contract import Scaling
    from geoseg.patches import to_model_input

    return to_model_input(x.transpose(0, 3, 1, 2), None, Scaling("identity"), (0.0, 255.0), None, layout, dtype)


def canonical_names(model):
    """Name the graph's initializers ``w0``, ``w1``, ... by their order of first
    use and store them in that order.  tf2onnx numbers the constants it
    makes from a process-wide counter and, of equal constants, keeps one
    name or another depending on Python's hash order: two exports of the
    same weights gave different bytes.  Same graph, stable bytes."""
    inits = {i.name: i for i in model.graph.initializer}
    order: list[str] = []
    seen: set[str] = set()
    for node in model.graph.node:
        for name in node.input:
            if name in inits and name not in seen:
                seen.add(name)
                order.append(name)
    order += sorted(n for n in inits if n not in seen)  # unused ones, if any
    rename = {old: f"w{k}" for k, old in enumerate(order)}
    kept = [inits[n] for n in order]
    del model.graph.initializer[:]
    for init in kept:
        init.name = rename[init.name]
        model.graph.initializer.append(init)
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
    for vi in model.graph.value_info:
        vi.name = rename.get(vi.name, vi.name)
    # the counter numbers in the names tf2onnx gives nodes and tensors
    # ("Conv__339", "Conv__339:0"), renumbered by first appearance
    pattern = re.compile(r"__(\d+)")
    numbers: dict[str, str] = {}

    def renumber(name: str) -> str:
        return pattern.sub(lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers))), name)

    for node in model.graph.node:
        node.name = renumber(node.name)
        for k, name in enumerate(node.input):
            node.input[k] = renumber(name)
        for k, name in enumerate(node.output):
            node.output[k] = renumber(name)
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        vi.name = renumber(vi.name)
        for dim in vi.type.tensor_type.shape.dim:  # dynamic dimensions: "unk__1234"
            if dim.dim_param:
                dim.dim_param = renumber(dim.dim_param)
    return model
