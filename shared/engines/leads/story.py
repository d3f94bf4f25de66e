"""A lead's story for the console: its search, its header, and one time-ordered timeline of everything that happened to it.

The SQL here reads only rows the caller's scope may see (`shared.db.transaction(role=who)`): a
viewer's transaction runs under row-level security, so another client's lead is simply absent
(`lead()` answers None, exactly as for an id that does not exist) and none of the queries filter
by client for isolation. Each source table has one named function returning plain `Entry` values;
`merge()` (pure) puts them in one order.

Operators' verdicts (`lead_verdicts`) are events like any other; a reclassified reply shows its
new class, with what the classifier said and who changed it.

Where the schema keeps no history, the story says what it has: an enrollment has no record of
when it stopped, so it appears once, at `enrolled_at`, with its current state and stop reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

SEARCH_LIMIT = 200  # rows of the leads search (newest first)
# When two entries share a timestamp, the one earlier in this order comes first (a cause before
# its effects: the lead exists, it is enrolled, a transition starts the work, providers are asked
# and charged, a message goes out, mail comes back, a suppression follows, an operator decides).
KIND_ORDER = ("lead", "enrollment", "transition", "provider", "credit", "message", "inbound", "suppression", "verdict")
_RANK = {k: i for i, k in enumerate(KIND_ORDER)}
_NO_TIME = datetime.max.replace(tzinfo=UTC)  # an entry without a time sorts last, never drops out
# The unsubscribe link's token works for anyone who holds it: shown as a placeholder, never in full.
_UNSUB_TOKEN = re.compile(r"(/u/)[A-Za-z0-9._~-]+")
HEADER_ORDER = ("from", "to", "subject", "date", "message-id", "in-reply-to", "references", "list-unsubscribe",
                "list-unsubscribe-post")
_HEADER_RANK = {h: i for i, h in enumerate(HEADER_ORDER)}


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the timeline: when, what kind, a short title, its details (label, value) in order."""

    at: datetime | None
    kind: str
    title: str
    seq: int  # the source row's id: keeps same-time rows of one table in the order they were written
    details: tuple[tuple[str, str], ...] = ()
    badge: str | None = None  # a status for the badge colour (DONE, sent, hard_bounce ...)
    batch_id: int | None = None
    headers: tuple[tuple[str, str], ...] = field(default=())

    def when(self) -> str:
        """The time to the millisecond (entries a few ms apart are common), in UTC."""
        if self.at is None:
            return ""
        return self.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def sort_key(e: Entry) -> tuple[datetime, int, int]:
    return (e.at or _NO_TIME, _RANK.get(e.kind, len(KIND_ORDER)), e.seq)


def merge(*groups: Iterable[Entry]) -> list[Entry]:
    """All entries in time order; ties by kind (KIND_ORDER), then by the source row's id: stable and total."""
    return sorted((e for g in groups for e in g), key=sort_key)


def _pairs(*items: tuple[str, Any]) -> tuple[tuple[str, str], ...]:
    """Only the details that have a value, as text."""
    return tuple((k, _text(v)) for k, v in items if v is not None and v != "")


def _text(v: Any) -> str:
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def mask_headers(headers: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """A sent message's stored headers (jsonb keeps no order: shown in HEADER_ORDER, then by name),
    the unsubscribe token masked."""
    out = []
    for k, v in (headers or {}).items():
        value = str(v)
        if k.lower() == "list-unsubscribe":
            value = _UNSUB_TOKEN.sub(r"\1…", value)
        out.append((str(k), value))
    return tuple(sorted(out, key=lambda kv: (_HEADER_RANK.get(kv[0].lower(), len(_HEADER_RANK)), kv[0].lower())))


# -- search --------------------------------------------------------------------------------------


def _like(q: str) -> str:
    """A LIKE pattern matching `q` literally anywhere (its % and _ are not wildcards)."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(conn: Connection, q: str | None = None, *, client_id: int | None = None,
           limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Leads whose email, name or company contains `q` (any case), newest first, at most `limit`."""
    q = (q or "").strip()
    rows = conn.execute(text("""
        SELECT l.id, l.email, l.first_name, l.last_name, l.title, l.company_name, l.status, l.score,
               l.created_at, c.id AS client_id, c.name AS client
        FROM leads l JOIN clients c ON c.id = l.client_id
        WHERE (CAST(:client AS bigint) IS NULL OR l.client_id = :client)
          AND (CAST(:q AS text) = '' OR l.email ILIKE :pat OR l.company_name ILIKE :pat
               OR l.company_domain ILIKE :pat
               OR concat_ws(' ', l.first_name, l.last_name) ILIKE :pat)
        ORDER BY l.created_at DESC, l.id DESC LIMIT :limit
    """), {"client": client_id, "q": q, "pat": _like(q), "limit": limit})
    return [dict(r._mapping) for r in rows]


# -- one lead ------------------------------------------------------------------------------------


def lead(conn: Connection, lead_id: int) -> dict[str, Any] | None:
    """The header: None when the lead does not exist or is not in the caller's scope."""
    row = conn.execute(text("""
        SELECT l.id, l.email, l.first_name, l.last_name, l.title, l.company_name, l.company_domain, l.status,
               l.score, l.score_tier, l.timezone, l.country, l.enrichment_provider, l.enrichment_confidence,
               l.created_at, l.enriched_at, l.scored_at, l.updated_at,
               c.id AS client_id, c.name AS client, cp.id AS campaign_id, cp.name AS campaign
        FROM leads l JOIN clients c ON c.id = l.client_id
        LEFT JOIN campaigns cp ON cp.id = l.campaign_id AND cp.client_id = l.client_id
        WHERE l.id = :l
    """), {"l": lead_id}).first()
    return None if row is None else dict(row._mapping)


def lead_entries(info: Mapping[str, Any]) -> list[Entry]:
    """The lead's own milestones from its row (created, enriched, scored)."""
    out = [Entry(info["created_at"], "lead", "Lead created", 0,
                 _pairs(("client", info["client"]), ("campaign", info.get("campaign"))))]
    if info.get("enriched_at"):
        out.append(Entry(info["enriched_at"], "lead", "Lead enriched", 1,
                         _pairs(("provider", info.get("enrichment_provider")),
                                ("confidence", info.get("enrichment_confidence")))))
    if info.get("scored_at"):
        out.append(Entry(info["scored_at"], "lead", f"Scored {info.get('score')}", 2,
                         _pairs(("tier", info.get("score_tier")))))
    return out


def transitions(conn: Connection, lead_id: int) -> list[Entry]:
    """Every status_history row of every work item of this lead, in any batch."""
    rows = conn.execute(text("""
        SELECT h.id, h.at, h.work_item_id, h.batch_id, h.from_status, h.to_status, h.attempt, h.detail,
               b.kind AS batch_kind, w.step
        FROM work_items w
        JOIN status_history h ON h.work_item_id = w.id AND h.client_id = w.client_id
        JOIN batches b ON b.id = h.batch_id AND b.client_id = h.client_id
        WHERE w.lead_id = :l
    """), {"l": lead_id})
    out = []
    for r in rows:
        label = "detail"
        if r.from_status == "QUEUED" and r.to_status == "IN_PROGRESS":
            label = "worker"
        elif r.to_status == "SKIPPED":
            label = "reason"
        elif r.to_status in ("FAILED", "PENDING"):
            label = "error"
        out.append(Entry(
            r.at, "transition", f"{r.from_status or 'new'} → {r.to_status}", r.id,
            _pairs(("batch", f"{r.batch_id} ({r.batch_kind})"), ("item", r.work_item_id),
                   ("step", r.step), ("attempt", r.attempt), (label, r.detail)),
            badge=r.to_status, batch_id=r.batch_id))
    return out


def provider_attempts(conn: Connection, lead_id: int) -> list[Entry]:
    rows = conn.execute(text("""
        SELECT a.id, a.created_at, a.work_item_id, a.attempt, a.provider, a.outcome, a.confidence, a.cost,
               a.latency_ms, a.error, w.batch_id
        FROM enrichment_attempts a
        JOIN work_items w ON w.id = a.work_item_id AND w.client_id = a.client_id
        WHERE a.lead_id = :l
    """), {"l": lead_id})
    return [Entry(r.created_at, "provider", f"{r.provider}: {r.outcome}", r.id,
                  _pairs(("batch", r.batch_id), ("item", r.work_item_id), ("attempt", r.attempt),
                         ("cost", f"{r.cost} credit(s)"), ("latency", f"{r.latency_ms:.0f} ms"),
                         ("confidence", r.confidence), ("error", r.error)),
                  badge=r.outcome, batch_id=r.batch_id) for r in rows]


def credits(conn: Connection, lead_id: int) -> list[Entry]:
    """Credit ledger rows tied to this lead's work items (reservations, refunds)."""
    rows = conn.execute(text("""
        SELECT g.id, g.created_at, g.delta, g.kind, g.attempt, g.provider, g.note, g.work_item_id, w.batch_id
        FROM work_items w
        JOIN credit_ledger g ON g.work_item_id = w.id AND g.client_id = w.client_id
        WHERE w.lead_id = :l
    """), {"l": lead_id})
    return [Entry(r.created_at, "credit", f"Credits {r.kind} {r.delta:+d}", r.id,
                  _pairs(("batch", r.batch_id), ("item", r.work_item_id), ("attempt", r.attempt),
                         ("provider", r.provider), ("note", r.note)),
                  badge=r.kind, batch_id=r.batch_id) for r in rows]


def messages(conn: Connection, lead_id: int) -> list[Entry]:
    """Every message row (sent, failed, in doubt ...) at its send time, else the time its slot was reserved."""
    rows = conn.execute(text("""
        SELECT s.id, s.step, s.status, s.subject, s.message_id, s.in_reply_to, s.headers, s.smtp_reply, s.error,
               s.reserved_at, s.sent_at, s.attempt, s.work_item_id, w.batch_id,
               m.from_address AS mailbox, cp.name AS campaign
        FROM messages s
        JOIN mailboxes m ON m.id = s.mailbox_id AND m.client_id = s.client_id
        JOIN campaigns cp ON cp.id = s.campaign_id AND cp.client_id = s.client_id
        LEFT JOIN work_items w ON w.id = s.work_item_id AND w.client_id = s.client_id
        WHERE s.lead_id = :l
    """), {"l": lead_id})
    out = []
    for r in rows:
        headers = r.headers or {}
        out.append(Entry(
            r.sent_at or r.reserved_at, "message", f"Step {r.step} {r.status}: {r.subject}", r.id,
            _pairs(("campaign", r.campaign), ("mailbox", r.mailbox), ("Message-ID", r.message_id),
                   ("In-Reply-To", r.in_reply_to), ("References", headers.get("References")),
                   ("sent at", r.sent_at), ("slot reserved", r.reserved_at), ("SMTP reply", r.smtp_reply),
                   ("error", r.error), ("batch", r.batch_id), ("attempt", r.attempt)),
            badge=r.status, batch_id=r.batch_id, headers=mask_headers(headers)))
    return out


def enrollments(conn: Connection, lead_id: int) -> list[Entry]:
    rows = conn.execute(text("""
        SELECT e.id, e.enrolled_at, e.status, e.stop_reason, e.next_step, e.next_due_at, e.last_sent_at,
               e.timezone, e.timezone_source, e.soft_bounces, cp.name AS campaign, m.from_address AS mailbox
        FROM enrollments e
        JOIN campaigns cp ON cp.id = e.campaign_id AND cp.client_id = e.client_id
        LEFT JOIN mailboxes m ON m.id = e.mailbox_id AND m.client_id = e.client_id
        WHERE e.lead_id = :l
    """), {"l": lead_id})
    return [Entry(r.enrolled_at, "enrollment", f"Enrolled in {r.campaign}", r.id,
                  _pairs(("now", r.status), ("stop reason", r.stop_reason), ("next step", r.next_step),
                         ("next due", r.next_due_at if r.status in ("active", "held") else None),
                         ("last sent", r.last_sent_at), ("mailbox", r.mailbox),
                         ("timezone", f"{r.timezone} ({r.timezone_source})"),
                         ("soft bounces", r.soft_bounces or None)),
                  badge=r.status) for r in rows]


def inbound(conn: Connection, lead_id: int) -> list[Entry]:
    """Replies, bounces and complaints matched to this lead, with their class, evidence and what was done."""
    rows = conn.execute(text("""
        SELECT i.id, i.received_at, i.source, i.provider, i.from_address, i.subject, i.kind, i.evidence,
               i.reason, i.rule, i.diagnostic,
               i.status_code, i.match_kind, i.processed_at, i.outcome, i.verified, i.trust, s.step,
               i.classified_kind, i.reclassified_by, i.reclassified_at,
               s.message_id AS matched_message,
               m.from_address AS mailbox, i.folder
        FROM inbound_messages i
        LEFT JOIN messages s ON s.id = i.message_pk AND s.client_id = i.client_id
        LEFT JOIN mailboxes m ON m.id = i.mailbox_id AND m.client_id = i.client_id
        WHERE i.lead_id = :l
    """), {"l": lead_id})
    return [Entry(r.received_at, "inbound", ("unverified " if r.verified is False else "")
                  + f"{r.kind.replace('_', ' ')}: {r.subject or '(no subject)'}", r.id,
                  _pairs(("from", r.from_address), ("evidence", r.evidence), ("reason", r.reason), ("rule", r.rule),
                         ("status code", r.status_code), ("diagnostic", r.diagnostic),
                         ("matched by", r.match_kind), ("answers", f"step {r.step} {r.matched_message}"
                                                        if r.step is not None else None),
                         ("via", " ".join(x for x in (r.source, r.provider, r.mailbox, r.folder) if x)),
                         ("trust", r.trust), ("processed", r.processed_at), ("outcome", r.outcome),
                         ("reclassified", f"from {r.classified_kind.replace('_', ' ')} by {r.reclassified_by} at "
                                          f"{_text(r.reclassified_at)}" if r.reclassified_by else None)),
                  badge="unverified" if r.verified is False else r.kind) for r in rows]


def suppressions(conn: Connection, info: Mapping[str, Any]) -> list[Entry]:
    """Suppressions of this lead's client naming its address, its address's domain or its company's domain."""
    email = info["email"]
    domains = sorted({d for d in (email.rpartition("@")[2], (info.get("company_domain") or "").lower()) if d})
    rows = conn.execute(text("""
        SELECT id, created_at, kind, value, reason, source FROM suppressions
        WHERE client_id = :c AND ((kind = 'email' AND value = :e) OR (kind = 'domain' AND value = ANY(:d)))
    """), {"c": info["client_id"], "e": email, "d": domains})
    return [Entry(r.created_at, "suppression", f"Suppressed ({r.kind}: {r.value})", r.id,
                  _pairs(("reason", r.reason), ("source", r.source)), badge="suppressed") for r in rows]


def verdicts(conn: Connection, lead_id: int) -> list[Entry]:
    """Every operator verdict on this lead (the newest stands), with who decided and the message it was decided on."""
    rows = conn.execute(text("""
        SELECT v.id, v.decided_at, v.verdict, v.decided_by, v.note, v.inbound_message_id, i.subject
        FROM lead_verdicts v
        LEFT JOIN inbound_messages i ON i.id = v.inbound_message_id AND i.client_id = v.client_id
        WHERE v.lead_id = :l
    """), {"l": lead_id})
    return [Entry(r.decided_at, "verdict", f"Marked {r.verdict.replace('_', ' ')}", r.id,
                  _pairs(("by", r.decided_by), ("note", r.note),
                         ("on reply", f"{r.inbound_message_id} {r.subject or '(no subject)'}"
                                      if r.inbound_message_id is not None else None)),
                  badge=r.verdict) for r in rows]


def story(conn: Connection, lead_id: int) -> dict[str, Any] | None:
    """The lead's header, its timeline (time order) and the batches it was in; None: not visible."""
    info = lead(conn, lead_id)
    if info is None:
        return None
    timeline = merge(lead_entries(info), enrollments(conn, lead_id), transitions(conn, lead_id),
                     provider_attempts(conn, lead_id), credits(conn, lead_id), messages(conn, lead_id),
                     inbound(conn, lead_id), suppressions(conn, info), verdicts(conn, lead_id))
    batch_rows = conn.execute(text("""
        SELECT w.batch_id, b.kind, b.status AS batch_status, w.id AS item_id, w.status, w.step, w.attempts
        FROM work_items w JOIN batches b ON b.id = w.batch_id AND b.client_id = w.client_id
        WHERE w.lead_id = :l ORDER BY w.batch_id, w.id
    """), {"l": lead_id})
    return {"lead": info, "timeline": timeline, "batches": [dict(r._mapping) for r in batch_rows]}
