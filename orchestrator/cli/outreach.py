"""`outbound outreach run` (passes by hand, with a progress line) and `outbound outreach due` (who is sent when, and what holds them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Optional

import typer

from orchestrator.cli.common import fail, or_fail
from shared import db
from shared.engines.campaigns import campaigns
from shared.engines.clients import clients

outreach_app = typer.Typer(help="Run outreach passes by hand and see what is due, and why not.", no_args_is_help=True)


def _when(value: Optional[str], option: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: {option} must be an ISO 8601 time like 2026-11-23T10:00 or 2026-11-23T10:00+01:00, "
                   f"not {value!r}", err=True)
        raise typer.Exit(2) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # a time without a zone is UTC


def _campaign_id(client: Optional[str], campaign: Optional[str]) -> int | None:

    if campaign is None:
        return None
    if client is None:
        typer.echo("error: --campaign needs --client (campaign names are per client)", err=True)
        raise typer.Exit(2)
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        return or_fail(lambda: campaigns.campaign_id(conn, client_id, campaign))


def _line(n: int, at: datetime, r: dict[str, Any]) -> str:
    wake = r["next_wake"] or "nothing left to send"
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(r["skipped"].items()))
    return (f"pass {n} at {at.isoformat(timespec='seconds')}: sent {r['sent']}, deferred {r['deferred']}, "
            f"failed {r['failed']}, bounced {r['bounced']}, in doubt {r['in_doubt']}"
            + (f", skipped {skipped}" if skipped else "") + f"; next wake {wake}")


@outreach_app.command("run")
def outreach_run(
    client: Optional[str] = typer.Option(None, help="With --campaign: the campaign's client."),
    campaign: Optional[str] = typer.Option(None, help="Only this campaign (default: every active campaign)."),
    now: Optional[str] = typer.Option(None, help="Simulated start time (ISO 8601): passes jump from one wake-up to "
                                                 "the next instead of waiting. Default: the real clock."),
    until: Optional[str] = typer.Option(None, help="Keep running passes until this time (ISO 8601); on the real "
                                                   "clock this process waits between passes. Default: one pass."),
    chunk_size: Optional[int] = typer.Option(None, min=1, help="Send items per chunk (default: OUTREACH_CHUNK_SIZE)."),
) -> None:
    """Send what is due now (one pass, like the 5-minute schedule), or passes until --until, printing a line per pass.

    The same engine as the `outreach_run` deployment: at most once per lead and step, caps, gaps and
    windows from Postgres, so running it beside the schedule never sends twice. Exit 1 when a
    setting is missing (named, nothing claimed) or when every send chunk failed."""
    from orchestrator.flows.outreach import outreach_pass, reconcile_in_doubt, run_passes
    from shared.engines.outreach.sending import preflight
    from shared.errors import OutreachConfigError, OutreachRunFailed

    start, end = _when(now, "--now"), _when(until, "--until")
    if end is not None and end <= (start or datetime.now(UTC)):
        typer.echo("error: --until must be later than the start (--now, or the real clock)", err=True)
        raise typer.Exit(2)
    campaign_id = _campaign_id(client, campaign)
    try:
        preflight()
        reconciled = reconcile_in_doubt.fn()
        if any(reconciled.values()):
            typer.echo(f"in-doubt sends settled from Sent folders: {reconciled}")
        summary = run_passes(outreach_pass.fn, now=start, until=end, campaign_id=campaign_id, chunk_size=chunk_size,
                             on_pass=lambda n, at, r: typer.echo(_line(n, at, r)))
    except (OutreachConfigError, OutreachRunFailed) as exc:
        fail(str(exc))
    typer.echo(f"{summary['passes']} pass(es): sent {summary['sent']}, deferred {summary['deferred']}, "
               f"failed {summary['failed']}, bounced {summary['bounced']}, in doubt {summary['in_doubt']}, "
               f"chunk errors {summary['chunk_errors']}")


@outreach_app.command("due")
def outreach_due(
    client: Optional[str] = typer.Option(None, help="With --campaign: the campaign's client."),
    campaign: Optional[str] = typer.Option(None, help="Only this campaign."),
    now: Optional[str] = typer.Option(None, help="As of this time (ISO 8601; default: now)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON list instead of a table."),
    limit: int = typer.Option(10_000, min=1, help="At most this many enrollments."),
) -> None:
    """Each active lead's next send: when, from which mailbox, and what holds it (delay, window, cap, gap, paused, backing off).

    The answer is the scheduler's own decision at that moment (what the next pass would do), not a
    second copy of its rules. Leads whose step is already queued or sending are not listed."""
    from shared.engines.outreach.due import due

    at = _when(now, "--now") or datetime.now(UTC)
    campaign_id = _campaign_id(client, campaign)
    with db.transaction() as conn:
        rows = due(conn, at, campaign_id=campaign_id, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(rows)


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from orchestrator.terminal import console, literal

    if not rows:
        typer.echo("nobody is due: no active enrollment is waiting for a send")
        return
    table = Table("lead", "campaign", "step", "mailbox", "next send", "held by")
    for r in rows:
        hold = "sent on the next pass" if r["hold"] is None else r["hold"]
        if r["mailbox_reason"]:
            hold += f" ({r['mailbox_reason']})"
        table.add_row(literal(r["email"]), literal(r["campaign"]), str(r["step"]), literal(r["mailbox"] or "-"),
                      r["next_send_at"] or "-", literal(hold))
    console().print(table)
    held: dict[str, int] = {}
    for r in rows:
        held[r["hold"] or "due now"] = held.get(r["hold"] or "due now", 0) + 1
    typer.echo(", ".join(f"{k}: {v}" for k, v in sorted(held.items())))
