"""Outreach SQL behind named functions: mailboxes, sequences, enrollment, activation, planning inputs.

The CLI, the flow, the demo and the web app call these; none of them writes SQL of its own.
Every function takes the client id and filters on it: no query reaches another client's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from shared.engines.campaigns import sequences
from shared.engines.outreach import timezones
from shared.engines.outreach.capacity import HOLDS_SLOT, limits_from_row
from shared.engines.outreach.scheduler import Candidate, MailboxState, Send
from shared.engines.outreach.timezones import Window
from shared.errors import OutreachError


# -- mailboxes -----------------------------------------------------------------------------------


# -- sequences -----------------------------------------------------------------------------------


# -- enrollment and activation -------------------------------------------------------------------


def enroll(conn: Connection, client_id: int, campaign_id: int, *, now: datetime,
           lead_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Enroll the campaign's sendable leads (each once), resolving each lead's timezone once."""
    _, fallback = sequences.window(conn, campaign_id)
    first = sequences.steps(conn, campaign_id)
    if not first:
        raise OutreachError("the campaign has no steps")
    rows = conn.execute(
        text("SELECT l.id, l.timezone, l.phone, l.country FROM leads l WHERE l.client_id = :c AND l.campaign_id = :camp "
             "AND l.status IN ('new', 'enriched') AND (CAST(:ids AS bigint[]) IS NULL OR l.id = ANY(:ids)) "
             "AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.campaign_id = :camp AND e.lead_id = l.id) "
             "ORDER BY l.id"), {"c": client_id, "camp": campaign_id, "ids": list(lead_ids) if lead_ids else None}).all()
    sources: dict[str, int] = {}
    values = []
    for r in rows:
        tz = timezones.resolve(explicit=r.timezone, phone=r.phone, country=r.country, fallback=fallback)
        sources[tz.source] = sources.get(tz.source, 0) + 1
        due = timezones.add_delay(now, first[0]["delay_amount"], first[0]["delay_unit"], tz.timezone)
        values.append((r.id, tz.timezone, tz.source + (f" ({tz.note})" if tz.note else ""), due))
    if values:
        conn.execute(
            text("INSERT INTO enrollments (client_id, campaign_id, lead_id, timezone, timezone_source, next_due_at, "
                 "enrolled_at) SELECT :c, :camp, v.lead, v.tz, v.src, v.due, :now FROM unnest(CAST(:leads AS bigint[]), "
                 "CAST(:tzs AS text[]), CAST(:srcs AS text[]), CAST(:dues AS timestamptz[])) AS v(lead, tz, src, due) "
                 "ON CONFLICT (campaign_id, lead_id) DO NOTHING"),
            {"c": client_id, "camp": campaign_id, "now": now, "leads": [v[0] for v in values],
             "tzs": [v[1] for v in values], "srcs": [v[2] for v in values], "dues": [v[3] for v in values]})
    return sources


# -- planning inputs -----------------------------------------------------------------------------

_CANDIDATES = text(
    """
    SELECT e.id, e.client_id, e.campaign_id, e.lead_id, e.next_step, e.next_due_at, e.timezone, e.mailbox_id
    FROM enrollments e
    JOIN campaigns camp ON camp.id = e.campaign_id AND camp.client_id = e.client_id AND camp.status = 'active'
    JOIN clients c ON c.id = e.client_id AND c.subscription_status IN ('active', 'trialing')
    WHERE e.status = 'active' AND e.next_due_at <= :now
      AND (CAST(:campaign AS bigint) IS NULL OR e.campaign_id = :campaign)
      AND NOT EXISTS (SELECT 1 FROM work_items w WHERE w.lead_id = e.lead_id AND w.step IS NOT NULL
                      AND w.status IN ('PENDING', 'QUEUED', 'IN_PROGRESS'))
    ORDER BY e.next_due_at
    LIMIT :limit
    """
)


@dataclass(slots=True)
class PlanningInputs:
    candidates: list[Candidate]
    windows: dict[int, Window]
    mailboxes: list[MailboxState]


def planning_inputs(conn: Connection, now: datetime, *, campaign_id: int | None = None,
                    limit: int = 10_000) -> PlanningInputs:
    """What the pure scheduler needs at `now`, read with a handful of indexed queries."""
    cands = [Candidate(r.id, r.client_id, r.campaign_id, r.lead_id, r.next_step, r.next_due_at, r.timezone,
                       r.mailbox_id)
             for r in conn.execute(_CANDIDATES, {"now": now, "campaign": campaign_id, "limit": limit})]
    campaigns = sorted({c.campaign_id for c in cands})
    clients = sorted({c.client_id for c in cands})
    windows = {r.campaign_id: Window(frozenset(r.weekdays), r.start_hour, r.end_hour) for r in conn.execute(
        text("SELECT campaign_id, weekdays, start_hour, end_hour FROM sequences WHERE campaign_id = ANY(:ids)"),
        {"ids": campaigns})}
    return PlanningInputs(cands, windows, mailbox_states(conn, clients, now))


def mailbox_states(conn: Connection, client_ids: Sequence[int], now: datetime) -> list[MailboxState]:
    rows = conn.execute(
        text("SELECT m.*, coalesce(s.times, ARRAY[]::timestamptz[]) AS times FROM mailboxes m LEFT JOIN LATERAL ("
             "  SELECT array_agg(reserved_at ORDER BY reserved_at) AS times FROM messages s "
             f"  WHERE s.mailbox_id = m.id AND {HOLDS_SLOT} AND s.reserved_at > CAST(:now AS timestamptz) - "
             "  interval '24 hours' AND s.reserved_at <= :now) s ON true WHERE m.client_id = ANY(:c) ORDER BY m.id"),
        {"c": list(client_ids), "now": now})
    return [MailboxState(r.id, r.client_id, limits_from_row(r), r.status == "active", len(r.times), r.last_sent_at,
                         r.next_send_at, list(r.times), r.smtp_retry_at,
                         r.status_reason if r.status != "active" else r.smtp_last_error) for r in rows]


def enqueue_sends(conn: Connection, sends: Sequence[Send]) -> list[int]:
    """One 'send' batch per campaign with an item per planned (lead, step); returns the batch ids.

    The partial UNIQUE index keeps one step per lead in flight: a lead another run already queued
    is left out here, not queued twice.
    """
    by_campaign: dict[tuple[int, int], list[Send]] = {}
    for s in sends:
        by_campaign.setdefault((s.client_id, s.campaign_id), []).append(s)
    batch_ids = []
    for (client_id, campaign_id), group in by_campaign.items():
        batch = conn.execute(
            text("INSERT INTO batches (client_id, campaign_id, status, kind, started_at) "
                 "VALUES (:c, :camp, 'running', 'send', now()) RETURNING id"),
            {"c": client_id, "camp": campaign_id}).scalar_one()
        conn.execute(
            text("INSERT INTO work_items (batch_id, lead_id, client_id, step, mailbox_id, max_attempts) "
                 "SELECT :b, v.lead, :c, v.step, v.mailbox, 1 FROM unnest(CAST(:leads AS bigint[]), "
                 "CAST(:steps AS int[]), CAST(:boxes AS bigint[])) AS v(lead, step, mailbox) "
                 "ON CONFLICT (lead_id) WHERE step IS NOT NULL AND status IN ('PENDING', 'QUEUED', 'IN_PROGRESS') "
                 "DO NOTHING"),
            {"b": batch, "c": client_id, "leads": [s.lead_id for s in group], "steps": [s.step for s in group],
             "boxes": [s.mailbox_id for s in group]})
        batch_ids.append(int(batch))
    return batch_ids


def sends_per_day(conn: Connection, campaign_id: int, tz: str = "UTC") -> dict[tuple[str, str], int]:
    """(day, mailbox address) → messages sent, for reports and the forecast check."""
    rows = conn.execute(
        text("SELECT to_char(s.sent_at AT TIME ZONE :tz, 'YYYY-MM-DD') AS day, m.from_address, count(*) AS n "
             "FROM messages s JOIN mailboxes m ON m.id = s.mailbox_id WHERE s.campaign_id = :camp "
             "AND s.status = 'sent' GROUP BY 1, 2 ORDER BY 1, 2"), {"camp": campaign_id, "tz": tz})
    return {(r.day, r.from_address): r.n for r in rows}


def skip_reasons(conn: Connection, campaign_id: int) -> dict[str, int]:
    rows = conn.execute(
        text("SELECT w.skip_reason, count(*) AS n FROM work_items w JOIN batches b ON b.id = w.batch_id "
             "WHERE b.campaign_id = :camp AND b.kind = 'send' AND w.status = 'SKIPPED' GROUP BY 1 ORDER BY 2 DESC"),
        {"camp": campaign_id})
    return {r.skip_reason: r.n for r in rows}


def open_send_batches(conn: Connection, campaign_id: int | None = None) -> list[int]:
    """Send batches that still hold PENDING items (recovered after a lost worker): dispatch them again."""
    return [int(b) for b in conn.execute(
        text("SELECT DISTINCT w.batch_id FROM work_items w JOIN batches b ON b.id = w.batch_id "
             "WHERE b.kind = 'send' AND w.status = 'PENDING' AND (CAST(:camp AS bigint) IS NULL OR b.campaign_id = :camp) "
             "ORDER BY 1"), {"camp": campaign_id}).scalars()]


def enrollment_states(conn: Connection, campaign_id: int) -> dict[str, int]:
    """'active: next step 2', 'stopped: unsubscribed', 'finished'… → leads, for reports."""
    rows = conn.execute(
        text("SELECT CASE WHEN status = 'stopped' THEN 'stopped: ' || stop_reason "
             "WHEN status IN ('active', 'held') THEN status || ': next step ' || next_step ELSE status END AS state, "
             "count(*) AS n FROM enrollments WHERE campaign_id = :camp GROUP BY 1 ORDER BY 1"), {"camp": campaign_id})
    return {r.state: r.n for r in rows}


def finish_send_batches(conn: Connection, batch_ids: Sequence[int]) -> None:
    """Send batches are done once their items are terminal (sends are never re-dispatched in place)."""
    conn.execute(
        text("UPDATE batches b SET status = CASE WHEN EXISTS (SELECT 1 FROM work_items w WHERE w.batch_id = b.id "
             "AND w.status = 'FAILED') THEN 'completed_with_errors' ELSE 'completed' END, finished_at = now() "
             "WHERE b.id = ANY(:ids) AND b.kind = 'send' AND NOT EXISTS (SELECT 1 FROM work_items w "
             "WHERE w.batch_id = b.id AND w.status IN ('PENDING', 'QUEUED', 'IN_PROGRESS'))"),
        {"ids": list(batch_ids)})


def best_enriched_leads(conn: Connection, client_id: int, limit: int) -> list[int]:
    """The client's enriched leads with a first name, best score first: who a sequence should start with."""
    return list(conn.execute(
        text("SELECT id FROM leads WHERE client_id = :c AND status = 'enriched' AND first_name IS NOT NULL "
             "ORDER BY score DESC NULLS LAST, id LIMIT :n"), {"c": client_id, "n": limit}).scalars())


def latest_first_step_sent(conn: Connection, campaign_id: int) -> tuple[int, str] | None:
    """(message pk, lead email) of the campaign's most recent step-1 send, or None."""
    row = conn.execute(
        text("SELECT s.id, l.email FROM messages s JOIN leads l ON l.id = s.lead_id WHERE s.campaign_id = :c "
             "AND s.status = 'sent' AND s.step = 1 ORDER BY s.id DESC LIMIT 1"), {"c": campaign_id}).first()
    return None if row is None else (int(row.id), str(row.email))


def sent_to_since(conn: Connection, campaign_id: int, email: str, since: datetime) -> int:
    """How many of the campaign's messages went to `email` after `since`."""
    return int(conn.execute(
        text("SELECT count(*) FROM messages s JOIN leads l ON l.id = s.lead_id WHERE s.campaign_id = :c "
             "AND l.email = :e AND s.sent_at > :t"), {"c": campaign_id, "e": email, "t": since}).scalar_one())


def due_labels(conn: Connection, lead_ids: Sequence[int], mailbox_ids: Sequence[int],
               campaign_ids: Sequence[int]) -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """Lead emails, mailbox addresses and campaign names by id, for `outbound outreach due`."""
    leads = dict(conn.execute(text("SELECT id, email FROM leads WHERE id = ANY(:ids)"), {"ids": list(lead_ids)}).all())
    boxes = dict(conn.execute(text("SELECT id, from_address FROM mailboxes WHERE id = ANY(:ids)"),
                              {"ids": list(mailbox_ids)}).all())
    campaigns = dict(conn.execute(text("SELECT id, name FROM campaigns WHERE id = ANY(:ids)"),
                                  {"ids": list(campaign_ids)}).all())
    return leads, boxes, campaigns
