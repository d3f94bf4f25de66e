"""`outbound leads ...`: import lead CSVs with a progress bar and a summary of every skipped row."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shared.engines.leads_import import ImportReport, LeadImportError, import_csv

SHOWN_REJECTS = 10

leads_app = typer.Typer(help="Leads: import CSV files into a client's lead list.", no_args_is_help=True)


@leads_app.callback()
def leads_group() -> None:
    # A callback keeps `leads` a command group even while `import` is its only command.
    pass


def estimate_rows(path: Path) -> int:
    """Data rows, counted as newlines minus the header: exact unless values hold line breaks."""
    newlines = 0
    last = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            newlines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith(b"\n"):
        newlines += 1  # a last line without its newline is still a line
    return max(newlines - 1, 0)


@leads_app.command("import")
def import_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="The CSV file to import."),
    client: str = typer.Option(..., "--client", help="Name of an existing client."),
    campaign: str | None = typer.Option(
        None, "--campaign", help="Attach new leads to this campaign (created as a draft if missing)."),
) -> None:
    """Import FILE.csv for a client: rows are checked one by one; skipped rows go to FILE.rejects.csv."""
    console = Console()
    errors = Console(stderr=True)
    total = estimate_rows(file)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"importing {file.name}", total=total or None)

        def on_progress(rows_done: int) -> None:
            progress.update(task, completed=min(rows_done, total) if total else rows_done)

        try:
            report = import_csv(file, client_name=client, campaign_name=campaign, on_progress=on_progress)
        except LeadImportError as exc:
            progress.stop()
            errors.print(Text(f"error: {exc}", style="red"))
            raise typer.Exit(1) from None
    print_summary(console, file, report)


def print_summary(console: Console, file: Path, report: ImportReport) -> None:
    summary = Table(title=Text(f"Imported {file.name}"), show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("rows read", f"{report.total_rows:,}")
    summary.add_row("imported", Text(f"{report.imported:,}", style="green"))
    summary.add_row("already existing (skipped)", f"{report.already_existing:,}")
    summary.add_row("duplicates in file (skipped)", f"{report.duplicates_in_file:,}")
    summary.add_row("rejected", Text(f"{len(report.rejected):,}", style="red" if report.rejected else ""))
    summary.add_row("encoding / delimiter", f"{report.encoding} / {report.delimiter!r}")
    if report.campaign_id is not None:
        summary.add_row("campaign id", f"{report.campaign_id}{' (created)' if report.campaign_created else ''}")
    summary.add_row("elapsed", f"{report.elapsed_seconds:.2f} s")
    console.print(summary)
    if report.unknown_columns:
        console.print(Text("ignored columns: " + ", ".join(report.unknown_columns), style="dim"))
    if report.rejected:
        shown = min(SHOWN_REJECTS, len(report.rejected))
        rejects = Table(title=f"First {shown} of {len(report.rejected):,} rejected rows", title_justify="left")
        rejects.add_column("line", justify="right")
        rejects.add_column("reason")
        for line, reason in report.rejected[:SHOWN_REJECTS]:
            rejects.add_row(str(line), Text(reason))
        console.print(rejects)
    if report.rejects_path is not None:
        console.print(Text(f"every row not imported, with its reason: {report.rejects_path}"))
