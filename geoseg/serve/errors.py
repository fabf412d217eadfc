"""Errors of ``geoseg serve`` and how they are answered: one status table, the
exception handlers, and the fallback route (404 for an unknown ``/api`` path,
405 with ``Allow`` for a method an endpoint does not take).

Every error is a JSON object ``{"error": MESSAGE}`` (one line, never a
traceback) with the status of :data:`STATUS`: 400 malformed body, 401 token,
403 outside the roots, 404 unknown, 409 not done, 411/413 upload size, 422 a
scene geoseg cannot classify or invalid parameters, 500 anything else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import GeosegError

log = logging.getLogger(__name__)


class AccessError(GeosegError, PermissionError):
    """A path outside the server's roots, or a URL it may not fetch."""


class NotFoundError(GeosegError, LookupError):
    """No scene, job or output of that id."""


class TooLargeError(GeosegError, ValueError):
    """An upload or download over the size limit."""


class JobStateError(GeosegError, ValueError):
    """An output asked of a job that is not done, or has no such output."""


# The status of each error class; the first match in order wins (GeosegError last).
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (AccessError, 403),
    (NotFoundError, 404),
    (TooLargeError, 413),
    (JobStateError, 409),
    (GeosegError, 422),
)


def status_of(exc: BaseException) -> int:
    """The HTTP status of an exception (:data:`STATUS`; 500 for anything else)."""
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error answer ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _first_line(exc: BaseException) -> str:
    s = str(exc)
    return s.splitlines()[0] if s.strip() else type(exc).__name__


def _validation_message(exc: RequestValidationError) -> str:
    """One line for invalid parameters; a body model's own check (a
    ``ValueError`` at the body's root) is its message as it is."""
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        if e.get("type") == "value_error" and not loc:
            return str(e.get("ctx", {}).get("error", e.get("msg", "invalid")))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    msg = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return error(exc.status_code, msg, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return error(400, f"{request.method} {request.url.path}: the body is not valid JSON; expected a JSON "
                          "object (see /docs for its fields)")
    return error(422, _validation_message(exc))


async def _geoseg_error(request: Request, exc: Exception) -> JSONResponse:
    return error(status_of(exc), _first_line(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return error(500, f"internal error ({type(exc).__name__}: {first}); see the server log")


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as JSON (see :data:`STATUS`)."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(GeosegError, _geoseg_error)
    app.add_exception_handler(Exception, _unexpected)


def allowed_methods(routers: Iterable[APIRouter], path: str) -> list[str]:
    """The methods the routes of ``routers`` take at ``path`` (HEAD aside)."""
    methods: set[str] = set()
    for router in routers:
        for r in router.routes:
            rx = getattr(r, "path_regex", None)
            if rx is not None and rx.match(path):
                methods |= set(getattr(r, "methods", None) or ())
    return sorted(methods - {"HEAD"})


FALLBACK_PATH = "/api/{rest:path}"
fallback = APIRouter()


@fallback.api_route(FALLBACK_PATH, methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
def not_found(rest: str, request: Request) -> JSONResponse:
    """404 for an unknown ``/api`` path, 405 (with ``Allow``) for a known path
    asked with a method it does not take.  Include this router last, after
    the routers listed in ``app.state.routers``."""
    path = "/api/" + rest
    allowed = allowed_methods(request.app.state.routers, path)
    if allowed:
        return error(405, f"{request.method} {path}: not allowed; expected {' or '.join(allowed)}",
                     headers={"Allow": ", ".join(allowed)})
    raise NotFoundError(f"{path}: no such endpoint; see /docs")
