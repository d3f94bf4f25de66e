"""Forecast a campaign before (or during) its run: the same pure scheduler on a simulated clock.

Reads the campaign's leads (enrolled or about to be), steps, window and the client's mailboxes
as they are now, then runs `scheduler.due_sends` / `next_wake` in memory until every lead has
had its last step. Jitter is left out (sends are planned at the minimum gap), so the real run is
never faster than the forecast; what it says per day per mailbox is what the flow will do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.outreach import scheduler, store, timezones
from shared import errors
from shared.engines.campaigns import sequences
from shared.engines.outreach.scheduler import Candidate
from shared.settings import Settings

HORIZON_DAYS = 365  # a sequence that has not finished in a year is reported as such


@dataclass(slots=True)
class Forecast:
    leads: int
    steps: int
    per_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day (UTC) → mailbox → sends
    caps: dict[str, int] = field(default_factory=dict)  # mailbox → daily cap (before ramp)
    last_send_at: datetime | None = None
    unfinished: int = 0  # leads not done within the horizon (no mailbox, say)
    enrichment_leads: int = 0
    enrichment_credits_max: int = 0
    credit_balance: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"leads": self.leads, "steps": self.steps, "per_day": self.per_day, "caps": self.caps,
                "last_send_at": self.last_send_at.isoformat() if self.last_send_at else None,
                "unfinished": self.unfinished, "enrichment_leads": self.enrichment_leads,
                "enrichment_credits_max": self.enrichment_credits_max, "credit_balance": self.credit_balance}


def paid_credits_per_lead(settings: Settings) -> int:
    """Worst-case enrichment credits for one lead: every paid provider of the waterfall asked once."""
    from shared.integrations.providers import resolve_order

    return sum(int(getattr(settings, f"{p}_cost", 0) or 0) for p in resolve_order(settings))


def forecast(conn: Connection, client_id: int, campaign_id: int, *, now: datetime,
             credits_per_lead: int = 0) -> Forecast:
    """What the campaign will send from `now` on. `credits_per_lead`: the paid waterfall's worst case."""
    window, fallback = sequences.window(conn, campaign_id)
    steps = sequences.steps(conn, campaign_id)
    if not steps:
        raise errors.OutreachError("the campaign has no steps")
    enrolled = conn.execute(
        text("SELECT id, lead_id, next_step, next_due_at, timezone, mailbox_id FROM enrollments "
             "WHERE campaign_id = :camp AND client_id = :c AND status = 'active'"),
        {"camp": campaign_id, "c": client_id}).all()
    cands = [Candidate(r.id, client_id, campaign_id, r.lead_id, r.next_step, max(r.next_due_at, now), r.timezone,
                       r.mailbox_id) for r in enrolled]
    # Leads not enrolled yet are forecast as if enrolled now (activation enrolls them).
    fresh = conn.execute(
        text("SELECT l.id, l.timezone, l.phone, l.country FROM leads l WHERE l.client_id = :c AND l.campaign_id = :camp "
             "AND l.status IN ('new', 'enriched') AND NOT EXISTS (SELECT 1 FROM enrollments e "
             "WHERE e.campaign_id = :camp AND e.lead_id = l.id)"), {"c": client_id, "camp": campaign_id}).all()
    for i, r in enumerate(fresh):
        tz = timezones.resolve(explicit=r.timezone, phone=r.phone, country=r.country, fallback=fallback).timezone
        due = timezones.add_delay(now, steps[0]["delay_amount"], steps[0]["delay_unit"], tz)
        cands.append(Candidate(-(i + 1), client_id, campaign_id, r.id, 1, due, tz, None))
    boxes = [m for m in store.mailbox_states(conn, [client_id], now)]
    names = dict(conn.execute(text("SELECT id, from_address FROM mailboxes WHERE client_id = :c"),
                              {"c": client_id}).all())
    result = Forecast(leads=len(cands), steps=len(steps), caps={names[m.id]: m.limits.daily_cap for m in boxes})
    by_step = {s["step"]: s for s in steps}
    windows = {campaign_id: window}
    clock, horizon = now, now + timedelta(days=HORIZON_DAYS)
    while cands:
        for m in boxes:
            scheduler.roll_window(m, clock)
        plan = scheduler.due_sends(clock, cands, windows, boxes)
        sent = {s.enrollment_id: s for s in plan.sends}
        kept = []
        for c in cands:
            s = sent.get(c.enrollment_id)
            if s is None:
                kept.append(c)
                continue
            day = clock.date().isoformat()
            result.per_day.setdefault(day, {}).setdefault(names[s.mailbox_id], 0)
            result.per_day[day][names[s.mailbox_id]] += 1
            result.last_send_at = clock
            nxt = by_step.get(c.step + 1)
            if nxt is not None:
                c.step, c.mailbox_id = c.step + 1, s.mailbox_id
                c.due_at = timezones.add_delay(clock, nxt["delay_amount"], nxt["delay_unit"], c.timezone)
                kept.append(c)
        cands = kept
        wake = scheduler.next_wake(clock, cands, windows, boxes, horizon=horizon)
        if wake is None:
            break
        clock = wake
    result.unfinished = len(cands)
    row = conn.execute(
        text("SELECT c.credit_balance, (SELECT count(*) FROM leads l WHERE l.client_id = c.id AND "
             "l.campaign_id = :camp AND l.status = 'new' AND l.enriched_at IS NULL) AS todo FROM clients c "
             "WHERE c.id = :c"), {"c": client_id, "camp": campaign_id}).one()
    result.credit_balance, result.enrichment_leads = row.credit_balance, row.todo
    result.enrichment_credits_max = row.todo * credits_per_lead
    return result
