"""The public endpoints: a health check, RFC 8058 one-click unsubscribe (POST) and its confirmation page (GET),
inbound-mail webhooks. What each one does is described in web/app.py's docstring.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from shared import db
from shared.engines.outreach import suppression
from shared.engines.replies import ingest, webhooks
from shared.errors import BadSignature, BodyTooLarge, WebhookError
from shared.settings import Settings
from web import bodies
from web.state import SettingsDep, Web, WebState

log = logging.getLogger("web.app")  # the logger name these lines have always had

router = APIRouter()


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


@router.post("/u/{token}", response_class=PlainTextResponse)
def one_click(token: str, web: Web) -> PlainTextResponse:
    """RFC 8058: the mailbox provider POSTs `List-Unsubscribe=One-Click`; we answer 200, no redirect."""
    pk = suppression.read_token(token, web.outreach_secret())
    if pk is None:
        return PlainTextResponse("invalid unsubscribe link\n", status_code=403)
    with db.transaction(web.engine()) as conn:
        done = suppression.unsubscribe_message(conn, pk, source="one-click")
    if done is None:
        return PlainTextResponse("unknown unsubscribe link\n", status_code=404)
    log.info("message_pk=%s unsubscribed (one-click)", pk)
    return PlainTextResponse("unsubscribed\n", status_code=200)


@router.get("/u/{token}", response_class=HTMLResponse)
def confirm(token: str, web: Web) -> HTMLResponse:
    """A person who clicks the link sees a page with a button; a GET alone never unsubscribes
    (link scanners follow GETs)."""
    page = web.templates.get_template("unsubscribe.html")
    if suppression.read_token(token, web.outreach_secret()) is None:
        return HTMLResponse(page.render(title="Invalid link", text="This unsubscribe link is not valid."),
                            status_code=403)
    return HTMLResponse(page.render(title="Unsubscribe", text="Stop all further emails to this address?",
                                    token=token))


async def _body(request: Request, limit: int) -> bytes:
    """The body (web.bodies' cap), after the engine's own check of the declared length (422 when not a number)."""
    webhooks.check_size(request.headers.get("content-length"), limit)
    return await bodies.read(request, limit, BodyTooLarge)


async def _accept(web: WebState, settings: Settings, verified: webhooks.InboundMessage,
                  provider: str) -> JSONResponse:
    received = ingest.Received(verified.raw, verified.message, "webhook", provider=provider,
                               webhook_id=verified.delivery_id, envelope_to=verified.envelope_to,
                               auth=verified.auth)
    result = await run_in_threadpool(ingest.ingest, web.engine(), received, settings=settings)
    log.info("inbound_id=%s %s: %s, %s", result.inbound_id, webhooks.summary(verified), result.kind,
             "replay" if not result.new else (result.outcome or "stored"))
    return JSONResponse({"stored": result.inbound_id, "duplicate": not result.new, "kind": result.kind,
                         "matched": result.match is not None and not result.ours,
                         "verified": result.verified})


def _refuse(exc: WebhookError) -> PlainTextResponse:
    log.warning("webhook refused (%s): %s", exc.status, exc)
    return PlainTextResponse(f"{exc}\n", status_code=exc.status)


@router.post("/webhooks/inbound")
async def inbound_standard(request: Request, web: Web, settings: SettingsDep):  # type: ignore[no-untyped-def]
    """A received message, signed with Standard Webhooks (body shape: shared/engines/replies/webhooks.py)."""
    try:
        body = await _body(request, settings.webhook_max_bytes)
        secret = settings.standard_webhook_secret
        if secret is None:
            raise BadSignature("no STANDARD_WEBHOOK_SECRET configured")
        verified = webhooks.verify_standard(body, dict(request.headers), secret.get_secret_value(),
                                            max_bytes=settings.webhook_max_bytes)
    except WebhookError as exc:
        return _refuse(exc)
    return await _accept(web, settings, verified, "standard_webhooks")


@router.post("/webhooks/mailgun")
@router.post("/webhooks/mailgun/mime")  # Mailgun posts the raw message only to URLs ending in "mime"
async def inbound_mailgun(request: Request, web: Web, settings: SettingsDep):  # type: ignore[no-untyped-def]
    """A Mailgun route's forward() to a URL ending in `mime` (raw MIME in `body-mime`)."""
    try:
        body = await _body(request, settings.webhook_max_bytes)
        key = settings.mailgun_signing_key
        verified = webhooks.verify_mailgun(body, request.headers.get("content-type", ""),
                                           key.get_secret_value() if key else "",
                                           max_bytes=settings.webhook_max_bytes)
    except WebhookError as exc:
        return _refuse(exc)
    return await _accept(web, settings, verified, "mailgun")
