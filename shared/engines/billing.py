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
            "VALUES (:c, :a, 'topup', :k, :n) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
        ),
        {"c": client_id, "a": amount, "k": key, "n": note},
    ).first()
    if inserted:
        conn.execute(text("UPDATE clients SET credit_balance = credit_balance + :a WHERE id = :c"),
                     {"a": amount, "c": client_id})
    return inserted is not None


def reserve(conn: Connection, *, client_id: int, item_id: int, attempt: int, provider: str,
            cost: int) -> Reservation:
    """Take `cost` credits for one provider call of one attempt, atomically and at most once.

    Locks the work item (FOR SHARE) so recovery cannot abandon the attempt mid-reservation.
    """
    held = conn.execute(
        text("SELECT 1 FROM work_items WHERE id = :i AND status = 'IN_PROGRESS' AND attempts = :a FOR SHARE"),
        {"i": item_id, "a": attempt},
    ).first()
    if held is None:
        return Reservation.FENCED
    savepoint = conn.begin_nested()
    inserted = conn.execute(
        text(
            "INSERT INTO credit_ledger (client_id, delta, kind, idempotency_key, work_item_id, attempt, provider) "
            "VALUES (:c, :d, 'reserve', :k, :i, :a, :p) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
        ),
        {"c": client_id, "d": -cost, "k": reservation_key(item_id, attempt, provider), "i": item_id,
         "a": attempt, "p": provider},
    ).first()
    if inserted is None:
        savepoint.commit()
        return Reservation.ALREADY_RESERVED
    debited = conn.execute(
        text(
            "UPDATE clients SET credit_balance = credit_balance - :d "
            "WHERE id = :c AND credit_balance >= :d AND subscription_status = ANY(:ok) "
            "RETURNING subscription_status"
        ),
        {"d": cost, "c": client_id, "ok": list(ACTIVE_SUBSCRIPTIONS)},
    ).first()
    if debited is None:
        savepoint.rollback()
        status = conn.execute(text("SELECT subscription_status FROM clients WHERE id = :c"),
                              {"c": client_id}).scalar()
        return Reservation.NO_CREDITS if status in ACTIVE_SUBSCRIPTIONS else Reservation.INACTIVE
    savepoint.commit()
    return Reservation.RESERVED


_REFUND = text(
    """
    WITH open AS (
        SELECT l.client_id, l.delta, l.idempotency_key, l.work_item_id, l.attempt, l.provider
        FROM credit_ledger l
        JOIN unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS v(id, attempt)
          ON l.work_item_id = v.id AND l.attempt = v.attempt
        WHERE l.kind = 'reserve'
          AND (CAST(:provider AS text) IS NULL OR l.provider = :provider)
          AND NOT EXISTS (SELECT 1 FROM credit_ledger r WHERE r.idempotency_key = 'refund:' || l.idempotency_key)
    ), refunded AS (
        INSERT INTO credit_ledger (client_id, delta, kind, idempotency_key, work_item_id, attempt, provider, note)
        SELECT client_id, -delta, 'refund', 'refund:' || idempotency_key, work_item_id, attempt, provider, :note
        FROM open
        ON CONFLICT (idempotency_key) DO NOTHING
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
