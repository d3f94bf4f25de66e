"""`make demo`: the main job end to end on this machine, with nothing but the project installed."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.terminal import literal, shown
from shared import db, migrate
from shared.engines.campaigns import campaigns
from shared.settings import PROJECT_ROOT, environment, get_settings

SAMPLE = PROJECT_ROOT / "shared" / "data" / "sample_leads.csv"
CLIENT = "Demo Agency"
CAMPAIGN = "Q4 Outbound"
ICP = {
    "seniorities": ["c_level", "vp", "director"],
    "departments": ["sales", "marketing", "executive"],
    "company_size": {"min": 50, "max": 5000},
    "countries": ["US", "GB", "DE", "CA"],
}

console = Console()


def run_demo(*, leads_csv: Path | None, latency_ms: int, credits: int) -> dict[str, Any]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from devkit import sandbox

    console.rule("[bold]outbound demo")
    url = db.database_url()
    migrate.upgrade("head", url)
    console.print(f"Postgres: {db.redacted(url)} (migrated)")

    with sandbox.serve(latency_ms=latency_ms, hit_rate=0.8, seed=7) as server, \
            environment(PROVIDER_ORDER="heuristics,sandbox", SANDBOX_URL=server.url):
        console.print(f"Sandbox provider: {server.url} ({latency_ms} ms latency, 80% hit rate)")
        client_id, campaign_id = _fresh_client(credits)
        _import(leads_csv or SAMPLE)
        batch_id = _batch(client_id, campaign_id)
        with _lead_logs(batch_id) as log_path:
            summary = _run_with_progress(batch_id)
    _report(summary, batch_id, log_path)
    from demo.outreach import run_outreach_demo

    summary["outreach"] = run_outreach_demo(client_id, campaign_id, console)
    summary["console"] = _console_accounts(client_id)
    return summary


DEMO_OPERATOR = "operator@demo.test"
DEMO_VIEWER = "viewer@demo.test"


def _console_accounts(client_id: int) -> dict[str, str]:
    """Sign-in accounts for the console on the demo's data, each with its own new password every run
    (printed once): a viewer who knows theirs cannot sign in as the operator."""
    import secrets

    from shared.engines.users import users

    password, viewer_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    with db.transaction() as conn:
        users.ensure_user(conn, DEMO_OPERATOR, password, role="operator")
        users.ensure_user(conn, DEMO_VIEWER, viewer_password, role="viewer", client_id=client_id)
    console.rule("[bold]Operator console")
    console.print("Open it on this data: [bold]make console[/bold], then http://127.0.0.1:8000/console", highlight=False)
    console.print(f"  {DEMO_OPERATOR}  {password}  (operator: every client)", highlight=False)
    console.print(f"  {DEMO_VIEWER}    {viewer_password}  (viewer: {CLIENT} only)", highlight=False)
    return {"operator": DEMO_OPERATOR, "viewer": DEMO_VIEWER, "password": password,
            "viewer_password": viewer_password}


def _fresh_client(credits: int) -> tuple[int, int]:
    """The demo owns its client: start from scratch so every run shows the whole story."""
    from shared.engines.clients import clients

    with db.transaction() as conn:
        # The cache is per client: deleting the client drops its cached answers too, so every run
        # pays for its lookups again instead of showing free cache hits.
        clients.delete_client(conn, CLIENT)
        client_id = clients.create_client(conn, CLIENT, credits=credits)
        campaign_id = campaigns.create_campaign(conn, client_id, CAMPAIGN, icp_json=ICP)
    console.print(f"Client [bold]{CLIENT}[/bold] with {credits} credits, campaign [bold]{CAMPAIGN}[/bold]")
    return client_id, campaign_id


def _import(path: Path) -> None:
    from shared.engines.leads.importer import import_csv

    with Progress(TextColumn("importing {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(escape(shown(path.name)), total=None)
        report = import_csv(path, client_name=CLIENT, campaign_name=CAMPAIGN,
                            rejects_path=get_settings().data_dir / f"{path.stem}.rejects.csv",
                            on_progress=lambda n: progress.update(task, completed=n))
    console.print(
        f"Imported [bold]{report.imported}[/bold] of {report.total_rows} rows "
        f"({report.duplicates_in_file} duplicates in the file, {report.rejected_count} rejected; "
        f"rejects in {escape(shown(report.rejects_path))})"
    )
    for line, reason in report.rejected[:5]:
        console.print(literal(f"  line {line}: {reason}", style="dim"))


def _batch(client_id: int, campaign_id: int) -> int:
    from shared.engines.batches import batches

    with db.transaction() as conn:
        batch_id = batches.create_batch(conn, client=client_id, campaign=campaign_id)
    if batch_id is None:
        raise SystemExit("the demo CSV produced no leads to enrich")
    return batch_id


@contextmanager
def _lead_logs(batch_id: int) -> Iterator[Path]:
    """Per-lead engine logs go to a file while the batch runs (the console keeps the progress bar)."""
    path = get_settings().data_dir / "logs" / f"batch-{batch_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    # Append mode: Prefect's logging set-up closes every existing handler when the flow starts, and
    # a closed handler in "w" mode silently drops records where one in "a" mode reopens its file.
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
    engine_log = logging.getLogger("shared")
    saved = engine_log.level, engine_log.propagate
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.INFO)
    engine_log.propagate = False
    try:
        yield path
    finally:
        engine_log.removeHandler(handler)
        handler.close()
        engine_log.setLevel(saved[0])
        engine_log.propagate = saved[1]


def _run_with_progress(batch_id: int) -> dict[str, Any]:
    from orchestrator.terminal import run_with_progress

    return run_with_progress(batch_id, 50, console)


def _report(summary: dict[str, Any], batch_id: int, log_path: Path) -> None:
    from orchestrator.terminal import print_summary
    from shared.engines.batches import batches

    print_summary(summary)
    with db.transaction() as conn:
        top = batches.top_leads(conn, batch_id, 10)
        export_path = get_settings().data_dir / f"batch-{batch_id}.csv"
        batches.export(conn, batch_id, export_path, overwrite=True)  # the demo owns this file
    table = Table("score", "tier", "name", "title", "company", "email", title="Top scored leads")
    for lead in top:
        # Lead data came from a CSV: shown literally, never as markup (orchestrator.terminal.literal).
        table.add_row(str(lead["score"]), literal(lead["score_tier"]),
                      literal(f"{lead['first_name'] or ''} {lead['last_name'] or ''}"),
                      literal(lead["title"] or ""), literal(lead["company_name"] or ""), literal(lead["email"]))
    console.print(table)
    console.print(f"Ran in {summary['seconds']:.1f} s. Export: {export_path}  Per-lead logs: {log_path}")
    console.print(f"Inspect again: outbound batch status {batch_id}   outbound batch export {batch_id} out.csv")
