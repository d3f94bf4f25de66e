"""What each enrolled lead waits for: the scheduler's own decision (`scheduler.explain`), for `outbound outreach due`.

A lead's row: its next step, the mailbox it goes (or would go) from, when it is sent ("now" when
the next pass sends it) and what holds it otherwise: the delay not passed, the window closed in
its time zone, the mailbox's cap reached, its gap, paused or backing off after SMTP failures.
Leads whose step is already queued or being sent (a work item in flight) are not listed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from shared.engines.outreach import scheduler, store

HORIZON = timedelta(days=366)  # enrollments due later than this are not read


def due(conn: Connection, now: datetime, *, campaign_id: int | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
    """Every active enrollment's next send at `now`, in the order the scheduler would take them."""
    later = store.planning_inputs(conn, now + HORIZON, campaign_id=campaign_id, limit=limit)
    mailboxes = store.mailbox_states(conn, sorted({c.client_id for c in later.candidates}), now)
    decisions = scheduler.explain(now, later.candidates, later.windows, mailboxes)
    states = {m.id: m for m in mailboxes}
    emails, boxes, campaigns = store.due_labels(
        conn, [d.candidate.lead_id for d in decisions], [m.id for m in mailboxes],
        sorted({d.candidate.campaign_id for d in decisions}))
    return [_row(d, now, emails, boxes, campaigns, states) for d in decisions]


def _row(d: scheduler.Decision, now: datetime, emails: dict[int, str], boxes: dict[int, str],
         campaigns: dict[int, str], states: dict[int, scheduler.MailboxState]) -> dict[str, Any]:
    c = d.candidate
    box = states.get(d.mailbox_id) if d.mailbox_id is not None else None
    at = now if d.send is not None else d.until
    return {"lead_id": c.lead_id, "email": emails.get(c.lead_id), "campaign_id": c.campaign_id,
            "campaign": campaigns.get(c.campaign_id), "step": c.step,
            "mailbox": boxes.get(d.mailbox_id) if d.mailbox_id is not None else None,
            "next_send_at": at.isoformat() if at is not None else None,
            "hold": d.hold, "mailbox_reason": box.reason if box is not None and d.hold in (
                scheduler.PAUSED, scheduler.BACKING_OFF) else None}
