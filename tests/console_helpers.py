"""Console test helpers: accounts, a signed-in HTTP client, the CSRF token of a page."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from shared.engines.users import users

PASSWORD = "correct horse battery staple"
SECRET = "test-console-secret-0123456789abcdef"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Accounts:
    operator: str
    viewer_a: str
    viewer_b: str


def accounts(engine: Engine, client_a: int, client_b: int) -> Accounts:
    with engine.begin() as conn:
        users.create_user(conn, "ops@agency.test", PASSWORD, role="operator")
        users.create_user(conn, "viewer@a.test", PASSWORD, role="viewer", client_id=client_a)
        users.create_user(conn, "viewer@b.test", PASSWORD, role="viewer", client_id=client_b)
    return Accounts("ops@agency.test", "viewer@a.test", "viewer@b.test")


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a csrf token"
    return found.group(1)


def sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    """GET the form (its cookie and token), POST it; the client keeps the session cookie."""
    form = client.get("/console/login")
    assert form.status_code == 200, form.text
    return client.post("/console/login", data={"email": email, "password": password, "csrf": csrf_of(form.text),
                                               "next": "/console/batches"})


def post_form(client: httpx.Client, page: str, action: str, data: dict | None = None, **kwargs) -> httpx.Response:
    """POST `action` with the csrf token read from `page` (as a browser submitting that page's form)."""
    token = csrf_of(client.get(page).text)
    return client.post(action, data={"csrf": token, **(data or {})}, **kwargs)


def signed_in(app, email: str) -> TestClient:
    """A test client of `app`, signed in as `email` (redirects not followed: tests read them)."""
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    assert sign_in(c, email).status_code == 303
    return c
