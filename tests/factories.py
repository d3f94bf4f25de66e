"""Small helpers that put real rows in the test database."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, text


def client(conn: Connection, name: str = "acme", *, credits: int = 0, status: str = "active") -> int:
    return conn.execute(
        text("INSERT INTO clients (name, subscription_status, credit_balance) VALUES (:n, :s, :c) RETURNING id"),
        {"n": name, "s": status, "c": credits},
    ).scalar_one()


def campaign(conn: Connection, client_id: int, name: str = "q4", *, status: str = "active",
             icp: dict | None = None) -> int:
    return conn.execute(
        text("INSERT INTO campaigns (client_id, name, status, icp) VALUES (:c, :n, :s, CAST(:i AS jsonb)) RETURNING id"),
        {"c": client_id, "n": name, "s": status, "i": json.dumps(icp or {})},
    ).scalar_one()


def leads(conn: Connection, client_id: int, n: int, *, campaign_id: int | None = None,
          domain: str = "example.com") -> list[int]:
    rows = conn.execute(
        text(
            "INSERT INTO leads (client_id, campaign_id, email, first_name, last_name, title, company_name, company_domain) "
            "SELECT :c, :camp, 'person' || g || '@' || :d, 'First' || g, 'Last' || g, 'VP Sales', 'Example Inc', :d "
            "FROM generate_series(1, :n) g RETURNING id"
        ),
        {"c": client_id, "camp": campaign_id, "n": n, "d": domain},
    )
    return sorted(r.id for r in rows)


def batch(conn: Connection, client_id: int, lead_ids: Sequence[int], *, campaign_id: int | None = None,
          max_attempts: int = 3, status: str = "draft") -> int:
    batch_id = conn.execute(
        text("INSERT INTO batches (client_id, campaign_id, status) VALUES (:c, :camp, :s) RETURNING id"),
        {"c": client_id, "camp": campaign_id, "s": status},
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO work_items (batch_id, lead_id, client_id, max_attempts) "
            "SELECT :b, unnest(CAST(:ids AS bigint[])), :c, :m"
        ),
        {"b": batch_id, "ids": list(lead_ids), "m": max_attempts, "c": client_id},
    )
    return batch_id


def item_ids(conn: Connection, batch_id: int) -> list[int]:
    return conn.execute(text("SELECT id FROM work_items WHERE batch_id = :b ORDER BY id"), {"b": batch_id}).scalars().all()


def expire(conn: Connection, item_ids: Sequence[int]) -> None:
    """Make leases (and queue times) lie in the past, as if the worker vanished long ago."""
    conn.execute(
        text(
            "UPDATE work_items SET lease_until = now() - interval '1 second', queued_at = now() - interval '1 day' "
            "WHERE id = ANY(:ids)"
        ),
        {"ids": list(item_ids)},
    )
