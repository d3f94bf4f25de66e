"""Mailbox capacity: the ramp-up cap (pure) and the one guarded reservation in Postgres.

Capacity is never held in process memory: a send takes its slot by locking the mailbox row and
running one guarded UPDATE (active, not backing off after SMTP failures, past its gap, fewer than
its cap sent in the rolling 24 h); zero rows means no slot. What counts against the cap is every
send that may have been delivered (`HOLDS_SLOT`): not a failed or deferred one.
Overlapping runs and many Modal containers all go through it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from shared.errors import NoSlot

SECONDS_PER_DAY = 86_400
# Sends that may have reached someone hold a slot of the rolling 24 h cap; failed and deferred ones
# never did. SQL over `messages s`, used by every count of the cap (here and in store).
HOLDS_SLOT = "s.status NOT IN ('failed', 'deferred')"


@dataclass(frozen=True, slots=True)
class MailboxLimits:
    daily_cap: int
    ramp_start: int | None  # None: no ramp
    ramp_step: int
    ramp_ceiling: int | None
    ramp_started_at: datetime
    min_gap_seconds: int
    jitter_seconds: int


def ramp_days(limits: MailboxLimits, now: datetime) -> int | None:
    """Whole days since the ramp started (0 on day one); None: the mailbox has no ramp."""
    if limits.ramp_start is None:
        return None
    return max(0, int((now - limits.ramp_started_at).total_seconds() // SECONDS_PER_DAY))


def effective_cap(limits: MailboxLimits, now: datetime) -> int:
    """Sends allowed in the rolling 24 h at `now`: the smallest applicable limit wins."""
    cap = limits.daily_cap
    days = ramp_days(limits, now)
    if limits.ramp_start is not None and days is not None:
        cap = min(cap, limits.ramp_start + limits.ramp_step * days)
        if limits.ramp_ceiling is not None:
            cap = min(cap, limits.ramp_ceiling)
    return max(0, cap)


def jitter(limits: MailboxLimits, rng: random.Random | None = None) -> float:
    """Random extra seconds after each send, so the gaps do not look machine-made."""
    return (rng or random).uniform(0, limits.jitter_seconds) if limits.jitter_seconds else 0.0


def limits_from_row(row: object) -> MailboxLimits:
    r = row  # a Row or mapping with the mailbox columns
    return MailboxLimits(r.daily_cap, r.ramp_start, r.ramp_step, r.ramp_ceiling, r.ramp_started_at,  # type: ignore[attr-defined]
                         r.min_gap_seconds, r.jitter_seconds)  # type: ignore[attr-defined]


# The mailbox columns a reservation reads under the row lock (`reserve(locked=...)`).
LOCKED_COLUMNS = ("daily_cap", "ramp_start", "ramp_step", "ramp_ceiling", "ramp_started_at", "min_gap_seconds",
                  "jitter_seconds", "status", "smtp_retry_at")


# The mailboxes' rows locked in id order (so two senders locking several never wait in a cycle).
_LOCK = text(f"SELECT id, {', '.join(LOCKED_COLUMNS)} FROM mailboxes WHERE id = ANY(CAST(:ids AS bigint[])) "
             "AND client_id = :c ORDER BY id FOR UPDATE")


def lock(conn: Connection, *, client_id: int, mailbox_ids: Iterable[int]) -> dict[int, Any]:
    """Lock these mailboxes' rows for a reservation in this transaction: id → its LOCKED_COLUMNS (a missing
    or other client's mailbox is absent)."""
    return {r.id: r for r in conn.execute(_LOCK, {"ids": sorted(set(mailbox_ids)), "c": client_id})}


# Runs after the row locks, so (READ COMMITTED) it sees every reservation committed before ours.
# One slot for each listed mailbox (each at most once), its cap and gap given per mailbox.
_RESERVE = text(
    f"""
    UPDATE mailboxes m
    SET last_sent_at = :now, next_send_at = CAST(:now AS timestamptz) + make_interval(secs => v.gap)
    FROM unnest(CAST(:ids AS bigint[]), CAST(:caps AS integer[]), CAST(:gaps AS double precision[])) AS v(id, cap, gap)
    WHERE m.id = v.id AND m.client_id = :c AND m.status = 'active'
      AND (m.next_send_at IS NULL OR m.next_send_at <= :now)
      AND (SELECT count(*) FROM messages s
           WHERE s.mailbox_id = m.id AND {HOLDS_SLOT}
             AND s.reserved_at > CAST(:now AS timestamptz) - interval '24 hours' AND s.reserved_at <= :now) < v.cap
    RETURNING m.id
    """
)


def reserve(conn: Connection, *, mailbox_id: int, client_id: int, now: datetime,
            rng: random.Random | None = None, locked: object | None = None) -> None:
    """Take one slot (raises NoSlot otherwise). The caller inserts its `messages` row in the same
    transaction, which is what the next reservation counts. `locked`: the mailbox's LOCKED_COLUMNS,
    already read FOR UPDATE in this transaction, instead of locking here."""
    row: Any = locked if locked is not None else lock(conn, client_id=client_id, mailbox_ids=[mailbox_id]).get(mailbox_id)
    if row is None:
        raise NoSlot("mailbox_missing")
    reason = reserve_many(conn, client_id=client_id, locked={mailbox_id: row}, now=now, rng=rng).get(mailbox_id)
    if reason is not None:
        raise NoSlot(reason)


def reserve_many(conn: Connection, *, client_id: int, locked: Mapping[int, Any], now: datetime,
                 rng: random.Random | None = None) -> dict[int, str | None]:
    """One slot in each mailbox of `locked` (id → its LOCKED_COLUMNS, read FOR UPDATE in this transaction: `lock`),
    in one statement: id → None when it got its slot, else why not (`NoSlot`'s reasons)."""
    why: dict[int, str | None] = {}
    asked: list[tuple[int, int, float]] = []
    for mailbox_id, row in locked.items():
        if row.status != "active":
            why[mailbox_id] = "mailbox_paused"
        elif row.smtp_retry_at is not None and row.smtp_retry_at > now:
            why[mailbox_id] = "mailbox_backing_off"
        else:
            limits = limits_from_row(row)
            asked.append((mailbox_id, effective_cap(limits, now), limits.min_gap_seconds + jitter(limits, rng)))
    if asked:
        got = set(conn.execute(_RESERVE, {"c": client_id, "now": now, "ids": [a[0] for a in asked],
                                          "caps": [a[1] for a in asked], "gaps": [a[2] for a in asked]}).scalars())
        why.update({mailbox_id: None if mailbox_id in got else "mailbox_at_capacity" for mailbox_id, _, _ in asked})
    return why
