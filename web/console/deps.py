"""What every console page shares, as FastAPI dependencies, and the few helpers its routes use.

- `Viewer`: the signed-in principal, re-read from Postgres on every request as the application
  (the users table is owner-only), in the same transaction that `Conn` then runs in that user's
  role (`shared.db.enter_role`): a viewer's queries run as `outbound_tenant` with their client set.
  The transaction ends (commit, or rollback when the route raised) before the response is sent.
- `Operator`: the same, refused (Forbidden, 403) unless the user is an operator.
- `SignedIn`: the principal read in a short transaction of its own, for a route that must not hold
  one open (an upload, signing out). The event stream opens one per poll (`in_scope`).
- `PostedForm`: the posted form (capped: `web.bodies`), refused unless it carries the session's CSRF
  token; every POST takes it first, except two that check CSRF in a dependency of their own:
  sign-in (its pre-session token, web/console/signin.py) and the suppression and lead uploads (operator
  first, then their larger caps, web/console/suppressions.py and imports.py).
- `Page`: rendering for this request (autoescaped Jinja2, the security headers of web.security).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.datastructures import FormData
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment
from sqlalchemy import Connection, Engine

from shared import db, ids
from shared.engines.leads.importer import clean_name
from shared.engines.users import users
from shared.engines.users.users import Principal
from shared.errors import Forbidden, FormTooLarge, NotFound, NotSignedIn, default_message
from web import bodies
from web.console.auth import SESSION_COOKIE, Session, Sessions
from web.console.forecasts import Forecasts
from web.security import HEADERS
from web.state import Web, WebState

PREFIX = "/console"
SECURITY_HEADERS = HEADERS  # web.security's, which its middleware also adds to every other response
FORM_MAX_BYTES = 256 * 1024  # an ordinary console form; the suppression import has its own limit


class ConsoleState:
    """The console's app-wide parts (on `app.state.console`): the cookie signer and the forecast cache."""

    def __init__(self, secret: str, *, secure_cookies: bool) -> None:
        self.sessions = Sessions(secret, secure=secure_cookies)
        self.forecasts = Forecasts()


async def console_state(request: Request) -> ConsoleState:
    return request.app.state.console


Console = Annotated[ConsoleState, Depends(console_state)]


def session_of(console: ConsoleState, request: Request) -> Session:
    """The request's signed session cookie (NotSignedIn when missing, forged or expired)."""
    return console.sessions.read(request.cookies.get(SESSION_COOKIE))


async def current_session(request: Request, console: Console) -> Session:
    return session_of(console, request)


SessionDep = Annotated[Session, Depends(current_session)]


# -- who is asking, and the transaction in their scope -------------------------------------------
def lookup(conn: Connection, session: Session) -> Principal:
    """The user as Postgres says now, read as the application, before any role switch."""
    who = users.principal(conn, session.user_id, session.epoch)
    if who is None:
        raise NotSignedIn()
    return who


@contextmanager
def in_scope(engine: Engine, session: Session) -> Iterator[tuple[Connection, Principal]]:
    """One transaction: who the session is (as the application), then that user's role."""
    with db.transaction(engine) as conn:
        who = lookup(conn, session)
        db.enter_role(conn, who)
        yield conn, who


@dataclass(frozen=True, slots=True)
class Scope:
    conn: Connection
    who: Principal


def scoped(web: Web, session: SessionDep) -> Iterator[Scope]:
    with in_scope(web.engine(), session) as (conn, who):
        yield Scope(conn, who)


# scope="function": the transaction is committed (or rolled back) before the response goes out.
Scoped = Annotated[Scope, Depends(scoped, scope="function")]


async def viewer(scope: Scoped) -> Principal:
    return scope.who


async def connection(scope: Scoped) -> Connection:
    return scope.conn


Viewer = Annotated[Principal, Depends(viewer)]
Conn = Annotated[Connection, Depends(connection)]


def operator_only(who: Principal) -> Principal:
    """`who`, when an operator; Forbidden (403) for a viewer."""
    if not who.is_operator:
        raise Forbidden()
    return who


async def operator(who: Viewer) -> Principal:
    return operator_only(who)


Operator = Annotated[Principal, Depends(operator)]


def signed_in(web: Web, session: SessionDep) -> Principal:
    with db.transaction(web.engine()) as conn:
        return lookup(conn, session)


SignedIn = Annotated[Principal, Depends(signed_in)]


async def signed_in_operator(who: SignedIn) -> Principal:
    return operator_only(who)


SignedInOperator = Annotated[Principal, Depends(signed_in_operator)]


# -- forms ---------------------------------------------------------------------------------------
async def read_form(request: Request, limit: int = FORM_MAX_BYTES, **options: Any) -> Any:
    """The posted form, capped at `limit` bytes (`web.bodies`: FormTooLarge, 413); it is never held whole
    beyond the cap (Starlette spools file parts to a temporary file). `options`: Starlette's form limits."""
    def refuse(_detail: str) -> FormTooLarge:
        return FormTooLarge(f"{default_message(FormTooLarge)} ({limit} bytes at most)")

    return await bodies.capped(request, limit, refuse).form(**({"max_part_size": FORM_MAX_BYTES} | options))


def check_csrf(console: ConsoleState, session: Session, form: Any) -> None:
    """The form's `csrf` field is the session's token (CsrfRefused otherwise)."""
    console.sessions.check_csrf(session.sid, text_field(form.get("csrf")))


def upload_form(max_bytes: Callable[[], int]) -> Any:
    """The dependency of a one-file upload route: operator first (nothing read for a viewer), then the
    size (None when over `max_bytes()`, read per request, counted as it arrives), then CSRF; the form
    (its spooled file too) is closed once the route is done."""
    async def upload(request: Request, _who: SignedInOperator, console: Console,
                     session: SessionDep) -> AsyncIterator[FormData | None]:
        try:
            form = await read_form(request, max_bytes(), max_files=1, max_fields=8)
        except FormTooLarge:
            yield None
            return
        try:
            check_csrf(console, session, form)
            yield form
        finally:
            await form.close()

    return Annotated[FormData | None, Depends(upload, scope="function")]


def upload_name(filename: str | None, default: str) -> str:
    """An upload's base name (a browser may send a full Windows path), as a one-line label."""
    return (clean_name(PureWindowsPath(filename or "").name) or default)[:100]


async def checked_form(request: Request, console: Console, session: SessionDep) -> dict[str, Any]:
    """The posted form's values, once CSRF-checked."""
    form = await read_form(request)
    check_csrf(console, session, form)
    return dict(form)


PostedForm = Annotated[dict[str, Any], Depends(checked_form)]


def text_field(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def posted_upload(form: Any) -> tuple[int, Any] | str:
    """An upload form's client id and file part, or the message to show when either is missing or bad."""
    try:
        client_id = form_int(dict(form.items()), "client_id")
    except ValueError as exc:
        return str(exc)
    upload = form.get("file")
    if client_id is None or upload is None or isinstance(upload, str):  # a form value is a str or a file
        return "choose a client and a CSV file to import"
    return client_id, upload


def form_int(form: dict[str, Any], name: str) -> int | None:
    """An optional id from a form field (`shared.ids.field_id`): BadNumber, a ValueError naming the field."""
    return ids.field_id(text_field(form.get(name)), name)


def client_filter(raw: str | None, name: str = "client") -> tuple[int | None, str | None]:
    """(the id a list is filtered by, or None for all; a notice when the value was not a number)."""
    if raw is None or raw.strip() == "":
        return None, None
    value = ids.parse_id(raw.strip())
    if value is None:
        return None, f"{name}: {raw[:40]!r} is not a number; showing every {name}"
    return value, None


def path_id(name: str) -> Any:
    """A route's `{name}` path parameter as an id (`shared.ids.parse_id`); NotFound (404) when it is not one.

    Use in an annotation: `BatchId = Annotated[int, path_id("batch_id")]`. FastAPI's own `int` would
    take any size and let Postgres fail on a bigint out of range."""
    def dependency(request: Request) -> int:
        value = ids.parse_id(request.path_params.get(name))
        if value is None:
            raise NotFound()
        return value

    return Depends(dependency)


# -- answers -------------------------------------------------------------------------------------
def render(templates: Environment, template: str, who: Principal | None, csrf: str, *, status: int = 200,
           **context: Any) -> HTMLResponse:
    body = templates.get_template(template).render(who=who, csrf=csrf, prefix=PREFIX, **context)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


@dataclass(frozen=True, slots=True)
class Pages:
    """Rendering for one request: the templates, who is asking, their session's CSRF token."""

    templates: Environment
    who: Principal
    csrf: str

    def page(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.templates, template, self.who, self.csrf, status=status, **context)

    def message(self, status: int, title: str, text: str) -> HTMLResponse:
        return self.page("message.html", status=status, title=title, text=text)

    @classmethod
    def of(cls, web: WebState, console: ConsoleState, session: Session, who: Principal) -> Pages:
        return cls(web.templates, who, console.sessions.csrf_token(session.sid))


async def pages(web: Web, console: Console, session: SessionDep, who: Viewer) -> Pages:
    return Pages.of(web, console, session, who)


async def signed_in_pages(web: Web, console: Console, session: SessionDep, who: SignedIn) -> Pages:
    """Rendering for a route that reads the principal on its own (`SignedIn`)."""
    return Pages.of(web, console, session, who)


Page = Annotated[Pages, Depends(pages)]
SignedInPage = Annotated[Pages, Depends(signed_in_pages)]


def redirect(path: str, notice: str | None = None) -> RedirectResponse:
    target = f"{PREFIX}{path}"
    if notice:
        target += ("&" if "?" in target else "?") + "notice=" + quote(notice, safe="")
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
