"""The ASGI app: RFC 8058 one-click unsubscribe (POST) and its confirmation page (GET), inbound-mail webhooks.

`outbound serve` runs it with uvicorn; `modal_apps/web.py` serves the same factory as a Modal
web endpoint. A token is checked (HMAC) before anything is read; the message it names is then
looked up in Postgres, and only that message's lead is suppressed, within its own client. The
confirmation page is a template (web/console/templates/unsubscribe.html), autoescaped like the console's.

The operator console lives under /console (web/console: sign-in, batches, lead stories,
campaigns, mailboxes, suppressions), on when CONSOLE_SECRET (or `console_secret`) is given.

Inbound mail: POST /webhooks/inbound (Standard Webhooks, secret STANDARD_WEBHOOK_SECRET) and
POST /webhooks/mailgun/mime (a Mailgun route's forward(); the URL ends in `mime` so the raw
message is posted; MAILGUN_SIGNING_KEY).
The declared Content-Length is checked before the body is read (413), the body is read with a
cap, the signature and timestamp are verified (401), the MIME is parsed (422 with the reason),
then the message is stored and only then acted on (`shared.engines.replies.ingest`). A replay
answers 200 and changes nothing. Which client the mail belongs to is decided by the send it
matches, read from Postgres; unmatched mail is stored and reported, never acted on.

The routes are module-level routers: web/public.py (health, /u/, webhooks) and web/console's; what
they share (engine, secret, templates) is `app.state.web` (web/state.py), handed to them as
FastAPI dependencies. Request bodies are capped in one place, web/bodies.py.

Every response passes web.security's middleware (CSP, frame-ancestors, no-store, redirects only to
trusted hosts); web.logmask masks tokens in every log line.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from web import console, logmask, public, state
from web.security import SecurityHeaders
from shared.settings import get_settings


def create_app(engine: Engine | None = None, secret: str | None = None, console_secret: str | None = None) -> FastAPI:
    """The app; `console_secret` (else CONSOLE_SECRET) turns the operator console on at /console."""
    app = FastAPI(title="outbound", docs_url=None, redoc_url=None, openapi_url=None)
    logmask.install()  # tokens (/u/<token> in uvicorn's access log) never reach a log line
    settings = get_settings()
    app.state.web = state.WebState(engine, secret, state.templates())
    console.mount(app, console_secret or (cs.get_secret_value() if (cs := settings.console_secret) else None),
                  secure_cookies=settings.public_base_url.startswith("https://"))
    app.include_router(public.router)
    app.add_middleware(SecurityHeaders, trusted_origin=settings.public_base_url)
    return app
