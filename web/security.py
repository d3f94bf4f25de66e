"""One ASGI middleware for every response: security headers, and redirects that never point at a Host header.

Every answer (console pages, /u/ pages, JSON, plain text, redirects, errors, 404s from the router)
gets HEADERS: a strict Content-Security-Policy with frame-ancestors 'none', X-Frame-Options,
nosniff, a Referrer-Policy and Cache-Control: no-store (what is shown is per user or per token;
only /console/static may be cached). A header a route set itself is kept.

Starlette's trailing-slash redirect builds an absolute Location from the request's Host header.
A Location whose origin is not PUBLIC_BASE_URL's is rewritten to a relative path (the browser
resolves it against the host it really asked), so a forged Host never sends anyone elsewhere.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
CACHEABLE_PREFIXES = ("/console/static/",)  # the same files for everyone


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def safe_location(location: str, trusted_origin: str) -> str:
    """`location` unchanged when relative or on the trusted origin; otherwise its path and query only."""
    parts = urlsplit(location)
    if not parts.scheme and not parts.netloc and not location.startswith(("//", "\\")):
        return location
    if parts.scheme and _origin(location) == _origin(trusted_origin):
        return location
    path = "/" + re.sub(r"^[/\\]+", "", parts.path)  # never "//host": that is absolute again
    return urlunsplit(("", "", path, parts.query, ""))


class SecurityHeaders:
    """The middleware (pure ASGI, so streamed responses such as server-sent events pass untouched)."""

    def __init__(self, app: Any, *, trusted_origin: str) -> None:
        self.app = app
        self.trusted_origin = trusted_origin

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope.get("path", "").startswith(CACHEABLE_PREFIXES)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])]
                present = {k.lower() for k, _ in headers}
                for name, value in HEADERS.items():
                    if name.lower().encode() not in present and not (cacheable and name == "Cache-Control"):
                        headers.append((name.lower().encode(), value.encode()))
                headers = [(k, safe_location(v.decode("latin-1"), self.trusted_origin).encode("latin-1"))
                           if k.lower() == b"location" else (k, v) for k, v in headers]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
