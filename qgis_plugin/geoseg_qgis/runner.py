"""Running the geoseg command line from QGIS (no QGIS import: testable alone).

QGIS's Python is the system's, not the environment geoseg is installed in,
so the plugin runs the ``geoseg`` program as a subprocess:

* :func:`find_executable`: ``GEOSEG_EXECUTABLE`` (environment), else the
  Processing setting, else ``geoseg`` on PATH; none is one clear message;
* :func:`run`: starts it in its own process group (session), reads its
  stderr line by line (``--progress-json`` lines, ``geoseg: warning/error``
  lines), polls for cancellation and, when canceled, stops the whole group
  (the command and its Dask worker processes): SIGINT (geoseg removes its
  unfinished files), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

ENV_VAR = "GEOSEG_EXECUTABLE"
SETTING = "GEOSEG_EXECUTABLE"  # Processing > Options > Providers > geoseg
HOW_TO_SET = (
    "set the environment variable GEOSEG_EXECUTABLE, or Settings > Options > Processing > Providers > "
    "geoseg > 'geoseg executable', to the geoseg program of the environment geoseg is installed in "
    "(e.g. /path/to/venv/bin/geoseg, or C:\\path\\to\\venv\\Scripts\\geoseg.exe: `which geoseg` or "
    "`where geoseg` there prints it), or put geoseg on QGIS's PATH"
)

# environment variables QGIS sets for its own Python, GDAL and PROJ: another
# environment's Python, GDAL (rasterio's wheels) and PROJ must not see them
FOREIGN_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE", "VIRTUAL_ENV",
               "GDAL_DATA", "GDAL_DRIVER_PATH", "GDAL_PLUGINS", "PROJ_LIB", "PROJ_DATA", "PROJ_NETWORK", "QGIS_PREFIX_PATH")

STOP_GRACE_S = (3.0, 2.0)  # after SIGINT, after SIGTERM; then SIGKILL


class GeosegNotFound(Exception):
    """No geoseg program to run."""


class GeosegFailed(Exception):
    """geoseg exited with an error (the message is its one error line)."""


class Canceled(Exception):
    """The run was canceled and its processes stopped."""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr_lines: list[str] = field(default_factory=list)
    pid: int = 0
    seconds: float = 0.0


LAST: dict = {}  # pid, process group and seconds of the latest run (tests, scripts/qgis-overhead.py)


def find_executable(setting: str | None = None) -> str:
    """The geoseg program: ``GEOSEG_EXECUTABLE``, else ``setting`` (the
    Processing option), else ``geoseg`` on PATH; GeosegNotFound otherwise."""
    for value, where in ((os.environ.get(ENV_VAR), f"the environment variable {ENV_VAR}"),
                         (setting, "the Processing setting 'geoseg executable'")):
        value = (value or "").strip().strip('"')
        if not value:
            continue
        path = shutil.which(value) or (value if os.path.isfile(value) and os.access(value, os.X_OK) else None)
        if path is None:
            raise GeosegNotFound(f"{value}: no such program (from {where}); {HOW_TO_SET}")
        return path
    path = shutil.which("geoseg")
    if path is None:
        raise GeosegNotFound(f"geoseg executable not found: {HOW_TO_SET}")
    return path


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def error_line(lines: Sequence[str]) -> str | None:
    """geoseg's error line of a failed run: the last ``geoseg: error:`` line,
    else click's ``Error:`` line, else the last line that is not progress."""
    text = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("{")]
    for prefix in ("geoseg: error: ", "Error: "):
        hits = [ln for ln in text if ln.startswith(prefix)]
        if hits:
            return hits[-1][len(prefix):]
    return text[-1] if text else None


def parse_progress(line: str) -> dict | None:
    """The ``{"progress": {...}}`` of a ``--progress-json`` line, else None."""
    if not line.startswith("{"):
        return None
    try:
        p = json.loads(line).get("progress")
    except (ValueError, AttributeError):
        return None
    return p if isinstance(p, dict) and "n" in p and "total" in p else None


def _popen(cmd: Sequence[str]) -> subprocess.Popen:
    kw: dict = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
                "env": child_env(), "text": True, "encoding": "utf-8", "errors": "replace", "bufsize": 1}
    if sys.platform == "win32":
        kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    else:
        kw["start_new_session"] = True  # its own process group: stopped as a whole, workers included
    return subprocess.Popen(list(cmd), **kw)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and every process of its group (Dask workers): SIGINT,
    then SIGTERM, then SIGKILL, each after a grace period (Windows: CTRL_BREAK,
    then ``taskkill /T /F``)."""
    if sys.platform == "win32":
        try:
            proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            proc.wait(STOP_GRACE_S[0])
        except (OSError, subprocess.TimeoutExpired):
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True)
        proc.wait()
        return
    pgid = proc.pid
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S[0]), (signal.SIGTERM, STOP_GRACE_S[1]), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while time.monotonic() < end:
            if proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.05)
        if proc.poll() is not None and not _group_alive(pgid):
            break
    proc.wait()


def _pump(stream, q: queue.Queue, tag: str) -> None:
    for line in iter(stream.readline, ""):
        q.put((tag, line.rstrip("\r\n")))
    q.put((tag, None))


def run(cmd: Sequence[str], on_progress: Callable[[dict], None] | None = None,
        on_line: Callable[[str], None] | None = None, is_canceled: Callable[[], bool] | None = None,
        poll_s: float = 0.1) -> Result:
    """Run ``cmd``; report progress and other stderr lines as they come; stop
    it and raise :class:`Canceled` when ``is_canceled()``; raise
    :class:`GeosegFailed` with geoseg's error line when it exits non-zero."""
    t0 = time.monotonic()
    try:
        proc = _popen(cmd)
    except OSError as exc:
        raise GeosegNotFound(f"{cmd[0]}: cannot be started ({exc.strerror or exc}); {HOW_TO_SET}") from None
    LAST.clear()
    LAST.update(pid=proc.pid, pgid=proc.pid if sys.platform != "win32" else None)
    q: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_pump, args=(proc.stdout, q, "out"), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, q, "err"), daemon=True)]
    for t in threads:
        t.start()
    out: list[str] = []
    err: list[str] = []
    open_streams = 2
    try:
        while open_streams:
            if is_canceled is not None and is_canceled():
                stop(proc)
                raise Canceled(f"canceled: geoseg (process {proc.pid}) and its workers were stopped")
            try:
                tag, line = q.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
                continue
            if tag == "out":
                out.append(line)
                continue
            p = parse_progress(line)
            if p is not None:
                if on_progress is not None:
                    on_progress(p)
                continue
            err.append(line)
            if on_line is not None:
                on_line(line)
        rc = proc.wait()
    except BaseException:
        if proc.poll() is None:
            stop(proc)
        raise
    finally:
        for t in threads:
            t.join(timeout=2.0)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    res = Result(rc, "\n".join(out), err, proc.pid, time.monotonic() - t0)
    LAST["seconds"] = res.seconds
    if rc != 0:
        msg = error_line(err) or f"exited with code {rc}"
        raise GeosegFailed(msg)
    return res
