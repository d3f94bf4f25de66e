"""`outbound batch ...`: create, launch, run, inspect and export batches of work items."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from orchestrator.cli.common import database_ready, fail, or_fail
from orchestrator.terminal import print_summary, shown
from shared import db
from shared.status import FINISHED_BATCH
from shared.engines.campaigns import campaigns
from shared.engines.clients import clients

batch_app = typer.Typer(help="Batches of work items: create, launch, run, inspect, export.", no_args_is_help=True)



@batch_app.command("create")
def batch_create(client: str = typer.Option(..., help="Client name."),
                 campaign: str | None = typer.Option(None, help="Only this campaign's leads."),
                 launch: bool = typer.Option(False, "--launch", help="Create it launched (fires the trigger).")) -> None:
    """A batch of the client's new leads that are not already in flight; prints its id."""
    from shared.engines.batches import batches

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        campaign_id = or_fail(lambda: campaigns.campaign_id(conn, client_id, campaign)) if campaign else None
        batch_id = batches.create_batch(conn, client=client_id, campaign=campaign_id, launch=launch)
    if batch_id is None:
        fail(f"client {shown(client)} has no new leads to batch")
    typer.echo(batch_id)


@batch_app.command("launch")
def batch_launch(batch_id: int) -> None:
    """draft → launched: the database trigger hands it to the Edge Function (or the local bridge)."""
    from shared.engines.batches import batches

    database_ready()
    with db.transaction() as conn:
        current = or_fail(lambda: batches.summary(conn, batch_id)).status
        if not batches.launch(conn, batch_id):
            fail(f"batch {batch_id} is {current}, not a draft: only a draft can be launched")
    typer.echo(f"batch {batch_id} launched")


@batch_app.command("cancel")
def batch_cancel(batch_id: int) -> None:
    """Stop a draft, launched or running batch: no further claims; items already being worked finish."""
    from shared.engines.batches import batches

    database_ready()
    with db.transaction() as conn:
        current = or_fail(lambda: batches.summary(conn, batch_id)).status
        if not batches.cancel(conn, batch_id):
            fail(f"batch {batch_id} is {current}: only a draft, launched or running enrichment batch can be cancelled")
    typer.echo(f"batch {batch_id} cancelled")


# `outbound batch run N` exits with this when a live runner holds the batch (without --follow).
EXIT_BUSY = 3


@batch_app.command("run")
def batch_run(batch_id: int, batch_size: int = typer.Option(50, min=1, help="Items per chunk."),
              follow: bool = typer.Option(False, "--follow", help="If a live runner holds the batch, show its "
                                          "progress until the batch finishes (taking it over if that runner "
                                          "dies) instead of exiting with code 3.")) -> None:
    """Run orchestrator_main for a batch in this process, with a live progress bar (local executor
    unless EXECUTOR=modal). A finished batch is not run again: its summary is shown.

    After a crash, run it again: a runner that is provably gone (its process on this host is dead, \
its database session is gone, or its heartbeat is older than BATCH_STALE_SECONDS) is taken over \
at once, with the items it held; one that only missed its heartbeats is waited for, with a \
progress line. If a live runner holds the batch, says who (host, pid, heartbeat age) and exits \
with code 3, or with --follow shows that runner's progress to the end."""
    from orchestrator.terminal import follow_progress, run_with_progress, wait_line
    from shared import liveness
    from shared.engines.batches import batches
    from shared.settings import get_settings

    database_ready()
    settings = get_settings()
    while True:
        with db.transaction() as conn:
            current = or_fail(lambda: batches.summary(conn, batch_id))
            seen = batches.holder(conn, batch_id, stale_seconds=settings.batch_stale_seconds,
                                  beat_seconds=settings.batch_heartbeat_seconds)
        if current.status in FINISHED_BATCH:
            typer.echo(f"batch {batch_id} is already {current.status}: nothing to run")
            print_summary(current.as_dict())
            return
        if seen.silent:
            wait_line(batch_id, lambda: _judged(batch_id), seen)
            continue
        if seen.busy:
            if not follow:
                typer.echo(shown(seen.describe() + f": not run again here. `outbound batch run {batch_id} --follow` "
                                 "shows its progress"), err=True)
                raise typer.Exit(EXIT_BUSY)
            follow_progress(batch_id, lambda: _judged(batch_id), seen)
            continue
        if seen.runner_id is not None and seen.verdict is not None:
            typer.echo(shown(f"batch {batch_id}: taking over from {liveness.shown(seen.runner_id)}: "
                             f"{seen.verdict.reason}"))
        summary = run_with_progress(batch_id, batch_size)
        if summary.get("note") == "busy":  # another run took it between our look and the flow's take
            if summary.get("runner_state") == "alive" and not follow:
                typer.echo(shown(f"{summary['message']}: not run again here. `outbound batch run {batch_id} "
                                 "--follow` shows its progress"), err=True)
                raise typer.Exit(EXIT_BUSY)
            continue
        if "note" in summary and summary["note"] != "cancelled":
            typer.echo(shown(summary.get("message") or f"batch {batch_id} was not run ({summary['note']})"))
        print_summary(summary)
        return


def _judged(batch_id: int):  # noqa: ANN202 - batches.Taken, imported lazily like every command's engine
    from shared.engines.batches import batches
    from shared.settings import get_settings

    database_ready()
    settings = get_settings()
    with db.transaction() as conn:
        return batches.holder(conn, batch_id, stale_seconds=settings.batch_stale_seconds,
                              beat_seconds=settings.batch_heartbeat_seconds)


@batch_app.command("status")
def batch_status(batch_id: int,
                 as_json: bool = typer.Option(False, "--json", help="The summary as one JSON object, for scripts.")) -> None:
    """Counts by status, skip reasons, credits spent, provider calls."""
    from shared.engines.batches import batches

    database_ready()
    with db.transaction() as conn:
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
    from shared.engines.batches import batches

    database_ready()
    with db.transaction() as conn:
        n = or_fail(lambda: batches.export(conn, batch_id, out, overwrite=force))
    typer.echo(f"wrote {n} rows to {shown(out)}")
