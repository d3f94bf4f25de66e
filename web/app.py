"""The ASGI app: RFC 8058 one-click unsubscribe (POST) and its confirmation page (GET).

`outbound serve` runs it with uvicorn; `modal_apps/web.py` serves the same factory as a Modal
web endpoint. A token is checked (HMAC) before anything is read; the message it names is then
looked up in Postgres, and only that message's lead is suppressed, within its own client.
"""

from __future__ import annotations

import html
import logging

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy import Engine

from shared.db import get_engine
from shared.engines.outreach import suppression
from shared.settings import get_settings

log = logging.getLogger(__name__)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def create_app(engine: Engine | None = None, secret: str | None = None) -> FastAPI:
    app = FastAPI(title="outbound", docs_url=None, redoc_url=None, openapi_url=None)

    def _secret() -> str:
        value = secret or (s.get_secret_value() if (s := get_settings().outreach_secret) else "")
        if not value:
            raise RuntimeError("OUTREACH_SECRET is not set")
        return value

    def _engine() -> Engine:
        return engine or get_engine()

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.post("/u/{token}", response_class=PlainTextResponse)
    async def one_click(token: str, request: Request) -> PlainTextResponse:
        """RFC 8058: the mailbox provider POSTs `List-Unsubscribe=One-Click`; we answer 200, no redirect."""
        pk = suppression.read_token(token, _secret())
        if pk is None:
            return PlainTextResponse("invalid unsubscribe link\n", status_code=403)
        with _engine().begin() as conn:
            done = suppression.unsubscribe_message(conn, pk, source="one-click")
        if done is None:
            return PlainTextResponse("unknown unsubscribe link\n", status_code=404)
        log.info("message_pk=%s unsubscribed (one-click)", pk)
        return PlainTextResponse("unsubscribed\n", status_code=200)

    @app.get("/u/{token}", response_class=HTMLResponse)
    def confirm(token: str) -> HTMLResponse:
        """A person who clicks the link sees a page with a button; a GET alone never unsubscribes
        (link scanners follow GETs)."""
        if suppression.read_token(token, _secret()) is None:
            return HTMLResponse(_PAGE.format(title="Invalid link", text="This unsubscribe link is not valid.",
                                             form=""), status_code=403)
        form = (f'<form method="post" action="/u/{html.escape(token)}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                '<button type="submit">Unsubscribe</button></form>')
        return HTMLResponse(_PAGE.format(title="Unsubscribe", text="Stop all further emails to this address?",
                                         form=form))

    return app
