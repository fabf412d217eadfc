"""Downloads of ``POST /api/scenes {"url": ...}``: which URLs a server may
fetch (``geoseg serve --allow-url-prefix``) and the size-limited download
that follows redirects only while they stay allowed.

Prefix rule: a URL is under a prefix when scheme and host (with port) are the
same and its path starts with the prefix's path at a segment boundary
(``https://h/data`` allows ``https://h/data/a.tif`` and ``https://h/data``,
not ``https://h/database.tif``); a path with a ``..`` segment (plain or
percent-encoded) is under no prefix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import unquote, urljoin, urlsplit

from ..errors import InputError
from .errors import AccessError, TooLargeError

MAX_REDIRECTS = 5
TIMEOUT_S = 30.0


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is an http(s) URL with a host; else :class:`InputError`."""
    u = urlsplit(prefix)
    if u.scheme.lower() not in ("http", "https") or not u.hostname or u.query or u.fragment:
        raise InputError(f"--allow-url-prefix {prefix}: not an http:// or https:// URL prefix; expected e.g. "
                         "https://data.example.org/scenes/")
    return prefix


def _under(url: str, prefix: str) -> bool:
    u, p = urlsplit(url), urlsplit(prefix)
    if (u.scheme.lower(), u.netloc.lower()) != (p.scheme.lower(), p.netloc.lower()):
        return False
    path = u.path or "/"
    if ".." in unquote(path).split("/"):
        return False
    base = p.path or "/"
    if base.endswith("/"):
        return path.startswith(base)
    return path == base or path.startswith(base + "/")


def check_url(url: str, prefixes: tuple[str, ...] | None) -> None:
    """Raise :class:`AccessError` unless the server may fetch ``url``."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise AccessError(f"{url}: only http:// and https:// URLs are fetched")
    if prefixes is None or any(_under(url, p) for p in prefixes):
        return
    if not prefixes:
        raise AccessError(f"{url}: this server fetches no URL; start `geoseg serve` with --allow-url-prefix "
                          "PREFIX, or upload the file")
    raise AccessError(f"{url}: not under an allowed URL prefix ({', '.join(prefixes)}); start `geoseg serve` "
                      "with --allow-url-prefix for it, or upload the file")


def download(url: str, dest: str, limit: int, prefixes: tuple[str, ...] | None,
             too_large: Callable[[str, int | None], TooLargeError]) -> None:
    """Download ``url`` into ``dest`` (at most ``limit`` bytes), following at
    most :data:`MAX_REDIRECTS` redirects, each checked by :func:`check_url`.
    Leaves ``dest`` absent on any error."""
    import httpx2 as httpx

    check_url(url, prefixes)
    try:
        with httpx.Client(follow_redirects=False, timeout=TIMEOUT_S) as client:
            _get(client, url, dest, limit, prefixes, too_large)
    except httpx.HTTPError as exc:
        _remove(dest)
        raise InputError(f"{url}: download failed ({type(exc).__name__}: {exc}); check the URL") from None
    except BaseException:
        _remove(dest)
        raise


def _get(client, url: str, dest: str, limit: int, prefixes: tuple[str, ...] | None,
         too_large: Callable[[str, int | None], TooLargeError]) -> None:
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        with client.stream("GET", target) as r:
            if r.is_redirect and "location" in r.headers:
                nxt = urljoin(target, r.headers["location"])
                try:
                    check_url(nxt, prefixes)
                except AccessError as exc:
                    raise AccessError(f"{url}: redirected to {nxt}, which this server may not fetch "
                                      f"({str(exc).split(': ', 1)[1]})") from None
                target = nxt
                continue
            if r.status_code != 200:
                raise InputError(f"{url}: download failed (HTTP {r.status_code}); expected a GeoTIFF URL")
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise too_large(url, int(declared))
            _write(r.iter_bytes(), dest, limit, url, too_large)
            return
    raise InputError(f"{url}: more than {MAX_REDIRECTS} redirects; expected a direct GeoTIFF URL")


def _write(chunks, dest: str, limit: int, url: str, too_large: Callable[[str, int | None], TooLargeError]) -> None:
    n = 0
    with open(dest, "wb") as f:
        for chunk in chunks:
            n += len(chunk)
            if n > limit:
                raise too_large(url, None)
            f.write(chunk)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
