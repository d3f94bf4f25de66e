"""The ASGI app: RFC 8058 one-click unsubscribe (POST) and its confirmation page (GET), inbound-mail webhooks.

`outbound serve` runs it with uvicorn; `modal_apps/web.py` serves the same factory as a Modal
web endpoint. A token is checked (HMAC) before anything is read; the message it names is then
looked up in Postgres, and only that message's lead is suppressed, within its own client.

The operator console lives under /console (web/console: sign-in, batches, lead stories,
campaigns and mailboxes, suppressions), on when CONSOLE_SECRET (or `console_secret`) is given.

Inbound mail: POST /webhooks/inbound (Standard Webhooks, secret STANDARD_WEBHOOK_SECRET) and
POST /webhooks/mailgun/mime (a Mailgun route's forward(); the URL ends in `mime` so the raw
message is posted; MAILGUN_SIGNING_KEY).
The declared Content-Length is checked before the body is read (413), the body is read with a
cap, the signature and timestamp are verified (401), the MIME is parsed (422 with the reason),
then the message is stored and only then acted on (`shared.engines.replies.ingest`). A replay
answers 200 and changes nothing. Which client the mail belongs to is decided by the send it
matches, read from Postgres; unmatched mail is stored and reported, never acted on.

Every response passes web.security's middleware (CSP, frame-ancestors, no-store, redirects only to
trusted hosts); web.logmask masks tokens in every log line.
"""

from __future__ import annotations

import html
import logging

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from sqlalchemy import Engine
from fastapi.concurrency import run_in_threadpool

from shared.db import get_engine
from web import console, logmask
from web.security import SecurityHeaders
from shared.engines.outreach import suppression
from shared.engines.replies import ingest, webhooks
from shared.errors import BadSignature, BodyTooLarge, WebhookError
from shared.settings import get_settings

log = logging.getLogger(__name__)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def create_app(engine: Engine | None = None, secret: str | None = None, console_secret: str | None = None) -> FastAPI:
    """The app; `console_secret` (else CONSOLE_SECRET) turns the operator console on at /console."""
    app = FastAPI(title="outbound", docs_url=None, redoc_url=None, openapi_url=None)
    logmask.install()  # tokens (/u/<token> in uvicorn's access log) never reach a log line

    def _secret() -> str:
        value = secret or (s.get_secret_value() if (s := get_settings().outreach_secret) else "")
        if not value:
            raise RuntimeError("OUTREACH_SECRET is not set")
        return value

    def _engine() -> Engine:
        return engine or get_engine()

    settings = get_settings()
    console.mount(app, _engine, console_secret or (cs.get_secret_value() if (cs := settings.console_secret) else None),
                  secure_cookies=settings.public_base_url.startswith("https://"))

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

    async def _body(request: Request, limit: int) -> bytes:
        """The body, refused (413) as soon as it passes `limit`, whatever Content-Length said."""
        webhooks.check_size(request.headers.get("content-length"), limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"more than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _accept(verified: webhooks.InboundMessage, provider: str) -> JSONResponse:
        settings = get_settings()
        received = ingest.Received(verified.raw, verified.message, "webhook", provider=provider,
                                   webhook_id=verified.delivery_id, envelope_to=verified.envelope_to,
                                   auth=verified.auth)
        result = await run_in_threadpool(ingest.ingest, _engine(), received, settings=settings)
        log.info("inbound_id=%s %s: %s, %s", result.inbound_id, webhooks.summary(verified), result.kind,
                 "replay" if not result.new else (result.outcome or "stored"))
        return JSONResponse({"stored": result.inbound_id, "duplicate": not result.new, "kind": result.kind,
                             "matched": result.match is not None and not result.ours,
                             "verified": result.verified})

    def _refuse(exc: WebhookError) -> PlainTextResponse:
        log.warning("webhook refused (%s): %s", exc.status, exc)
        return PlainTextResponse(f"{exc}\n", status_code=exc.status)

    @app.post("/webhooks/inbound")
    async def inbound_standard(request: Request):  # type: ignore[no-untyped-def]
        """A received message, signed with Standard Webhooks (body shape: shared/engines/replies/webhooks.py)."""
        settings = get_settings()
        try:
            body = await _body(request, settings.webhook_max_bytes)
            secret = settings.standard_webhook_secret
            if secret is None:
                raise BadSignature("no STANDARD_WEBHOOK_SECRET configured")
            verified = webhooks.verify_standard(body, dict(request.headers), secret.get_secret_value(),
                                                max_bytes=settings.webhook_max_bytes)
        except WebhookError as exc:
            return _refuse(exc)
        return await _accept(verified, "standard_webhooks")

    @app.post("/webhooks/mailgun")
    @app.post("/webhooks/mailgun/mime")  # Mailgun posts the raw message only to URLs ending in "mime"
    async def inbound_mailgun(request: Request):  # type: ignore[no-untyped-def]
        """A Mailgun route's forward() to a URL ending in `mime` (raw MIME in `body-mime`)."""
        settings = get_settings()
        try:
            body = await _body(request, settings.webhook_max_bytes)
            key = settings.mailgun_signing_key
            verified = webhooks.verify_mailgun(body, request.headers.get("content-type", ""),
                                               key.get_secret_value() if key else "",
                                               max_bytes=settings.webhook_max_bytes)
        except WebhookError as exc:
            return _refuse(exc)
        return await _accept(verified, "mailgun")

    app.add_middleware(SecurityHeaders, trusted_origin=settings.public_base_url)
    return app
