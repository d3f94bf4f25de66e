"""The inbox (issue 19): received replies and bounces of every mailbox and campaign in one list, one message read safely, operators' verdicts and reclassifications.

Everything here runs inside `shared.db.transaction(engine, role=who)`. Row-level security decides
what a viewer sees (its own client's messages and verdicts; another client's id reads exactly like
one that does not exist), and grants decide what it may change: `outbound_tenant` holds no write
privilege on `lead_verdicts` or `inbound_messages`, so `mark` and `reclassify` fail for a viewer
with Postgres's "permission denied". Nothing here filters by client for isolation; `client_id`
only narrows an operator's view. Without a role (the CLI) it runs as the application and sees all.

What the inbox lists: every stored message that has a client (IMAP mail always; webhook mail
once it matched one of our sends), newest first, except our own mail seen again (a follow-up read
back from Sent). Webhook mail that matched no send has no client and is `replies unmatched`'s.
Paging is by keyset on (received_at, id), so rows arriving while someone pages never shift a page:
`before` is the last row shown, `Page.next` the cursor of the next page (None: no more).

Reading a message (`message`): `raw` is a stranger's bytes, cut at `inbound_raw_max_bytes` when
it was stored. It is parsed with `mime.parse_bytes` (which never raises), only text comes out
(`mime.body_text`: the text/plain part, else the HTML part as visible text; no markup, no
attachment, nothing fetched), at most MAX_BODY_CHARS of it, and the quoted history is cut off
with `classify.split_reply` (the same cut classification uses) and returned apart, for a page to
fold. The text may still hold any character a stranger sent: a page escapes it as it renders it
(the console's templates autoescape), the CLI prints it with `orchestrator.terminal.literal`.

Verdicts (`mark`): an operator's reading of a lead (interested, not interested, wrong person),
with who decided and when; rows are only added and the newest one stands. A verdict records: it
changes no lead status and stops nothing.

Reclassifying (`reclassify`) changes a message's stored class for display and analytics (the
lead's story, the bounce shield's next count, `replies list`) and keeps what the classifier said
in `classified_kind`, with who and when. It never re-runs what the old class did (a stopped
sequence is not restarted, a suppression is not lifted, no reply is "un-replied"), with one
exception on the safe side: reclassifying to `unsubscribe_request`, `hard_bounce` or `complaint`
applies what ingest applies for that class (address suppressed for the client, lead unsubscribed
or bounced, its enrollments stopped) through the same function ingest uses,
`ingest.suppress_and_stop`; an operator who says "this was an opt-out" must not leave the lead
being mailed. That holds for a message stored as UNVERIFIED too: ingest did not act on it because
a stranger may have written it, and an operator who reclassifies it has read it (stopping mail
to a lead is the side that cannot hurt the lead). It does not run the bounce shield's pause check (the shield counts the new class
the next time a bounce or complaint runs it). Reclassifying to `human_reply` does not stop the
sequence: mark the lead, or stop the campaign, when that is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.replies import ingest, mime
from shared.engines.replies.classify import split_reply
from shared.errors import InboxRefused, NotFound
from shared.status import InboundKind, Verdict, values

DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # rows of one inbox page
MAX_BODY_CHARS = 100_000  # text shown of one message (a reply is a few lines; a forwarded thread is not read in full)
MAX_HEADER_CHARS = 1_000  # one header value as shown
MAX_NOTE_CHARS = 1_000  # the CHECK on lead_verdicts.note
MAX_BY_CHARS = 320  # an email address
SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID", "In-Reply-To")

Cursor = tuple[datetime, int]  # (received_at, id) of the last row shown

LATEST_VERDICTS = ("SELECT DISTINCT ON (lead_id) lead_id, verdict FROM lead_verdicts WHERE client_id = :c "
                   "ORDER BY lead_id, decided_at DESC, id DESC")
"""Each of client :c's judged leads with its current verdict: the newest one (as `current_verdict` reads it)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One inbox page, newest first, and the cursor of the next one (None: this is the last)."""

    rows: list[dict[str, Any]]
    next: Cursor | None


@dataclass(frozen=True, slots=True)
class Reclassified:
    """What `reclassify` did: the class before and after, and what the new class applied (None: nothing)."""

    inbound_id: int
    was: str
    kind: str
    effect: str | None


# -- cursors -------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cursor_text(cursor: Cursor) -> str:
    """A cursor as URL- and shell-safe text: `<microseconds since 1970>.<id>` (digits and one dot)."""
    at, row_id = cursor
    return f"{(at - _EPOCH) // timedelta(microseconds=1)}.{row_id}"


def parse_cursor(value: str | None) -> Cursor | None:
    """The cursor `cursor_text` wrote; None for anything else (a malformed cursor means the first page)."""
    micros, _, row_id = (value or "").strip().partition(".")
    if not (micros.isdigit() and row_id.isdigit() and len(micros) <= 17 and len(row_id) <= 19):
        return None
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), int(row_id)
    except OverflowError:
        return None


# -- the list ------------------------------------------------------------------------------------

_INBOX = """
    SELECT i.id, i.received_at, i.from_address, i.subject, i.kind, i.reason, i.verified, i.source,
           i.client_id, c.name AS client, i.campaign_id, cp.name AS campaign, i.mailbox_id, m.from_address AS mailbox,
           i.lead_id, l.email AS lead, s.step, i.classified_kind, v.verdict
    FROM inbound_messages i
    JOIN clients c ON c.id = i.client_id
    LEFT JOIN campaigns cp ON cp.id = i.campaign_id AND cp.client_id = i.client_id
    LEFT JOIN mailboxes m ON m.id = i.mailbox_id AND m.client_id = i.client_id
    LEFT JOIN leads l ON l.id = i.lead_id AND l.client_id = i.client_id
    LEFT JOIN messages s ON s.id = i.message_pk AND s.client_id = i.client_id
    LEFT JOIN LATERAL (SELECT lv.verdict FROM lead_verdicts lv WHERE lv.lead_id = i.lead_id
                       AND lv.client_id = i.client_id ORDER BY lv.decided_at DESC, lv.id DESC LIMIT 1) v ON true
    WHERE {where}
    ORDER BY i.received_at DESC, i.id DESC
    LIMIT :limit
"""
# Each filter is a fixed SQL fragment, used only when asked for: the keyset condition stays an
# index condition on (received_at, id) instead of an `:x IS NULL OR ...` the planner cannot use.
_FILTERS = {
    "client": "i.client_id = :client",
    "kind": "i.kind = :kind",
    "campaign": "i.campaign_id = :campaign",
    "mailbox": "i.mailbox_id = :mailbox",
    "unverified": "(i.verified IS FALSE) = :unverified",
    "before": "(i.received_at, i.id) < (:before_at, :before_id)",
}


def inbound(conn: Connection, *, kind: str | None = None, campaign_id: int | None = None,
            mailbox_id: int | None = None, unverified: bool | None = None, before: Cursor | None = None,
            limit: int = DEFAULT_LIMIT, client_id: int | None = None) -> Page:
    """One page of received mail, newest first: id, received_at, from_address, subject, kind (reason),
    verified, client, campaign, mailbox, lead, the step it answered, the lead's current verdict.

    `unverified`: True only mail shown as UNVERIFIED, False only the rest, None all. `before`: the
    (received_at, id) of the last row already shown."""
    if kind is not None and kind not in values(InboundKind):
        raise ValueError(f"unknown class {kind!r} (one of {', '.join(values(InboundKind))})")
    params: dict[str, Any] = {"client": client_id, "kind": kind, "campaign": campaign_id, "mailbox": mailbox_id,
                              "unverified": unverified, "before": before, "ours": ingest.OURS}
    where = ["i.outcome IS DISTINCT FROM :ours"] + [sql for name, sql in _FILTERS.items() if params[name] is not None]
    if before is not None:
        params["before_at"], params["before_id"] = before
    size = max(1, min(int(limit), MAX_LIMIT))
    rows = [dict(r._mapping) for r in conn.execute(text(_INBOX.format(where=" AND ".join(where))),
                                                   params | {"limit": size + 1})]
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, (rows[-1]["received_at"], rows[-1]["id"]) if more else None)


# -- one message ---------------------------------------------------------------------------------

_MESSAGE = text("""
    SELECT i.id, i.received_at, i.source, i.provider, i.folder, i.from_address, i.subject, i.kind, i.classified_kind,
           i.reclassified_by, i.reclassified_at, i.evidence, i.reason, i.rule, i.diagnostic, i.status_code,
           i.verified, i.trust, i.match_kind, i.processed_at, i.outcome, i.raw, i.raw_bytes,
           i.client_id, c.name AS client, i.campaign_id, cp.name AS campaign, i.mailbox_id, m.from_address AS mailbox,
           i.lead_id, l.email AS lead, l.first_name, l.last_name, l.company_name, l.status AS lead_status,
           i.message_pk, s.step, s.subject AS answered_subject, s.message_id AS answered_message_id,
           s.sent_at AS answered_sent_at
    FROM inbound_messages i
    LEFT JOIN clients c ON c.id = i.client_id
    LEFT JOIN campaigns cp ON cp.id = i.campaign_id AND cp.client_id = i.client_id
    LEFT JOIN mailboxes m ON m.id = i.mailbox_id AND m.client_id = i.client_id
    LEFT JOIN leads l ON l.id = i.lead_id AND l.client_id = i.client_id
    LEFT JOIN messages s ON s.id = i.message_pk AND s.client_id = i.client_id
    WHERE i.id = :id
""")


def message(conn: Connection, inbound_id: int) -> dict[str, Any] | None:
    """One received message: its row (class, evidence, reason, rule, diagnostic, trust, outcome), the
    lead and the step it answered, the lead's current verdict, a few headers, and its text (`text`: the
    sender's own words; `quoted`: the history it quotes, for folding; `truncated`: not all of it is
    shown). None when it does not exist or is not visible."""
    row = conn.execute(_MESSAGE, {"id": inbound_id}).first()
    if row is None:
        return None
    info = dict(row._mapping)
    raw = bytes(info.pop("raw") or b"")
    return info | read_raw(raw, raw_bytes=info["raw_bytes"]) | {
        "verdict": current_verdict(conn, info["lead_id"]) if info["lead_id"] is not None else None}


def read_raw(raw: bytes, *, raw_bytes: int | None = None) -> dict[str, Any]:
    """Headers and text of stored raw bytes, read as untrusted: never raises, text only, bounded."""
    msg = mime.parse_bytes(raw)
    body = mime.body_text(msg).replace("\x00", "")
    own, quoted = split_reply(body[:MAX_BODY_CHARS])
    headers = [(name, mime.header(msg, name)[:MAX_HEADER_CHARS]) for name in SHOWN_HEADERS]
    return {"headers": [(k, v) for k, v in headers if v], "text": own, "quoted": quoted,
            "truncated": len(body) > MAX_BODY_CHARS or (raw_bytes or 0) > len(raw)}


# -- verdicts ------------------------------------------------------------------------------------


def current_verdict(conn: Connection, lead_id: int) -> dict[str, Any] | None:
    """The lead's newest verdict (verdict, decided_by, decided_at, note, inbound_message_id), or None."""
    row = conn.execute(text("SELECT id, verdict, decided_by, decided_at, note, inbound_message_id FROM lead_verdicts "
                            "WHERE lead_id = :l ORDER BY decided_at DESC, id DESC LIMIT 1"), {"l": lead_id}).first()
    return None if row is None else dict(row._mapping)


def lead_id_by_email(conn: Connection, client_id: int, email: str) -> int:
    """The id of the client's lead with this address (any case); NotFound when it has none."""
    found = conn.execute(text("SELECT id FROM leads WHERE client_id = :c AND email = :e"),
                         {"c": client_id, "e": (email or "").strip().lower()}).scalar()
    if found is None:
        raise NotFound(f"no lead {email!r} for this client")
    return int(found)


def _who(by: str) -> str:
    who = (by or "").strip()
    if not who or len(who) > MAX_BY_CHARS or not who.isprintable():
        raise ValueError("who decided must be named (a console user's email, or 'cli')")
    return who


def _note(note: str | None) -> str | None:
    cleaned = (note or "").replace("\x00", "").strip()
    if len(cleaned) > MAX_NOTE_CHARS:
        raise ValueError(f"a note is at most {MAX_NOTE_CHARS} characters")
    return cleaned or None


def mark(conn: Connection, lead_id: int, verdict: Verdict | str, *, by: str, inbound_message_id: int | None = None,
         note: str | None = None) -> dict[str, Any]:
    """Record an operator's verdict on a lead (optionally on one of its received messages); the new row.

    NotFound when the lead (or that message of this lead) does not exist or is not visible."""
    chosen, who, cleaned = Verdict(verdict), _who(by), _note(note)
    lead = conn.execute(text("SELECT id, client_id FROM leads WHERE id = :l"), {"l": lead_id}).first()
    if lead is None:
        raise NotFound(f"lead {lead_id} does not exist")
    if inbound_message_id is not None and conn.execute(
            text("SELECT 1 FROM inbound_messages WHERE id = :i AND lead_id = :l AND client_id = :c"),
            {"i": inbound_message_id, "l": lead.id, "c": lead.client_id}).first() is None:
        raise NotFound(f"received message {inbound_message_id} is not one of lead {lead_id}'s")
    row = conn.execute(
        text("INSERT INTO lead_verdicts (client_id, lead_id, inbound_message_id, verdict, decided_by, note) "
             "VALUES (:c, :l, :i, :v, :by, :note) RETURNING id, lead_id, inbound_message_id, verdict, decided_by, "
             "decided_at, note"),
        {"c": lead.client_id, "l": lead.id, "i": inbound_message_id, "v": chosen.value, "by": who, "note": cleaned}
    ).one()
    return dict(row._mapping)


# -- reclassifying -------------------------------------------------------------------------------


def reclassify(conn: Connection, inbound_id: int, kind: str, *, by: str) -> Reclassified:
    """Change a processed message's stored class (see the module docstring for what it does and does not do).

    NotFound when the message does not exist or is not visible; InboxRefused for our own mail seen
    again and for a message not processed yet (its class is about to act: reclassify it after)."""
    if kind not in values(InboundKind):
        raise ValueError(f"unknown class {kind!r} (one of {', '.join(values(InboundKind))})")
    who = _who(by)
    row = conn.execute(
        text("SELECT id, client_id, message_pk, lead_id, campaign_id, match_kind, kind, status_code, processed_at, "
             "outcome FROM inbound_messages WHERE id = :id FOR UPDATE"), {"id": inbound_id}).first()
    if row is None:
        raise NotFound(f"received message {inbound_id} does not exist")
    if row.outcome == ingest.OURS:
        raise InboxRefused(f"received message {inbound_id} is our own mail seen again: it has no class to change")
    if row.processed_at is None:
        raise InboxRefused(f"received message {inbound_id} is not processed yet: reclassify it once it is")
    if kind == row.kind:
        return Reclassified(row.id, row.kind, kind, None)
    effect = None
    if kind in ingest.SUPPRESSING_KINDS:
        m = ingest.stored_match(conn, row)
        effect = ingest.suppress_and_stop(conn, m, kind, row.status_code) if m else "no matched send: nothing suppressed"
    record = f"reclassified {row.kind} -> {kind} by {who}" + (f": {effect}" if effect else "")
    conn.execute(
        text("UPDATE inbound_messages SET kind = :k, classified_kind = coalesce(classified_kind, kind), "
             "reclassified_by = :by, reclassified_at = now(), "
             # The record goes at the end and is never the part cut off: the outcome makes room for it.
             "outcome = left(left(outcome, greatest(0, 998 - length(:record))) || '; ' || :record, 1000) "
             "WHERE id = :id"), {"k": kind, "by": who, "record": record, "id": row.id})
    return Reclassified(row.id, row.kind, kind, effect)
