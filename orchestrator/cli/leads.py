"""`outbound leads ...`: import lead CSVs with a progress bar and a summary of every skipped row."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from orchestrator.terminal import console as new_console
from orchestrator.cli.common import database_ready
from orchestrator.terminal import literal, shown
from shared.engines.leads.importer import ImportReport, estimate_rows, import_csv

SHOWN_REJECTS = 10

leads_app = typer.Typer(help="Leads: import CSV files into a client's lead list.", no_args_is_help=True)


@leads_app.callback()
def leads_group() -> None:
    # A callback keeps `leads` a command group even while `import` is its only command.
    pass


@leads_app.command("import")
def import_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The CSV file to import."),
    client: str = typer.Option(..., "--client", help="Name of an existing client."),
    campaign: str | None = typer.Option(
        None, "--campaign", help="Attach new leads to this campaign (created as a draft if missing)."),
) -> None:
    """Import FILE.csv for a client: rows are checked one by one; skipped rows go to FILE.rejects.csv.

    The file is streamed (memory stays bounded whatever its size); only regular files are read."""
    console = new_console()
    total = estimate_rows(file)
    database_ready()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(escape(shown(f"importing {file.name}")), total=total or None)

        def on_progress(rows_done: int) -> None:
            progress.update(task, completed=min(rows_done, total) if total else rows_done)

        report = import_csv(file, client_name=client, campaign_name=campaign, on_progress=on_progress)
    print_summary(console, file, report)


def print_summary(console: Console, file: Path, report: ImportReport) -> None:
    summary = Table(title=literal(f"Imported {file.name}"), show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("rows read", f"{report.total_rows:,}")
    summary.add_row("imported", Text(f"{report.imported:,}", style="green"))
    summary.add_row("already existing (skipped)", f"{report.already_existing:,}")
    summary.add_row("duplicates in file (skipped)", f"{report.duplicates_in_file:,}")
    summary.add_row("rejected", Text(f"{report.rejected_count:,}", style="red" if report.rejected_count else ""))
    summary.add_row("encoding / delimiter", literal(f"{report.encoding} / {report.delimiter!r}"))
    if report.campaign_id is not None:
        summary.add_row("campaign id", f"{report.campaign_id}{' (created)' if report.campaign_created else ''}")
    summary.add_row("elapsed", f"{report.elapsed_seconds:.2f} s")
    console.print(summary)
    if report.unknown_columns:
        console.print(literal("ignored columns: " + ", ".join(report.unknown_columns), style="dim"))
    for warning in report.warnings:
        console.print(literal(f"note: {warning}", style="yellow"))
    if report.rejected:
        first = min(SHOWN_REJECTS, len(report.rejected))
        rejects = Table(title=f"First {first} of {report.rejected_count:,} rejected rows", title_justify="left")
        rejects.add_column("line", justify="right")
        rejects.add_column("reason")
        for line, reason in report.rejected[:SHOWN_REJECTS]:
            rejects.add_row(str(line), literal(reason))
        console.print(rejects)
    if report.rejects_path is not None:
        console.print(literal(f"every row not imported, with its reason: {report.rejects_path}"))
