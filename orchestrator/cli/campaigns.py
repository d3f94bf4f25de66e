"""`outbound campaigns ...` and `outbound score`: campaigns, their ICP, re-scoring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli.common import fail, or_fail
from shared import db

campaigns_app = typer.Typer(help="Campaigns and their ideal customer profile.", no_args_is_help=True)
score_app = typer.Typer()  # `score` joins the top level


@campaigns_app.command("add")
def campaigns_add(client: str, name: str,
                  icp: Optional[Path] = typer.Option(None, help="JSON file with the ideal customer profile."),
                  status: str = typer.Option("active", help="draft, active, paused or completed.")) -> None:
    """Create or update a campaign with its ICP config (validated: a bad field is named)."""
    from sqlalchemy import text

    from shared.engines import batches
    from shared.engines.scoring import IcpConfig

    config = json.loads(icp.read_text()) if icp else {}
    try:
        IcpConfig.parse(config)
    except ValueError as exc:
        fail(f"ICP in {icp}: {exc}")
    with db.transaction() as conn:
        client_id = or_fail(lambda: batches.client_id(conn, client))
        cid = conn.execute(
            text("INSERT INTO campaigns (client_id, name, status, icp) VALUES (:c, :n, :s, CAST(:i AS jsonb)) "
                 "ON CONFLICT (client_id, name) DO UPDATE SET status = EXCLUDED.status, icp = EXCLUDED.icp "
                 "RETURNING id"),
            {"c": client_id, "n": name, "s": status, "i": json.dumps(config)},
        ).scalar_one()
    typer.echo(f"campaign {name} (id {cid}) is {status}")


@campaigns_app.command("status")
def campaigns_status(client: str, name: str, status: str = typer.Argument(..., help="active, paused or completed.")) -> None:
    """Pause, resume or complete a campaign (workers re-check this just in time)."""
    from sqlalchemy import text

    from shared.engines import batches

    with db.transaction() as conn:
        client_id = or_fail(lambda: batches.client_id(conn, client))
        campaign = or_fail(lambda: batches.campaign_id(conn, client_id, name))
        conn.execute(text("UPDATE campaigns SET status = :s WHERE id = :i"), {"s": status, "i": campaign})
    typer.echo(f"campaign {name} is {status}")


@score_app.command("score")
def score(campaign: str = typer.Option(..., help="Campaign name."),
          client: str = typer.Option(..., help="Client name.")) -> None:
    """Re-score a campaign's leads from stored enrichment, without re-enriching."""
    from shared.engines import batches
    from shared.engines.scoring import rescore_campaign

    with db.transaction() as conn:
        client_id = or_fail(lambda: batches.client_id(conn, client))
        campaign_id = or_fail(lambda: batches.campaign_id(conn, client_id, campaign))
    n = rescore_campaign(db.get_engine(), campaign_id)
    typer.echo(f"re-scored {n} leads of campaign {campaign}")
