"""Campaigns: create them, change named fields, list them, look one up by name, and activate them.

Create and update are separate intents: `create_campaign` refuses a name that exists (nothing about
the existing row changes), `update_campaign` changes only the fields it is given and returns what
changed. Activation has two gates: `activate_campaign` (the ICP and the client's subscription,
before enrichment) and `activate` (every enrolled lead dry-rendered for every step, before sending).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from shared.engines.campaigns import sequences
from shared.engines.outreach import templates
from shared.errors import AlreadyExists, CampaignInvalid, NotFound
from shared.status import CampaignStatus


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


def draft_campaign(conn: Connection, client_id: int, name: str) -> tuple[int, bool]:
    """(id, created): the client's campaign by that name, created as a draft when missing (an import's target)."""
    created = conn.execute(
        text("INSERT INTO campaigns (client_id, name, status) VALUES (:c, :n, :s) "
             "ON CONFLICT (client_id, name) DO NOTHING RETURNING id"),
        {"c": client_id, "n": name, "s": str(CampaignStatus.DRAFT)},
    ).scalar()
    if created is not None:
        return int(created), True
    return campaign_id(conn, client_id, name), False


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


def activate_campaign(conn: Connection, campaign_id: int) -> int:
    """draft/paused → active after checking the ICP and the client's subscription; returns the client id.

    The campaign row is locked for the check and the change, so a concurrent pause cannot slip between.
    """
    from shared.engines.leads.scoring import IcpConfig
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


def campaign_id(conn: Connection, client: int, name: str) -> int:
    found = conn.execute(text("SELECT id FROM campaigns WHERE client_id = :c AND name = :n"),
                         {"c": client, "n": name}).scalar()
    if found is None:
        raise NotFound(f"campaign {name!r} does not exist for this client")
    return int(found)


def activation_problems(conn: Connection, client_id: int, campaign_id: int) -> list[str]:
    """Dry-render every enrolled lead for every step and every variant; every line is one blocking problem."""
    step_rows = sequences.steps(conn, campaign_id)
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
    compiled += [templates.StepTemplate(v["step"], v["subject_template"], v["body_template"], v["variant"])
                 for v in sequences.all_variants(conn, campaign_id)]
    return problems + templates.dry_render(leads, compiled)


def activate(conn: Connection, client_id: int, campaign_id: int) -> list[str]:
    """Activate the campaign when nothing blocks it; returns the problems (empty: activated)."""
    problems = activation_problems(conn, client_id, campaign_id)
    if not problems:
        conn.execute(text("UPDATE campaigns SET status = 'active' WHERE id = :camp AND client_id = :c"),
                     {"camp": campaign_id, "c": client_id})
    return problems
