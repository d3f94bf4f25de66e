"""The console's mailbox pages: one mailbox's row, and health per mailbox (sent vs cap, ramp, shield rates).

Run inside the signed-in user's role scope: a viewer's transaction sees only its client's rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.clients.clients import visible as visible_clients
from shared.engines.mailboxes import mailboxes
from shared.engines.replies import shield


def mailbox(conn: Connection, mailbox_id: int) -> dict[str, Any] | None:
    """A mailbox's id, client, address and status; None: missing or not the viewer's."""
    row = conn.execute(text("SELECT m.id, m.client_id, cl.name AS client, m.from_address, m.status, m.status_reason "
                            "FROM mailboxes m "
                            "JOIN clients cl ON cl.id = m.client_id WHERE m.id = :m"), {"m": mailbox_id}).first()
    return None if row is None else dict(row._mapping)


def mailbox_health(conn: Connection, *, now: datetime, thresholds: shield.Thresholds,
                   client_id: int | None = None, mailbox_id: int | None = None) -> list[dict[str, Any]]:
    """Per mailbox: sent in 24 h vs today's cap, ramp day, the shield's rates over its window, status."""
    out = []
    for c in visible_clients(conn):
        if client_id is not None and c["id"] != client_id:
            continue
        for m in mailboxes.list_mailboxes(conn, c["id"], now):
            if mailbox_id is not None and m["id"] != mailbox_id:
                continue
            r = shield.rates(conn, client_id=c["id"], mailbox_id=m["id"], now=now, window_days=thresholds.window_days)
            out.append(m | {"client_id": c["id"], "client": c["name"], "rates": r,
                            "judged": r.sends >= thresholds.min_sends,
                            "shield_paused": shield_paused(m["status_reason"])})
    return out


def shield_paused(reason: str | None) -> bool:
    """Did the bounce shield pause this (its reason starts with the shield's prefix)?"""
    return (reason or "").startswith(shield.SHIELD_PREFIX)
