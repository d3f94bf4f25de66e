"""Mailbox pages: each mailbox's health against the bounce shield's thresholds; add, edit, test, pause, resume.

The read model is `shared.engines.mailboxes.views`; every action is the engine function the CLI
uses: `add_mailbox`, `update_mailbox`, `probe_connection` (`outbound mailboxes add/test`),
`set_mailbox_status` (`outbound mailboxes pause/resume`). A form names the password's Secret, never
the password. Lifting a bounce-shield pause needs an explicit confirmation: nothing resumes one by accident.
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
from web.console.deps import (PREFIX, Conn, Operator, Page, PostedForm, SessionDep, SignedInOperator, SignedInPage,
                              client_filter, form_int, in_scope, path_id, redirect, text_field)
from web.state import SettingsDep, Web

REASON_MAX_CHARS = 500  # a pause reason is a sentence, not a document
# The settings form's numbers: (field, label, smallest, largest); the CLI's option names in the labels.
NUMBERS = (("smtp_port", "port", 1, 65535), ("imap_port", "imap port", 1, 65535), ("daily_cap", "daily cap", 0, 100000),
           ("min_gap_seconds", "gap", 0, 86400 * 7), ("ramp_start", "ramp start", 0, 100000),
           ("ramp_step", "ramp step", 0, 100000), ("ramp_ceiling", "ramp ceiling", 0, 100000))
TEXTS = ("from_address", "smtp_host", "tls_mode", "username", "secret_name", "imap_host", "imap_tls_mode")
DEFAULTS = {"smtp_port": 587, "daily_cap": 50, "min_gap_seconds": 600, "ramp_step": 0, "imap_port": 993}
BLANK = dict.fromkeys(mailboxes.MAILBOX_COLUMNS) | DEFAULTS | {"tls_mode": "starttls", "imap_tls_mode": "tls"}  # the add form

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
    return view.page("mailboxes.html", client=client_id, notice=notice or problem, single=False, blank=BLANK,
                     **_health(conn, settings, client_id, None))


@router.get("/mailboxes/{mailbox_id}")
def mailbox_page(mailbox_id: MailboxId, view: Page, conn: Conn, settings: SettingsDep,
                 notice: str | None = None) -> Response:
    data = _health(conn, settings, None, mailbox_id)
    if not data["mailboxes"]:
        raise NotFound()
    settings_now = mailboxes.mailbox_settings(conn, data["mailboxes"][0]["client_id"], mailbox_id=mailbox_id)
    return view.page("mailboxes.html", client=None, notice=notice, single=True, settings=settings_now, **data)


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


def _number(form: dict[str, Any], name: str, label: str, low: int, high: int) -> int | None:
    raw = (text_field(form.get(name)) or "").strip()
    if not raw:
        return DEFAULTS.get(name)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not low <= int(raw) <= high:  # "²".isdigit()
        raise errors.OutreachError(f"{label} must be a whole number from {low} to {high}, got {raw[:40]!r}")
    return int(raw)


def settings_of(form: dict[str, Any]) -> dict[str, Any]:
    """The settings form's fields for `add_mailbox`/`update_mailbox` (blank: the CLI's default, or none)."""
    values: dict[str, Any] = {k: (text_field(form.get(k)) or "").strip() or None for k in TEXTS}
    if values["smtp_host"] is None:
        raise errors.OutreachError("an SMTP host is required (--host)")
    values |= {name: _number(form, name, label, low, high) for name, label, low, high in NUMBERS}
    if values["imap_host"] is None:
        values["imap_port"] = None  # as the CLI: no IMAP host, no port
    return values


@router.post("/mailboxes")
def mailbox_add(form: PostedForm, _who: Operator, conn: Conn) -> Response:
    try:
        client_id = form_int(form, "client")
        if client_id is None or client_id not in {c["id"] for c in clients.visible(conn)}:
            raise errors.OutreachError("choose the client the mailbox sends for")
        values = settings_of(form)
        box = mailboxes.add_mailbox(conn, client_id, **values)
    except (errors.OutreachError, ValueError) as exc:
        return redirect("/mailboxes", str(exc))
    return redirect(f"/mailboxes/{box}", f"mailbox {values['from_address']} (id {box}) is active")


@router.post("/mailboxes/{mailbox_id}/edit")
def mailbox_edit(mailbox_id: MailboxId, form: PostedForm, _who: Operator, conn: Conn) -> Response:
    box = views.mailbox(conn, mailbox_id)
    if box is None:
        raise NotFound()
    current = mailboxes.mailbox_settings(conn, box["client_id"], mailbox_id=mailbox_id) or {}
    try:
        values = settings_of(form)
        mailboxes.update_mailbox(conn, box["client_id"], mailbox_id, **(current | values))
    except errors.OutreachError as exc:
        return redirect(f"/mailboxes/{mailbox_id}", str(exc))
    return redirect(f"/mailboxes/{mailbox_id}", f"mailbox {values['from_address']} saved")


@router.post("/mailboxes/{mailbox_id}/test")
def mailbox_test(mailbox_id: MailboxId, _form: PostedForm, _who: SignedInOperator, view: SignedInPage, web: Web,
                 session: SessionDep, settings: SettingsDep) -> Response:
    """Read in a transaction of its own, then probe with none open: a slow server holds no database connection."""
    with in_scope(web.engine(), session) as (conn, _):
        box = views.mailbox(conn, mailbox_id)
        if box is None:
            raise NotFound()
        current = mailboxes.mailbox_settings(conn, box["client_id"], mailbox_id=mailbox_id)
        data = _health(conn, settings, None, mailbox_id)
    probes = mailboxes.probe_connection(current)
    return view.page("mailboxes.html", client=None, notice=None, single=True, probes=probes, settings=current, **data)
