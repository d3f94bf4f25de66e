"""`outbound replies inbox|show|mark|reclassify`: the inbox (issue 19) on the command line (joined to `replies`).

The CLI runs as the application (every client; `--client` narrows) and decides as `cli`. What the
commands read and do is `shared.engines.replies.inbox`'s; text from received mail is printed
literally (`orchestrator.terminal`): a stranger's escape sequences and line breaks are shown.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Optional

import typer
from rich.table import Table

from orchestrator.cli.common import database_ready, fail, or_fail
from orchestrator.cli.mailboxes import _usage
from orchestrator.terminal import console, literal, shown
from shared import db
from shared.engines.replies import inbox
from shared.errors import InboxRefused
from shared.status import InboundKind, Verdict, values

WHO = "cli"  # `decided_by` / `reclassified_by` of what the CLI does
# The choices as typed: the classes as stored, the verdicts with hyphens (not-interested).
KindArg = Enum("KindArg", {k: k for k in values(InboundKind)}, type=str)  # type: ignore[misc]
VerdictArg = Enum("VerdictArg", {v.name: v.value.replace("_", "-") for v in Verdict}, type=str)  # type: ignore[misc]

inbox_app = typer.Typer()  # its commands join `outbound replies`


@inbox_app.command("inbox")
def replies_inbox(
    client: Optional[str] = typer.Option(None, help="Only this client's mail (default: every client's)."),
    kind: Optional[KindArg] = typer.Option(None, help="Only this class."),
    campaign: Optional[str] = typer.Option(None, help="Only replies to this campaign (needs --client)."),
    unverified: bool = typer.Option(False, "--unverified", help="Only mail shown as UNVERIFIED (changed nothing)."),
    limit: int = typer.Option(inbox.DEFAULT_LIMIT, min=1, max=inbox.MAX_LIMIT, help="Rows per page."),
    before: Optional[str] = typer.Option(None, help="The cursor a previous page printed: the page after it."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: rows and the next page's cursor."),
) -> None:
    """Received replies and bounces of every mailbox and campaign, newest first, with the lead's verdict."""
    from shared.engines.campaigns import campaigns
    from shared.engines.clients import clients

    if campaign and not client:
        _usage("--campaign needs --client (campaign names are per client)")
    cursor = inbox.parse_cursor(before)
    if before is not None and cursor is None:
        _usage(f"--before {shown(before)} is not a cursor an inbox page printed")
    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client)) if client else None
        campaign_id = or_fail(lambda: campaigns.campaign_id(conn, client_id, campaign)) if campaign else None
        page = inbox.inbound(conn, kind=kind.value if kind else None, campaign_id=campaign_id,
                             unverified=True if unverified else None, before=cursor, limit=limit, client_id=client_id)
    following = inbox.cursor_text(page.next) if page.next else None
    if as_json:
        typer.echo(json.dumps({"rows": page.rows, "next": following}, default=str, indent=2))
        return
    _print_page(page.rows)
    if following:
        typer.echo(f"more: add --before {following}")


def _print_page(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "received", "client", "class", "trust", "from", "subject", "campaign", "mailbox", "lead",
                  "step", "verdict", title="Inbox")
    for r in rows:
        kind = f"{r['kind']} ({r['reason']})" if r.get("reason") else r["kind"]
        table.add_row(str(r["id"]), f"{r['received_at']:%Y-%m-%d %H:%M}", literal(r["client"]), literal(kind),
                      {True: "verified", False: "UNVERIFIED"}.get(r["verified"], "-"), literal(r["from_address"] or ""),
                      literal(r["subject"] or ""), literal(r["campaign"] or "-"), literal(r["mailbox"] or "-"),
                      literal(r["lead"] or "-"), str(r["step"]) if r["step"] is not None else "-",
                      literal((r["verdict"] or "-").replace("_", " ")))
    console().print(table)


SHOWN_FIELDS = ("client", "received_at", "source", "from_address", "subject", "kind", "classified_kind",
                "reclassified_by", "reclassified_at", "reason", "rule", "evidence", "diagnostic", "status_code",
                "verified", "trust", "match_kind", "outcome", "campaign", "mailbox", "lead", "lead_status", "step",
                "answered_subject", "answered_message_id", "answered_sent_at")


@inbox_app.command("show")
def replies_show(inbound_id: int = typer.Argument(..., help="The id `replies inbox` shows."),
                 quoted: bool = typer.Option(False, "--quoted", help="Also print the quoted history (folded otherwise)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One received message: class and evidence, trust, the lead and step it answered, its text (quotes folded)."""
    database_ready()
    with db.transaction() as conn:
        found = inbox.message(conn, inbound_id)
    if found is None:
        fail(f"no received message {inbound_id}")
    if as_json:
        typer.echo(json.dumps(found, default=str, indent=2))
        return
    for name in SHOWN_FIELDS:
        if found.get(name) is not None:
            typer.echo(f"{name}: {shown(found[name])}")
    if found["verdict"]:
        v = found["verdict"]
        typer.echo(f"verdict: {v['verdict']} by {shown(v['decided_by'])} at {v['decided_at']:%Y-%m-%d %H:%M}"
                   + (f" ({shown(v['note'])})" if v["note"] else ""))
    typer.echo("")
    for line in (found["text"] or "(no text)").splitlines():
        typer.echo(shown(line))
    if found["quoted"]:
        history = found["quoted"].splitlines()
        typer.echo("")
        if quoted:
            for line in history:
                typer.echo(shown(line))
        else:
            typer.echo(f"[quoted history: {len(history)} line(s) folded; --quoted shows them]")
    if found["truncated"]:
        typer.echo("[the message is longer than what is shown]")


@inbox_app.command("mark")
def replies_mark(lead_email: str = typer.Argument(..., help="The lead's email address."),
                 verdict: VerdictArg = typer.Argument(..., help="The operator's verdict."),
                 client: str = typer.Option(..., help="The lead's client."),
                 reply: Optional[int] = typer.Option(None, help="The received message (id) it was decided on."),
                 note: Optional[str] = typer.Option(None, help="A note kept with the verdict.")) -> None:
    """Record a verdict on a lead (the newest one stands; earlier ones stay in its story). Changes nothing else."""
    from shared.engines.clients import clients

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client))
        lead_id = or_fail(lambda: inbox.lead_id_by_email(conn, client_id, lead_email))
        try:
            row = or_fail(lambda: inbox.mark(conn, lead_id, verdict.value.replace("-", "_"), by=WHO,
                                             inbound_message_id=reply, note=note))
        except ValueError as exc:
            fail(str(exc))
    typer.echo(f"lead {shown(lead_email)}: {row['verdict'].replace('_', ' ')} (verdict {row['id']}, by {WHO})")


@inbox_app.command("reclassify")
def replies_reclassify(inbound_id: int = typer.Argument(..., help="The id `replies inbox` shows."),
                       kind: KindArg = typer.Argument(..., help="The class it really is.")) -> None:
    """Change a message's class (display, analytics); to an opt-out, hard bounce or complaint it also suppresses and stops the lead.

    Nothing the old class did is undone (a suppression stays, a stopped sequence stays stopped)."""
    database_ready()
    with db.transaction() as conn:
        try:
            done = or_fail(lambda: inbox.reclassify(conn, inbound_id, kind.value, by=WHO))
        except InboxRefused as exc:
            fail(str(exc))
    if done.was == done.kind:
        typer.echo(f"received message {inbound_id} is already {done.kind}: nothing changed")
        return
    typer.echo(f"received message {inbound_id}: {done.was} -> {done.kind}" + (f"; {shown(done.effect)}" if done.effect else ""))
