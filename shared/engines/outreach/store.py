"""Outreach SQL behind named functions: mailboxes, sequences, enrollment, activation, planning inputs.

The CLI, the flow, the demo and the web app call these; none of them writes SQL of its own.
Every function takes the client id and filters on it: no query reaches another client's rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.outreach import templates, timezones
from shared.engines.outreach.capacity import HOLDS_SLOT, limits_from_row
from shared.engines.outreach.scheduler import Candidate, MailboxState, Send
from shared.engines.outreach.timezones import Window


class OutreachError(ValueError):
    """A request about mailboxes, sequences or campaigns that cannot be honoured (named in the message)."""


# -- mailboxes -----------------------------------------------------------------------------------

MAILBOX_COLUMNS = ("from_address", "from_name", "smtp_host", "smtp_port", "tls_mode", "username", "secret_name",
                   "imap_host", "imap_port", "imap_tls_mode", "sent_folder", "daily_cap", "ramp_start", "ramp_step", "ramp_ceiling", "min_gap_seconds", "jitter_seconds",
                   "keeps_verp", "dkim_selector", "dkim_secret_name")
_ONE_LINE_FIELDS = ("from_address", "from_name", "smtp_host", "username", "secret_name", "imap_host", "sent_folder",
                    "dkim_selector", "dkim_secret_name")
_DKIM_SELECTOR = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def add_mailbox(conn: Connection, client_id: int, **fields: Any) -> int:
    """Create or update a mailbox (keyed by its from address within the client)."""
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


# -- sequences -----------------------------------------------------------------------------------


def set_schedule(conn: Connection, client_id: int, campaign_id: int, *, weekdays: Sequence[int] = (1, 2, 3, 4, 5),
                 start_hour: int = 9, end_hour: int = 17, fallback_timezone: str = "UTC") -> None:
    if not timezones.valid_zone(fallback_timezone):
        raise OutreachError(f"fallback timezone {fallback_timezone!r} is not an IANA zone")
    if not weekdays or any(d not in range(1, 8) for d in weekdays):
        raise OutreachError(f"weekdays must be ISO numbers 1 (Mon) … 7 (Sun), got {list(weekdays)}")
    if not (0 <= start_hour < end_hour <= 24):
        raise OutreachError(f"hours must satisfy 0 <= start < end <= 24, got {start_hour}-{end_hour}")
    conn.execute(
        text("INSERT INTO sequences (campaign_id, client_id, weekdays, start_hour, end_hour, fallback_timezone) "
             "VALUES (:camp, :c, CAST(:w AS smallint[]), :s, :e, :tz) ON CONFLICT (campaign_id) DO UPDATE SET "
             "weekdays = EXCLUDED.weekdays, start_hour = EXCLUDED.start_hour, end_hour = EXCLUDED.end_hour, "
             "fallback_timezone = EXCLUDED.fallback_timezone"),
        {"camp": campaign_id, "c": client_id, "w": sorted(set(weekdays)), "s": start_hour, "e": end_hour,
         "tz": fallback_timezone})


def set_step(conn: Connection, client_id: int, campaign_id: int, *, step: int, subject: str, body: str,
             delay_amount: int = 0, delay_unit: str = "business_days") -> None:
    templates.check_syntax(subject, where=f"step {step} subject")
    templates.check_syntax(body, where=f"step {step} body")
    if delay_unit not in ("business_days", "days"):
        raise OutreachError(f"delay unit must be business_days or days, got {delay_unit!r}")
    if conn.execute(text("SELECT 1 FROM sequences WHERE campaign_id = :camp AND client_id = :c"),
                    {"camp": campaign_id, "c": client_id}).first() is None:
        set_schedule(conn, client_id, campaign_id)
    if step > 1 and conn.execute(text("SELECT 1 FROM sequence_steps WHERE campaign_id = :camp AND step = :s"),
                                 {"camp": campaign_id, "s": step - 1}).first() is None:
        raise OutreachError(f"step {step} needs step {step - 1} first")
    conn.execute(
        text("INSERT INTO sequence_steps (client_id, campaign_id, step, delay_amount, delay_unit, subject_template, "
             "body_template) VALUES (:c, :camp, :s, :d, :u, :subj, :body) ON CONFLICT (campaign_id, step) DO UPDATE "
             "SET delay_amount = EXCLUDED.delay_amount, delay_unit = EXCLUDED.delay_unit, "
             "subject_template = EXCLUDED.subject_template, body_template = EXCLUDED.body_template"),
        {"c": client_id, "camp": campaign_id, "s": step, "d": delay_amount, "u": delay_unit, "subj": subject,
         "body": body})


def steps(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        text("SELECT step, delay_amount, delay_unit, subject_template, body_template FROM sequence_steps "
             "WHERE campaign_id = :camp ORDER BY step"), {"camp": campaign_id}).mappings()]


def window(conn: Connection, campaign_id: int) -> tuple[Window, str]:
    r = conn.execute(text("SELECT weekdays, start_hour, end_hour, fallback_timezone FROM sequences "
                          "WHERE campaign_id = :camp"), {"camp": campaign_id}).first()
    if r is None:
        raise OutreachError(f"campaign {campaign_id} has no sequence")
    return Window(frozenset(r.weekdays), r.start_hour, r.end_hour), r.fallback_timezone


# -- enrollment and activation -------------------------------------------------------------------


def enroll(conn: Connection, client_id: int, campaign_id: int, *, now: datetime,
           lead_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Enroll the campaign's sendable leads (each once), resolving each lead's timezone once."""
    _, fallback = window(conn, campaign_id)
    first = steps(conn, campaign_id)
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


def activation_problems(conn: Connection, client_id: int, campaign_id: int) -> list[str]:
    """Dry-render every enrolled lead for every step; every line is one blocking problem."""
    step_rows = steps(conn, campaign_id)
    if not step_rows:
        return ["the campaign has no steps"]
    problems = []
    if conn.execute(text("SELECT 1 FROM mailboxes WHERE client_id = :c AND status = 'active'"),
                    {"c": client_id}).first() is None:
        problems.append("the client has no active mailbox")
    leads = conn.execute(
        text("SELECT l.* FROM enrollments e JOIN leads l ON l.id = e.lead_id AND l.client_id = e.client_id "
             "WHERE e.campaign_id = :camp AND e.client_id = :c AND e.status IN ('active', 'held') ORDER BY l.id"),
        {"camp": campaign_id, "c": client_id}).mappings()
    compiled = [templates.StepTemplate(s["step"], s["subject_template"], s["body_template"]) for s in step_rows]
    return problems + templates.dry_render(leads, compiled)


def activate(conn: Connection, client_id: int, campaign_id: int) -> list[str]:
    """Activate the campaign when nothing blocks it; returns the problems (empty: activated)."""
    problems = activation_problems(conn, client_id, campaign_id)
    if not problems:
        conn.execute(text("UPDATE campaigns SET status = 'active' WHERE id = :camp AND client_id = :c"),
                     {"camp": campaign_id, "c": client_id})
    return problems


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


def default_window_horizon(now: datetime) -> datetime:
    return now + timedelta(hours=1)


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
