"""The operator console: server-rendered pages on the same ASGI app as unsubscribe and webhooks.

`mount(app, secret, ...)` adds everything under /console. Each page family is a module with a
module-level `router` (signin, batches, leads, campaigns, sequences, mailboxes, suppressions, inbox,
imports, analytics); `ROUTERS` here lists them all, in the order they are matched (the nav in
base.html lists the pages). What they share is in web/console/deps.py,
as FastAPI dependencies: the signed-in principal (re-read from Postgres on every request), the
per-transaction tenant scope, the operator check, CSRF on every form, rendering with autoescaped
Jinja2 templates and the security headers (web.security: a strict Content-Security-Policy, no
inline script or style). The errors they raise (shared.errors' console section) are answered here.

Pages never filter by client for isolation: a viewer's queries run as `outbound_tenant` with the
viewer's client set (`shared.db.enter_role`), so another client's id simply is not there (404,
the same answer as an id that does not exist). Viewers read; only operators act (403 otherwise).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shared.errors import CsrfRefused, Forbidden, FormTooLarge, NotFound, NotSignedIn
from web.console import analytics, batches, campaigns, imports, inbox, leads, mailboxes, sequences, signin, suppressions
from web.console.auth import SESSION_COOKIE
from web.console.deps import PREFIX, ConsoleState, render

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
NOT_FOUND_TEXT = "Not found (or not yours)."  # the same words for an id that does not exist and another client's

ROUTERS = tuple(m.router for m in (signin, batches, leads, campaigns, sequences, mailboxes, suppressions, inbox, imports,
                                    analytics))

unconfigured = APIRouter(prefix=PREFIX)


@unconfigured.get("/{path:path}")
def console_off(path: str) -> Response:
    return Response("the console is off: CONSOLE_SECRET is not set\n", status_code=503, media_type="text/plain")


def mount(app: FastAPI, secret: str | None, *, secure_cookies: bool) -> None:
    """Add the console under /console. Without a secret the console answers 503 and says which setting is missing."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    if not secret:
        app.include_router(unconfigured)
        return
    app.state.console = ConsoleState(secret, secure_cookies=secure_cookies)
    for router in ROUTERS:
        app.include_router(router)
    app.state.console_routes = [route for router in ROUTERS for route in router.routes]  # what the tenancy test walks
    for exc, handler in HANDLERS.items():
        app.add_exception_handler(exc, handler)


def _message(request: Request, status: int, title: str, text: str) -> Response:
    return render(request.app.state.web.templates, "message.html", None, "", status=status, title=title, text=text)


async def not_signed_in(request: Request, exc: Exception) -> Response:
    if request.method == "GET" and "text/event-stream" not in request.headers.get("accept", ""):
        response: Response = RedirectResponse(f"{PREFIX}/login?next={quote(str(request.url.path), safe='')}",
                                              status_code=303)
    else:
        response = _message(request, 401, "Signed out", str(exc))
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


async def csrf_refused(request: Request, exc: Exception) -> Response:
    log.warning("console: CSRF refused on %s %s", request.method, request.url.path)
    return _message(request, 403, "Refused", str(exc))


async def forbidden(request: Request, exc: Exception) -> Response:
    return _message(request, 403, "Not allowed", str(exc))


async def too_large(request: Request, exc: Exception) -> Response:
    return _message(request, 413, "Too large", str(exc))


async def not_found(request: Request, exc: Exception) -> Response:
    """A console page's NotFound: the one answer for missing and not yours. Elsewhere it stays unhandled (500)."""
    if not request.url.path.startswith(PREFIX):
        raise exc
    return _message(request, 404, "Not found", NOT_FOUND_TEXT)


HANDLERS = {NotSignedIn: not_signed_in, CsrfRefused: csrf_refused, Forbidden: forbidden, FormTooLarge: too_large,
            NotFound: not_found}


def new_secret() -> str:
    """A throwaway CONSOLE_SECRET for a local `outbound serve` (sessions end when it stops)."""
    return secrets.token_urlsafe(32)
