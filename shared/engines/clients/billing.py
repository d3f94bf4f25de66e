"""Credits: reserve before a paid call, refund on a miss (pay on hit), each movement exactly once.

The balance lives on `clients.credit_balance` (CHECK >= 0) and every movement is a row in
`credit_ledger` with a unique idempotency key, written in the same transaction as the balance
change. A reservation is keyed by (item, attempt, provider): a retried call of the same attempt is
never charged twice, and an attempt that is fenced or abandoned has its reservations refunded,
so only the attempt that finishes DONE keeps what it spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import Connection, text

from shared.status import ACTIVE_SUBSCRIPTIONS


class Reservation(StrEnum):
    RESERVED = "reserved"
    ALREADY_RESERVED = "already_reserved"
    NO_CREDITS = "no_credits"
    DEFERRED = "deferred"  # not now, but reservations in flight elsewhere would pay for it if refunded
    INACTIVE = "subscription_inactive"
    FENCED = "fenced"


def reservation_key(item_id: int, attempt: int, provider: str) -> str:
    return f"enrich:{item_id}:{attempt}:{provider}"


def add_credits(conn: Connection, client_id: int, amount: int, *, key: str, note: str | None = None) -> bool:
    """Top up once per key; False when that key was already applied."""
    if amount <= 0:
        raise ValueError(f"top-up amount must be positive, got {amount}")
    inserted = conn.execute(
        text(
            "INSERT INTO credit_ledger (client_id, delta, kind, idempotency_key, note) "
            "VALUES (:c, :a, 'topup', :k, :n) ON CONFLICT (client_id, idempotency_key) DO NOTHING RETURNING id"
        ),
        {"c": client_id, "a": amount, "k": key, "n": note},
    ).first()
    if inserted:
        conn.execute(text("UPDATE clients SET credit_balance = credit_balance + :a WHERE id = :c"),
                     {"a": amount, "c": client_id})
    return inserted is not None


def reserve(conn: Connection, *, client_id: int, item_id: int, attempt: int, provider: str,
            cost: int) -> Reservation:
    """Take `cost` credits for one provider call of one attempt, atomically and at most once."""
    return reserve_many(conn, client_id=client_id, held=[(item_id, attempt)], provider=provider, cost=cost)[item_id]


_LIVE = text(
    """
    SELECT w.id FROM work_items w
    JOIN unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS v(id, attempt)
      ON w.id = v.id AND w.attempts = v.attempt
    WHERE w.status = 'IN_PROGRESS'
    FOR SHARE OF w
    """
)

# Credits other live attempts of the client hold right now: reservations neither refunded nor kept
# (kept = the attempt finished; until then a miss may still hand it back). Read only when short.
_IN_FLIGHT = text(
    """
    SELECT coalesce(-sum(l.delta), 0)
    FROM work_items w
    JOIN credit_ledger l ON l.work_item_id = w.id AND l.attempt = w.attempts AND l.client_id = w.client_id
    WHERE w.client_id = :c AND w.status = 'IN_PROGRESS' AND w.id <> ALL(CAST(:ids AS bigint[]))
      AND l.kind = 'reserve'
      AND NOT EXISTS (SELECT 1 FROM credit_ledger r
                      WHERE r.client_id = l.client_id AND r.idempotency_key = 'refund:' || l.idempotency_key)
    """
)

_RESERVE = text(
    """
    INSERT INTO credit_ledger (client_id, delta, kind, idempotency_key, work_item_id, attempt, provider)
    SELECT :c, :d, 'reserve', k, i, a, :p
    FROM unnest(CAST(:keys AS text[]), CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS v(k, i, a)
    ON CONFLICT (client_id, idempotency_key) DO NOTHING
    RETURNING work_item_id
    """
)


def reserve_many(conn: Connection, *, client_id: int, held: Sequence[tuple[int, int]], provider: str,
                 cost: int) -> dict[int, Reservation]:
    """One provider round for a chunk: reserve `cost` for each (item, attempt), in order, while credits last.

    The items are locked FOR SHARE (recovery cannot abandon an attempt mid-reservation) and the
    client row FOR UPDATE (concurrent chunks of one client take turns, so the balance check and
    the debit are one step). A key already in the ledger is a retried call: reserved, not charged.

    When the balance runs short, the leads left over are DEFERRED while the balance plus the
    reservations in flight (not yet refunded or kept) could still pay for one: ask again once those
    calls end, since a miss refunds. They are NO_CREDITS only when nothing is in flight any more.
    """
    if cost <= 0:
        raise ValueError(f"a reservation needs a positive cost, got {cost}")
    ids = [i for i, _ in held]
    live = set(conn.execute(_LIVE, {"ids": ids, "attempts": [a for _, a in held]}).scalars())
    result = {i: Reservation.FENCED for i in ids if i not in live}
    candidates = [(i, a) for i, a in held if i in live]
    if not candidates:
        return result
    client = conn.execute(text("SELECT credit_balance, subscription_status FROM clients WHERE id = :c FOR UPDATE"),
                          {"c": client_id}).one()
    keys = {i: reservation_key(i, a, provider) for i, a in candidates}
    existing = set(conn.execute(text("SELECT work_item_id FROM credit_ledger WHERE client_id = :c "
                                     "AND idempotency_key = ANY(:k)"),
                                {"c": client_id, "k": list(keys.values())}).scalars())
    result |= {i: Reservation.ALREADY_RESERVED for i, _ in candidates if i in existing}
    needed = [(i, a) for i, a in candidates if i not in existing]
    if client.subscription_status not in ACTIVE_SUBSCRIPTIONS:
        return result | {i: Reservation.INACTIVE for i, _ in needed}
    granted = needed[: client.credit_balance // cost]
    short = needed[len(granted):]
    if short:
        # What could still pay for any one of them: the balance left, other attempts' reservations in
        # flight, and the ones this call grants (a miss among them is refunded before the caller asks
        # again). Judged per lead, not shared out: which calls will miss is not known yet.
        in_flight = int(conn.execute(_IN_FLIGHT, {"c": client_id, "ids": ids}).scalar_one())
        left = client.credit_balance - cost * len(granted)
        later = Reservation.DEFERRED if left + in_flight + cost * len(granted) >= cost else Reservation.NO_CREDITS
        result |= {i: later for i, _ in short}
    if granted:
        inserted = set(conn.execute(_RESERVE, {
            "c": client_id, "d": -cost, "p": provider, "keys": [keys[i] for i, _ in granted],
            "ids": [i for i, _ in granted], "attempts": [a for _, a in granted],
        }).scalars())
        conn.execute(text("UPDATE clients SET credit_balance = credit_balance - :d WHERE id = :c"),
                     {"d": cost * len(inserted), "c": client_id})
        result |= {i: Reservation.RESERVED if i in inserted else Reservation.ALREADY_RESERVED for i, _ in granted}
    return result


_REFUND = text(
    """
    WITH open AS (
        SELECT l.client_id, l.delta, l.idempotency_key, l.work_item_id, l.attempt, l.provider
        FROM credit_ledger l
        JOIN unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS v(id, attempt)
          ON l.work_item_id = v.id AND l.attempt = v.attempt
        WHERE l.kind = 'reserve'
          AND (CAST(:provider AS text) IS NULL OR l.provider = :provider)
          AND NOT EXISTS (SELECT 1 FROM credit_ledger r
                          WHERE r.client_id = l.client_id AND r.idempotency_key = 'refund:' || l.idempotency_key)
    ), refunded AS (
        INSERT INTO credit_ledger (client_id, delta, kind, idempotency_key, work_item_id, attempt, provider, note)
        SELECT client_id, -delta, 'refund', 'refund:' || idempotency_key, work_item_id, attempt, provider, :note
        FROM open
        ON CONFLICT (client_id, idempotency_key) DO NOTHING
        RETURNING client_id, delta
    ), credited AS (
        UPDATE clients c SET credit_balance = c.credit_balance + s.total
        FROM (SELECT client_id, sum(delta) AS total FROM refunded GROUP BY client_id) s
        WHERE c.id = s.client_id
        RETURNING c.id
    )
    SELECT coalesce(sum(delta), 0) AS total FROM refunded
    """
)


def refund(conn: Connection, attempts: Sequence[tuple[int, int]], *, note: str,
           provider: str | None = None) -> int:
    """Refund the open reservations of these (item, attempt) pairs, once each; returns credits returned."""
    if not attempts:
        return 0
    params = {"ids": [i for i, _ in attempts], "attempts": [a for _, a in attempts],
              "provider": provider, "note": note}
    return int(conn.execute(_REFUND, params).scalar() or 0)


def balance(conn: Connection, client_id: int) -> int:
    return int(conn.execute(text("SELECT credit_balance FROM clients WHERE id = :c"), {"c": client_id}).scalar_one())


def spent(conn: Connection, *, batch_id: int) -> int:
    """Net credits kept by a batch's items (reservations minus refunds)."""
    return int(
        conn.execute(
            text(
                "SELECT coalesce(-sum(l.delta), 0) FROM credit_ledger l JOIN work_items w ON w.id = l.work_item_id "
                "WHERE w.batch_id = :b AND l.kind IN ('reserve', 'refund')"
            ),
            {"b": batch_id},
        ).scalar_one()
    )
