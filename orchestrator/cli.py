"""The `outbound` command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.cli_deploy import deploy_app
from orchestrator.cli_leads import leads_app
from shared import db, embedded, migrate
from shared.settings import get_settings

app = typer.Typer(help="Outbound-sales engine: leads in, enriched, scored, batched through Prefect.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
db_app = typer.Typer(help="The database: migrations and the embedded server.", no_args_is_help=True)
clients_app = typer.Typer(help="Clients (the agencies' customers): subscription and credits.", no_args_is_help=True)
campaigns_app = typer.Typer(help="Campaigns and their ideal customer profile.", no_args_is_help=True)
batch_app = typer.Typer(help="Batches of work items: create, launch, run, inspect, export.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(clients_app, name="clients")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(batch_app, name="batch")
app.add_typer(leads_app, name="leads")
app.add_typer(deploy_app)  # deploy, secret push, worker, bridge: top-level commands
console = Console()


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


# -- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations to DATABASE_URL, or to the embedded Postgres when it is unset."""
    url = db.database_url()
    migrate.upgrade(revision, url)
    typer.echo(f"database at {db.redacted(url)} is at revision {migrate.current(url)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base.")) -> None:
    """Undo migrations down to REVISION."""
    url = db.database_url()
    migrate.downgrade(revision, url)
    typer.echo(f"database at {db.redacted(url)} is at revision {migrate.current(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the applied revision."""
    typer.echo(migrate.current() or "(empty: run `outbound db upgrade`)")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use, password hidden."""
    typer.echo(db.redacted(db.database_url()))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres (it otherwise keeps running between commands)."""
    stopped = embedded.stop(get_settings().data_dir)
    typer.echo("embedded Postgres stopped" if stopped else "embedded Postgres was not running")


# -- clients and campaigns -----------------------------------------------------------------------


@clients_app.command("add")
def clients_add(name: str, credits: int = typer.Option(0, help="Starting credits."),
                subscription: str = typer.Option("active", help="trialing, active, past_due or cancelled.")) -> None:
    """Create a client (or update its subscription), optionally with starting credits."""
    from sqlalchemy import text

    from shared.engines import billing

    with db.transaction() as conn:
        client_id = conn.execute(
            text("INSERT INTO clients (name, subscription_status) VALUES (:n, :s) "
                 "ON CONFLICT (name) DO UPDATE SET subscription_status = EXCLUDED.subscription_status RETURNING id"),
            {"n": name, "s": subscription},
        ).scalar_one()
        if credits:
            billing.add_credits(conn, client_id, credits, key=f"cli:add:{client_id}:{credits}:{name}")
        balance = billing.balance(conn, client_id)
    typer.echo(f"client {name} (id {client_id}): subscription {subscription}, {balance} credits")


@clients_app.command("topup")
def clients_topup(name: str, credits: int,
                  key: str = typer.Option(..., help="Idempotency key (e.g. the payment id): applied once.")) -> None:
    """Add credits once per idempotency key."""
    from shared.engines import batches, billing

    with db.transaction() as conn:
        client_id = _or_fail(lambda: batches.client_id(conn, name))
        applied = billing.add_credits(conn, client_id, credits, key=key)
        balance = billing.balance(conn, client_id)
    typer.echo(f"{'added' if applied else 'already applied:'} {credits} credits; balance {balance}")


@clients_app.command("list")
def clients_list() -> None:
    """Clients with subscription and credits."""
    from shared.engines import batches

    with db.transaction() as conn:
        rows = batches.billable_clients(conn)
    table = Table("id", "name", "credits", "billing check")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], str(r["credits"]), "ok" if r["ok"] else r["reason"])
    console.print(table)


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
        client_id = _or_fail(lambda: batches.client_id(conn, client))
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
        client_id = _or_fail(lambda: batches.client_id(conn, client))
        campaign = _or_fail(lambda: batches.campaign_id(conn, client_id, name))
        conn.execute(text("UPDATE campaigns SET status = :s WHERE id = :i"), {"s": status, "i": campaign})
    typer.echo(f"campaign {name} is {status}")


@app.command("score")
def score(campaign: str = typer.Option(..., help="Campaign name."),
          client: str = typer.Option(..., help="Client name.")) -> None:
    """Re-score a campaign's leads from stored enrichment, without re-enriching."""
    from shared.engines import batches
    from shared.engines.scoring import rescore_campaign

    with db.transaction() as conn:
        client_id = _or_fail(lambda: batches.client_id(conn, client))
        campaign_id = _or_fail(lambda: batches.campaign_id(conn, client_id, campaign))
    n = rescore_campaign(db.get_engine(), campaign_id)
    typer.echo(f"re-scored {n} leads of campaign {campaign}")


# -- batches -------------------------------------------------------------------------------------


@batch_app.command("create")
def batch_create(client: str = typer.Option(..., help="Client name."),
                 campaign: Optional[str] = typer.Option(None, help="Only this campaign's leads."),
                 launch: bool = typer.Option(False, "--launch", help="Create it launched (fires the trigger).")) -> None:
    """A batch of the client's new leads that are not already in flight."""
    from shared.engines import batches

    with db.transaction() as conn:
        client_id = _or_fail(lambda: batches.client_id(conn, client))
        campaign_id = _or_fail(lambda: batches.campaign_id(conn, client_id, campaign)) if campaign else None
        batch_id = batches.create_batch(conn, client=client_id, campaign=campaign_id, launch=launch)
    if batch_id is None:
        fail("no new leads to batch")
    typer.echo(batch_id)


@batch_app.command("launch")
def batch_launch(batch_id: int) -> None:
    """draft → launched: the database trigger hands it to the Edge Function (or the local bridge)."""
    from shared.engines import batches

    with db.transaction() as conn:
        if not batches.launch(conn, batch_id):
            fail(f"batch {batch_id} is not a draft")
    typer.echo(f"batch {batch_id} launched")


@batch_app.command("run")
def batch_run(batch_id: int, batch_size: int = typer.Option(50, help="Items per chunk.")) -> None:
    """Run orchestrator_main for a batch in this process (local executor unless EXECUTOR=modal)."""
    from orchestrator.flows.batch import orchestrator_main

    summary = orchestrator_main(batch_id=batch_id, batch_size=batch_size)
    print_summary(summary)


@batch_app.command("status")
def batch_status(batch_id: int) -> None:
    """Counts by status, skip reasons, credits spent, provider calls."""
    from shared.engines import batches

    with db.transaction() as conn:
        summary = _or_fail(lambda: batches.summary(conn, batch_id))
    print_summary(summary.as_dict())


@batch_app.command("export")
def batch_export(batch_id: int, out: Path) -> None:
    """Write every item of the batch with its lead, enrichment and score to a CSV."""
    from shared.engines import batches

    with db.transaction() as conn:
        n = _or_fail(lambda: batches.export(conn, batch_id, out))
    typer.echo(f"wrote {n} rows to {out}")


def print_summary(s: dict) -> None:
    table = Table(title=f"Batch {s['batch_id']}: {s['status']}", show_footer=True)
    table.add_column("status", footer="total")
    table.add_column("items", justify="right", footer=str(s.get("total", sum(s.get("counts", {}).values()))))
    for status, n in sorted(s.get("counts", {}).items()):
        table.add_row(status, str(n))
    console.print(table)
    if s.get("skip_reasons"):
        reasons = Table("skip reason", "items", title="Skipped, and why")
        for reason, n in s["skip_reasons"].items():
            reasons.add_row(reason, str(n))
        console.print(reasons)
    if s.get("provider_calls"):
        calls = Table("provider", "outcome", "calls", title="Provider calls")
        for provider, outcomes in s["provider_calls"].items():
            for outcome, n in outcomes.items():
                calls.add_row(provider, outcome, str(n))
        console.print(calls)
    if "credits_spent" in s:
        console.print(f"credits spent: [bold]{s['credits_spent']}[/bold]")


def _or_fail(fn):  # noqa: ANN001, ANN202 - tiny adapter from domain errors to exit code 1
    from shared.engines.batches import NotFound

    try:
        return fn()
    except NotFound as exc:
        fail(str(exc))


@app.command("demo")
def demo(leads_csv: Optional[Path] = typer.Option(None, help="CSV to import (default: the bundled sample)."),
         latency_ms: int = typer.Option(40, help="Sandbox provider latency."),
         credits: int = typer.Option(2000, help="Credits the demo client starts with (fewer than the leads need: the rest is SKIPPED no_credits, as in real life).")) -> None:
    """The main job end to end: embedded Postgres, client, import, batch, flow, summary."""
    from orchestrator.demo import run_demo

    run_demo(leads_csv=leads_csv, latency_ms=latency_ms, credits=credits)


if __name__ == "__main__":
    app()
