"""Campaign analytics against real Postgres: every figure and rate of a campaign with known outcomes,
the same figures from a real outreach pass and real ingest, tenancy under row-level security, the CLI."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from devkit.net import free_port
from orchestrator.cli import app
from orchestrator.flows.outreach import outreach_pass
from shared import db
from shared.engines.campaigns import analytics, campaigns, sequences
from shared.engines.mailboxes import mailboxes
from shared.engines.outreach import store, suppression
from shared.engines.replies import ingest
from shared.engines.replies.webhooks import parse_message
from shared.settings import get_settings
from tests import factories
from tests.campaign_outcomes import D0, EXPECTED_STEPS, EXPECTED_TOTALS, figures, known_outcomes
from tests.email_sink import smtp_sink
from tests.replies_mail import WEBHOOK_SECRET, dsn, german_out_of_office, reply
from web.app import create_app
from web.server import background

pytestmark = pytest.mark.integration

SECRET = "test-outreach-secret"


@dataclass(frozen=True)
class Viewer:
    """A console principal as `db.enter_role` reads it."""

    client_id: int | None
    email: str = "viewer@test"

    @property
    def is_operator(self) -> bool:
        return self.client_id is None


@pytest.fixture
def known(engine):
    with engine.begin() as conn:
        a = known_outcomes(conn, "alpha")
        known_outcomes(conn, "bravo")  # the same rows for another client: nothing of it may count
    return a


def test_every_figure_and_rate_of_a_campaign_withknown_outcomes(engine, known):
    client, camp = known
    with db.transaction(engine) as conn:
        stats = analytics.campaign_stats(conn, camp)
    assert stats is not None
    assert (stats.client_id, stats.client, stats.campaign, stats.timezone) == (client, "alpha", "q4",
                                                                               "America/New_York")
    assert stats.steps == EXPECTED_STEPS
    assert stats.totals == EXPECTED_TOTALS
    assert stats.steps[0]["rates"] == {"reply_rate": 0.25, "positive_rate": 1.0, "bounce_rate": 0.0,
                                       "unsubscribe_rate": 0.25, "complaint_rate": 0.125}
    assert stats.steps[2]["rates"]["positive_rate"] is None  # nobody replied to step 3
    assert set(stats.steps[3]["rates"].values()) == {None}  # step 4 sent nothing
    assert stats.totals["rates"] == {"reply_rate": 0.25, "positive_rate": 1.0, "bounce_rate": 0.125,
                                     "unsubscribe_rate": 0.375, "complaint_rate": 0.125}


def test_daily_series_is_zero_filled_on_the_local_calendar(engine, known):
    _, camp = known
    now = D0 + timedelta(days=6, hours=2)
    with db.transaction(engine) as conn:
        ny = analytics.daily(conn, camp, 7, tz="America/New_York", now=now)
        utc = analytics.daily(conn, camp, 7, tz="UTC", now=now)
        short = analytics.daily(conn, camp, 2, tz="UTC", now=now)
    days = [date(2026, 11, 23) + timedelta(days=n) for n in range(7)]
    assert ny == [{"day": d, "sent": s, "replied": r, "bounced": b} for d, (s, r, b) in zip(days, [
        (8, 0, 0), (0, 2, 0), (5, 1, 1), (2, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)])]
    assert [(d["sent"], d["replied"]) for d in utc] == [(8, 0), (0, 2), (5, 0), (0, 1), (2, 0), (0, 0), (0, 0)]
    assert [d["day"] for d in short] == days[5:]
    with db.transaction(engine) as conn, pytest.raises(ValueError, match="Mars/Olympus"):
        analytics.daily(conn, camp, tz="Mars/Olympus")
    with db.transaction(engine) as conn, pytest.raises(ValueError, match="between 1 and"):
        analytics.daily(conn, camp, 0, tz="UTC")


def test_a_viewer_sees_its_own_campaign_and_nothing_of_another_client(engine, known):
    client, camp = known
    with db.transaction(engine) as conn:
        bravo = conn.execute(text("SELECT c.id, c.client_id FROM campaigns c JOIN clients cl ON cl.id = c.client_id "
                                  "WHERE cl.name = 'bravo' AND c.name = 'q4'")).one()
    with db.transaction(engine, role=Viewer(bravo.client_id)) as conn:
        assert analytics.campaign_stats(conn, camp) is None
        assert analytics.daily(conn, camp, tz="UTC") is None
        own = analytics.campaign_stats(conn, bravo.id)
    assert own is not None and own.steps == EXPECTED_STEPS and own.totals == EXPECTED_TOTALS
    with db.transaction(engine, role=Viewer(client)) as conn:
        mine = analytics.campaign_stats(conn, camp)
    with db.transaction(engine, role=Viewer(None, "ops@test")) as conn:  # an operator
        seen = analytics.campaign_stats(conn, camp)
    assert mine is not None and seen is not None and mine.totals == seen.totals == EXPECTED_TOTALS


def test_the_cli_prints_the_step_table_and_the_daily_series(engine, known):
    runner = CliRunner()
    out = runner.invoke(app, ["campaigns", "stats", "alpha", "q4", "--json", "--days", "40"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["steps"] == json.loads(json.dumps(EXPECTED_STEPS)) and data["totals"] == EXPECTED_TOTALS
    assert data["daily_timezone"] == "America/New_York" and len(data["daily"]) == 40
    table = runner.invoke(app, ["campaigns", "stats", "alpha", "q4", "--days", "3", "--timezone", "UTC"],
                          env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    cells = {row[0]: row[1:] for row in ([c.strip() for c in line.split("│")[1:-1]]
                                          for line in table.output.splitlines()) if row}
    assert cells["total"] == ["10", "15", "8", "2", "2", "1", "3", "1", "3", "2", "1", "25.0 %", "12.5 %", "37.5 %"]
    assert cells["1"] == ["10", "8", "8", "2", "2", "0", "2", "1", "1", "1", "0", "25.0 %", "0.0 %", "25.0 %"]
    assert cells["4"] == ["2", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "-", "-", "-"]
    # Step 1's A/B variants, each under the step: the same figures over the sends of that variant.
    assert cells["1 A"] == ["5", "4", "4", "1", "1", "0", "0", "0", "0", "1", "0", "25.0 %", "0.0 %", "0.0 %"]
    assert cells["1 B"] == ["5", "4", "4", "1", "1", "0", "2", "1", "1", "0", "0", "25.0 %", "0.0 %", "50.0 %"]
    assert "2 A" not in cells  # a step without variants has no variant rows
    assert "the last 3 days (UTC)" in table.output
    unknown = runner.invoke(app, ["campaigns", "stats", "alpha", "nope"])
    assert unknown.exit_code == 1 and "nope" in unknown.output
    bad = runner.invoke(app, ["campaigns", "stats", "alpha", "q4", "--timezone", "Mars/Olympus"])
    assert bad.exit_code == 1 and "unknown timezone 'Mars/Olympus'" in bad.output
    too_long = runner.invoke(app, ["campaigns", "stats", "alpha", "q4", "--days", "400"])
    assert too_long.exit_code == 1 and "days must be between 1 and 366, not 400" in too_long.output


@pytest.fixture
def sink():
    with smtp_sink() as (s, port):
        yield s, port


def _ingest(engine, raw, now):
    received = ingest.Received(raw, parse_message(raw), "webhook", provider="standard_webhooks",
                               webhook_id=f"msg_{random.random()}")
    return ingest.ingest(engine, received, settings=get_settings(), now=now)


def test_figures_of_a_real_outreach_pass_replies_and_one_click_unsubscribe(engine, env, sink):
    env(OUTREACH_SECRET=SECRET, PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="2",
        STANDARD_WEBHOOK_SECRET=WEBHOOK_SECRET)
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        camp = factories.campaign(conn, client, "seq", status="draft")
        leads = factories.leads(conn, client, 5, campaign_id=camp)
        mailboxes.add_mailbox(conn, client, from_address="rep1@acme.test", from_name="Rep", smtp_host="127.0.0.1",
                              smtp_port=sink[1], tls_mode="none", daily_cap=500, min_gap_seconds=0, jitter_seconds=0,
                              ramp_started_at=D0 - timedelta(days=30))
        sequences.set_schedule(conn, client, camp, weekdays=[1, 2, 3, 4, 5], start_hour=0, end_hour=24,
                               fallback_timezone="UTC")
        sequences.set_step(conn, client, camp, step=1, subject="Hello {{ first_name }}", body="Hi.")
        sequences.set_step(conn, client, camp, step=2, subject="x", body="Again.", delay_amount=2, delay_unit="days")
        store.enroll(conn, client, camp, now=D0)
        assert campaigns.activate(conn, client, camp) == []
    outreach_pass.fn(D0, True)
    with engine.connect() as conn:
        sent = {r.lead_id: r for r in conn.execute(text(
            "SELECT s.id, s.lead_id, s.message_id, s.subject, l.email FROM messages s JOIN leads l ON l.id = s.lead_id "
            "WHERE s.status = 'sent' ORDER BY s.lead_id"))}
    a, b, c, d, _ = leads
    later = D0 + timedelta(hours=2)
    assert _ingest(engine, reply(frm=sent[a].email, to="rep1@acme.test", subject=f"Re: {sent[a].subject}",
                                 in_reply_to=sent[a].message_id), later).kind == "human_reply"
    assert _ingest(engine, german_out_of_office(frm=sent[b].email, to="rep1@acme.test",
                                                subject=f"Re: {sent[b].subject}", in_reply_to=sent[b].message_id),
                   later).kind == "auto_reply"
    assert _ingest(engine, dsn(recipient=sent[c].email, original_message_id=sent[c].message_id,
                               original_subject=sent[c].subject, to="rep1@acme.test"), later).kind == "hard_bounce"
    with background(create_app(engine, SECRET), port=free_port()) as base:
        ok = httpx.post(f"{base}/u/{suppression.make_token(sent[d].id, SECRET)}", content=b"List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert ok.status_code == 200
    outreach_pass.fn(D0 + timedelta(days=4), True)  # step 2: b (its auto-reply only delayed it) and the fifth lead
    with db.transaction(engine) as conn:
        stats = analytics.campaign_stats(conn, camp)
    assert stats is not None
    assert stats.steps == [{"step": 1, "variants": []} | figures(enrolled=5, contacted=5, sent=5, replied=1, bounced=1,
                                                                 unsubscribed=1),
                           {"step": 2, "variants": []} | figures(enrolled=5, contacted=2, sent=2)]
    assert stats.totals == figures(enrolled=5, contacted=5, sent=7, replied=1, bounced=1, unsubscribed=1)
