"""`outbound batch ...`: create, launch, run, inspect and export batches of work items."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli.common import fail, or_fail, print_summary
from shared import db

batch_app = typer.Typer(help="Batches of work items: create, launch, run, inspect, export.", no_args_is_help=True)


@batch_app.command("create")
def batch_create(client: str = typer.Option(..., help="Client name."),
                 campaign: Optional[str] = typer.Option(None, help="Only this campaign's leads."),
                 launch: bool = typer.Option(False, "--launch", help="Create it launched (fires the trigger).")) -> None:
    """A batch of the client's new leads that are not already in flight."""
    from shared.engines import batches

    with db.transaction() as conn:
        client_id = or_fail(lambda: batches.client_id(conn, client))
        campaign_id = or_fail(lambda: batches.campaign_id(conn, client_id, campaign)) if campaign else None
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

    summary = orchestrator_main(batch_id=batch_id, batch_size=batch_size, allow_draft=True)
    print_summary(summary)


@batch_app.command("status")
def batch_status(batch_id: int) -> None:
    """Counts by status, skip reasons, credits spent, provider calls."""
    from shared.engines import batches

    with db.transaction() as conn:
        summary = or_fail(lambda: batches.summary(conn, batch_id))
    print_summary(summary.as_dict())


@batch_app.command("export")
def batch_export(batch_id: int, out: Path) -> None:
    """Write every item of the batch with its lead, enrichment and score to a CSV."""
    from shared.engines import batches

    with db.transaction() as conn:
        n = or_fail(lambda: batches.export(conn, batch_id, out))
    typer.echo(f"wrote {n} rows to {out}")
