"""Clients and campaigns: create them, change named fields, top up credits, list them.

Create and update are separate intents: `create_*` refuses a name that exists (nothing about the
existing row changes), `update_*` changes only the fields it is given and returns what changed.
Top-ups are idempotent per (client, key): the schema enforces it (migration 0003), and a repeated
key reports the amount it was first applied with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, text

from shared.engines import billing
from shared.engines.batches import NotFound


class Subscription(StrEnum):
    """A client's subscription (the CHECK on clients.subscription_status)."""

    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELLED = "cancelled"


class CampaignStatus(StrEnum):
    """A campaign's status (the CHECK on campaigns.status)."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"


class AlreadyExists(ValueError):
    """A client or campaign with that name already exists; nothing was changed."""


class KeyConflict(ValueError):
    """The idempotency key was already used for a different amount; nothing was added."""


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


def create_campaign(conn: Connection, client_id: int, name: str, *,
                    status: CampaignStatus = CampaignStatus.ACTIVE, icp_json: dict[str, Any] | None = None) -> int:
    """A new campaign of the client (AlreadyExists when the client has one by that name).

    `icp_json` must already be validated (IcpConfig.parse); it is stored as given."""
    campaign = conn.execute(
        text("INSERT INTO campaigns (client_id, name, status, icp) VALUES (:c, :n, :s, CAST(:i AS jsonb)) "
             "ON CONFLICT (client_id, name) DO NOTHING RETURNING id"),
        {"c": client_id, "n": name, "s": str(CampaignStatus(status)), "i": json.dumps(icp_json or {})},
    ).scalar()
    if campaign is None:
        raise AlreadyExists(f"campaign {name!r} already exists for this client "
                            "(change it with `outbound campaigns update`)")
    return int(campaign)


def update_campaign(conn: Connection, campaign_id: int, *, status: CampaignStatus | None = None,
                    icp_json: dict[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """Change the given fields only (an ICP must already be validated); returns what changed."""
    row = conn.execute(text("SELECT status, icp FROM campaigns WHERE id = :i FOR UPDATE"),
                       {"i": campaign_id}).first()
    if row is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    changes: dict[str, tuple[Any, Any]] = {}
    if status is not None and str(CampaignStatus(status)) != row.status:
        changes["status"] = (row.status, str(CampaignStatus(status)))
    if icp_json is not None and icp_json != (row.icp or {}):
        changes["icp"] = (row.icp or {}, icp_json)
    if changes:
        conn.execute(
            # A pause says why and since when (the bounce shield's, or "paused by hand"); any other
            # status clears both.
            text("UPDATE campaigns SET status = :s, icp = CAST(:i AS jsonb), "
                 "status_reason = CASE WHEN :s = 'paused' THEN coalesce(status_reason, 'paused by hand') END, "
                 "paused_at = CASE WHEN :s = 'paused' THEN coalesce(paused_at, now()) END WHERE id = :id"),
            {"s": changes.get("status", (None, row.status))[1],
             "i": json.dumps(changes.get("icp", (None, row.icp or {}))[1]), "id": campaign_id},
        )
    return changes


def list_campaigns(conn: Connection, client_id: int | None = None) -> list[dict[str, Any]]:
    """Campaigns (of one client, or all) with their client's name and lead count."""
    rows = conn.execute(
        text("SELECT c.id, cl.name AS client, c.name, c.status, c.status_reason, "
             "to_char(c.paused_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS paused_at, "
             "(SELECT count(*) FROM leads l WHERE l.campaign_id = c.id) AS leads "
             "FROM campaigns c JOIN clients cl ON cl.id = c.client_id "
             "WHERE CAST(:c AS bigint) IS NULL OR c.client_id = :c ORDER BY c.id"),
        {"c": client_id},
    ).mappings()
    return [dict(r) for r in rows]


class CampaignInvalid(ValueError):
    """The campaign cannot be activated."""


def activate_campaign(conn: Connection, campaign_id: int) -> int:
    """draft/paused → active after checking the ICP and the client's subscription; returns the client id.

    The campaign row is locked for the check and the change, so a concurrent pause cannot slip between.
    """
    from shared.engines.scoring import IcpConfig
    from shared.status import ACTIVE_SUBSCRIPTIONS

    row = conn.execute(
        text("SELECT c.id, c.client_id, c.status, c.icp, cl.subscription_status FROM campaigns c "
             "JOIN clients cl ON cl.id = c.client_id WHERE c.id = :i FOR UPDATE OF c"),
        {"i": campaign_id},
    ).first()
    if row is None:
        raise CampaignInvalid(f"campaign {campaign_id} does not exist")
    if row.status == "completed":
        raise CampaignInvalid(f"campaign {campaign_id} is completed and cannot be re-activated")
    if row.subscription_status not in ACTIVE_SUBSCRIPTIONS:
        raise CampaignInvalid(f"campaign {campaign_id}: client subscription is {row.subscription_status}")
    IcpConfig.parse(row.icp or {})  # a clear error naming the bad ICP field
    update_campaign(conn, campaign_id, status=CampaignStatus.ACTIVE)
    return int(row.client_id)


def delete_client(conn: Connection, name: str) -> bool:
    """Delete a client and everything it owns (cascades: campaigns, leads, batches, cache, ledger)."""
    return conn.execute(text("DELETE FROM clients WHERE name = :n RETURNING id"), {"n": name}).first() is not None


def set_lead_title(conn: Connection, lead_id: int, title: str | None) -> None:
    conn.execute(text("UPDATE leads SET title = :t, updated_at = now() WHERE id = :l"), {"t": title, "l": lead_id})

