"""Signing in and out: the sign-in form (tied to a signed pre-session cookie), the session cookie, sign-out everywhere."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from shared import db
from shared.engines.users import users
from shared.engines.users.users import Principal
from shared.errors import SignInRefused
from web.console.auth import LOGIN_COOKIE, LOGIN_FORM_SECONDS, SESSION_COOKIE, SESSION_SECONDS
from web.console.deps import (PREFIX, Console, ConsoleState, PostedForm, SignedIn, read_form, redirect, render,
                              text_field)
from web.state import Web, WebState

log = logging.getLogger("web.console")  # the logger name these lines have always had

router = APIRouter(prefix=PREFIX)


def _safe_next(raw: str | None) -> str:
    """Only a path inside the console: never an open redirect (`//evil`, `/console@evil`, a scheme)."""
    if not raw or not raw.startswith(PREFIX + "/") or raw.startswith("//") or "\\" in raw or "\n" in raw:
        return f"{PREFIX}/batches"
    return raw


def _form(web: WebState, console: ConsoleState, *, status: int = 200, **context: object) -> Response:
    """The sign-in form with a fresh pre-session cookie and its token."""
    cookie, token = console.sessions.login_nonce()
    response = render(web.templates, "login.html", None, "", status=status, login_csrf=token, **context)
    response.set_cookie(LOGIN_COOKIE, cookie, **console.sessions.cookie_options(LOGIN_FORM_SECONDS))
    return response


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def home() -> Response:
    return redirect("/batches")


@router.get("/login")
async def login_form(web: Web, console: Console, next: str | None = None, error: str | None = None) -> Response:
    return _form(web, console, next=_safe_next(next), error=error)


def _attempt(web: WebState, email: str, password: str) -> Principal | SignInRefused:
    with db.transaction(web.engine()) as conn:  # failed attempts must be committed, so not raised out
        try:
            return users.authenticate(conn, email, password)
        except SignInRefused as exc:
            return exc


async def _login_form(request: Request, console: Console) -> dict[str, Any]:
    """The posted sign-in form, once its `csrf` field matched the pre-session cookie (CsrfRefused otherwise)."""
    form = await read_form(request)
    console.sessions.check_login_form(request.cookies.get(LOGIN_COOKIE), text_field(form.get("csrf")))
    return dict(form)


LoginForm = Annotated[dict[str, Any], Depends(_login_form)]


@router.post("/login")
async def login(form: LoginForm, web: Web, console: Console) -> Response:
    email, password = text_field(form.get("email")) or "", text_field(form.get("password")) or ""
    outcome = await run_in_threadpool(_attempt, web, email, password)
    target = _safe_next(text_field(form.get("next")))
    if isinstance(outcome, SignInRefused):
        log.info("console: sign-in refused (%s)", type(outcome).__name__)
        return _form(web, console, status=401, next=target, error=str(outcome), email=email)
    value, _session = console.sessions.issue(outcome.user_id, outcome.session_epoch)
    log.info("console: user_id=%s signed in (%s)", outcome.user_id, outcome.role)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, value, **console.sessions.cookie_options(SESSION_SECONDS))
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(who: SignedIn, _csrf: PostedForm, web: Web) -> Response:
    with db.transaction(web.engine()) as conn:
        users.end_sessions(conn, who.user_id)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
