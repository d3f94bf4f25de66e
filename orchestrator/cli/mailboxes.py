"""`outbound mailboxes …`, `outbound sequences …`, `outbound suppressions …`, `outbound serve`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli.common import fail, or_fail
from orchestrator.terminal import console
from shared import db
from shared import errors
from shared.engines.campaigns import campaigns
from shared.engines.clients import clients
from shared.errors import MailAuthError, UnreadableFile

mailboxes_app = typer.Typer(help="Sending mailboxes: SMTP account, caps, ramp-up, gaps, pause/resume.",
                            no_args_is_help=True)
sequences_app = typer.Typer(help="A campaign's sequence: schedule, steps, enrollment, activation.",
                            no_args_is_help=True)
suppressions_app = typer.Typer(help="Per-client suppression list (emails and whole domains).", no_args_is_help=True)
serve_app = typer.Typer()  # `serve` joins the top level
replies_app = typer.Typer(help="Received mail: replies, bounces, complaints, and what was done about them.",
                          no_args_is_help=True)


def _client(conn, name: str) -> int:

    return or_fail(lambda: clients.client_id(conn, name))


def _usage(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@mailboxes_app.command("add")
def mailboxes_add(
    client: str, address: str,
    host: str = typer.Option(..., help="SMTP host."),
    port: int = typer.Option(587, help="SMTP port."),
    tls: str = typer.Option("starttls", help="starttls, tls (implicit) or none (local sink only)."),
    username: Optional[str] = typer.Option(None, help="SMTP login (default: none)."),
    secret_name: Optional[str] = typer.Option(None, help="NAME of the env var / Secret holding the password."),
    from_name: Optional[str] = typer.Option(None, help="Display name."),
    daily_cap: int = typer.Option(50, help="Sends per rolling 24 h."),
    ramp_start: Optional[int] = typer.Option(None, help="Ramp-up: cap on day one (default: no ramp)."),
    ramp_step: int = typer.Option(0, help="Ramp-up: added per day."),
    ramp_ceiling: Optional[int] = typer.Option(None, help="Ramp-up: never above this."),
    gap: int = typer.Option(600, help="Minimum seconds between two sends."),
    jitter: int = typer.Option(120, help="Up to this many random seconds added to each gap."),
    imap_host: Optional[str] = typer.Option(None, help="IMAP host for the Sent-folder reconciler and reply recovery (same login)."),
    imap_port: int = typer.Option(993, help="IMAP port."),
    imap_tls: str = typer.Option("tls", help="tls, starttls or none."),
    sent_folder: Optional[str] = typer.Option(None, help="Sent folder name (default: the one flagged \\Sent)."),
    verp: bool = typer.Option(True, "--verp/--no-verp",
                              help="--no-verp when the relay rewrites MAIL FROM (Gmail, Microsoft 365): bounces then "
                                   "come back to this mailbox and are known by the Message-ID they quote (needs "
                                   "--imap-host for reply recovery to read them)."),
    dkim_selector: Optional[str] = typer.Option(None, help="Sign our mail with DKIM under this selector "
                                                           "(<selector>._domainkey.<domain> must hold the public key)."),
    dkim_secret_name: Optional[str] = typer.Option(None, help="NAME of the env var / Secret holding the DKIM private "
                                                              "key (PEM)."),
) -> None:
    """Add (or update) a mailbox. The password is never stored: --secret-name says where it lives."""
    from shared.errors import OutreachError
    from shared.engines.mailboxes.mailboxes import add_mailbox

    with db.transaction() as conn:
        try:
            box = add_mailbox(conn, _client(conn, client), from_address=address, from_name=from_name, smtp_host=host,
                              smtp_port=port, tls_mode=tls, username=username, secret_name=secret_name,
                              daily_cap=daily_cap, ramp_start=ramp_start, ramp_step=ramp_step,
                              ramp_ceiling=ramp_ceiling, min_gap_seconds=gap, jitter_seconds=jitter,
                              imap_host=imap_host, imap_port=imap_port if imap_host else None, imap_tls_mode=imap_tls,
                              sent_folder=sent_folder, keeps_verp=verp, dkim_selector=dkim_selector,
                              dkim_secret_name=dkim_secret_name)
        except OutreachError as exc:
            _usage(str(exc))
    typer.echo(f"mailbox {address} (id {box}) is active")


@mailboxes_app.command("check")
def mailboxes_check(
    client: str, address: Optional[str] = typer.Argument(None, help="One mailbox (default: every mailbox of the client)."),
    selector: Optional[str] = typer.Option(None, help="DKIM selector to look up when we do not sign (the s= your relay "
                                                      "signs with, e.g. google); default: the mailbox's own."),
    nameserver: Optional[list[str]] = typer.Option(None, help="Resolver ip or ip:port (repeatable; default: "
                                                              "DNS_NAMESERVERS, else the system's)."),
) -> None:
    """Look up each sending domain's SPF, DKIM and DMARC records and say what is missing (exit 1 if anything is)."""
    from shared.engines.mailboxes.mailboxes import list_mailboxes
    from shared.integrations import mailauth, smtp
    from shared.settings import get_settings

    with db.transaction() as conn:
        boxes = list_mailboxes(conn, _client(conn, client))
    if address is not None:
        boxes = [b for b in boxes if b["from_address"] == address.strip().lower()]
        if not boxes:
            fail(f"client {client} has no mailbox {address}")
    if not boxes:
        fail(f"client {client} has no mailboxes")
    servers = nameserver or [n.strip() for n in get_settings().dns_nameservers.split(",") if n.strip()]
    problems = 0
    for box in boxes:
        domain = box["from_address"].rpartition("@")[2]
        try:
            ours = box["dkim_secret_name"] and (selector is None or selector.lower() == box["dkim_selector"])
            key = mailauth.private_key(box["dkim_secret_name"], smtp.lookup_secret(box["dkim_secret_name"])) \
                if ours else None
            findings = mailauth.check_domain(domain, selector=selector or box["dkim_selector"], private_key=key,
                                             nameservers=servers)
        except (MailAuthError, ValueError) as exc:
            fail(f"{box['from_address']}: {exc}")
        typer.echo(f"{box['from_address']} ({domain}; DKIM {'signed by us' if box['dkim_selector'] else 'not signed by us'}"
                   f"; {'VERP envelope' if box['keeps_verp'] else 'own address as envelope (relay rewrites it)'})")
        for f in findings:
            typer.echo(f"  {f.record:<5} {'ok     ' if f.ok else 'MISSING' if 'missing' in f.detail else 'WRONG  '} "
                       f"{f.name}: {f.detail}")
        problems += sum(not f.ok for f in findings)
    if problems:
        fail(f"{problems} record(s) missing or wrong; docs/deploy.md#our-own-mail-spf-dkim-dmarc says what to publish")


@mailboxes_app.command("test")
def mailboxes_test(address: str, client: str = typer.Option(..., help="Client name.")) -> None:
    """Log in to the mailbox's SMTP server (and IMAP when set) with its secret; print each answer (exit 1 on a failure).

    No mail is sent: connect, EHLO, STARTTLS or TLS, AUTH; for IMAP, LOGIN and a read-only look at INBOX."""
    from shared.engines.mailboxes.mailboxes import mailbox_settings, probe_connection

    with db.transaction() as conn:
        box = mailbox_settings(conn, _client(conn, client), address=address)
    if box is None:
        fail(f"client {client} has no mailbox {address}")
    probes = probe_connection(box)
    for probe in probes:
        for line in probe.lines:
            typer.echo(line)
    failed = [p.failure for p in probes if not p.ok]
    if failed:
        fail(f"connection test failed ({', '.join(failed)})")
    typer.echo(f"mailbox {box['from_address']}: connection ok")


@mailboxes_app.command("list")
def mailboxes_list(client: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Mailboxes with today's cap (ramp applied), sends in the last 24 h and status."""
    from rich.table import Table

    from shared.engines.mailboxes.mailboxes import list_mailboxes

    with db.transaction() as conn:
        rows = list_mailboxes(conn, _client(conn, client))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "address", "smtp", "cap now", "sent 24h", "gap s", "status", title=f"Mailboxes of {client}")
    for r in rows:
        status = r["status"] if r["status"] == "active" else \
            f"paused since {(r['paused_at'] or '?')[:16]}: {r['status_reason']}"
        table.add_row(str(r["id"]), r["from_address"], f"{r['smtp_host']}:{r['smtp_port']} ({r['tls_mode']})",
                      str(r["cap_now"]), str(r["sent_24h"]), f"{r['min_gap_seconds']}+{r['jitter_seconds']}", status)
    console().print(table)


@mailboxes_app.command("pause")
def mailboxes_pause(client: str, address: str, reason: str = typer.Option(..., help="Why (shown in list).")) -> None:
    """Stop sending from a mailbox (queued sends re-check this just in time)."""
    from shared.errors import OutreachError
    from shared.engines.mailboxes.mailboxes import set_mailbox_status

    with db.transaction() as conn:
        try:
            set_mailbox_status(conn, _client(conn, client), address, paused=True, reason=reason)
        except OutreachError as exc:
            fail(str(exc))
    typer.echo(f"mailbox {address} is paused: {reason}")


@mailboxes_app.command("resume")
def mailboxes_resume(client: str, address: str) -> None:
    """Send from a paused mailbox again (a bounce-shield pause is only ever lifted this way)."""
    from shared.errors import OutreachError
    from shared.engines.mailboxes.mailboxes import set_mailbox_status

    with db.transaction() as conn:
        try:
            set_mailbox_status(conn, _client(conn, client), address, paused=False, reason=None)
        except OutreachError as exc:
            fail(str(exc))
    typer.echo(f"mailbox {address} is active")


def _campaign(conn, client: str, campaign: str) -> tuple[int, int]:

    client_id = _client(conn, client)
    return client_id, or_fail(lambda: campaigns.campaign_id(conn, client_id, campaign))


@sequences_app.command("schedule")
def sequences_schedule(client: str, campaign: str,
                       weekdays: str = typer.Option("1,2,3,4,5", help="ISO weekdays, 1=Mon … 7=Sun."),
                       start_hour: int = typer.Option(9), end_hour: int = typer.Option(17),
                       fallback_timezone: str = typer.Option("UTC", help="IANA zone for leads with no known zone.")) -> None:
    """When the campaign sends, in each lead's local time."""
    from shared.errors import OutreachError
    from shared.engines.campaigns.sequences import set_schedule

    try:
        days = [int(d) for d in weekdays.split(",") if d.strip()]
    except ValueError:
        _usage(f"--weekdays must be numbers 1-7 separated by commas, got {weekdays!r}")
    with db.transaction() as conn:
        client_id, campaign_id = _campaign(conn, client, campaign)
        try:
            set_schedule(conn, client_id, campaign_id, weekdays=days, start_hour=start_hour, end_hour=end_hour,
                         fallback_timezone=fallback_timezone)
        except OutreachError as exc:
            _usage(str(exc))
    typer.echo(f"campaign {campaign} sends on {days} {start_hour}:00-{end_hour}:00 local")


@sequences_app.command("step")
def sequences_step(client: str, campaign: str, step: int,
                   subject: str = typer.Option(..., help="Jinja2 subject (follow-ups reuse step 1's as Re:)."),
                   body: Path = typer.Option(..., help="File with the Jinja2 body."),
                   delay: int = typer.Option(0, help="Wait after the previous step (step 1: after enrollment)."),
                   unit: str = typer.Option("business_days", help="business_days or days.")) -> None:
    """Add or replace one step of the sequence."""
    from shared.errors import OutreachError, TemplateProblem
    from shared.engines.campaigns.sequences import set_step

    with db.transaction() as conn:
        client_id, campaign_id = _campaign(conn, client, campaign)
        try:
            set_step(conn, client_id, campaign_id, step=step, subject=subject, body=body.read_text(),
                     delay_amount=delay, delay_unit=unit)
        except (OutreachError, TemplateProblem, OSError) as exc:
            _usage(str(exc))
    typer.echo(f"step {step} of {campaign} saved")


@sequences_app.command("variant")
def sequences_variant(client: str, campaign: str, step: int, label: str,
                      subject: Optional[str] = typer.Option(None, help="Jinja2 subject of this variant."),
                      body_file: Optional[Path] = typer.Option(None, help="File with this variant's Jinja2 body."),
                      delete: bool = typer.Option(False, "--delete", help="Remove the variant instead.")) -> None:
    """Add, replace or (--delete) an A/B variant of a step: label B, C, ... (A is the step's own text).
    Each lead gets one variant of the step, the same on every run; a variant already sent is fixed."""
    from shared.errors import OutreachError, TemplateProblem
    from shared.engines.campaigns.sequences import delete_variant, set_variant

    if not delete and (subject is None or body_file is None):
        _usage("--subject and --body-file are required (or --delete)")
    body = None
    if not delete:
        try:  # read before the transaction opens: no file I/O while it holds the campaign's rows
            body = body_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            _usage(f"--body-file {body_file}: {getattr(exc, 'strerror', None) or exc}")
    with db.transaction() as conn:
        client_id, campaign_id = _campaign(conn, client, campaign)
        try:
            if delete:
                delete_variant(conn, client_id, campaign_id, step, label)
            else:
                set_variant(conn, client_id, campaign_id, step, label, subject, body)
        except (OutreachError, TemplateProblem) as exc:
            _usage(str(exc))
    typer.echo(f"step {step} variant {label} of {campaign} {'deleted' if delete else 'saved'}")


@sequences_app.command("activate")
def sequences_activate(client: str, campaign: str) -> None:
    """Enroll the campaign's leads, dry-render every lead for every step, and activate if all render."""
    from datetime import UTC, datetime

    from shared.engines.outreach import store

    with db.transaction() as conn:
        client_id, campaign_id = _campaign(conn, client, campaign)
        try:
            sources = store.enroll(conn, client_id, campaign_id, now=datetime.now(UTC))
        except errors.OutreachError as exc:
            _usage(str(exc))
        problems = campaigns.activate(conn, client_id, campaign_id)
    typer.echo(f"enrolled: {sources or 'nobody new'}")
    if problems:
        for line in problems:
            typer.echo(line, err=True)
        typer.echo(f"error: activation refused: {len(problems)} problem(s); nothing was sent", err=True)
        raise typer.Exit(1)
    typer.echo(f"campaign {campaign} is active")


@suppressions_app.command("import")
def suppressions_import(client: str, path: Path, reason: str = typer.Option("imported")) -> None:
    """Import emails and domains ('@x.com' or 'x.com') from a CSV; bad cells are named and skipped."""
    from shared.engines.outreach import suppression

    with db.transaction() as conn:
        try:
            added, problems = suppression.import_csv(conn, _client(conn, client), path, reason=reason)
        except UnreadableFile as exc:
            _usage(f"{path}: {exc}")
    for line in problems:
        typer.echo(f"{path}: {line}", err=True)
    typer.echo(f"{added} new suppressions ({len(problems)} rejected)")


@suppressions_app.command("export")
def suppressions_export(client: str) -> None:
    """Print the client's suppression list as CSV (every text field quoted, formulas neutralised)."""
    from shared.engines.outreach import suppression

    with db.transaction() as conn:
        suppression.write_export(conn, _client(conn, client), sys.stdout)


@serve_app.command("serve")
def serve(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000),
          run_launches: bool = typer.Option(
              False, "--run-launches",
              help="Also run batches launched from the console in this process (LISTEN for the launch trigger, "
                   "like `outbound bridge`, but running the flow here instead of asking a Prefect server).")) -> None:
    """Run the web app with uvicorn: the operator console (/console), one-click unsubscribe (/u/…),
    inbound mail (/webhooks/inbound, /webhooks/mailgun/mime).

    Without CONSOLE_SECRET a throwaway one is made (sessions end when the server stops). Sign-in
    accounts: `outbound users add`.
    """
    import threading

    import uvicorn

    from orchestrator.cli.common import database_ready
    from shared.settings import get_settings
    from web.app import create_app
    from web.console import new_secret

    database_ready()
    console_secret = None
    if get_settings().console_secret is None:
        console_secret = new_secret()
        typer.echo("CONSOLE_SECRET is not set: using a throwaway one (sessions end when this server stops)", err=True)
    bridge = None
    if run_launches:
        from orchestrator.bridge import Bridge, LocalLauncher
        from shared.db import database_url

        logging.getLogger("orchestrator.bridge").setLevel(logging.INFO)
        bridge = Bridge(database_url(), LocalLauncher(), sweep_seconds=10.0)
        threading.Thread(target=bridge.run, name="launches", daemon=True).start()
    typer.echo(f"console: http://{host}:{port}/console  (accounts: outbound users add)")
    try:
        uvicorn.run(create_app(console_secret=console_secret), host=host, port=port)
    finally:
        if bridge is not None:
            bridge.stop.set()


# `outbound campaigns forecast` lives here with the rest of outreach; it joins the campaigns group.
from orchestrator.cli.campaigns import campaigns_app  # noqa: E402


@campaigns_app.command("forecast")
def campaigns_forecast(name: str, client: str = typer.Option(..., help="Client name."),
                       as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Before launch: sends per day per mailbox, the date of the last step, enrichment credits needed."""
    from datetime import UTC, datetime

    from rich.table import Table

    from shared.engines.outreach import forecast
    from shared.settings import get_settings

    # Worst case: every paid provider of the waterfall PROVIDER_ORDER resolves to is asked once.
    per_lead = forecast.paid_credits_per_lead(get_settings())
    with db.transaction() as conn:
        client_id, campaign_id = _campaign(conn, client, name)
        try:
            result = forecast.forecast(conn, client_id, campaign_id, now=datetime.now(UTC), credits_per_lead=per_lead)
        except errors.OutreachError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    boxes = sorted(result.caps)
    table = Table("day (UTC)", *[f"{b} (cap {result.caps[b]})" for b in boxes], "total",
                  title=f"Forecast for {name}: {result.leads} leads × {result.steps} steps")
    for day, counts in sorted(result.per_day.items()):
        table.add_row(day, *[str(counts.get(b, 0)) for b in boxes], str(sum(counts.values())))
    console().print(table)
    last = result.last_send_at.strftime("%Y-%m-%d %H:%M UTC") if result.last_send_at else "never"
    console().print(f"last step goes out: [bold]{last}[/bold]"
                  + (f"; {result.unfinished} leads never finish (no usable mailbox?)" if result.unfinished else ""))
    console().print(f"enrichment: {result.enrichment_leads} leads not enriched yet, up to "
                  f"{result.enrichment_credits_max} credits ({per_lead} per lead through the paid providers); "
                  f"balance {result.credit_balance}")


@mailboxes_app.command("in-doubt")
def mailboxes_in_doubt(client: str, reconcile: bool = typer.Option(
        False, "--reconcile", help="First look each one up in its mailbox's Sent folder over IMAP.")) -> None:
    """Sends whose fate is unknown (the connection dropped after DATA): never resent automatically."""
    from rich.table import Table

    from shared.engines.outreach import reconcile as rec

    with db.transaction() as conn:
        client_id = _client(conn, client)
    if reconcile:
        result = rec.reconcile(db.get_engine(), client_id=client_id)
        typer.echo(f"found in Sent: {len(result.sent)}, not found: {len(result.unknown)}, "
                   f"not checked: {len(result.unchecked)}")
    rows = rec.in_doubt(db.get_engine(), client_id)
    table = Table("message", "status", "step", "lead", "mailbox", "reserved at", "error", title="Sends in doubt")
    for r in rows:
        table.add_row(str(r["id"]), r["status"], str(r["step"]), r["email"], r["from_address"],
                      r["reserved_at"].isoformat(), r["error"] or "")
    console().print(table)


@sequences_app.command("replies")
def sequences_replies(client: str, campaign: str,
                      stop_company: Optional[bool] = typer.Option(
                          None, "--stop-company/--no-stop-company",
                          help="A human reply also stops every lead of the same company in this campaign."),
                      auto_reply_wait: Optional[int] = typer.Option(
                          None, help="Days the next step waits after an out-of-office (0-60).")) -> None:
    """Show or change what a reply does to the rest of the campaign."""
    from shared.engines.replies.ingest import set_reply_policy

    with db.transaction() as conn:
        client_id, campaign_id = _campaign(conn, client, campaign)
        try:
            policy = set_reply_policy(conn, client_id, campaign_id, stop_company_on_reply=stop_company,
                                      auto_reply_wait_days=auto_reply_wait)
        except ValueError as exc:
            _usage(str(exc))
    typer.echo(f"campaign {campaign}: a reply stops {'the whole company' if policy['stop_company_on_reply'] else 'the lead'}; "
               f"an out-of-office delays the next step {policy['auto_reply_wait_days']} days")


@replies_app.command("list")
def replies_list(client: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Received mail of one client, newest first: class (with the bounce reason), evidence, trust (UNVERIFIED: stored, changed nothing), outcome."""
    from rich.table import Table

    from orchestrator.terminal import literal
    from shared.engines.replies.ingest import inbound_summary

    with db.transaction() as conn:
        rows = inbound_summary(conn, _client(conn, client))
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table("id", "via", "class", "evidence", "lead", "from", "trust", "outcome", title=f"Received mail of {client}")
    for r in rows:
        trust = {True: "verified", False: "UNVERIFIED"}.get(r["verified"], "-")
        kind = f'{r["kind"]} ({r["reason"]})' if r.get("reason") else r["kind"]
        table.add_row(str(r["id"]), r["source"], literal(kind), literal(r["evidence"] or ""), literal(r["lead"] or "-"),
                      literal(r["from_address"] or ""), trust, literal(r["outcome"] or "not processed yet"))
    console().print(table)


@replies_app.command("accept")
def replies_accept(client: str, inbound_id: int = typer.Argument(..., help="The id `replies list` shows.")) -> None:
    """Act on one UNVERIFIED received message after checking it yourself (e.g. with the lead)."""
    from shared.engines.replies.ingest import accept_unverified
    from shared.settings import get_settings

    with db.transaction() as conn:
        client_id = _client(conn, client)
    done = accept_unverified(db.get_engine(), client_id, inbound_id, settings=get_settings())
    if done is None:
        fail(f"client {client} has no unverified received message {inbound_id}")
    typer.echo(f"received message {inbound_id} accepted: {done.outcome}")


@replies_app.command("unmatched")
def replies_unmatched(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Webhook mail that matched no send of any client (stored, never acted on)."""
    from shared.engines.replies.ingest import unmatched_summary

    with db.transaction() as conn:
        rows = unmatched_summary(conn)
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['id']}  {r['received_at']:%Y-%m-%d %H:%M}  {r['provider']}  {r['kind']}  "
                   f"{r['from_address']!r}  {r['subject']!r}")
