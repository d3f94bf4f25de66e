"""`outbound campaigns ...` and `outbound score`: campaigns, their ICP, re-scoring.

`add` only creates; `update` changes only the fields given (no `--icp`: the ICP stays; `--icp`
alone: the status stays) and says what changed; `status` is the short form for pausing/resuming.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from orchestrator.cli.common import database_ready, or_fail
from orchestrator.terminal import console, literal, shown
from shared import db
from shared.engines.campaigns import campaigns
from shared.errors import CliError
from shared.status import CampaignStatus

campaigns_app = typer.Typer(help="Campaigns and their ideal customer profile.", no_args_is_help=True)
score_app = typer.Typer()  # `score` joins the top level

ICP_HELP = "JSON file with the ideal customer profile (validated: a bad field is named)."


def read_icp(path: Path) -> dict[str, Any]:
    """The ICP file, validated: a missing, special, oversized or invalid file is one line naming it."""
    from shared.engines.leads.scoring import MAX_ICP_BYTES, validated_icp
    from shared.errors import IcpError

    try:
        info = os.stat(path)
    except OSError as exc:
        raise CliError(f"ICP file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CliError(f"ICP file {path}: not a regular file")
    if info.st_size > MAX_ICP_BYTES:
        raise CliError(f"ICP file {path}: {info.st_size:,} bytes, the limit is {MAX_ICP_BYTES:,}")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ICP_BYTES + 1)
    except OSError as exc:
        raise CliError(f"ICP file {path}: {exc.strerror or exc}") from None
    try:
        return validated_icp(data)
    except IcpError as exc:
        raise CliError(f"ICP in {path}: {exc}") from None


@campaigns_app.command("add")
def campaigns_add(client: str, name: str,
                  icp: Optional[Path] = typer.Option(None, help=ICP_HELP),
                  status: CampaignStatus = typer.Option(CampaignStatus.ACTIVE, help="Starting status.")) -> None:
    """Create a new campaign with its ICP (an existing name is refused: use `update`)."""
    from shared.engines.clients import clients

    database_ready()
    config = read_icp(icp) if icp else {}
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        cid = campaigns.create_campaign(conn, client_id, name, status=status, icp_json=config)
    typer.echo(f"campaign {shown(name)} (id {cid}) is {status.value}")


@campaigns_app.command("update")
def campaigns_update(client: str, name: str,
                     icp: Optional[Path] = typer.Option(None, help=ICP_HELP),
                     status: Optional[CampaignStatus] = typer.Option(None, help="New status.")) -> None:
    """Change only the fields given (the ICP, the status), and say what changed."""
    from shared.engines.clients import clients

    database_ready()
    config = read_icp(icp) if icp else None
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        campaign = or_fail(lambda: campaigns.campaign_id(conn, client_id, name))
        changes = campaigns.update_campaign(conn, campaign, status=status, icp_json=config)
    if not changes:
        typer.echo(f"campaign {shown(name)}: nothing changed")
    for field, (old, new) in changes.items():
        shown_old, shown_new = (f"{len(old)} settings", f"{len(new)} settings") if field == "icp" else (old, new)
        typer.echo(f"campaign {shown(name)}: {field} {shown(shown_old)} -> {shown(shown_new)}")


@campaigns_app.command("status")
def campaigns_status(client: str, name: str,
                     status: CampaignStatus = typer.Argument(..., help="The new status.")) -> None:
    """Pause, resume or complete a campaign (workers re-check this just in time).

    `active` resumes a campaign the bounce shield paused; nothing resumes it on its own."""
    from shared.engines.clients import clients

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        campaign = or_fail(lambda: campaigns.campaign_id(conn, client_id, name))
        changes = campaigns.update_campaign(conn, campaign, status=status)
    typer.echo(f"campaign {shown(name)} is {status.value}" + ("" if changes else " (unchanged)"))


@campaigns_app.command("list")
def campaigns_list(client: Optional[str] = typer.Option(None, help="Only this client's campaigns."),
                   as_json: bool = typer.Option(False, "--json", help="One JSON array, for scripts.")) -> None:
    """Campaigns with their client, status and lead count."""
    from shared.engines.clients import clients

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client)) if client is not None else None
        rows = campaigns.list_campaigns(conn, client_id)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("id", "client", "name", "status", "leads")
    for r in rows:
        status = r["status"] if r["status"] != "paused" else \
            f"paused since {r['paused_at']} UTC: {r['status_reason'] or 'by hand'}"
        table.add_row(str(r["id"]), literal(r["client"]), literal(r["name"]), literal(status), str(r["leads"]))
    console().print(table)


@score_app.command("score")
def score(campaign: str = typer.Option(..., help="Campaign name."),
          client: str = typer.Option(..., help="Client name.")) -> None:
    """Re-score a campaign's leads from stored enrichment, without re-enriching."""
    from shared import db
    from shared.engines.clients import clients
    from shared.engines.leads.scoring import rescore_campaign

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        campaign_id = or_fail(lambda: campaigns.campaign_id(conn, client_id, campaign))
    n = rescore_campaign(db.get_engine(), campaign_id)
    typer.echo(f"re-scored {n} leads of campaign {shown(campaign)}")


@campaigns_app.command("stats")
def campaigns_stats(client: str, name: str,
                    days: int = typer.Option(30, help="Days of the daily series, up to today (at most 366)."),
                    timezone: Optional[str] = typer.Option(
                        None, help="Days are calendar days here (IANA name; default: the sequence's fallback "
                                   "timezone, else UTC)."),
                    as_json: bool = typer.Option(False, "--json", help="One JSON object, for scripts.")) -> None:
    """What a campaign sent and got back, per step (enrolled, sent, replied, bounced, unsubscribed,
    in doubt, ... and rates) and per day (sent, replied, bounced)."""
    from shared.engines.campaigns import analytics
    from shared.engines.clients import clients

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        campaign = or_fail(lambda: campaigns.campaign_id(conn, client_id, name))
        stats = analytics.campaign_stats(conn, campaign)
        if stats is None:  # found just above; only a concurrent delete gets here
            raise CliError(f"campaign {shown(name)} is gone")
        tz = timezone or stats.timezone
        try:
            series = analytics.daily(conn, campaign, days, tz=tz) or []
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(stats.as_dict() | {"daily_timezone": tz, "daily": series}, default=str))
        return
    out = console()
    counts, pcts = analytics.TABLE_COUNTS, analytics.TABLE_RATES
    table = Table("step", *(c.replace("_", " ") for c in counts), *(c.replace("_", " ") for c in pcts),
                  title=literal(f"campaign {stats.campaign} of {stats.client} ({stats.status}); "
                                "rates are of the leads contacted"))
    for label, row in stats.table():
        table.add_row(label, *(str(row[c]) for c in counts), *(analytics.percent(row["rates"][c]) for c in pcts))
    out.print(table)
    chart = Table("day", "sent", "replied", "bounced", title=literal(f"the last {days} days ({tz})"))
    for d in series:
        chart.add_row(d["day"].isoformat(), str(d["sent"]), str(d["replied"]), str(d["bounced"]))
    out.print(chart)
