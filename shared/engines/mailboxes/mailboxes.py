"""Mailboxes: add or edit one (settings checked, the secret by name only), list them with today's cap, pause or resume.

Every function takes the client id and filters on it: no query reaches another client's rows.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.outreach.capacity import HOLDS_SLOT, limits_from_row
from shared.errors import OutreachError
from shared.integrations import imap, smtp


MAILBOX_COLUMNS = ("from_address", "from_name", "smtp_host", "smtp_port", "tls_mode", "username", "secret_name",
                   "imap_host", "imap_port", "imap_tls_mode", "sent_folder", "daily_cap", "ramp_start", "ramp_step", "ramp_ceiling", "min_gap_seconds", "jitter_seconds",
                   "keeps_verp", "dkim_selector", "dkim_secret_name")


_ONE_LINE_FIELDS = ("from_address", "from_name", "smtp_host", "username", "secret_name", "imap_host", "sent_folder",
                    "dkim_selector", "dkim_secret_name")


_DKIM_SELECTOR = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def checked_settings(fields: dict[str, Any]) -> dict[str, Any]:
    """A mailbox's settings (MAILBOX_COLUMNS) from `fields`, defaults filled in; OutreachError naming a bad one."""
    values = {k: fields.get(k) for k in MAILBOX_COLUMNS}
    for key in _ONE_LINE_FIELDS:  # they go into headers and SMTP commands: a CR/LF would fail every send
        value = values[key]
        if isinstance(value, str) and not value.isprintable():
            raise OutreachError(f"{key.replace('_', ' ')} {value[:60]!r} holds a line break or control character")
    values["from_address"] = (values["from_address"] or "").strip().lower()
    if "@" not in values["from_address"]:
        raise OutreachError(f"from address {fields.get('from_address')!r} is not an email address")
    for key, default in (("daily_cap", 50), ("ramp_step", 0), ("min_gap_seconds", 600), ("jitter_seconds", 120),
                         ("tls_mode", "starttls"), ("imap_tls_mode", "tls")):
        if values[key] is None:
            values[key] = default
    for key in ("tls_mode", "imap_tls_mode"):
        if values[key] not in ("starttls", "tls", "none"):
            raise OutreachError(f"{key.replace('_', ' ')} must be starttls, tls or none, got {values[key]!r}")
    values["keeps_verp"] = True if values["keeps_verp"] is None else bool(values["keeps_verp"])
    if values["dkim_selector"] is not None:
        values["dkim_selector"] = values["dkim_selector"].strip().lower()
        if not _DKIM_SELECTOR.match(values["dkim_selector"]):
            raise OutreachError(f"DKIM selector {fields.get('dkim_selector')!r} is not a DNS label (letters, digits, -)")
    if (values["dkim_selector"] is None) != (values["dkim_secret_name"] is None):
        raise OutreachError("DKIM signing needs both a selector and the name of the secret holding the private key")
    return values


def add_mailbox(conn: Connection, client_id: int, **fields: Any) -> int:
    """Create or update a mailbox (keyed by its from address within the client)."""
    values = checked_settings(fields)
    cols = ", ".join(MAILBOX_COLUMNS)
    params = ", ".join(f":{k}" for k in MAILBOX_COLUMNS)
    updates = ", ".join(f"{k} = EXCLUDED.{k}" for k in MAILBOX_COLUMNS[1:])
    ramp_at = fields.get("ramp_started_at")
    return int(conn.execute(
        text(f"INSERT INTO mailboxes (client_id, {cols}, ramp_started_at) VALUES (:client, {params}, "
             f"coalesce(CAST(:ramp_at AS timestamptz), now())) "
             f"ON CONFLICT (client_id, from_address) DO UPDATE SET {updates} RETURNING id"),
        values | {"client": client_id, "ramp_at": ramp_at},
    ).scalar_one())


def update_mailbox(conn: Connection, client_id: int, mailbox_id: int, **fields: Any) -> None:
    """Change an existing mailbox's settings (checked as `add_mailbox` checks them); its status and ramp start stay.

    OutreachError when the mailbox is not the client's, or when its new from address is another mailbox's."""
    values = checked_settings(fields)
    updates = ", ".join(f"{k} = :{k}" for k in MAILBOX_COLUMNS)
    taken = conn.execute(text("SELECT 1 FROM mailboxes WHERE client_id = :c AND from_address = :a AND id <> :m"),
                         {"c": client_id, "a": values["from_address"], "m": mailbox_id}).first()
    if taken is not None:
        raise OutreachError(f"mailbox {values['from_address']!r} already exists for this client")
    row = conn.execute(text(f"UPDATE mailboxes SET {updates} WHERE client_id = :client AND id = :mailbox RETURNING id"),
                       values | {"client": client_id, "mailbox": mailbox_id}).first()
    if row is None:
        raise OutreachError(f"mailbox {mailbox_id} does not exist for this client")


def mailbox_settings(conn: Connection, client_id: int, *, mailbox_id: int | None = None,
                     address: str | None = None) -> dict[str, Any] | None:
    """One mailbox's id and settings (MAILBOX_COLUMNS), found by id or by from address; None: not the client's."""
    row = conn.execute(text(f"SELECT id, {', '.join(MAILBOX_COLUMNS)} FROM mailboxes WHERE client_id = :c "
                            "AND (id = :m OR from_address = :a)"),
                       {"c": client_id, "m": mailbox_id, "a": (address or "").strip().lower() or None}).first()
    return None if row is None else dict(row._mapping)


def probe_connection(box: dict[str, Any], timeout: float = smtp.PROBE_TIMEOUT_S) -> list[smtp.Probe]:
    """Log in to the mailbox's SMTP server (and IMAP when set) with the secret its name points to; send nothing."""
    account = smtp.SmtpAccount(box["smtp_host"], box["smtp_port"], box["tls_mode"], box["username"], box["secret_name"])
    probes = [smtp.probe(account, timeout)]
    if box["imap_host"]:
        where = f"IMAP {box['imap_host']}:{box['imap_port'] or 993} ({box['imap_tls_mode']})"
        password = smtp.lookup_secret(box["secret_name"])
        if password is None:
            probes.append(smtp.Probe((where, f"secret {box['secret_name']!r} is not set: not logged in"), "secret"))
        else:
            probes.append(imap.probe(imap.mailbox_login(box["imap_host"], box["imap_port"], box["username"],
                                                        box["from_address"], password, box["imap_tls_mode"], timeout)))
    return probes


def list_mailboxes(conn: Connection, client_id: int, now: datetime | None = None) -> list[dict[str, Any]]:
    from shared.engines.outreach.capacity import effective_cap, ramp_days

    rows = conn.execute(
        text(f"SELECT m.*, (SELECT count(*) FROM messages s WHERE s.mailbox_id = m.id AND {HOLDS_SLOT} "
             "       AND s.reserved_at > coalesce(CAST(:now AS timestamptz), now()) - interval '24 hours') AS sent_24h "
             "FROM mailboxes m WHERE m.client_id = :c ORDER BY m.id"), {"c": client_id, "now": now}).mappings()
    out = []
    for r in rows:
        d = {k: r[k] for k in ("id", "from_address", "from_name", "smtp_host", "smtp_port", "tls_mode", "username",
                               "secret_name", "imap_host", "imap_port", "daily_cap", "ramp_start", "ramp_step",
                               "ramp_ceiling", "min_gap_seconds", "jitter_seconds", "status", "status_reason", "sent_24h",
                               "keeps_verp", "dkim_selector", "dkim_secret_name")}
        for k in ("paused_at", "last_sent_at", "next_send_at", "ramp_started_at"):
            d[k] = r[k].isoformat() if r[k] else None
        at = now or datetime.now(r["created_at"].tzinfo)
        d["cap_now"] = effective_cap(limits_from_row(r), at)
        d["ramp_days"] = ramp_days(limits_from_row(r), at)
        out.append(d)
    return out


def set_mailbox_status(conn: Connection, client_id: int, address: str, *, paused: bool, reason: str | None) -> None:
    if paused and not reason:
        raise OutreachError("pausing a mailbox needs a reason")
    row = conn.execute(
        text("UPDATE mailboxes SET status = :s, status_reason = :r, paused_at = CASE WHEN :p THEN now() END "
             "WHERE client_id = :c AND from_address = :a RETURNING id"),
        {"s": "paused" if paused else "active", "r": reason if paused else None, "p": paused, "c": client_id,
         "a": address.strip().lower()}).first()
    if row is None:
        raise OutreachError(f"mailbox {address!r} does not exist for this client")
