"""Runs over many scenes: finding inputs, skipping finished scenes by their
manifest, going on past failures, and the run report."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

from . import __version__
from .errors import GeosegError, GeosegWarning, InputError, OutputError
from .model import ModelInfo, file_sha256, load_model, resolve_model_path
from .naming import RUN_REPORT, manifest_name, product_name, scene_stem
from .outputs import write_json_atomic
from .scheduling import Runner, progress_bar
from .pipeline import ClassifyOptions, SceneResult, check_options, classify_scene
from .sources import GdalConfig, is_prefix, is_remote, is_stac_item, join, list_prefix, read_bytes, read_json, source_id

log = logging.getLogger(__name__)

RASTER_PATTERNS = ("*.tif", "*.tiff", "*.TIF", "*.TIFF")


@dataclass(frozen=True)
class SceneTask:
    path: str  # a file, a remote source or a STAC item, as the user gave it
    outdir: str
    name: str | None = None  # the outputs' stem when it is not the path's (a STAC item's id)
    listed_in: str | None = None  # the scene list (.txt) that named it, for its errors

    @property
    def stem(self) -> str:
        return self.name or scene_stem(self.path)


def _key(path: str) -> str:
    return path if is_remote(path) else os.path.abspath(path)


def find_inputs(
    inputs: list[str], outdir: str, recursive: bool = False, pattern: str | None = None,
    config: GdalConfig = (),
) -> list[SceneTask]:
    """Expand files, folders, list files (``.txt``, one path or URL a line),
    object-store prefixes (``s3://bucket/prefix/``) and STAC items into scenes.

    Scenes found in a folder or under a prefix keep their sub-folder under
    ``outdir`` (with ``recursive``), so equal names in different folders do
    not collide.  ``config``: the GDAL settings (``--gdal-config``), whose
    endpoint and credential variables the listing uses too.
    """
    pats = (pattern,) if pattern else RASTER_PATTERNS
    out: list[SceneTask] = []
    for item in inputs:
        out.extend(_expand(item, outdir, pats, recursive, config))
    _check_output_names(out)
    return _unique(out)


def _expand(item: str, outdir: str, pats: tuple[str, ...], recursive: bool, config: GdalConfig) -> list[SceneTask]:
    """The scenes of one input (a file, folder, list file, prefix or STAC item)."""
    if is_prefix(item):
        listed = list_prefix(item, pats, recursive, config)
        if not listed:
            log.warning("%s: no object matching %s under this prefix", item, " or ".join(pats))
        return [SceneTask(src, os.path.normpath(os.path.join(outdir, rel))) for src, rel in listed]
    if is_stac_item(item):
        from .stac import safe_id

        doc = read_json(item, config)
        return [SceneTask(item, outdir, safe_id(str(doc.get("id") or scene_stem(item))))]
    if is_remote(item) and item.lower().endswith((".txt", ".lst")):
        return [SceneTask(join(item, line), outdir, listed_in=item)
                for line in _list_lines(read_bytes(item, config), item)]
    if is_remote(item):
        return [SceneTask(item, outdir)]
    if os.path.isdir(item):
        return _expand_folder(item, outdir, pats, recursive)
    if item.lower().endswith((".txt", ".lst")) and os.path.isfile(item):
        return _expand_list_file(item, outdir)
    return [SceneTask(item, outdir)]


def _expand_folder(item: str, outdir: str, pats: tuple[str, ...], recursive: bool) -> list[SceneTask]:
    """The matching files of a local folder, each keeping its sub-folder under ``outdir``."""
    found, outputs = [], 0
    for root, dirs, files in os.walk(item):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for f in sorted(files):
            if any(fnmatch.fnmatch(f, p) for p in pats):
                if _is_output(root, f):
                    outputs += 1
                else:
                    found.append(os.path.join(root, f))
    if not found and outputs:
        log.warning("%s: holds only geoseg's outputs (%d class or probability raster(s)), no scene", item, outputs)
    elif not found:
        log.warning("%s: no file matching %s in this folder", item, " or ".join(pats))
    out = []
    for f in found:
        rel = os.path.relpath(os.path.dirname(f), item)
        out.append(SceneTask(f, os.path.normpath(os.path.join(outdir, rel))))
    return out


def _is_output(folder: str, name: str) -> bool:
    """A class or probability raster geoseg wrote (its scene's manifest lies
    beside it): not a scene, when a folder is classified into itself again."""
    for product in ("classes", "probs"):
        suffix = product_name("", product)  # "_classes.tif"
        if name.endswith(suffix) and os.path.exists(os.path.join(folder, manifest_name(name[: -len(suffix)]))):
            log.info("%s: an output of geoseg, not a scene: skipped", os.path.join(folder, name))
            return True
    return False


def _expand_list_file(item: str, outdir: str) -> list[SceneTask]:
    """The scenes of a local list file; relative paths are read from its folder."""
    base = os.path.dirname(os.path.abspath(item))
    with open(item, "rb") as fh:
        data = fh.read()
    out = []
    for line in _list_lines(data, item):
        p = line if os.path.isabs(line) or is_remote(line) else os.path.join(base, line)
        out.append(SceneTask(p, outdir, listed_in=item))
    return out


def _check_output_names(tasks: list[SceneTask]) -> None:
    """One output name per scene: two different scenes writing the same outputs are refused."""
    seen: dict[tuple[str, str], str] = {}
    for t in tasks:
        stem = t.stem
        key = (os.path.abspath(t.outdir), stem)
        if key in seen and _key(seen[key]) != _key(t.path):
            raise InputError(
                f"{t.path}: its outputs would overwrite those of {seen[key]} (same name "
                f"{stem!r}); use folder inputs with --recursive or separate runs"
            )
        seen[key] = t.path


def _unique(tasks: list[SceneTask]) -> list[SceneTask]:
    """``tasks`` without repeats of a scene (first one kept)."""
    uniq, done = [], set()
    for t in tasks:
        k = _key(t.path)
        if k not in done:
            done.add(k)
            uniq.append(t)
    return uniq


def _list_lines(data: bytes, path: str) -> list[str]:
    """The scene paths of a list file: UTF-8 (with or without a byte-order
    mark, as Windows editors save it), or UTF-16 with its mark; blank lines
    and ``#`` comments left out."""
    try:
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the scene list is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                         "expected one path or URL per line: save it as UTF-8") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- manifests ----------------------------------------------------------------
def manifest_path(outdir: str, path: str, name: str | None = None) -> str:
    return os.path.join(outdir, manifest_name(name or scene_stem(path)))


def _task_manifest(task: SceneTask) -> str:
    return manifest_path(task.outdir, task.path, task.name)


def _source_id(path: str, config: GdalConfig = ()) -> dict:
    """Size and mtime of a file; size, ETag and Last-Modified of a remote object
    (HTTP HEAD, S3 HeadObject): see :func:`geoseg.sources.source_id`."""
    return source_id(path, config)


def _manifest(task: SceneTask, model: ModelInfo, options: ClassifyOptions, res: SceneResult,
              source: dict | None = None) -> dict:
    return {
        "geoseg_version": __version__,
        "source": source if source is not None else _source_id(task.path, options.gdal_config),
        "model_sha256": model.sha256,
        "options": options.to_dict(),
        "outputs": {k: {"file": os.path.basename(v), "sha256": file_sha256(v)}
                    for k, v in sorted(res.outputs.items())},
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def is_up_to_date(task: SceneTask, model: ModelInfo, options: ClassifyOptions, source: dict | None = None) -> bool:
    """True when the scene's manifest matches this source, model and options and
    every output it lists is present with its recorded hash.  ``source``: the
    source's identity when the caller has it (a remote source's costs a request)."""
    mp = _task_manifest(task)
    try:
        with open(mp, encoding="utf-8") as f:
            m = json.load(f)
        if source is None:
            source = _source_id(task.path, options.gdal_config)
        if m.get("source") != json.loads(json.dumps(source)) or m.get("model_sha256") != model.sha256:
            return False
        if m.get("options") != json.loads(json.dumps(options.to_dict())):
            return False
        for o in m["outputs"].values():
            p = os.path.join(task.outdir, o["file"])
            if not os.path.exists(p) or file_sha256(p) != o["sha256"]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


@dataclass
class RunResult:
    """The outcome of :func:`classify_many`."""

    scenes: list[SceneResult] = field(default_factory=list)
    seconds: float = 0.0
    report: str | None = None
    provider: str | None = None  # the onnxruntime execution provider that ran the model (geoseg.providers)

    @property
    def n_failed(self) -> int:
        return sum(1 for s in self.scenes if s.status == "failed")

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def to_dict(self) -> dict:
        return {
            "geoseg_version": __version__,
            "seconds": self.seconds,
            "n_scenes": len(self.scenes),
            "n_done": sum(s.status == "done" for s in self.scenes),
            "n_skipped": sum(s.status == "skipped" for s in self.scenes),
            "n_failed": self.n_failed,
            **({"provider": self.provider} if self.provider else {}),
            "scenes": [
                {k: v for k, v in asdict(s).items() if k != "stats"} for s in self.scenes
            ],
        }


def classify_many(
    inputs: list[str] | str,
    outdir: str | os.PathLike,
    model: str | os.PathLike | ModelInfo | None = None,
    options: ClassifyOptions | None = None,
    scheduler: str = "threads",
    workers: int | None = None,
    ort_threads: int | None = None,
    recursive: bool = False,
    pattern: str | None = None,
    concurrent_scenes: int | None = None,
    progress: bool | None = None,
    runner: Runner | None = None,
    scene_tasks: bool = False,
) -> RunResult:
    """Classify files, folders and list files; never stops at a failed scene.

    Finished scenes whose manifest matches are skipped (``options.overwrite``
    redoes them).  Writes ``run.json`` into ``outdir``.  Raises only for
    problems of the whole run (model, unwritable folder, clashing names).

    ``scene_tasks``: each scene is one task, run whole on a worker, which
    writes the scene's outputs itself (into ``outdir``, which the workers must
    see at the same path); the caller receives only each scene's small
    result, no pixels.  For folders of many scenes on a cluster: as many
    scenes run at once as the runner has task slots.  The outputs are the same
    bytes as in the default mode (blocks of every scene spread over the
    workers, written by the caller).
    """
    options = options or ClassifyOptions()
    outdir = str(outdir)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    tasks = find_inputs([str(i) for i in inputs], outdir, recursive, pattern, options.gdal_config)
    if not tasks:  # before anything is written: an earlier run's run.json stays
        raise InputError(f"{', '.join(inputs)}: no scene found; expected GeoTIFF files, folders holding them "
                         "(--pattern, --recursive), .txt lists of them or STAC item .json files: check the path")
    if options.assets and not any(is_stac_item(t.path) for t in tasks):
        warnings.warn(f"--assets {','.join(options.assets)} applies to STAC item inputs (.json) only; no input is "
                      "one, so it is ignored (choose a GeoTIFF's bands with --bidx)", GeosegWarning, stacklevel=2)
    info = model if isinstance(model, ModelInfo) else load_model(resolve_model_path(model))
    check_options(info, options)  # once, before any scene
    from .providers import provider_name

    run = RunResult(provider=provider_name(options.provider))  # an unavailable provider stops the run here
    remote = runner.remote if runner is not None else "://" in str(scheduler)
    _make_outdir(outdir, here=not (scene_tasks and remote))  # remote scene tasks: the workers write OUTDIR
    t0 = time.perf_counter()
    if runner is None:
        with Runner(scheduler, workers, ort_threads) as r:
            return _run(tasks, outdir, info, options, r, concurrent_scenes, progress, run, t0, scene_tasks)
    return _run(tasks, outdir, info, options, runner, concurrent_scenes, progress, run, t0, scene_tasks)


def _make_outdir(outdir: str, here: bool = True) -> None:
    """Create the output folder once, before any scene: a run that cannot
    write there stops with one line (not one failed scene per input and a
    run report that cannot be written either).  ``here=False``: the outputs
    are written by a remote cluster's workers, which may see a folder this
    machine does not: only the path is checked."""
    if not outdir.strip():
        raise OutputError("the output folder is an empty path; expected a folder to write into, e.g. -o results")
    if not here:
        return
    try:
        os.makedirs(outdir, exist_ok=True)
        probe = os.path.join(outdir, f".geoseg-write-test-{os.getpid()}-{time.monotonic_ns()}")
        with open(probe, "w") as f:
            f.write("x")
        os.remove(probe)
    except OSError as exc:
        what = "cannot create output folder" if not os.path.isdir(outdir) else "output folder is not writable"
        raise OutputError(f"{outdir}: {what} ({exc.strerror}); expected a folder geoseg can write into: choose "
                          "another -o folder or fix its permissions") from None


def classify_scene_task(path: str, outdir: str, model_path: str, options: ClassifyOptions,
                        ort_threads: int) -> SceneResult:
    """One whole scene, as a task on a worker (``scene_tasks`` mode): its
    blocks run inline there and its outputs are written there."""
    with Runner("synchronous", ort_threads=ort_threads) as inline:
        return classify_scene(path, outdir, model_path, replace(options, progress=False), inline)


def _run(tasks, outdir, info, options, runner, concurrent_scenes, progress, run, t0, scene_tasks=False) -> RunResult:
    def one(task: SceneTask) -> SceneResult:
        ts = time.perf_counter()
        try:
            # the source's identity before the work: a source changed meanwhile is redone next time
            sid = _source_id(task.path, options.gdal_config) if is_remote(task.path) else None
            if not options.overwrite and is_up_to_date(task, info, options, sid):
                log.info("%s: up to date, skipped", task.path)
                return SceneResult(task.path, task.stem, "skipped")
            opts = options if progress is None else replace(options, progress=progress)
            if not opts.overwrite and _made_by_geoseg(task):
                # outputs of an earlier run (stale, or interrupted before its
                # manifest): redo them; anything else under those names is refused
                opts = replace(opts, overwrite=True)
            if scene_tasks:
                res = runner.call(classify_scene_task, task.path, task.outdir, info.path, opts, runner.ort_threads)
            else:
                res = classify_scene(task.path, task.outdir, info, opts, runner)
            write_json_atomic(_task_manifest(task), _manifest(task, info, options, res, sid))
            log.info("%s: done in %.1f s (%.0f patches/s)", task.path, res.seconds, res.patches_per_s)
            return res
        except GeosegError as exc:
            msg = str(exc) + (f" (listed in {task.listed_in})" if task.listed_in else "")
            log.error("%s", msg)
            return SceneResult(task.path, task.stem, "failed",
                               seconds=time.perf_counter() - ts, error=msg)
        except Exception as exc:  # noqa: BLE001 - one scene must not stop the run
            msg = f"{task.path}: unexpected {type(exc).__name__}: {exc}".splitlines()[0]
            log.error("%s", msg, exc_info=log.isEnabledFor(logging.DEBUG))
            return SceneResult(task.path, task.stem, "failed",
                               seconds=time.perf_counter() - ts, error=msg)

    n_par = concurrent_scenes or (runner.slots if scene_tasks and runner.parallel else 2 if runner.parallel else 1)
    results: dict[int, SceneResult] = {}
    with progress_bar(len(tasks), "scenes", "scene", progress if len(tasks) > 1 else False, leave=True) as bar:
        if n_par <= 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                results[i] = one(t)
                bar.update(1)
        else:
            with ThreadPoolExecutor(n_par) as ex:
                futs = {ex.submit(one, t): i for i, t in enumerate(tasks)}
                for f in futs:
                    results[futs[f]] = f.result()
                    bar.update(1)
    run.scenes = [results[i] for i in range(len(tasks))]
    run.seconds = time.perf_counter() - t0
    try:
        os.makedirs(outdir, exist_ok=True)
        run.report = os.path.join(outdir, RUN_REPORT)
        write_json_atomic(run.report, run.to_dict())
    except OSError as exc:
        log.error("%s: cannot write run report (%s)", outdir, exc.strerror)
        run.report = None
    return run


def _made_by_geoseg(task: SceneTask) -> bool:
    """True when the scene's existing outputs were written by geoseg: it has a
    manifest, or its class raster carries geoseg's tags."""
    if os.path.exists(_task_manifest(task)):
        return True
    cls = os.path.join(task.outdir, product_name(task.stem, "classes"))
    if not os.path.exists(cls):
        return False
    try:
        import rasterio

        with rasterio.open(cls) as src:
            return "GEOSEG_MODEL_SHA256" in src.tags()
    except Exception:  # noqa: BLE001 - unreadable: not ours to replace
        return False
