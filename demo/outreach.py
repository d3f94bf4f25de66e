"""`make demo`, part two: the enriched leads get a three-step sequence from three mailboxes.

Everything is local and real: an aiosmtpd sink stands in for the mail servers, the unsubscribe
app runs with uvicorn on a real socket, and the outreach flow runs under Prefect on a simulated
clock, so a week of sending takes seconds. Mid-week one lead unsubscribes by POSTing its
List-Unsubscribe URL, exactly as a mailbox provider would, and six more answer (part three,
`demo/replies.py`): replies through the signed webhook and only in the IMAP inbox
(a local pymap server), an out-of-office and a hard bounce, then a reply-recovery run.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from shared import db
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.settings import environment

# Three mailboxes: caps, one ramping up, gaps with jitter (what peers recommend, scaled for a demo).
MAILBOXES = (
    {"from_address": "ava@demo-agency.test", "from_name": "Ava Stone", "daily_cap": 12, "min_gap_seconds": 900,
     "jitter_seconds": 120},
    {"from_address": "ben@demo-agency.test", "from_name": "Ben Okafor", "daily_cap": 12, "ramp_start": 4,
     "ramp_step": 4, "ramp_ceiling": 12, "min_gap_seconds": 900, "jitter_seconds": 120},
    {"from_address": "cleo@demo-agency.test", "from_name": "Cleo Marsh", "daily_cap": 8, "min_gap_seconds": 1200,
     "jitter_seconds": 180},
)
STEPS = (
    (1, "Quick question, {{ first_name }}",
     "Hi {{ first_name }},\n\nI noticed {{ company_name }} is hiring for {{ title }} roles. "
     "We help teams like yours book more meetings.\nWorth a 15-minute call?\n\n{{ sender_name }}", 0, "business_days"),
    (2, "ignored: follow-ups reuse step 1's subject",
     "Hi {{ first_name }}, bumping this up in case it got buried.\n\n{{ sender_name }}", 2, "business_days"),
    (3, "ignored", "Last note from me, {{ first_name }}: should I reach out to someone else at {{ company_name }}?\n\n"
     "{{ sender_name }}", 3, "days"),
)
LEADS = 30  # the best-scored enriched leads get the sequence
WEEK = timedelta(days=7)


def _next_monday(now: datetime) -> datetime:
    day = (now + timedelta(days=(7 - now.weekday()) % 7 or 7)).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def run_outreach_demo(client_id: int, campaign_id: int, console: Console) -> dict[str, Any]:
    import httpx

    from orchestrator.flows.outreach import outreach_run
    from shared.engines.leads import scoring
    from shared.engines.outreach import store, suppression
    from demo.replies import replies_midweek, report_after_week
    from devkit.imap_server import DEMO_PASSWORD, DEMO_USER, running_imap_server
    from devkit.net import free_port
    from devkit.smtp_sink import smtp_sink
    from web.app import create_app
    from web.server import background

    console.rule("[bold]outreach: a three-step sequence on a simulated week")
    secret = secrets.token_urlsafe(24)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    web_port = free_port()
    start = _next_monday(datetime.now(UTC))
    with smtp_sink() as (sink, smtp_port), running_imap_server() as imap, \
            environment(OUTREACH_SECRET=secret, PUBLIC_BASE_URL=f"http://127.0.0.1:{web_port}",
                        STANDARD_WEBHOOK_SECRET=webhook_secret, DEMO_IMAP_PASSWORD=DEMO_PASSWORD), \
            background(create_app(db.get_engine(), secret), port=web_port) as base:
        console.print(f"SMTP sink: 127.0.0.1:{smtp_port}   web app (unsubscribe, webhooks): {base}   "
                      f"IMAP: {imap.host}:{imap.port}")
        # The first mailbox also has IMAP (the local pymap server; SMTP and IMAP share the login).
        imap_box = {"username": DEMO_USER, "secret_name": "DEMO_IMAP_PASSWORD", "imap_host": imap.host,
                    "imap_port": imap.port, "imap_tls_mode": "none"}
        with db.transaction() as conn:
            boxes = [mailboxes.add_mailbox(conn, client_id, smtp_host="127.0.0.1", smtp_port=smtp_port, tls_mode="none",
                                       ramp_started_at=start, **box, **(imap_box if i == 0 else {}))
                     for i, box in enumerate(MAILBOXES)]
            sequences.set_schedule(conn, client_id, campaign_id, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17,
                               fallback_timezone="America/New_York")
            for step, subject, body, delay, unit in STEPS:
                sequences.set_step(conn, client_id, campaign_id, step=step, subject=subject, body=body,
                               delay_amount=delay, delay_unit=unit)
            lead_ids = store.best_enriched_leads(conn, client_id, LEADS)
            if len(lead_ids) < 2:
                console.print("too few enriched leads to run a sequence; skipping the outreach part")
                return {"sent": 0}
            sources = store.enroll(conn, client_id, campaign_id, now=start, lead_ids=lead_ids)
            # One lead without a title: the strict template refuses activation and says exactly why.
            scoring.set_lead_title(conn, lead_ids[-1], None)
            problems = campaigns.activate(conn, client_id, campaign_id)
        console.print(f"{len(boxes)} mailboxes, {len(STEPS)} steps, {len(lead_ids)} leads enrolled "
                      f"(timezones from {sources})")
        for line in problems:
            console.print(f"  activation refused: {line}", style="yellow")
        with db.transaction() as conn:
            step, subject, body, delay, unit = STEPS[0]
            sequences.set_step(conn, client_id, campaign_id, step=step, subject=subject, delay_amount=delay, delay_unit=unit,
                           body=body.replace("{{ title }}", '{{ title | default("sales") }}'))
            assert campaigns.activate(conn, client_id, campaign_id) == []
        console.print("template fixed with a default; campaign activated")

        half = outreach_run(now=start, until=start + timedelta(days=2, hours=12), campaign_id=campaign_id)
        with db.transaction() as conn:
            latest = store.latest_first_step_sent(conn, campaign_id)
        assert latest is not None, "the first half-week sent no first step"
        pk, email = latest
        url = f"{base}/u/{suppression.make_token(pk, secret)}"
        answer = httpx.post(url, content=b"List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        console.print(f"Wednesday noon: {email} clicks one-click unsubscribe → HTTP {answer.status_code} "
                      f"{answer.text.strip()!r}")
        replies = replies_midweek(campaign_id, base=base, webhook_secret=webhook_secret, imap=imap,
                                  mailbox_address=MAILBOXES[0]["from_address"], exclude=email, console=console)
        rest = outreach_run(now=start + timedelta(days=2, hours=12), until=start + WEEK, campaign_id=campaign_id)
        with db.transaction() as conn:
            per_day = store.sends_per_day(conn, campaign_id)
            skips = store.skip_reasons(conn, campaign_id)
            stops = store.enrollment_states(conn, campaign_id)
            names = {r["id"]: r["from_address"] for r in mailboxes.list_mailboxes(conn, client_id, start)}
            limits = {names[m.id]: m.limits for m in store.mailbox_states(conn, [client_id], start)}
            to_unsubscribed = store.sent_to_since(conn, campaign_id, email, start + timedelta(days=2, hours=12))
        messages = list(sink.messages)
    _report(console, per_day, limits, skips, stops, messages)
    console.print(f"sent to {email} after the unsubscribe: {to_unsubscribed}")
    replies.update(report_after_week(campaign_id, replies["events"], console))
    return {"sent": half["sent"] + rest["sent"], "per_day": {f"{d} {m}": n for (d, m), n in per_day.items()},
            "skips": skips, "unsubscribed": email, "sent_after_unsubscribe": to_unsubscribed,
            "delivered": len(messages), "replies": replies}


def _report(console: Console, per_day: dict[tuple[str, str], int], limits: dict[str, Any],
            skips: dict[str, int], stops: dict[str, int], messages: list) -> None:
    from shared.engines.outreach.capacity import effective_cap

    boxes = sorted(limits)
    table = Table("day (UTC)", *boxes, title="Sends per day per mailbox (sent / cap that day)")
    days = sorted({d for d, _ in per_day})
    for day in days:
        at = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=12)
        table.add_row(day, *[f"{per_day.get((day, b), 0)} / {effective_cap(limits[b], at)}" for b in boxes])
    console.print(table)
    reasons = Table("skip reason", "sends", title="Skipped just in time, and why")
    for reason, n in skips.items():
        reasons.add_row(reason, str(n))
    console.print(reasons if skips else "no send was skipped just in time")
    states = Table("enrollment", "leads", title="Where each lead is in the sequence")
    for state, n in stops.items():
        states.add_row(state, str(n))
    console.print(states)
    follow = next((m for _, _, m in messages if m["In-Reply-To"]), None)
    if follow is not None:
        console.rule("one follow-up as delivered")
        for key in ("From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "List-Unsubscribe",
                    "List-Unsubscribe-Post"):
            console.print(f"[bold]{key}:[/bold] {follow[key]}", highlight=False)
        console.print(follow.get_content().strip(), highlight=False)
