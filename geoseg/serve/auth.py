"""The token of ``geoseg serve``: the middleware that checks it and the query
string that carries it in URLs the server hands out (URL-encoded, so a token
with ``+``, ``&`` or ``=`` reaches the server as it is)."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs, quote

from .errors import error

Scope = dict[str, Any]


def token_query(token: str | None) -> str:
    """``?token=TOKEN`` with the token URL-encoded, or ``""`` without a token."""
    return f"?token={quote(token, safe='')}" if token else ""


class TokenMiddleware:
    """Refuses ``/api`` calls (but ``/api/health``) without the token, given as
    ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (tile URLs cannot carry
    headers).  A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` adds
    ~40 ms to every keep-alive request on loopback."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            p = scope.get("path", "")
            if p.startswith("/api/") and p != "/api/health" and not self._ok(scope):
                resp = error(401, "missing or wrong token; pass 'Authorization: Bearer TOKEN' or ?token=TOKEN")
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _ok(self, scope: Scope) -> bool:
        given = b""
        for k, v in scope.get("headers", ()):
            if k == b"authorization" and v[:7].lower() == b"bearer ":
                given = v[7:].strip()
        if not given:
            q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (q.get("token") or [""])[0].encode()
        return hmac.compare_digest(given, self.token)
