"""Suppression and unsubscribe: per-client lists of emails and whole domains, and signed one-click tokens.

A token is opaque and signed: `<message pk>.<HMAC-SHA256 prefix>` over a purpose string, so a
stranger can neither forge one nor turn one message's token into another's. Whatever a token
says is re-checked in Postgres before anything is suppressed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text

from shared import csvsafe, ids
from shared.csvsafe import safe_cell
from shared.errors import UnreadableFile

TOKEN_MAC_BYTES = 16
ONE_CLICK_SOURCE = "one-click"  # `suppressions.source` of an RFC 8058 one-click unsubscribe (web.app)


def _mac(message_pk: int, secret: str) -> str:
    if not secret:
        raise ValueError("an outreach secret is required to sign unsubscribe tokens")
    digest = hmac.new(secret.encode(), f"unsubscribe:{message_pk}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:TOKEN_MAC_BYTES]).decode().rstrip("=")


def make_token(message_pk: int, secret: str) -> str:
    return f"{message_pk}.{_mac(message_pk, secret)}"


def read_token(token: str, secret: str) -> int | None:
    """The message pk a token names, or None when it is malformed, forged or tampered with."""
    head, _, mac = (token or "").partition(".")
    pk = ids.parse_id(head)
    if pk is None or not mac:
        return None
    return pk if hmac.compare_digest(mac.encode("utf-8", "replace"), _mac(pk, secret).encode()) else None


MAX_VALUE_CHARS = 320  # an address is at most 254 characters, a domain 253: longer is not a real entry


def _shown(value: str) -> str:
    """A value quoted for an error message, shortened so a pasted novel does not fill the page."""
    return repr(value if len(value) <= 60 else value[:60] + "…")


def normalize(value: str) -> tuple[str, str]:
    """('email', 'ann@x.com') or ('domain', 'x.com') from a cell; '@x.com' and 'x.com' are domains."""
    v = value.strip().lower()
    # Whitespace or control characters inside (a NUL would not even reach Postgres) make it no entry.
    if not v or len(v) > MAX_VALUE_CHARS or any(ch.isspace() or not ch.isprintable() for ch in v):
        raise ValueError(f"{_shown(value)} is neither an email address nor a domain")
    if v.startswith("@"):
        v = v[1:]
    if "@" in v:
        local, _, domain = v.rpartition("@")
        if not local or "." not in domain:
            raise ValueError(f"{_shown(value)} is not an email address")
        return "email", v
    if "." not in v:
        raise ValueError(f"{_shown(value)} is not a domain")
    return "domain", v


def suppress(conn: Connection, client_id: int, value: str, *, reason: str, source: str) -> bool:
    """Add one entry (idempotent); True when it is new."""
    kind, v = normalize(value)
    return conn.execute(
        text("INSERT INTO suppressions (client_id, kind, value, reason, source) VALUES (:c, :k, :v, :r, :s) "
             "ON CONFLICT (client_id, kind, value) DO NOTHING RETURNING id"),
        {"c": client_id, "k": kind, "v": v, "r": reason, "s": source}).first() is not None


def is_suppressed(conn: Connection, client_id: int, email: str) -> str | None:
    """The matching entry's reason, or None. Matches the address and its domain."""
    return reasons(conn, client_id, [email]).get(email)


# Per address: the entry for the address itself, else for its domain (what follows the last '@').
_REASONS = text(
    "SELECT x.email, (SELECT s.reason FROM suppressions s WHERE s.client_id = :c AND ((s.kind = 'email' "
    "AND s.value = x.address) OR (s.kind = 'domain' AND s.value = x.domain)) ORDER BY s.kind = 'email' DESC "
    "LIMIT 1) AS reason FROM unnest(CAST(:emails AS text[]), CAST(:addresses AS text[]), "
    "CAST(:domains AS text[])) AS x(email, address, domain)")


def reasons(conn: Connection, client_id: int, emails: Iterable[str]) -> dict[str, str]:
    """The suppressed ones among `emails` (as given) → the matching entry's reason; one statement for all."""
    emails = list(dict.fromkeys(emails))
    if not emails:
        return {}
    rows = conn.execute(_REASONS, {"c": client_id, "emails": emails, "addresses": [e.lower() for e in emails],
                                   "domains": [e.rpartition("@")[2].lower() for e in emails]})
    return {r.email: r.reason for r in rows if r.reason is not None}


def unsubscribe_message(conn: Connection, message_pk: int, *, source: str) -> dict[str, str] | None:
    """One-click unsubscribe for the lead a message went to: suppress the address, mark the lead,
    stop its enrollments. Idempotent. None when the message does not exist."""
    row = conn.execute(
        text("SELECT s.client_id, s.lead_id, l.email FROM messages s JOIN leads l ON l.id = s.lead_id "
             "AND l.client_id = s.client_id WHERE s.id = :m"), {"m": message_pk}).first()
    if row is None:
        return None
    suppress(conn, row.client_id, row.email, reason="unsubscribed", source=source)
    conn.execute(text("UPDATE leads SET status = 'unsubscribed', updated_at = now() WHERE id = :l AND client_id = :c"),
                 {"l": row.lead_id, "c": row.client_id})
    conn.execute(text("UPDATE enrollments SET status = 'stopped', stop_reason = 'unsubscribed' "
                      "WHERE lead_id = :l AND client_id = :c AND status IN ('active', 'held')"),
                 {"l": row.lead_id, "c": row.client_id})
    return {"email": row.email}


def import_csv(conn: Connection, client_id: int, path: Path, *, reason: str = "imported") -> tuple[int, list[str]]:
    """Import a CSV file (see `import_stream`); a FIFO or device is refused before anything is read."""
    from shared.engines.leads.importer import open_input  # refuses FIFOs and devices before reading

    with open_input(path) as raw:
        return import_stream(conn, client_id, raw, reason=reason, source=f"import:{path.name}")


def import_stream(conn: Connection, client_id: int, raw: IO[bytes], *, reason: str = "imported",
                  source: str) -> tuple[int, list[str]]:
    """Import a CSV whose first column (or `email`/`domain`/`value` column) holds entries.

    The one parser for the CLI's file and the console's upload (the caller bounds the size).
    Returns (added, problems); a bad cell is named by line and skipped, nothing valid is lost.
    Raises UnreadableFile (nothing imported) when the bytes are not UTF-8 CSV.
    """
    added, problems = 0, []
    fh = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    try:
        rows = list(csv.reader(fh))  # read whole before the first insert: an unreadable file adds nothing
    except UnicodeDecodeError:
        raise UnreadableFile("the file is not UTF-8 text (save it as \"CSV UTF-8\")") from None
    except csv.Error as exc:
        raise UnreadableFile(f"the file is not a readable CSV: {exc}") from None
    finally:
        fh.detach()  # the caller owns `raw` and closes it
    if not rows:
        return 0, []
    header = [h.strip().lower() for h in rows[0]]
    col = next((header.index(h) for h in ("value", "email", "domain") if h in header), None)
    body = rows[1:] if col is not None else rows
    col = col or 0
    for line, row in enumerate(body, start=2 if body is not rows else 1):
        cell = row[col] if len(row) > col else ""
        try:
            added += suppress(conn, client_id, cell, reason=reason, source=source)
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
    return added, problems


EXPORT_COLUMNS = ("kind", "value", "reason", "source", "created_at")


def export_rows(conn: Connection, client_id: int) -> Iterable[tuple[str, str, str, str, str]]:
    for r in conn.execute(text("SELECT kind, value, reason, source, created_at FROM suppressions "
                               "WHERE client_id = :c ORDER BY kind, value"), {"c": client_id}):
        yield r.kind, safe_cell(r.value), safe_cell(r.reason), safe_cell(r.source), r.created_at.isoformat()


def write_export(conn: Connection, client_id: int, handle: IO[str]) -> int:
    """The client's list as CSV (header, then `export_rows`) through the project's spreadsheet-safe
    writer: the CLI's `suppressions export` and the console's download. Returns the row count."""
    out = csvsafe.writer(handle)
    out.writerow(EXPORT_COLUMNS)
    n = 0
    for n, row in enumerate(export_rows(conn, client_id), start=1):
        out.writerow(row)
    return n
