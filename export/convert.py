"""Keras -> ONNX with tf2onnx, a parity proof against onnxruntime on real
images, the model contract in the ONNX metadata, and optional static int8
quantization with its accuracy and speed checked against the float model.

Route (see ../shared/STACK.md): ``tf2onnx.convert.from_keras`` with an
explicit float32 input signature and a dynamic batch dimension; then the
input is changed to uint8 NCHW pixels (:mod:`geoseg.export.graph`).  The
``model.export()`` + CLI route leaves random ops of augmentation layers in
the graph, and ``from_function`` breaks EfficientNet; neither is used.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from geoseg.contract import CONTRACT_KEY, DEFAULT_COLORS, ModelContract, Scaling
from geoseg.errors import GeosegError
from geoseg.model import new_session

from .graph import DTYPES, LAYOUTS, adapt_input, canonical_names, feed

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-4
MAX_INT8_DROP = 0.005  # accuracy, absolute (0.5 point)


class ExportError(GeosegError, RuntimeError):
    """The export failed a check (parity, quantized accuracy) or cannot run."""


@dataclass
class ParityResult:
    n: int
    source: str
    max_abs_diff: float
    argmax_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_ATOL and self.argmax_agreement == 1.0


@dataclass
class ExportResult:
    path: str
    parity: ParityResult
    contract: dict
    size_bytes: int
    quantized: dict = field(default_factory=dict)


def _palette(classes: list[str]) -> list[str]:
    fallback = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf", "#999999"]
    return [DEFAULT_COLORS.get(c, fallback[i % len(fallback)]) for i, c in enumerate(classes)]


def run_context(keras_path: str) -> dict:
    """What the run folder beside ``model.keras`` tells: config, report, manifest."""
    run_dir = os.path.dirname(os.path.abspath(keras_path))
    ctx: dict = {"run_dir": run_dir}
    for name in ("config.json", "report.json"):
        p = os.path.join(run_dir, name)
        if os.path.exists(p):
            with open(p) as f:
                ctx[name.split(".")[0]] = json.load(f)
    p = os.path.join(run_dir, "manifest.csv")
    if os.path.exists(p):
        ctx["manifest"] = p
    return ctx


def load_split_images(ctx: dict, split: str, size: int, limit: int | None = None, seed: int = 0):
    """Images and labels of one split of the run's manifest (None if unavailable)."""
    from geoseg.training import data as D

    cfg = ctx.get("config")
    if not cfg or "manifest" not in ctx or not os.path.isdir(D.run_data_dir(cfg)):
        return None
    recs = [r for r in D.read_manifest(ctx["manifest"]) if r.split == split]
    if limit and len(recs) > limit:
        rng = np.random.default_rng(seed)
        recs = [recs[i] for i in sorted(rng.choice(len(recs), limit, replace=False))]
    root = D.run_data_dir(cfg)
    if D.is_chips_dir(root):  # chips: read and scaled as in training (any band count)
        got = D.load_chips_for_run(root, [r.file for r in recs], [r.label for r in recs], cfg)
        return None if got is None else got[:2]
    xs, ys = [], []
    for r in recs:
        try:
            im, _ = D.decode_rgb(os.path.join(root, r.file))
        except (ValueError, OSError):
            continue
        xs.append(D.resize_rgb(im, size))
        ys.append(cfg["classes"].index(r.label))
    if not xs:
        return None
    return np.stack(xs).astype(np.float32), np.array(ys)


def ort_session(path: str, threads: int = 2):
    """The runtime's own session set-up (:func:`geoseg.model.new_session`)."""
    return new_session(path, threads)


def ort_predict(sess, x: np.ndarray, batch: int = 64, layout: str = "NHWC", dtype: str = "float32") -> np.ndarray:
    """Probabilities of NHWC float32 pixels ``x``, fed in the model's input layout and dtype."""
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: feed(x[i : i + batch], layout, dtype)})[0]
                           for i in range(0, len(x), batch)])


def check_parity(model, onnx_path: str, x: np.ndarray, source: str, layout: str = "NHWC",
                 dtype: str = "float32") -> ParityResult:
    if dtype == "uint8":  # both see the same 8-bit pixels
        x = np.clip(np.round(x), 0, 255).astype(np.float32)
    pk = model.predict(x, batch_size=64, verbose=0)
    po = ort_predict(ort_session(onnx_path), x, layout=layout, dtype=dtype)
    return ParityResult(
        n=len(x), source=source, max_abs_diff=float(np.abs(pk - po).max()),
        argmax_agreement=float((pk.argmax(1) == po.argmax(1)).mean()),
    )


def throughput(path: str, size: int, batch: int = 64, seconds: float = 3.0, threads: int = 2,
               layout: str = "NHWC", dtype: str = "float32", bands: int = 3) -> float:
    sess = ort_session(path, threads)
    x = feed(np.random.default_rng(0).integers(0, 255, (batch, size, size, bands)).astype(np.float32), layout, dtype)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {name: x})
        n += batch
    return n / (time.perf_counter() - t0)


def build_contract(model, ctx: dict, name: str | None, resolution: float | None, provenance: str | None,
                   versions: dict, layout: str = "NCHW", dtype: str = "uint8",
                   wide_scaling: Scaling | None = None) -> ModelContract:
    cfg = ctx.get("config", {})
    size = int(model.inputs[0].shape[1])
    n_out = int(model.outputs[0].shape[-1])
    classes = cfg.get("classes") or [f"class_{i}" for i in range(n_out)]
    if len(classes) != n_out:
        raise ExportError(f"config.json names {len(classes)} classes but the model has {n_out} outputs")
    n_bands = int(model.inputs[0].shape[-1])
    # chips runs record their band names, scaling and pixel size (config.json)
    bands = tuple(cfg.get("bands") or ("red", "green", "blue"))
    if len(bands) != n_bands:
        raise ExportError(f"config.json names {len(bands)} bands ({', '.join(bands)}) but the model takes {n_bands}")
    reflectance = cfg.get("input_kind") == "reflectance"
    scaling = {
        "uint8": Scaling("identity"),
        "uint16": Scaling("percentile", low=2.0, high=98.0),
        "float": Scaling("percentile", low=2.0, high=98.0),
    }
    if reflectance:  # reflectance -> model input, and the uncalibrated 8-bit rule (config.json)
        if wide_scaling is not None:
            raise ExportError("--wide-scaling: a reflectance model reads every scene as reflectance (no uint16 or "
                              "float percentile rule); leave --wide-scaling out")
        if dtype != "float32":
            raise ExportError(f"--input-dtype {dtype}: a reflectance model takes float32 reflectance; pass "
                              "--input-dtype float32 (or leave it out)")
        scaling = {}
    if wide_scaling is not None:  # --wide-scaling: the rule for uint16 and float scenes
        if wide_scaling.targets and len(wide_scaling.targets) != n_bands:
            raise ExportError(f"--wide-scaling has {len(wide_scaling.targets)} targets but the model takes "
                              f"{n_bands} bands: give one OUT_LOW-OUT_HIGH pair per band")
        scaling["uint16"] = scaling["float"] = wide_scaling
    for key, rule in (cfg.get("scaling") or {}).items():
        scaling[key] = Scaling.from_dict(rule, f"config.json scaling[{key}]")
    if resolution is None:
        resolution = cfg.get("training_resolution_m")
    rep = ctx.get("report", {})
    metrics = {}
    if rep:
        metrics = {"test_accuracy": rep.get("accuracy"), "macro": rep.get("macro"),
                   "per_class": rep.get("per_class"), "confusion": rep.get("confusion"), "n_test": rep.get("n")}
    return ModelContract(
        class_names=tuple(classes),
        class_colors=tuple(_palette(classes)),
        patch_size=size,
        bands=bands,
        input_name="input",
        input_layout=layout,
        input_dtype=dtype,
        input_range=(tuple(float(v) for v in cfg["input_range"]) if reflectance  # type: ignore[arg-type]
                     else (0.0, 255.0)),
        scaling=scaling,
        input_kind="reflectance" if reflectance else "dn",
        min_valid_fraction=0.5,
        training_resolution_m=resolution,
        name=name or f"{cfg.get('arch', 'model')}-{size}px",
        extra={
            "training_data": provenance or os.path.basename(os.path.normpath(cfg.get("data_dir", "unknown"))),
            "arch": cfg.get("arch"),
            "metrics": metrics,
            "export": versions,
        },
    )


def export_model(keras_path: str, out: str, opset: int = 17, quantize: str | None = None,
                 name: str | None = None, resolution: float | None = None, provenance: str | None = None,
                 parity_limit: int = 2000, overwrite: bool = True, input_layout: str = "NCHW",
                 input_dtype: str | None = "uint8", wide_scaling: Scaling | None = None) -> ExportResult:
    """Convert ``keras_path`` to ONNX at ``out``; prove parity; write the contract.

    The ONNX input is ``input_layout`` / ``input_dtype`` (default uint8 NCHW,
    the runtime's cheapest feed; see :mod:`geoseg.export.graph`); the Keras model's
    own float32 NHWC input is kept with ``NHWC`` / ``float32``.

    Raises
    ------
    ExportError
        Parity failed (nothing is written), or int8 accuracy dropped more than
        0.5 point (the float model is kept, the int8 one is not written).
    """
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    from geoseg.training.models import CaffePreprocess  # noqa: F401 - registers the layer

    if not 13 <= opset <= 18:
        raise ExportError(f"opset {opset}: tf2onnx {tf2onnx.__version__} converts opsets 13-18")
    if os.path.exists(out) and not overwrite:
        raise ExportError(f"{out}: exists; pass --overwrite")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ExportError(f"{out}: the folder {folder} does not exist; create it or choose another -o")
    try:
        model = keras.models.load_model(keras_path)
    except (ValueError, OSError) as exc:
        raise ExportError(f"{keras_path}: cannot load the Keras model ({str(exc).splitlines()[0][:120]}); expected "
                          "the model.keras of a `geoseg train` run folder") from None
    size = int(model.inputs[0].shape[1])
    ctx = run_context(keras_path)
    if quantize and load_split_images(ctx, "train", size, 1) is None:
        raise ExportError(f"{keras_path}: --quantize int8 needs the run's training images for calibration (run "
                          "folder with config.json and manifest.csv beside model.keras, its data folder present); "
                          "nothing written: export without --quantize, or from the run folder")
    if input_dtype is None:  # reflectance models take float32 reflectance, others 8-bit pixels
        input_dtype = "float32" if ctx.get("config", {}).get("input_kind") == "reflectance" else "uint8"
    if quantize and ctx.get("config", {}).get("input_kind") == "reflectance":
        raise ExportError("--quantize int8: not offered for reflectance models (its calibration and accuracy check "
                          "read 8-bit pixels); export without --quantize")
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": opset}
    if input_layout not in LAYOUTS or input_dtype not in DTYPES:
        raise ExportError(f"input {input_layout} {input_dtype}: layout must be one of {LAYOUTS}, dtype one of {DTYPES}")
    contract = build_contract(model, ctx, name, resolution, provenance, versions, input_layout, input_dtype,
                              wide_scaling)
    tmp = f"{out}.{os.getpid()}.tmp.onnx"
    n_bands = int(model.inputs[0].shape[-1])
    spec = (tf.TensorSpec((None, size, size, n_bands), tf.float32, name="input"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
        proto = canonical_names(adapt_input(proto, input_layout, input_dtype))
        for k, v in {CONTRACT_KEY: contract.to_json()}.items():
            proto.metadata_props.add(key=k, value=v)
        proto.producer_name = "geoseg export"
        onnx.save(proto, tmp)
        # parity on real images (chips: read and scaled as in training): the
        # run's test split, else a sample of any split
        data = load_split_images(ctx, "test", size, parity_limit)
        source = "test split of " + ctx.get("config", {}).get("data_dir", "?") if data is not None else None
        if data is None:
            data = load_split_images(ctx, "train", size, parity_limit)
            source = "training images" if data is not None else None
        if data is None:
            rng = np.random.default_rng(0)
            top = contract.input_range[1]
            data = (rng.uniform(0, top, (64, size, size, n_bands)).astype(np.float32), None)
            source = "random patches (no run folder with data beside the model)"
        parity = check_parity(model, tmp, data[0], source, input_layout, input_dtype)
        log.info("parity on %d images (%s): max |p_keras - p_onnx| = %.2e, argmax agreement %.4f",
                 parity.n, parity.source, parity.max_abs_diff, parity.argmax_agreement)
        if not parity.ok:
            raise ExportError(
                f"{keras_path}: ONNX parity failed on {parity.n} images ({parity.source}): max abs "
                f"probability difference {parity.max_abs_diff:.2e} (limit {PARITY_ATOL:.0e}), argmax "
                f"agreement {parity.argmax_agreement:.4f} (must be 1); nothing written"
            )
        c2 = ModelContract.from_dict({**contract.to_dict(), "parity": {
            "n": parity.n, "source": parity.source, "max_abs_diff": parity.max_abs_diff,
            "argmax_agreement": parity.argmax_agreement}})
        m = onnx.load(tmp)
        for p in m.metadata_props:
            if p.key == CONTRACT_KEY:
                p.value = c2.to_json()
        onnx.save(m, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    res = ExportResult(out, parity, c2.to_dict(), os.path.getsize(out))
    if quantize:
        if quantize != "int8":
            raise ExportError(f"--quantize {quantize}: only int8 is supported")
        res.quantized = quantize_int8(out, ctx, size, data, input_layout, input_dtype, n_bands)
    return res


def quantize_int8(float_path: str, ctx: dict, size: int, test_data, layout: str = "NCHW",
                  dtype: str = "uint8", bands: int = 3) -> dict:
    """Static QDQ per-channel int8 quantization calibrated on training images.
    Writes ``NAME.int8.onnx`` beside the float model only if its test accuracy
    is within 0.5 point of the float model's."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib = load_split_images(ctx, "train", size, limit=512)
    if calib is None:
        raise ExportError("int8 quantization needs the run's training images for calibration "
                          "(run folder with config.json and manifest.csv beside model.keras)")
    if test_data is None or test_data[1] is None:
        raise ExportError("int8 quantization needs labelled test images to check accuracy")
    x_cal = calib[0]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": feed(x_cal[i : i + 32], layout, dtype)} for i in range(0, len(x_cal), 32)])

        def get_next(self):
            return next(self.batches, None)

    base = float_path[: -len(".onnx")] if float_path.endswith(".onnx") else float_path
    out = base + ".int8.onnx"
    pre = base + ".pre.tmp.onnx"
    tmp = base + ".int8.tmp.onnx"
    try:
        quant_pre_process(float_path, pre, skip_symbolic_shape=False)
        quantize_static(pre, tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        # carry the contract over, marked as quantized
        mf, mq = onnx.load(float_path), onnx.load(tmp)
        props = {p.key: p.value for p in mf.metadata_props}
        contract = json.loads(props[CONTRACT_KEY])
        x, y = test_data
        acc_f = float((ort_predict(ort_session(float_path), x, layout=layout, dtype=dtype).argmax(1) == y).mean())
        acc_q = float((ort_predict(ort_session(tmp), x, layout=layout, dtype=dtype).argmax(1) == y).mean())
        sp_f = throughput(float_path, size, layout=layout, dtype=dtype, bands=bands)
        sp_q = throughput(tmp, size, layout=layout, dtype=dtype, bands=bands)
        rep = {"path": out, "size_bytes": os.path.getsize(tmp), "float_size_bytes": os.path.getsize(float_path),
               "accuracy_float": acc_f, "accuracy_int8": acc_q, "patches_per_s_float": sp_f,
               "patches_per_s_int8": sp_q, "n_test": int(len(y)), "calibration_images": int(len(x_cal))}
        log.info("int8: accuracy %.4f (float %.4f), %.0f patches/s (float %.0f), %.1f MB (float %.1f MB)",
                 acc_q, acc_f, sp_q, sp_f, rep["size_bytes"] / 1e6, rep["float_size_bytes"] / 1e6)
        if acc_f - acc_q > MAX_INT8_DROP:
            rep["written"] = False
            raise ExportError(f"{out}: int8 accuracy {acc_q:.4f} is more than 0.5 point below the float "
                              f"model's {acc_f:.4f}; not written")
        # measured speeds stay in the report, not in the file: the same export gives the same bytes
        contract["quantization"] = {k: v for k, v in rep.items() if k not in ("path", "patches_per_s_float",
                                                                               "patches_per_s_int8")}
        contract["name"] = contract.get("name", "model") + "-int8"
        del mq.metadata_props[:]
        for k, v in props.items():
            mq.metadata_props.add(key=k, value=json.dumps(contract) if k == CONTRACT_KEY else v)
        onnx.save(mq, tmp)
        os.replace(tmp, out)
        rep["written"] = True
        return rep
    finally:
        for p in (pre, tmp):
            if os.path.exists(p):
                os.remove(p)
