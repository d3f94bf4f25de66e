"""`outbound outreach run` and `outbound outreach due` (issue 21.6) through the real CLI, Postgres and a real SMTP sink."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from orchestrator.cli import app
from shared.engines.outreach import store
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from tests import factories
from tests.email_sink import smtp_sink

pytestmark = pytest.mark.integration
runner = CliRunner()
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, inside the 9-17 window


def _campaign(engine, port: int, *, leads: int, daily_cap: int) -> dict:
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        lead_ids = factories.leads(conn, client, leads, campaign_id=campaign)
        box = mailboxes.add_mailbox(conn, client, from_address="rep@acme.test", smtp_host="127.0.0.1", smtp_port=port,
                                tls_mode="none", daily_cap=daily_cap, min_gap_seconds=0, jitter_seconds=0,
                                ramp_started_at=START - timedelta(days=30))
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17)
        sequences.set_step(conn, client, campaign, step=1, subject="Hello {{ first_name }}", body="Hi.", delay_amount=0)
        sequences.set_step(conn, client, campaign, step=2, subject="", body="Again.", delay_amount=2, delay_unit="days")
        store.enroll(conn, client, campaign, now=START)
        assert campaigns.activate(conn, client, campaign) == []
    return {"client": client, "campaign": campaign, "leads": lead_ids, "box": box}


def _due(at: datetime, *extra: str) -> list[dict]:
    out = runner.invoke(app, ["outreach", "due", "--json", "--now", at.isoformat(), *extra])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_due_shows_the_schedulers_holds_and_run_sends_exactly_them(engine, env):
    env(OUTREACH_SECRET="s3cret-for-tests", PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="2")
    with smtp_sink() as (sink, port):
        _campaign(engine, port, leads=3, daily_cap=2)
        before = _due(START)
        assert [r["hold"] for r in before] == [None, None, "cap reached"]  # the cap of 2 holds the third
        assert {r["step"] for r in before} == {1} and {r["mailbox"] for r in before} == {"rep@acme.test"}
        assert [r["next_send_at"] for r in before[:2]] == [START.isoformat()] * 2
        saturday = START + timedelta(days=5)
        assert {r["hold"] for r in _due(saturday)} == {"window closed"}
        assert {r["next_send_at"] for r in _due(saturday)} == {(START + timedelta(days=7, hours=-1)).isoformat()}

        out = runner.invoke(app, ["outreach", "run", "--client", "acme", "--campaign", "seq", "--now", START.isoformat()])
        assert out.exit_code == 0, out.output
        assert f"pass 1 at {START.isoformat()}: sent 2, deferred 0, failed 0" in out.output
        assert "1 pass(es): sent 2" in out.output
        assert len(sink.messages) == 2  # what `due` said would go, and nothing else

        after = {r["email"]: r for r in _due(START + timedelta(minutes=1))}
        holds = sorted(r["hold"] for r in after.values())
        assert holds == ["cap reached", "delay not passed", "delay not passed"]
        follow_up = next(r for r in after.values() if r["hold"] == "delay not passed")
        assert follow_up["step"] == 2 and follow_up["next_send_at"] >= (START + timedelta(days=2)).isoformat()

        # The same command again at the same moment sends nothing twice.
        again = runner.invoke(app, ["outreach", "run", "--now", START.isoformat()])
        assert again.exit_code == 0 and "sent 0" in again.output and len(sink.messages) == 2

        # Passes until Friday on the simulated clock: the third lead on Tuesday (the rolling cap), every follow-up two days later.
        week = runner.invoke(app, ["outreach", "run", "--now", (START + timedelta(minutes=1)).isoformat(),
                                   "--until", (START + timedelta(days=4)).isoformat()])
        assert week.exit_code == 0, week.output
        assert week.output.count("\npass ") + week.output.startswith("pass ") >= 2
    assert len(sink.messages) == 6
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*), count(DISTINCT (lead_id, step)) FROM messages "
                                 "WHERE status = 'sent'")).one() == (6, 6)
    table = runner.invoke(app, ["outreach", "due", "--now", (START + timedelta(days=4)).isoformat()])
    assert table.exit_code == 0 and "nobody is due" in table.output


def test_run_without_the_outreach_secret_names_it_and_claims_nothing(engine, env, monkeypatch):
    monkeypatch.delenv("OUTREACH_SECRET", raising=False)
    env(PUBLIC_BASE_URL="https://unsub.example.test")
    with smtp_sink() as (sink, port):
        _campaign(engine, port, leads=2, daily_cap=10)
        out = runner.invoke(app, ["outreach", "run", "--now", START.isoformat()])
    assert out.exit_code == 1 and "OUTREACH_SECRET" in out.output, out.output
    assert sink.messages == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM work_items WHERE step IS NOT NULL")).scalar() == 0


def test_bad_times_and_a_campaign_without_its_client_are_usage_errors(engine):
    for args, words in ((["run", "--now", "tuesday"], "--now must be an ISO 8601 time"),
                        (["due", "--now", "2026-13-01"], "--now must be an ISO 8601 time"),
                        (["run", "--now", START.isoformat(), "--until", START.isoformat()], "--until must be later"),
                        (["run", "--campaign", "seq"], "--campaign needs --client")):
        out = runner.invoke(app, ["outreach", *args])
        assert out.exit_code == 2 and words in out.output, (args, out.output)
    out = runner.invoke(app, ["outreach", "due", "--client", "nobody", "--campaign", "seq"])
    assert out.exit_code == 1 and "client 'nobody' does not exist" in out.output
