"""The bounce shield: pause a mailbox or a campaign whose hard-bounce or complaint rate passes its threshold.

`verdict` is pure (counts in, a reason or None out); `check` reads the rolling window from
Postgres and pauses, inside the caller's transaction, so the same commit that records a bounce
also stops the next send (outreach's just-in-time checks refuse a paused mailbox or campaign).
Rates are over the sends of the last `shield_window_days` (by `sent_at`): bounced sends / sends.
"Passes" means strictly above: 1 bounce in 50 sends is 2.0 % and does not pause at a 2 % threshold.
A rate is only judged over at least `shield_min_sends` sends (one bounce in five is noise).
Resuming is always an explicit command; the shield never resumes anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from shared.settings import Settings

log = logging.getLogger(__name__)

SHIELD_PREFIX = "bounce shield"


@dataclass(frozen=True)
class Thresholds:
    hard_bounce_pct: float = 2.0
    complaint_pct: float = 0.3
    min_sends: int = 20
    window_days: int = 7

    @classmethod
    def from_settings(cls, s: Settings) -> Thresholds:
        return cls(s.shield_hard_bounce_pct, s.shield_complaint_pct, s.shield_min_sends, s.shield_window_days)


@dataclass(frozen=True)
class Rates:
    sends: int
    hard_bounces: int
    complaints: int

    @property
    def hard_bounce_pct(self) -> float | None:
        """Hard-bounced sends per 100 sends (None: no sends)."""
        return 100.0 * self.hard_bounces / self.sends if self.sends else None

    @property
    def complaint_pct(self) -> float | None:
        return 100.0 * self.complaints / self.sends if self.sends else None


def verdict(rates: Rates, t: Thresholds) -> str | None:
    """Why to pause (a sentence with the figures), or None."""
    if rates.sends < t.min_sends or rates.sends == 0:
        return None
    hard = rates.hard_bounce_pct or 0.0
    if hard > t.hard_bounce_pct:
        return (f"{SHIELD_PREFIX}: hard-bounce rate {hard:.1f} % ({rates.hard_bounces} of {rates.sends} sends in "
                f"{t.window_days} days) is above {t.hard_bounce_pct:g} %")
    complaints = rates.complaint_pct or 0.0
    if complaints > t.complaint_pct:
        return (f"{SHIELD_PREFIX}: complaint rate {complaints:.1f} % ({rates.complaints} of {rates.sends} sends in "
                f"{t.window_days} days) is above {t.complaint_pct:g} %")
    return None


_RATES = """
    SELECT count(*) AS sends,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM inbound_messages i WHERE i.message_pk = s.id
                                          AND i.client_id = s.client_id AND i.kind = 'hard_bounce'
                                          AND i.verified IS NOT FALSE)) AS hard,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM inbound_messages i WHERE i.message_pk = s.id
                                          AND i.client_id = s.client_id AND i.kind = 'complaint'
                                          AND i.verified IS NOT FALSE)) AS complaints
    FROM messages s
    WHERE s.{column} = :id AND s.client_id = :c AND s.status = 'sent' AND s.sent_at > :since AND s.sent_at <= :now
"""


def rates(conn: Connection, *, client_id: int, mailbox_id: int | None = None, campaign_id: int | None = None,
          now: datetime, window_days: int) -> Rates:
    column, key = ("mailbox_id", mailbox_id) if mailbox_id is not None else ("campaign_id", campaign_id)
    r = conn.execute(text(_RATES.format(column=column)),
                     {"id": key, "c": client_id, "since": now - timedelta(days=window_days), "now": now}).one()
    return Rates(int(r.sends), int(r.hard), int(r.complaints))


def check(conn: Connection, *, client_id: int, mailbox_id: int, campaign_id: int, now: datetime,
          thresholds: Thresholds) -> list[str]:
    """Pause the mailbox and/or the campaign when its own rate passes; returns what was paused, as sentences."""
    paused = []
    mailbox = verdict(rates(conn, client_id=client_id, mailbox_id=mailbox_id, now=now,
                            window_days=thresholds.window_days), thresholds)
    if mailbox and conn.execute(
            text("UPDATE mailboxes SET status = 'paused', status_reason = :r, paused_at = now() "
                 "WHERE id = :m AND client_id = :c AND status = 'active' RETURNING from_address"),
            {"r": mailbox, "m": mailbox_id, "c": client_id}).first():
        log.warning("mailbox_id=%s paused: %s", mailbox_id, mailbox)
        paused.append(f"mailbox paused ({mailbox})")
    campaign = verdict(rates(conn, client_id=client_id, campaign_id=campaign_id, now=now,
                             window_days=thresholds.window_days), thresholds)
    if campaign and conn.execute(
            text("UPDATE campaigns SET status = 'paused', status_reason = :r, paused_at = now() "
                 "WHERE id = :camp AND client_id = :c AND status = 'active' RETURNING id"),
            {"r": campaign, "camp": campaign_id, "c": client_id}).first():
        log.warning("campaign_id=%s paused: %s", campaign_id, campaign)
        paused.append(f"campaign paused ({campaign})")
    return paused
