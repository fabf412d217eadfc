"""Loading ONNX models, reading their contract, and one cached
onnxruntime session per worker thread (an I/O module: it opens model files).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import CONTRACT_KEY, ModelContract
from .errors import InputError, ModelError, first_line

DEFAULT_MODEL = Path(__file__).parent / "models" / "default.onnx"


@dataclass(frozen=True)
class ModelInfo:
    """A validated model: its path, content hash and contract."""

    path: str
    sha256: str
    contract: ModelContract
    input_shape: tuple
    output_shape: tuple
    size_bytes: int

    @property
    def fixed_batch(self) -> int | None:
        """The graph's batch size when the graph fixes one (e.g. 1), else None."""
        n = self.input_shape[0] if self.input_shape else None
        return n if isinstance(n, int) and n > 0 else None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(chunk), b""):
            h.update(b)
    return h.hexdigest()


def resolve_model_path(model: str | os.PathLike | None) -> str:
    """The model to use: an existing path, else a built-in model's name
    (``default``, ``multispectral``: :mod:`geoseg.builtin`); None: the
    default model shipped in the package."""
    from .builtin import resolve

    return resolve(model)


def new_session(model: str | bytes, threads: int = 1, provider: str = "cpu"):
    """An onnxruntime session set up as geoseg runs every model (the
    runtime, the export's parity check and the benchmarks all use this):
    full graph optimisation (4x faster than basic here), ``threads``
    intra-op threads, sequential execution, fatal log messages only (a failed
    run comes back as an exception, which geoseg reports in one line).
    ``provider``: a name of :data:`geoseg.providers.PROVIDER_NAMES` (``auto``:
    the best available); one that is not available, or that onnxruntime
    cannot start (e.g. CUDA libraries missing), is an InputError."""
    import onnxruntime as ort

    from .providers import check_name, resolve_provider

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 4
    providers = resolve_provider(provider)
    sess = ort.InferenceSession(model, sess_options=so, providers=providers)
    if providers[0] not in sess.get_providers() and check_name(provider) != "auto":
        # onnxruntime falls back to CPU silently when a provider's libraries do not load
        raise InputError(f"provider {provider!r}: onnxruntime could not start {providers[0]} (its libraries, "
                         f"e.g. CUDA/cuDNN, did not load; session runs on {', '.join(sess.get_providers())}); "
                         "install the libraries the provider needs or use --provider cpu")
    return sess


def _check_graph(path: str, sess, contract: ModelContract):
    """The graph's one input and its first output, checked against the
    contract (input name, shape, type; number of classes)."""
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: model has {len(inputs)} inputs, expected 1")
    inp, out = inputs[0], outputs[0]
    if inp.name != contract.input_name:
        raise ModelError(
            f"{path}: contract names input {contract.input_name!r} but the graph's is {inp.name!r}"
        )
    p, nb = contract.patch_size, contract.n_bands
    want = (p, p, nb) if contract.input_layout == "NHWC" else (nb, p, p)
    got = tuple(inp.shape[1:])
    if len(got) != 3 or any(isinstance(g, int) and g != w for g, w in zip(got, want)):
        raise ModelError(
            f"{path}: graph input shape {list(inp.shape)} disagrees with the contract "
            f"({contract.input_layout}, patch {p}, {nb} bands: expected [N, "
            f"{', '.join(map(str, want))}]); fix the contract or re-export the model"
        )
    want_type = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}[contract.input_dtype]
    if inp.type != want_type:
        raise ModelError(
            f"{path}: graph input type is {inp.type} but the contract's input_dtype is {contract.input_dtype} "
            f"(expected {want_type}); fix the contract's input_dtype or re-export the model"
        )
    ncls = out.shape[-1] if out.shape else None
    if isinstance(ncls, int) and ncls != contract.n_classes:
        raise ModelError(
            f"{path}: graph output has {ncls} classes but the contract names "
            f"{contract.n_classes} ({', '.join(contract.class_names)})"
        )
    return inp, out


def load_model(path: str | os.PathLike) -> ModelInfo:
    """Open an ONNX model, read and check its contract against its graph.

    Raises
    ------
    ModelError
        The file is missing, not ONNX, has no contract, or the graph's input or
        output shape disagrees with the contract.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise ModelError(f"{path}: model file not found; pass -m with an existing .onnx file")
    try:
        sess = new_session(path, 1)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{path}: not a loadable ONNX model ({first}); expected a .onnx file "
            "written by `geoseg export`"
        ) from None
    meta = sess.get_modelmeta().custom_metadata_map
    if CONTRACT_KEY not in meta:
        raise ModelError(
            f"{path}: ONNX model has no geoseg contract (metadata key {CONTRACT_KEY!r}); "
            "export it with `geoseg export` or add the contract with "
            "geoseg.model.write_contract()"
        )
    contract = ModelContract.from_json(meta[CONTRACT_KEY], where=path)
    inp, out = _check_graph(path, sess, contract)
    return ModelInfo(
        path=path,
        sha256=file_sha256(path),
        contract=contract,
        input_shape=tuple(inp.shape),
        output_shape=tuple(out.shape),
        size_bytes=os.path.getsize(path),
    )


_LOCAL = threading.local()


def get_session(path: str, sha256: str, threads: int, provider: str = "cpu"):
    """The calling thread's onnxruntime session for (model, threads).

    Dask tasks call this with the model path: a session is created on first
    use in each worker thread (or process) and reused by every later task
    there.  One session per thread, not one shared by the threads of a
    worker: concurrent ``run`` calls on one session contend inside
    onnxruntime (measured: about half the throughput of separate sessions).
    ``sha256`` keys the cache so a replaced file is reloaded.
    """
    cache = getattr(_LOCAL, "sessions", None)
    if cache is None:
        cache = _LOCAL.sessions = {}
    key = (path, sha256, threads, provider)
    sess = cache.get(key)
    if sess is None:
        sess = cache[key] = new_session(path, threads, provider)
    return sess


def run_batch(session, input_name: str, batch: np.ndarray, batch_size: int, model: str = "the model") -> np.ndarray:
    """Run the model on one batch of at most ``batch_size`` patches (already
    in the model's layout and dtype); returns (n, n_class) float32.

    Every call gets exactly ``batch_size`` patches (a short batch is padded
    with zeros): onnxruntime picks kernels by batch size, and a patch's result
    must not depend on how many patches happened to share its block.
    """
    k = len(batch)
    if k < batch_size:
        pad = np.zeros((batch_size - k,) + batch.shape[1:], dtype=batch.dtype)
        batch = np.concatenate([batch, pad], axis=0)
    try:
        out = session.run(None, {input_name: batch})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no public base class
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        raise ModelError(f"{model}: the graph failed on a {batch.dtype} batch of shape {list(batch.shape)} "
                         f"({first_line(exc)}); expected a graph that runs on the input its contract declares: "
                         "re-export the model") from None
    return out[:k].astype(np.float32, copy=False)


def write_contract(model_path: str | os.PathLike, contract: ModelContract, out_path=None) -> None:
    """Store ``contract`` in the ONNX metadata of a model (needs the ``onnx`` package)."""
    import onnx

    m = onnx.load(str(model_path))
    props = {p.key: p.value for p in m.metadata_props}
    props[CONTRACT_KEY] = contract.to_json()
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    tmp = str(out_path or model_path) + ".tmp"
    onnx.save(m, tmp)
    os.replace(tmp, str(out_path or model_path))
