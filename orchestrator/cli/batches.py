"""`outbound batch ...`: create, launch, run, inspect and export batches of work items."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from orchestrator.cli.common import fail, or_fail, print_summary, shown, transaction
from shared.status import BatchStatus

batch_app = typer.Typer(help="Batches of work items: create, launch, run, inspect, export.", no_args_is_help=True)

FINISHED = (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS, BatchStatus.CANCELLED)


@batch_app.command("create")
def batch_create(client: str = typer.Option(..., help="Client name."),
                 campaign: str | None = typer.Option(None, help="Only this campaign's leads."),
                 launch: bool = typer.Option(False, "--launch", help="Create it launched (fires the trigger).")) -> None:
    """A batch of the client's new leads that are not already in flight; prints its id."""
    from shared.engines import batches

    with transaction() as conn:
        client_id = or_fail(lambda: batches.client_id(conn, client))
        campaign_id = or_fail(lambda: batches.campaign_id(conn, client_id, campaign)) if campaign else None
        batch_id = batches.create_batch(conn, client=client_id, campaign=campaign_id, launch=launch)
    if batch_id is None:
        fail(f"client {shown(client)} has no new leads to batch")
    typer.echo(batch_id)


@batch_app.command("launch")
def batch_launch(batch_id: int) -> None:
    """draft → launched: the database trigger hands it to the Edge Function (or the local bridge)."""
    from shared.engines import batches

    with transaction() as conn:
        current = or_fail(lambda: batches.summary(conn, batch_id)).status
        if not batches.launch(conn, batch_id):
            fail(f"batch {batch_id} is {current}, not a draft: only a draft can be launched")
    typer.echo(f"batch {batch_id} launched")


@batch_app.command("cancel")
def batch_cancel(batch_id: int) -> None:
    """Stop a draft, launched or running batch: no further claims; items already being worked finish."""
    from shared.engines import batches

    with transaction() as conn:
        current = or_fail(lambda: batches.summary(conn, batch_id)).status
        if not batches.cancel(conn, batch_id):
            fail(f"batch {batch_id} is {current}: only a draft, launched or running enrichment batch can be cancelled")
    typer.echo(f"batch {batch_id} cancelled")


@batch_app.command("run")
def batch_run(batch_id: int, batch_size: int = typer.Option(50, min=1, help="Items per chunk.")) -> None:
    """Run orchestrator_main for a batch in this process, with a live progress bar (local executor
    unless EXECUTOR=modal). A finished batch is not run again: its summary is shown."""
    from orchestrator.cli.common import run_with_progress
    from shared.engines import batches

    with transaction() as conn:
        current = or_fail(lambda: batches.summary(conn, batch_id))
    if current.status in FINISHED:
        typer.echo(f"batch {batch_id} is already {current.status}: nothing to run")
        print_summary(current.as_dict())
        return
    summary = run_with_progress(batch_id, batch_size)
    if "note" in summary:  # the flow did not run it (another orchestrator holds it): it says why
        typer.echo(shown(summary.get("message") or f"batch {batch_id} was not run ({summary['note']})"))
    print_summary(summary)


@batch_app.command("status")
def batch_status(batch_id: int,
                 as_json: bool = typer.Option(False, "--json", help="The summary as one JSON object, for scripts.")) -> None:
    """Counts by status, skip reasons, credits spent, provider calls."""
    from shared.engines import batches

    with transaction() as conn:
        summary = or_fail(lambda: batches.summary(conn, batch_id))
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
        return
    print_summary(summary.as_dict())


@batch_app.command("export")
def batch_export(batch_id: int, out: Path = typer.Argument(..., help="The CSV file to create."),
                 force: bool = typer.Option(False, "--force", help="Replace OUT if it exists.")) -> None:
    """Write every item of the batch with its lead, enrichment and score to a new CSV file.

    The file appears whole or not at all; an existing OUT is refused unless --force."""
    from shared.engines import batches

    with transaction() as conn:
        n = or_fail(lambda: batches.export(conn, batch_id, out, overwrite=force))
    typer.echo(f"wrote {n} rows to {shown(out)}")
