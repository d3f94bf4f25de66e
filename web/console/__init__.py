"""The operator console: server-rendered pages on the same ASGI app as unsubscribe and webhooks.

`mount(app, ...)` adds everything under /console. Each page family is a module with a
`register(router, console)` function (batches, leads, campaigns, suppressions); this module holds
what they share: the signed-in principal (re-read from Postgres on every request), the
per-transaction tenant scope, CSRF checks, rendering with autoescaped Jinja2 templates, and the
security headers (web.security: a strict Content-Security-Policy, no inline script or style).

Pages never filter by client for isolation: a viewer's queries run as `outbound_tenant` with the
viewer's client set (`shared.engines.users.scope`), so another client's id simply is not there (404,
the same answer as an id that does not exist). Viewers read; only operators act (403 otherwise).
"""

from __future__ import annotations

import importlib
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection, Engine

from shared import db, ids
from shared.engines.users import users
from shared.engines.users.users import Principal
from shared.errors import SignInRefused
from web.console.auth import (LOGIN_COOKIE, LOGIN_FORM_SECONDS, SESSION_COOKIE, SESSION_SECONDS, CsrfRefused,
                              Forbidden, NotSignedIn, Session, Sessions)
from web.console.forecasts import Forecasts
from web.security import HEADERS

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
PREFIX = "/console"
SECURITY_HEADERS = HEADERS  # web.security's, which its middleware also adds to every other response
# Each page family registers its routes (`register(router, console)`); the nav in base.html lists them.
PAGE_MODULES = ("web.console.batches", "web.console.leads", "web.console.campaigns", "web.console.suppressions")
FORM_MAX_BYTES = 256 * 1024  # an ordinary console form; the suppression import has its own limit


class NotFound(Exception):
    """Not found (or not yours)."""


class Console:
    """What every console page needs: the database, the cookie signer, the templates."""

    def __init__(self, engine: Callable[[], Engine], secret: str, *, secure_cookies: bool) -> None:
        self.engine = engine
        self.sessions = Sessions(secret, secure=secure_cookies)
        self.forecasts = Forecasts()
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True),
                                     trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["dt"] = _dt
        self.templates.filters["urlq"] = lambda v: quote(str(v), safe="")

    # -- who is asking ---------------------------------------------------------------------------
    def session(self, request: Request) -> Session:
        return self.sessions.read(request.cookies.get(SESSION_COOKIE))

    def principal(self, session: Session, conn: Connection | None = None) -> Principal:
        """The user as Postgres says now, read as the application (the table is owner-only) before
        any role switch; in `conn`'s transaction when given."""
        if conn is None:
            with self.engine().begin() as own:
                return self.principal(session, own)
        who = users.principal(conn, session.user_id, session.epoch)
        if who is None:
            raise NotSignedIn(NotSignedIn.__doc__)
        return who

    def who(self, request: Request) -> tuple[Principal, Session]:
        session = self.session(request)
        return self.principal(session), session

    @contextmanager
    def scoped(self, who: Principal) -> Iterator[Connection]:
        with db.transaction(self.engine(), role=who) as conn:
            yield conn

    def _in_scope(self, session: Session, fn: Callable[[Connection, Principal], Any], *,
                  operator_only: bool = False) -> tuple[Any, Principal]:
        """One transaction: who the session is (as the application), then `fn` in that user's role."""
        with db.transaction(self.engine()) as conn:
            who = self.principal(session, conn)
            if operator_only and not who.is_operator:
                raise Forbidden(Forbidden.__doc__)
            db.enter_role(conn, who)
            return fn(conn, who), who

    async def read(self, request: Request, fn: Callable[[Connection, Principal], Any]) -> tuple[Any, Principal, Session]:
        """Run `fn(conn, who)` in the caller's scope, off the event loop."""
        session = self.session(request)
        data, who = await run_in_threadpool(self._in_scope, session, fn)
        return data, who, session

    async def act(self, request: Request, fn: Callable[[Connection, Principal, dict[str, Any]], Any], *,
                  operator_only: bool = True) -> tuple[Any, Principal]:
        """A form post: signed in, CSRF checked, operator (unless said otherwise), then `fn` in scope."""
        session = self.session(request)
        form = await read_form(request)
        self.sessions.check_csrf(session.sid, _str(form.get("csrf")))
        values = dict(form)
        return await run_in_threadpool(self._in_scope, session, lambda conn, who: fn(conn, who, values),
                                       operator_only=operator_only)

    # -- answers ---------------------------------------------------------------------------------
    def page(self, template: str, who: Principal | None, session: Session | None, *, status: int = 200,
             **context: Any) -> HTMLResponse:
        csrf = self.sessions.csrf_token(session.sid) if session is not None else ""
        body = self.templates.get_template(template).render(who=who, csrf=csrf, prefix=PREFIX, **context)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def message(self, status: int, title: str, text: str, who: Principal | None = None,
                session: Session | None = None) -> HTMLResponse:
        return self.page("message.html", who, session, status=status, title=title, text=text)


class FormTooLarge(Exception):
    """The form is larger than a console form can be."""


def _capped(receive: Any, limit: int) -> Any:
    """The ASGI `receive`, refusing (FormTooLarge) once more than `limit` body bytes have arrived."""
    seen = 0

    async def capped() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise FormTooLarge(f"{FormTooLarge.__doc__} ({limit} bytes at most)")
        return message

    return capped


async def read_form(request: Request, limit: int = FORM_MAX_BYTES, **options: Any) -> Any:
    """The posted form, refused (FormTooLarge, 413) before it is read when its declared length passes
    `limit`, and while it arrives when it declares none; it is never held whole beyond the cap
    (Starlette spools file parts to a temporary file). `options`: Starlette's form limits."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit() and len(declared) <= ids.MAX_DIGITS
                                     and int(declared) <= limit):
        raise FormTooLarge(f"{FormTooLarge.__doc__} ({limit} bytes at most)")
    capped = Request(request.scope, _capped(request.receive, limit))
    return await capped.form(**({"max_part_size": FORM_MAX_BYTES} | options))


def redirect(path: str, notice: str | None = None) -> RedirectResponse:
    target = f"{PREFIX}{path}"
    if notice:
        target += ("&" if "?" in target else "?") + "notice=" + quote(notice, safe="")
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def form_int(form: dict[str, Any], name: str) -> int | None:
    """An optional id from a form field (`shared.ids.field_id`): BadNumber, a ValueError naming the field."""
    return ids.field_id(_str(form.get(name)), name)


def client_filter(raw: str | None) -> tuple[int | None, str | None]:
    """(client id or None for all, a notice when the value was not a number)."""
    if raw is None or raw.strip() == "":
        return None, None
    value = ids.parse_id(raw.strip())
    if value is None:
        return None, f"client: {raw[:40]!r} is not a number; showing every client"
    return value, None


def path_id(name: str) -> Any:
    """A route's `{name}` path parameter as an id (`shared.ids.parse_id`); NotFound (404) when it is not one.

    Use as a default: `batch_id: int = path_id("batch_id")`. FastAPI's own `int` would take any size
    and let Postgres fail on a bigint out of range."""
    def dependency(request: Request) -> int:
        value = ids.parse_id(request.path_params.get(name))
        if value is None:
            raise NotFound(NotFound.__doc__)
        return value

    return Depends(dependency)



def _dt(value: Any) -> str:
    if value is None:
        return ""
    try:
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except AttributeError:
        return str(value)


def _safe_next(raw: str | None) -> str:
    """Only a path inside the console: never an open redirect (`//evil`, `/console@evil`, a scheme)."""
    if not raw or not raw.startswith(PREFIX + "/") or raw.startswith("//") or "\\" in raw or "\n" in raw:
        return f"{PREFIX}/batches"
    return raw


def mount(app: FastAPI, engine: Callable[[], Engine], secret: str | None, *, secure_cookies: bool) -> None:
    """Add the console under /console. Without a secret the console answers 503 and says which setting is missing."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    router = APIRouter(prefix=PREFIX)
    if not secret:
        @router.get("/{path:path}")
        def unconfigured(path: str) -> Response:
            return Response("the console is off: CONSOLE_SECRET is not set\n", status_code=503,
                            media_type="text/plain")
        app.include_router(router)
        return
    console = Console(engine, secret, secure_cookies=secure_cookies)
    _register_auth(router, console)
    for name in PAGE_MODULES:
        importlib.import_module(name).register(router, console)
    app.include_router(router)
    app.state.console_router = router  # what the tenancy test walks: every console page and action
    app.state.console = console

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.method == "GET" and "text/event-stream" not in request.headers.get("accept", ""):
            response = RedirectResponse(f"{PREFIX}/login?next={quote(str(request.url.path), safe='')}",
                                        status_code=303)
        else:
            response = console.message(401, "Signed out", str(exc))
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        log.warning("console: CSRF refused on %s %s", request.method, request.url.path)
        return console.message(403, "Refused", str(exc))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return console.message(403, "Not allowed", str(exc))

    @app.exception_handler(FormTooLarge)
    async def too_large(request: Request, exc: FormTooLarge) -> Response:
        return console.message(413, "Too large", str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return console.message(404, "Not found", str(exc))


def _register_auth(router: APIRouter, console: Console) -> None:
    @router.get("", include_in_schema=False)
    @router.get("/", include_in_schema=False)
    def home() -> Response:
        return redirect("/batches")

    @router.get("/login")
    def login_form(request: Request, next: str | None = None, error: str | None = None) -> Response:
        cookie, token = console.sessions.login_nonce()
        response = console.page("login.html", None, None, login_csrf=token, next=_safe_next(next), error=error)
        response.set_cookie(LOGIN_COOKIE, cookie, **console.sessions.cookie_options(LOGIN_FORM_SECONDS))
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        console.sessions.check_login_form(request.cookies.get(LOGIN_COOKIE), _str(form.get("csrf")))
        email, password = _str(form.get("email")) or "", _str(form.get("password")) or ""

        def attempt() -> Principal | SignInRefused:
            with console.engine().begin() as conn:  # failed attempts must be committed, so not raised out
                try:
                    return users.authenticate(conn, email, password)
                except SignInRefused as exc:
                    return exc

        outcome = await run_in_threadpool(attempt)
        target = _safe_next(_str(form.get("next")))
        if isinstance(outcome, SignInRefused):
            log.info("console: sign-in refused (%s)", type(outcome).__name__)
            cookie, token = console.sessions.login_nonce()
            response = console.page("login.html", None, None, status=401, login_csrf=token, next=target,
                                    error=str(outcome), email=email)
            response.set_cookie(LOGIN_COOKIE, cookie, **console.sessions.cookie_options(LOGIN_FORM_SECONDS))
            return response
        value, _session = console.sessions.issue(outcome.user_id, outcome.session_epoch)
        log.info("console: user_id=%s signed in (%s)", outcome.user_id, outcome.role)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, value, **console.sessions.cookie_options(SESSION_SECONDS))
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        who, session = await run_in_threadpool(console.who, request)
        form = await read_form(request)
        console.sessions.check_csrf(session.sid, _str(form.get("csrf")))

        def end() -> None:
            with console.engine().begin() as conn:
                users.end_sessions(conn, who.user_id)

        await run_in_threadpool(end)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response


def new_secret() -> str:
    """A throwaway CONSOLE_SECRET for a local `outbound serve` (sessions end when it stops)."""
    return secrets.token_urlsafe(32)
