"""The Sent-folder reconciler: decide what happened to sends that are in doubt, without resending.

A send is in doubt when DATA started and no 250 was recorded (the connection dropped, or the
worker died between the 250 and its commit). Gmail and most providers file submitted mail in
the Sent folder, so the deterministic Message-ID is looked up there over IMAP:
found → 'sent' (the enrollment moves on); not found → 'unknown', held for the operator
(`outbound mailboxes in-doubt`). Nothing here ever sends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from shared.db import transaction
from shared.engines.outreach import sending
from shared.errors import ImapError
from shared.integrations import imap
from shared.integrations.smtp import lookup_secret

log = logging.getLogger(__name__)

FOUND_REPLY = "reconciled: Message-ID found in the Sent folder"


@dataclass(slots=True)
class Reconciled:
    sent: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    unchecked: dict[int, str] = field(default_factory=dict)  # message pk → why it could not be checked


def reconcile(engine: Engine, *, client_id: int | None = None, stale_after_seconds: float = 15 * 60) -> Reconciled:
    """Resolve every in-doubt message (of one client, or all) from its mailbox's Sent folder."""
    with transaction(engine) as conn:
        sending.stale_sending(conn, older_than_seconds=stale_after_seconds)
        rows = conn.execute(
            text("SELECT s.id, s.message_id, s.reserved_at, m.id AS mailbox_id, m.imap_host, m.imap_port, "
                 "m.imap_tls_mode, m.username, m.secret_name, m.sent_folder, m.from_address "
                 "FROM messages s JOIN mailboxes m ON m.id = s.mailbox_id AND m.client_id = s.client_id "
                 "WHERE s.status = 'in_doubt' AND (CAST(:c AS bigint) IS NULL OR s.client_id = :c) ORDER BY m.id, s.id"),
            {"c": client_id}).all()
    result = Reconciled()
    by_box: dict[int, list] = {}
    for r in rows:
        by_box.setdefault(r.mailbox_id, []).append(r)
    for mailbox_id, group in by_box.items():
        box = group[0]
        password = lookup_secret(box.secret_name)
        if not box.imap_host or password is None:
            why = "no IMAP configured" if not box.imap_host else f"secret {box.secret_name!r} not set"
            for r in group:
                result.unchecked[r.id] = why
            log.warning("mailbox_id=%s: %d in-doubt messages not checked: %s", mailbox_id, len(group), why)
            continue
        settings = imap.mailbox_login(box.imap_host, box.imap_port, box.username, box.from_address, password,
                                      box.imap_tls_mode)
        try:
            folder = box.sent_folder or imap.sent_folder(settings)
            found = imap.find_message_ids(settings, folder, [r.message_id for r in group])
        except ImapError as exc:
            for r in group:
                result.unchecked[r.id] = str(exc)
            log.warning("mailbox_id=%s: Sent folder unreadable: %s", mailbox_id, exc)
            continue
        with transaction(engine) as conn:
            for r in group:
                if r.message_id in found:
                    sending.mark_sent(conn, r.id, reply=FOUND_REPLY, sent_at=r.reserved_at)
                    result.sent.append(r.id)
                    log.info("message_pk=%s mailbox_id=%s in doubt → sent (found in %s)", r.id, mailbox_id, folder)
                else:
                    conn.execute(text("UPDATE messages SET status = 'unknown', error = coalesce(error, '') || "
                                      "' | not in the Sent folder', updated_at = now() WHERE id = :id AND "
                                      "status = 'in_doubt'"), {"id": r.id})
                    result.unknown.append(r.id)
                    log.warning("message_pk=%s mailbox_id=%s in doubt → unknown (not in %s): operator decides",
                                r.id, mailbox_id, folder)
    return result


def in_doubt(engine: Engine, client_id: int) -> list[dict]:
    """Messages the operator has to look at: in doubt or unknown, with their lead and mailbox."""
    with transaction(engine) as conn:
        return [dict(r) for r in conn.execute(
            text("SELECT s.id, s.status, s.step, s.message_id, s.reserved_at, s.error, l.email, m.from_address "
                 "FROM messages s JOIN leads l ON l.id = s.lead_id JOIN mailboxes m ON m.id = s.mailbox_id "
                 "WHERE s.client_id = :c AND s.status IN ('sending', 'in_doubt', 'unknown') ORDER BY s.id"),
            {"c": client_id}).mappings()]
