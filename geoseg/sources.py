"""Where scenes come from: a local path or a remote object.

A *source* is the string the user gave: a local path, an ``http(s)://`` URL,
an object-store URL (``s3://``, ``gs://``, ``az://``) or one of GDAL's virtual
file system paths (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``...).
Messages, reports and manifests keep the user's form; GDAL gets
:func:`gdal_path` (``s3://b/k`` -> ``/vsis3/b/k``, ``https://h/x.tif`` ->
``/vsicurl/https://h/x.tif``).  This module says what a source is, where GDAL
reads it, which GDAL settings its reads need (:func:`scene_config`,
:func:`gdal_env`), how it is identified between runs (:func:`source_id`: size
and mtime of a file, size, ETag and Last-Modified of an object), and lists
object-store prefixes (:func:`list_prefix`).

GDAL settings are per thread (``rasterio.Env``), so every task enters
:func:`gdal_env` itself with the settings it carries.  Object stores are
listed and their objects' headers read with `obstore` (one small compiled
package with no dependencies; rasterio has no listing API); credentials and
endpoints come from the same variables GDAL reads (``AWS_*``), so GDAL and
the listing see the same bucket.
"""

from __future__ import annotations

import configparser
import contextlib
import email.utils
import fnmatch
import http.client
import json
import os
import posixpath
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from .errors import InputError, UnsupportedSourceError

GdalConfig = tuple[tuple[str, str], ...]
"""GDAL configuration options as sorted ``(KEY, VALUE)`` pairs (hashable, picklable)."""

REMOTE_DEFAULTS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing (sidecar search) on open
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MAX_RETRY": "3",  # retries of 429, 5xx and dropped connections
    "GDAL_HTTP_RETRY_DELAY": "1",  # seconds (doubled at each retry by GDAL)
}
"""GDAL settings applied to the reads of remote sources (``--gdal-config`` overrides them)."""

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""Passed as environment variables only: never on a command line (visible to
every user of the machine) and refused by ``rasterio.Env``."""

_URL_TO_VSI = {"s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}
_VSI_TO_URL = {v: k for k, v in _URL_TO_VSI.items()}
VSI_HANDLERS = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsioss/", "/vsiswift/",
                "/vsiwebhdfs/", "/vsihdfs/", "/vsicurl_streaming/", "/vsis3_streaming/", "/vsigs_streaming/",
                "/vsiaz_streaming/")
_RETRY_STATUS = (429, 500, 502, 503, 504)
_NO = ("NO", "FALSE", "OFF", "0")
_YES = ("YES", "TRUE", "ON", "1")

ACCESS_HELP = (
    "set the credentials GDAL reads: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) or AWS_PROFILE "
    "for S3 (AWS_NO_SIGN_REQUEST=YES for a public bucket), GS_ACCESS_KEY_ID + GS_SECRET_ACCESS_KEY or "
    "GOOGLE_APPLICATION_CREDENTIALS for gs://, AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT + "
    "AZURE_STORAGE_ACCESS_KEY for az://; or use a signed URL"
)


# --- what a source is ---------------------------------------------------------
def is_remote(source: str | os.PathLike) -> bool:
    """True for URLs and GDAL network paths (not for local files or ``/vsimem/``)."""
    s = str(source)
    return s.startswith(("http://", "https://", *_URL_TO_VSI)) or s.startswith(VSI_HANDLERS)


def gdal_path(source: str | os.PathLike) -> str:
    """The path GDAL opens: ``s3://b/k`` -> ``/vsis3/b/k``, ``https://...`` ->
    ``/vsicurl/https://...``; local paths and ``/vsi...`` paths are unchanged."""
    s = str(source)
    for url, vsi in _URL_TO_VSI.items():
        if s.startswith(url):
            return vsi + s[len(url):]
    if s.startswith(("http://", "https://")):
        return "/vsicurl/" + s
    return s


def object_url(source: str) -> str:
    """The URL of a remote source (``/vsis3/b/k`` -> ``s3://b/k``, ``/vsicurl/URL`` -> ``URL``)."""
    s = str(source)
    for vsi, url in _VSI_TO_URL.items():
        if s.startswith(vsi):
            return url + s[len(vsi):]
    for prefix in ("/vsicurl/", "/vsicurl_streaming/"):
        if s.startswith(prefix):
            return s[len(prefix):]
    return s


def display_path(source: str | os.PathLike) -> str:
    """The form reports show: an absolute path for a file, the source as given for a remote one."""
    s = str(source)
    return s if is_remote(s) else os.path.abspath(s)


def join(base: str, relative: str) -> str:
    """``relative`` (a line of a list file, an asset href) resolved against ``base``'s folder."""
    if is_remote(relative) or os.path.isabs(relative):
        return relative
    if is_remote(base):
        head, sep, path = base.partition("://")
        if not sep:  # /vsis3/bucket/key...
            return posixpath.normpath(posixpath.join(posixpath.dirname(base), relative))
        host, _, key = path.partition("/")
        key = posixpath.normpath(posixpath.join(posixpath.dirname("/" + key), relative))
        return f"{head}://{host}{key}"
    return os.path.join(os.path.dirname(os.path.abspath(base)), relative)


def is_prefix(source: str) -> bool:
    """A remote folder to list: an object-store URL ending with ``/``."""
    return is_remote(source) and source.endswith("/")


def is_stac_item(source: str) -> bool:
    """A STAC Item document (``*.json``), local or remote."""
    return str(source).lower().split("?", 1)[0].endswith(".json")


# --- GDAL settings ------------------------------------------------------------
def parse_gdal_config(items: Iterable[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (the CLI's ``--gdal-config``) -> dict; raises ValueError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not KEY=VALUE, e.g. GDAL_HTTP_MAX_RETRY=5")
        out[key.strip()] = value.strip()
    return out


def normalize_config(config: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> GdalConfig:
    """A mapping (or pairs) of GDAL options -> :data:`GdalConfig`.

    Raises
    ------
    ValueError
        For AWS credentials, which are read from the environment only.
    """
    if not config:
        return ()
    pairs = config.items() if isinstance(config, Mapping) else config
    out = {str(k).strip(): _config_str(v) for k, v in pairs}
    secret = sorted(k for k in out if k.upper() in CREDENTIAL_KEYS)
    if secret:
        raise ValueError(f"{', '.join(secret)}: credentials are not GDAL options here; set them as environment "
                         "variables (or use AWS_PROFILE)")
    return tuple(sorted(out.items()))


def _config_str(v: Any) -> str:
    if isinstance(v, bool):
        return "YES" if v else "NO"
    return str(v)


def uses_network(source: str) -> bool:
    """A remote source, or a local VRT that reads remote files (a STAC item's VRT)."""
    s = str(source)
    if is_remote(s):
        return True
    if s.lower().endswith(".vrt") and os.path.isfile(s) and os.path.getsize(s) < 1 << 20:
        with open(s, encoding="utf-8", errors="replace") as f:
            text = f.read()
        return any(h in text for h in ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "://"))
    return False


def scene_config(source: str, user: GdalConfig = ()) -> GdalConfig:
    """The GDAL settings a scene's reads run under: :data:`REMOTE_DEFAULTS`
    for a source read over the network, then the user's ``--gdal-config``.

    A local file gets only the user's settings (none by default), so local
    runs read exactly as before (``GDAL_DISABLE_READDIR_ON_OPEN`` would hide
    a file's ``.aux.xml`` and ``.ovr`` sidecars).
    """
    merged = dict(REMOTE_DEFAULTS) if uses_network(source) else {}
    merged.update(dict(user))
    return tuple(sorted(merged.items()))


@contextlib.contextmanager
def gdal_env(config: GdalConfig) -> Iterator[None]:
    """Enter ``rasterio.Env(**config)`` (GDAL settings are per thread: every
    task enters it itself); nothing at all for an empty config."""
    if not config:
        yield
        return
    import rasterio

    with rasterio.Env(**dict(config)):
        yield


def config_value(key: str, config: GdalConfig = ()) -> str | None:
    """A setting as GDAL sees it: the config first, then the environment."""
    return dict(config).get(key, os.environ.get(key))


def _retries(config: GdalConfig) -> tuple[int, float]:
    try:
        n = int(float(config_value("GDAL_HTTP_MAX_RETRY", config) or 0))
        delay = float(config_value("GDAL_HTTP_RETRY_DELAY", config) or 30)
    except ValueError:
        n, delay = 0, 30.0
    return max(0, n), max(0.0, delay)


def _timeout(config: GdalConfig) -> float:
    try:
        return float(config_value("GDAL_HTTP_TIMEOUT", config) or 30)
    except ValueError:
        return 30.0


# --- errors -------------------------------------------------------------------
def not_found(source: str, how: str = "HTTP 404") -> InputError:
    return InputError(f"{source}: not found ({how}); expected an existing object: check the URL, bucket and key")


def access_denied(source: str, how: str = "HTTP 403") -> InputError:
    return InputError(f"{source}: access denied ({how}); {ACCESS_HELP}")


def unreachable(source: str, why: str, config: GdalConfig = ()) -> InputError:
    n, _ = _retries(config)
    return InputError(f"{source}: cannot read the remote object ({why}) after {n + 1} attempt(s); check the "
                      "address and the network (retries: GDAL_HTTP_MAX_RETRY, GDAL_HTTP_RETRY_DELAY, "
                      "GDAL_HTTP_TIMEOUT)")


def remote_error(source: str, message: str, config: GdalConfig = ()) -> InputError | None:
    """The one-line error for a GDAL message about a remote source, or None
    when the message is not about the network (a corrupt file...)."""
    if not is_remote(source):
        return None
    m = message.lower()
    if "404" in m or "does not exist" in m or "no such file" in m:
        return not_found(source, "HTTP 404" if "404" in m else "GDAL: does not exist")
    if "403" in m or "401" in m or "access denied" in m or "forbidden" in m:
        return access_denied(source, "HTTP 403" if "403" in m else "HTTP 401" if "401" in m else "GDAL")
    if any(s in m for s in ("http response code", "couldn't connect", "connection", "timed out", "timeout",
                            "curl error", "empty reply", "recv failure")):
        return unreachable(source, message.strip().splitlines()[0][:160], config)
    return None


# --- identity -----------------------------------------------------------------
@dataclass(frozen=True)
class SourceStat:
    """What a remote object's headers say (HTTP HEAD, S3 HeadObject)."""

    size: int | None
    last_modified: datetime | None
    etag: str | None


def stat_remote(source: str, config: GdalConfig = ()) -> SourceStat:
    """The size, Last-Modified and ETag of a remote object.

    Raises
    ------
    InputError
        One line: not found (404), access denied (403, naming the credential
        variables), or unreachable after the retries (5xx, refused, dropped).
    """
    url = object_url(source)
    if url.startswith(("http://", "https://")):
        return _http_stat(source, url, config)
    if url.startswith(tuple(_URL_TO_VSI)):
        return _store_stat(source, url, config)
    raise UnsupportedSourceError(f"{source}: geoseg cannot query this kind of remote source; expected http(s)://, "
                                 "s3://, gs://, az:// or their /vsi equivalents")


def source_id(source: str, config: GdalConfig = ()) -> dict:
    """What identifies a source between runs (a changed source is redone):
    path, size and mtime of a file; URL, size, ETag and Last-Modified of an object."""
    if not is_remote(source):
        st = os.stat(source)
        return {"path": os.path.abspath(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    s = stat_remote(source, config)
    return {"url": source, "size": s.size, "etag": s.etag,
            "last_modified": s.last_modified.isoformat() if s.last_modified else None}


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def source_time(source: str, config: GdalConfig = ()) -> datetime:
    """The source's modification time (a file's mtime, an object's
    Last-Modified; the epoch when the server gives none), to whole seconds:
    outputs stamped with it are the same on every run over the same source."""
    if not is_remote(source):
        return datetime.fromtimestamp(int(os.stat(source).st_mtime), timezone.utc)
    lm = stat_remote(source, config).last_modified
    return (lm or EPOCH).replace(microsecond=0)


def _http_headers(config: GdalConfig) -> dict[str, str]:
    """Headers from ``GDAL_HTTP_HEADERS`` (``Name: value`` pairs, comma or CRLF separated)."""
    raw = config_value("GDAL_HTTP_HEADERS", config)
    out: dict[str, str] = {}
    if raw:
        for part in raw.replace("\r\n", ",").split(","):
            name, sep, value = part.partition(":")
            if sep:
                out[name.strip()] = value.strip()
    return out


def _http_request(source: str, url: str, config: GdalConfig, method: str,
                  headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """One HTTP request with GDAL's retry settings; returns (status, headers, body)."""
    n, delay = _retries(config)
    last = ""
    for attempt in range(n + 1):
        if attempt:
            time.sleep(delay * 2 ** (attempt - 1))
        req = urllib.request.Request(url, method=method, headers={**_http_headers(config), **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=_timeout(config)) as r:
                return r.status, r.headers, r.read() if method == "GET" else b""
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in _RETRY_STATUS:
                last = f"HTTP {exc.code}"
                continue
            return exc.code, exc.headers, b""
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            last = str(getattr(reason, "strerror", None) or reason) or type(exc).__name__
    raise unreachable(source, last, config)


def _raise_for_status(source: str, status: int, config: GdalConfig) -> None:
    """The one-line error of an HTTP error status (404, 401/403, other 4xx/5xx)."""
    if status == 404:
        raise not_found(source)
    if status in (401, 403):
        raise access_denied(source, f"HTTP {status}")
    if status >= 400:
        raise unreachable(source, f"HTTP {status}", config)


def _http_stat(source: str, url: str, config: GdalConfig) -> SourceStat:
    status, headers, _ = _http_request(source, url, config, "HEAD")
    if status in (403, 405, 501):  # HEAD refused (a URL signed for GET only): ask for one byte
        status, headers, _ = _http_request(source, url, config, "GET", {"Range": "bytes=0-0"})
    _raise_for_status(source, status, config)
    size = None
    rng = headers.get("Content-Range")
    if rng and "/" in rng and rng.rsplit("/", 1)[1].strip().isdigit():
        size = int(rng.rsplit("/", 1)[1])
    elif headers.get("Content-Length", "").isdigit():
        size = int(headers["Content-Length"])
    lm = None
    if headers.get("Last-Modified"):
        try:
            lm = email.utils.parsedate_to_datetime(headers["Last-Modified"]).astimezone(timezone.utc)
        except (TypeError, ValueError):
            lm = None
    return SourceStat(size, lm, headers.get("ETag"))


def read_bytes(source: str, config: GdalConfig = ()) -> bytes:
    """The whole content of a small file or object (a list file, a STAC item)."""
    if not is_remote(source):
        try:
            with open(source, "rb") as f:
                return f.read()
        except OSError as exc:
            raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    url = object_url(source)
    if url.startswith(("http://", "https://")):
        status, _, body = _http_request(source, url, config, "GET")
        _raise_for_status(source, status, config)
        return body
    store, key = _store(source, url, config)
    import obstore

    with _store_errors(source, config):
        return bytes(obstore.get(store, key).bytes())


def read_json(source: str, config: GdalConfig = ()) -> dict:
    """A JSON document (local or remote) -> dict; one-line error otherwise."""
    try:
        doc = json.loads(read_bytes(source, config))
    except ValueError as exc:
        raise InputError(f"{source}: not valid JSON ({exc}); expected a STAC Item document") from None
    if not isinstance(doc, dict):
        raise InputError(f"{source}: JSON is not an object; expected a STAC Item document")
    return doc


# --- object stores (obstore) --------------------------------------------------
def _yes(v: str | None) -> bool:
    return v is not None and v.strip().upper() in _YES


def _no(v: str | None) -> bool:
    return v is not None and v.strip().upper() in _NO


def _profile_keys(config: GdalConfig) -> dict[str, str]:
    """Keys of ``AWS_PROFILE`` (or ``default``) from ``~/.aws/credentials``, as GDAL reads them."""
    path = config_value("AWS_SHARED_CREDENTIALS_FILE", config) or os.path.expanduser("~/.aws/credentials")
    profile = config_value("AWS_PROFILE", config) or config_value("AWS_DEFAULT_PROFILE", config) or "default"
    cp = configparser.ConfigParser()
    try:
        cp.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return {}
    if not cp.has_section(profile):
        return {}
    sec = cp[profile]
    out = {"access_key_id": sec.get("aws_access_key_id"), "secret_access_key": sec.get("aws_secret_access_key"),
           "session_token": sec.get("aws_session_token")}
    return {k: v for k, v in out.items() if v}


def _store(source: str, url: str, config: GdalConfig) -> tuple[Any, str]:
    """An obstore store for the bucket of ``url`` and the key, configured
    from GDAL's variables (endpoint, HTTPS, virtual hosting, region, credentials)."""
    from obstore.store import AzureStore, GCSStore, S3Store

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    n, delay = _retries(config)
    retry = {"max_retries": n, "backoff": {"init_backoff": timedelta(seconds=delay), "max_backoff":
                                           timedelta(seconds=max(delay, 1.0) * 8), "base": 2},
             "retry_timeout": timedelta(seconds=max(30.0, delay * 2 ** (n + 1)))}
    client: dict[str, Any] = {"timeout": timedelta(seconds=_timeout(config)),
                              "connect_timeout": timedelta(seconds=min(10.0, _timeout(config)))}
    if url.startswith("s3://"):
        cfg: dict[str, Any] = {}
        https = not _no(config_value("AWS_HTTPS", config))
        endpoint = config_value("AWS_S3_ENDPOINT", config)
        if endpoint:
            cfg["endpoint"] = endpoint if "://" in endpoint else ("https://" if https else "http://") + endpoint
            client["allow_http"] = cfg["endpoint"].startswith("http://")
        if _yes(config_value("AWS_VIRTUAL_HOSTING", config)) and not endpoint:
            cfg["virtual_hosted_style_request"] = True
        region = config_value("AWS_REGION", config) or config_value("AWS_DEFAULT_REGION", config)
        cfg["region"] = region or "us-east-1"
        if _yes(config_value("AWS_NO_SIGN_REQUEST", config)):
            cfg["skip_signature"] = True
        else:
            keys = {"access_key_id": config_value("AWS_ACCESS_KEY_ID", config),
                    "secret_access_key": config_value("AWS_SECRET_ACCESS_KEY", config),
                    "session_token": config_value("AWS_SESSION_TOKEN", config)}
            if not (keys["access_key_id"] and keys["secret_access_key"]):
                keys = dict(_profile_keys(config))
            cfg.update({k: v for k, v in keys.items() if v})
        return S3Store(bucket, config=cfg, client_options=client, retry_config=retry), key  # type: ignore[arg-type]
    if url.startswith("gs://"):
        return GCSStore(bucket, client_options=client, retry_config=retry), key  # type: ignore[arg-type]
    return AzureStore(bucket, client_options=client, retry_config=retry), key  # type: ignore[arg-type]


@contextlib.contextmanager
def _store_errors(source: str, config: GdalConfig) -> Iterator[None]:
    from obstore.exceptions import BaseError, NotFoundError, PermissionDeniedError, UnauthenticatedError

    try:
        yield
    except (NotFoundError, FileNotFoundError):
        raise not_found(source, "no such object") from None
    except (PermissionDeniedError, UnauthenticatedError, PermissionError):
        raise access_denied(source, "403 from the object store") from None
    except BaseError as exc:
        text = str(exc)
        if "403" in text or "AccessDenied" in text or "Forbidden" in text:
            raise access_denied(source, "403 from the object store") from None
        if "404" in text or "NoSuchBucket" in text or "NoSuchKey" in text:
            raise not_found(source, "404 from the object store") from None
        raise unreachable(source, " ".join(text.split())[:160], config) from None


def _store_stat(source: str, url: str, config: GdalConfig) -> SourceStat:
    import obstore

    store, key = _store(source, url, config)
    with _store_errors(source, config):
        meta = obstore.head(store, key)
    return SourceStat(int(meta["size"]), meta["last_modified"].astimezone(timezone.utc), meta.get("e_tag"))


def list_prefix(prefix: str, patterns: Iterable[str], recursive: bool = False,
                config: GdalConfig = ()) -> list[tuple[str, str]]:
    """The objects under an object-store prefix whose names match ``patterns``.

    Returns
    -------
    list of (source, relative folder)
        Sources in the form of ``prefix`` (``s3://`` or ``/vsis3/``), sorted,
        each with its folder relative to the prefix (``""`` at the top);
        sub-folders only with ``recursive``.
    """
    url = object_url(prefix)
    if not url.startswith(tuple(_URL_TO_VSI)):
        raise UnsupportedSourceError(
            f"{prefix}: an HTTP folder cannot be listed; expected an s3://, gs:// or az:// prefix, or a .txt "
            "file listing the URLs"
        )
    import obstore

    store, key = _store(prefix, url, config)
    base = key.rstrip("/")
    pats = tuple(patterns)
    found: list[tuple[str, str]] = []
    with _store_errors(prefix, config):
        for batch in obstore.list(store, base or None):
            for meta in batch:
                path = meta["path"]
                rel = path[len(base):].lstrip("/") if base else path
                folder = posixpath.dirname(rel)
                if folder and (not recursive or any(p.startswith(".") for p in folder.split("/"))):
                    continue
                if any(fnmatch.fnmatch(posixpath.basename(rel), p) for p in pats):
                    found.append((prefix.rstrip("/") + "/" + rel, folder))
    return sorted(found)
