"""Clients: create them, change named fields, top up credits, list the ones the scope can see.

Create and update are separate intents: `create_*` refuses a name that exists (nothing about the
existing row changes), `update_*` changes only the fields it is given and returns what changed.
Top-ups are idempotent per (client, key): the schema enforces it (migration 0003), and a repeated
key reports the amount it was first applied with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.clients import billing
from shared.errors import AlreadyExists, KeyConflict, NotFound
from shared.status import Subscription


@dataclass(frozen=True)
class TopUp:
    applied: bool
    amount: int
    """The amount recorded under the key: this request's when applied, the first one's otherwise."""
    balance: int


def create_client(conn: Connection, name: str, *, subscription: Subscription = Subscription.ACTIVE,
                  credits: int = 0) -> int:
    """A new client (AlreadyExists when the name is taken), with `credits` as its first top-up."""
    client = conn.execute(
        text("INSERT INTO clients (name, subscription_status) VALUES (:n, :s) "
             "ON CONFLICT (name) DO NOTHING RETURNING id"),
        {"n": name, "s": str(Subscription(subscription))},
    ).scalar()
    if client is None:
        raise AlreadyExists(f"client {name!r} already exists (change it with `outbound clients update`)")
    if credits:
        billing.add_credits(conn, int(client), credits, key="initial", note="starting credits")
    return int(client)


def update_client(conn: Connection, client_id: int, *, subscription: Subscription | None = None) -> dict[str, tuple[Any, Any]]:
    """Change the given fields only; returns {field: (old, new)} for what actually changed."""
    changes: dict[str, tuple[Any, Any]] = {}
    if subscription is not None:
        old = conn.execute(text("SELECT subscription_status FROM clients WHERE id = :c FOR UPDATE"),
                           {"c": client_id}).scalar_one()
        new = str(Subscription(subscription))
        if old != new:
            conn.execute(text("UPDATE clients SET subscription_status = :s WHERE id = :c"), {"s": new, "c": client_id})
            changes["subscription"] = (old, new)
    return changes


def top_up(conn: Connection, client_id: int, amount: int, *, key: str) -> TopUp:
    """Add `amount` once per (client, key). A repeated key adds nothing; a different amount under
    a used key is refused (KeyConflict), since the caller meant something else."""
    applied = billing.add_credits(conn, client_id, amount, key=key)
    recorded = conn.execute(
        text("SELECT delta FROM credit_ledger WHERE client_id = :c AND idempotency_key = :k"),
        {"c": client_id, "k": key},
    ).scalar_one()
    if not applied and int(recorded) != amount:
        raise KeyConflict(f"key {key!r} was already applied for {recorded} credits; "
                          f"{amount} were not added (use a new key for a new payment)")
    return TopUp(applied, int(recorded), billing.balance(conn, client_id))


def delete_client(conn: Connection, name: str) -> bool:
    """Delete a client and everything it owns (cascades: campaigns, leads, batches, cache, ledger)."""
    return conn.execute(text("DELETE FROM clients WHERE name = :n RETURNING id"), {"n": name}).first() is not None


def client_id(conn: Connection, name: str) -> int:
    """The client's id by exact name; NotFound suggests a name differing only in case, if one exists."""
    found = conn.execute(text("SELECT id FROM clients WHERE name = :n"), {"n": name}).scalar()
    if found is None:
        near = conn.execute(text("SELECT name FROM clients WHERE lower(name) = lower(:n) ORDER BY id LIMIT 1"),
                            {"n": name}).scalar()
        hint = f"did you mean {near!r}?" if near else f"create it with `outbound clients add {name}`"
        raise NotFound(f"client {name!r} does not exist ({hint})")
    return int(found)


def visible(conn: Connection) -> list[dict[str, Any]]:
    """The clients the scope can see, by name (an operator: all; a viewer: its own, by row-level security)."""
    rows = conn.execute(text("SELECT id, name, subscription_status, credit_balance FROM clients ORDER BY name"))
    return [dict(r._mapping) for r in rows]
