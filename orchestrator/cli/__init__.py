"""The `outbound` command line: one Typer app assembled from a module per command group."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli.batches import batch_app
from orchestrator.cli.campaigns import campaigns_app, score_app
from orchestrator.cli.clients import clients_app
from orchestrator.cli.common import OneLineErrors, set_verbose
from orchestrator.cli.db import db_app
from orchestrator.cli.deploy import deploy_app
from orchestrator.cli.leads import leads_app
from orchestrator.cli.mailboxes import mailboxes_app, replies_app, sequences_app, serve_app, suppressions_app
from orchestrator.cli.inbox import inbox_app
from orchestrator.cli.outreach import outreach_app
from orchestrator.cli.users import users_app

__all__ = ["app"]

app = typer.Typer(help="Outbound-sales engine: leads in, enriched, scored, batched through Prefect.",
                  no_args_is_help=True, cls=OneLineErrors, pretty_exceptions_enable=False)
app.add_typer(db_app, name="db")
app.add_typer(clients_app, name="clients")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(batch_app, name="batch")
app.add_typer(leads_app, name="leads")
app.add_typer(score_app)  # score: a top-level command
app.add_typer(deploy_app)  # deploy, secret push, worker, bridge: top-level commands
app.add_typer(mailboxes_app, name="mailboxes")
app.add_typer(sequences_app, name="sequences")
app.add_typer(outreach_app, name="outreach")
app.add_typer(suppressions_app, name="suppressions")
replies_app.add_typer(inbox_app)  # replies inbox, show, mark, reclassify
app.add_typer(replies_app, name="replies")
app.add_typer(serve_app)  # serve: a top-level command
app.add_typer(users_app, name="users")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details (and tracebacks).")) -> None:
    set_verbose(verbose)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


@app.command("demo")
def demo(leads_csv: Optional[Path] = typer.Option(None, help="CSV to import (default: the bundled sample)."),
         latency_ms: int = typer.Option(40, help="Sandbox provider latency."),
         credits: int = typer.Option(2000, help="Credits the demo client starts with (fewer than the leads need: the rest is SKIPPED no_credits, as in real life).")) -> None:
    """The main job end to end: embedded Postgres, client, import, batch, flow, summary."""
    from demo.run import run_demo

    run_demo(leads_csv=leads_csv, latency_ms=latency_ms, credits=credits)
