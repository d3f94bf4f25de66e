"""Mailbox pages: each mailbox's health against the bounce shield's thresholds; pause/resume for operators.

The read model is `shared.engines.mailboxes.views`; every action is the engine function the CLI
uses, `mailboxes.set_mailbox_status` (as `outbound mailboxes pause/resume`). Lifting a
bounce-shield pause needs an explicit confirmation in the form: nothing resumes one by accident.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import Connection

from shared import errors
from shared.engines.clients import clients
from shared.engines.mailboxes import mailboxes
from shared.engines.mailboxes import views
from shared.engines.replies import shield
from shared.errors import NotFound
from shared.settings import Settings
from web.console.campaigns import confirmed
from web.console.deps import PREFIX, Conn, Operator, Page, PostedForm, client_filter, path_id, redirect
from web.state import SettingsDep

REASON_MAX_CHARS = 500  # a pause reason is a sentence, not a document

router = APIRouter(prefix=PREFIX)
MailboxId = Annotated[int, path_id("mailbox_id")]


def _health(conn: Connection, settings: Settings, client: int | None, mailbox_id: int | None) -> dict[str, Any]:
    """The mailbox pages' read: the shield's thresholds as configured now, each mailbox's health."""
    thresholds = shield.Thresholds.from_settings(settings)
    return {"mailboxes": views.mailbox_health(conn, now=datetime.now(UTC), thresholds=thresholds, client_id=client,
                                              mailbox_id=mailbox_id),
            "clients": clients.visible(conn), "thresholds": thresholds}


@router.get("/mailboxes")
def mailbox_list(view: Page, conn: Conn, settings: SettingsDep, client: str | None = None,
                 notice: str | None = None) -> Response:
    client_id, problem = client_filter(client)
    return view.page("mailboxes.html", client=client_id, notice=notice or problem, single=False,
                     **_health(conn, settings, client_id, None))


@router.get("/mailboxes/{mailbox_id}")
def mailbox_page(mailbox_id: MailboxId, view: Page, conn: Conn, settings: SettingsDep,
                 notice: str | None = None) -> Response:
    data = _health(conn, settings, None, mailbox_id)
    if not data["mailboxes"]:
        raise NotFound()
    return view.page("mailboxes.html", client=None, notice=notice, single=True, **data)


@router.post("/mailboxes/{mailbox_id}/pause")
def mailbox_pause(mailbox_id: MailboxId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    box = views.mailbox(conn, mailbox_id)
    if box is None:
        raise NotFound()
    reason = " ".join(str(form.get("reason") or "").split())[:REASON_MAX_CHARS]
    try:
        mailboxes.set_mailbox_status(conn, box["client_id"], box["from_address"], paused=True, reason=reason)
    except errors.OutreachError as exc:
        return redirect(f"/mailboxes/{mailbox_id}", str(exc))
    return redirect(f"/mailboxes/{mailbox_id}", f"{box['from_address']} paused: {reason}")


@router.post("/mailboxes/{mailbox_id}/resume")
def mailbox_resume(mailbox_id: MailboxId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    box = views.mailbox(conn, mailbox_id)
    if box is None:
        raise NotFound()
    if box["status"] != "paused":
        notice = f"{box['from_address']} is not paused"
    elif views.shield_paused(box["status_reason"]) and not confirmed(form):
        notice = "the bounce shield paused this mailbox: tick the confirmation to resume it"
    else:
        mailboxes.set_mailbox_status(conn, box["client_id"], box["from_address"], paused=False, reason=None)
        notice = f"{box['from_address']} is active"
    return redirect(f"/mailboxes/{mailbox_id}", notice)
