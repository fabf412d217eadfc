"""``geoseg serve``: classify scenes in real time on a web map."""

from __future__ import annotations

import ipaddress
import os
import socket

import click

from ..errors import GeosegError, NotInstalledError
from .options import fail, quiet_opt, setup_logging, verbose_opt


def free_port(host: str) -> int:
    """A port free on ``host`` now (for ``--port 0``)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host.strip("[]"), 0))
        except OSError as exc:
            fail(GeosegError(f"{host}: cannot listen ({exc.strerror}); choose another --host"))
        return s.getsockname()[1]


def start_url(host: str, port: int, token: str | None) -> str:
    """The page's URL, with the token URL-encoded in its query."""
    from ..serve.auth import token_query

    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/" + token_query(token)


def url_prefixes(given: tuple[str, ...], host: str) -> tuple[str, ...] | None:
    """The URLs ``POST /api/scenes`` may fetch: the given prefixes; none given,
    any http(s) URL on loopback (``None``) and none beyond it (``()``)."""
    from ..serve.fetch import check_prefix

    if given:
        return tuple(check_prefix(p) for p in given)
    return None if is_loopback(host) else ()


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("serve", short_help="Real-time predictions on a web map (needs the serve extra).")
@click.argument("sources", nargs=-1, metavar="[SCENE_OR_FOLDER...]")
@click.option("-m", "--model", type=click.Path(dir_okay=False), default=None, help="ONNX model with a geoseg contract [default: the shipped model].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--token", default=None, envvar="GEOSEG_SERVE_TOKEN", help="Require this token on every API call (Authorization: Bearer T, or ?token=T) [env GEOSEG_SERVE_TOKEN].")
@click.option("--upload-limit", type=click.FloatRange(0, min_open=True), default=512, show_default=True, help="Largest upload or URL download, in MB.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Blocks, uploads and job outputs [default: ~/.cache/geoseg/serve].")
@click.option("--stride", type=click.IntRange(1), default=None, help="Pixels between patches; must divide the patch size [default: patch size].")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Server processes (uvicorn workers) sharing the block cache, scenes and jobs; for a server with more cores.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads computing blocks in each process [default: cores / --workers].")
@click.option("--provider", default="auto", show_default=True, help="onnxruntime execution provider: auto, cpu, cuda, tensorrt, rocm, directml, coreml or openvino.")
@click.option("--no-disk-cache", is_flag=True, help="Keep computed blocks in memory only.")
@click.option("--allow-url-prefix", "allow_url_prefix", multiple=True, metavar="PREFIX", help="POST /api/scenes may download URLs under PREFIX (repeatable; redirects too) [default: any URL on loopback, none beyond it].")
@click.option("--open", "open_browser", is_flag=True, help="Open the map in a web browser.")
@verbose_opt
@quiet_opt
def serve(sources, model, host, port, token, upload_limit, cache_dir, stride, workers, threads, provider,
          no_disk_cache, allow_url_prefix, open_browser, verbose, quiet):
    """Serve SCENE files and FOLDERs of scenes on a web map: the scene, its
    class map computed as you pan and zoom (identical to `geoseg classify`),
    click for probabilities, classify the whole scene as a job, download the
    outputs.  Only the given files and scenes under the given folders (and
    uploads) are served.

    \b
    geoseg serve scenes/                      http://127.0.0.1:8000/
    geoseg serve scene.tif --port 8080
    geoseg serve scenes/ --host 0.0.0.0 --token SECRET
    geoseg serve scenes/ --workers 4          four processes (a server with more cores)
    """
    setup_logging(verbose, quiet)
    if not is_loopback(host) and not token:
        fail(GeosegError(f"--host {host}: listening beyond this machine needs --token (or GEOSEG_SERVE_TOKEN); "
                         "choose a long random token, or keep --host 127.0.0.1"))
    try:
        import uvicorn

        from ..serve.app import app_from_settings, serving_process
        from ..serve.state import Settings, default_cache_dir
    except ImportError as exc:
        fail(NotInstalledError(f"`geoseg serve` needs the serve extra ({exc.name} is missing): "
                               "pip install 'geoseg[serve]'"))
    try:
        settings = Settings(
            tuple(sources), model, token, upload_limit, os.path.abspath(cache_dir or default_cache_dir()),
            _serve_options(stride, provider), threads, not no_disk_cache, True, url_prefixes(allow_url_prefix, host),
            _shared_dir(cache_dir or default_cache_dir()) if workers > 1 else None, workers)
        app = app_from_settings(settings)
    except GeosegError as exc:
        fail(exc)
    real_port = port or free_port(host)
    url = _announce(app, sources, host, real_port, token, quiet)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    # uvicorn binds host:port itself: its accepted connections then get TCP_NODELAY
    # (with a socket handed over, keep-alive requests waited ~40 ms for delayed ACKs)
    # keep-alive longer than browsers keep idle connections (uvicorn's 5 s closes
    # connections a busy map is about to reuse: the client sees a read error)
    serving_process()
    kw = dict(host=host.strip("[]"), port=real_port, timeout_keep_alive=75,
              log_level="warning" if not verbose else "info", access_log=verbose > 1)
    if workers == 1:
        uvicorn.Server(uvicorn.Config(app, **kw)).run()
        return
    _run_workers(app, settings, workers, kw)


def _serve_options(stride: int | None, provider: str):
    from ..providers import provider_name
    from ..serve.scenes import ServeOptions

    provider_name(provider)  # an unknown or unavailable provider: one line now, not per scene
    return ServeOptions(stride=stride, provider=provider)


def _shared_dir(cache_dir: str) -> str:
    """A fresh folder where the processes of this server share scenes and jobs."""
    import uuid

    return os.path.join(os.path.abspath(cache_dir), "run", uuid.uuid4().hex[:12])


def _announce(app, sources, host: str, port: int, token: str | None, quiet: bool) -> str:
    """Refuse to start when no given scene can be served; print the start URL; return it."""
    reg = app.state.server.registry
    if sources and not reg.scenes:
        fail(GeosegError(f"{', '.join(sources)}: no scene could be served from the given paths (see the warnings "
                         "above); give GeoTIFF files or folders holding them, or none to start empty and upload"))
    shown = f"[{host}]" if ":" in host else host
    url = start_url(host, port, token)
    if not quiet:
        click.echo(f"geoseg serve: {len(reg.scenes)} scene(s), model {app.state.server.model.contract.name}; "
                   f"open {url}  (API docs: http://{shown}:{port}/docs; Ctrl-C stops)", err=True)
    return url


def _run_workers(app, settings, workers: int, kw: dict) -> None:
    """Serve with ``workers`` uvicorn processes, each building its own app from the settings."""
    import shutil

    import uvicorn

    from ..serve.app import SETTINGS_ENV

    app.state.server.close()  # this process only checked the settings and printed the URL
    os.environ[SETTINGS_ENV] = settings.to_json()
    try:
        uvicorn.run("geoseg.serve.app:app_from_env", factory=True, workers=workers, **kw)
    finally:
        shutil.rmtree(settings.shared_dir, ignore_errors=True)
