"""`make demo`, part three: leads answer mid-week, some through the signed webhook, some only in the IMAP inbox.

Wednesday noon of the simulated week: two leads reply and one sends a German out-of-office
through the inbound webhook (Standard Webhooks signature, real HTTP to the web app); two more
replies and one hard bounce (an RFC 3464 report) reach only the mailbox's IMAP inbox (pymap,
started locally) — the webhooks "missed" them. All six are in the inbox, as they would be. The
`reply_recovery` flow then reads the inbox from its cursor and backfills exactly the three the
webhooks missed. The rest of the week shows which sends did not go out because of them.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

WEBHOOK_EVENTS = (("reply", "Yes, happy to talk. Does Thursday work?"), ("reply", "Sure, send me times."),
                  ("auto_reply", None))
IMAP_ONLY_EVENTS = (("reply", "Interesting, can you share pricing?"), ("reply", "Let's chat next week."),
                    ("hard_bounce", None))


def _reply(m: Any, body: str, *, auto: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = m.email
    msg["To"] = m.from_address
    msg["Subject"] = f"Abwesenheitsnotiz: {m.subject}" if auto else f"Re: {m.subject}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{uuid.uuid4()}@{m.email.rpartition('@')[2]}>"
    msg["In-Reply-To"] = m.message_id
    msg["References"] = m.message_id
    if auto:
        msg["Auto-Submitted"] = "auto-replied"
        body = "Ich bin bis zum 30.11. nicht im Büro und habe keinen Zugriff auf meine E-Mails."
    msg.set_content(body)
    return msg.as_bytes()


def _bounce(m: Any) -> bytes:
    """A Postfix-style RFC 3464 delivery status notification for `m` (text, delivery-status, returned headers)."""
    b = f"dsn-{uuid.uuid4().hex}"
    return (
        f"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.demo-agency.test (Mail Delivery System)\r\n"
        f"To: {m.from_address}\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <{uuid.uuid4()}@mx.demo-agency.test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{b}\"\r\n\r\n"
        f"--{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"<{m.email}>: host mx said: 550 5.1.1 User unknown\r\n\r\n"
        f"--{b}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.demo-agency.test\r\n\r\n"
        f"Final-Recipient: rfc822; {m.email}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
        f"--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {m.from_address}\r\nTo: {m.email}\r\nSubject: {m.subject}\r\nMessage-ID: {m.message_id}\r\n\r\n"
        f"--{b}--\r\n"
    ).encode()


def _signed(raw: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    from standardwebhooks.webhooks import Webhook

    body = json.dumps({"raw_base64": base64.b64encode(raw).decode()})
    wid, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    return body.encode(), {"webhook-id": wid, "webhook-timestamp": str(int(now.timestamp())),
                           "webhook-signature": Webhook(secret).sign(wid, now, body),
                           "content-type": "application/json"}


def replies_midweek(campaign_id: int, *, base: str, webhook_secret: str, imap: Any, mailbox_address: str,
                    exclude: str, console: Console) -> dict[str, Any]:
    """Deliver the six events, run reply recovery, return who did what (for the end-of-week report)."""
    import httpx

    from orchestrator.flows.replies import reply_recovery
    from shared import db
    from shared.engines.replies import ingest

    with db.transaction() as conn:
        sent = ingest.sent_messages(conn, campaign_id, step=1, mailbox_address=mailbox_address, exclude_email=exclude)
    events = [*((k, b, "webhook") for k, b in WEBHOOK_EVENTS), *((k, b, "imap only") for k, b in IMAP_ONLY_EVENTS)]
    events = events[:len(sent)]
    console.rule("[bold]replies: Wednesday noon, six leads answer")
    rows = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for (kind, body, path), m in zip(events, sent):
            raw = _bounce(m) if kind == "hard_bounce" else _reply(m, body or "", auto=kind == "auto_reply")
            imap.append("INBOX", raw)  # every message reaches the inbox; only some reach the webhook
            status = "-"
            if path == "webhook":
                payload, headers = _signed(raw, webhook_secret)
                status = str(http.post("/webhooks/inbound", content=payload, headers=headers).status_code)
            rows.append({"lead_id": m.lead_id, "email": m.email, "event": kind, "path": path, "http": status})
    table = Table("lead", "event", "arrived via", "webhook HTTP", title="Received mail (all six are in the IMAP inbox)")
    for r in rows:
        table.add_row(r["email"], r["event"], r["path"], r["http"])
    console.print(table)
    recovered = reply_recovery()
    console.print(Markdown(recovered["markdown"]))
    return {"events": rows, "backfilled": recovered["backfilled"]}


def report_after_week(campaign_id: int, events: list[dict[str, Any]], console: Console) -> dict[str, Any]:
    """Which sends did not go out because of a reply or bounce (steps after the last one sent)."""
    from shared import db
    from shared.engines.replies import ingest

    with db.transaction() as conn:
        after = ingest.lead_outcomes(conn, campaign_id, [e["lead_id"] for e in events])
    table = Table("lead", "event", "steps sent", "sends that will not go out", "enrollment",
                  title="What the replies and the bounce changed")
    not_sent = 0
    for e in events:
        a = after[e["lead_id"]]
        not_sent += a["not_sent"]
        table.add_row(e["email"], e["event"], str(a["sent"]), str(a["not_sent"]), a["enrollment"])
    console.print(table)
    console.print(f"{not_sent} follow-ups did not go out because of these replies and the bounce; "
                  "the out-of-office did not stop its sequence")
    return {"not_sent": not_sent, "per_lead": {e["email"]: after[e["lead_id"]] for e in events}}
