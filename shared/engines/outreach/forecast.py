"""Forecast a campaign before (or during) its run: the scheduler's policy on a simulated clock.

Reads the campaign's leads (enrolled or about to be), steps, window and the client's mailboxes
as they are now (`inputs`), then simulates until every lead has had its last step. Jitter is left
out (sends are planned at the minimum gap), so the real run is never faster than the forecast;
what it says per day per mailbox is what the flow will do.

The simulation itself (and a slower reference that gives the same answer) is in `simulation`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

from shared.engines.outreach import store, timezones
from shared import errors
from shared.engines.campaigns import sequences
from shared.engines.outreach.scheduler import Candidate
from shared.engines.outreach.simulation import Forecast, Inputs, simulate
from shared.settings import Settings

__all__ = ["Forecast", "forecast", "inputs", "paid_credits_per_lead"]


def paid_credits_per_lead(settings: Settings) -> int:
    """Worst-case enrichment credits for one lead: every paid provider of the waterfall asked once."""
    from shared.integrations.providers import resolve_order

    return sum(int(getattr(settings, f"{p}_cost", 0) or 0) for p in resolve_order(settings))


def forecast(conn: Connection, client_id: int, campaign_id: int, *, now: datetime,
             credits_per_lead: int = 0) -> Forecast:
    """What the campaign will send from `now` on. `credits_per_lead`: the paid waterfall's worst case."""
    result = simulate(inputs(conn, client_id, campaign_id, now=now))
    row = conn.execute(
        text("SELECT c.credit_balance, (SELECT count(*) FROM leads l WHERE l.client_id = c.id AND "
             "l.campaign_id = :camp AND l.status = 'new' AND l.enriched_at IS NULL) AS todo FROM clients c "
             "WHERE c.id = :c"), {"c": client_id, "camp": campaign_id}).one()
    result.credit_balance, result.enrichment_leads = row.credit_balance, row.todo
    result.enrichment_credits_max = row.todo * credits_per_lead
    return result


def inputs(conn: Connection, client_id: int, campaign_id: int, *, now: datetime) -> Inputs:
    """The campaign's window, steps, leads (enrolled, or as if enrolled now) and mailboxes at `now`."""
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
    first_due: dict[str, datetime] = {}  # step 1's due time from now, per zone
    for i, r in enumerate(fresh):
        tz = timezones.resolve(explicit=r.timezone, phone=r.phone, country=r.country, fallback=fallback).timezone
        if tz not in first_due:
            first_due[tz] = timezones.add_delay(now, steps[0]["delay_amount"], steps[0]["delay_unit"], tz)
        cands.append(Candidate(-(i + 1), client_id, campaign_id, r.id, 1, first_due[tz], tz, None))
    boxes = store.mailbox_states(conn, [client_id], now)
    names = dict(conn.execute(text("SELECT id, from_address FROM mailboxes WHERE client_id = :c"),
                              {"c": client_id}).all())
    return Inputs(now, window, steps, cands, boxes, names)


