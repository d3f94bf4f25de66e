"""Campaign analytics against real Postgres: every figure and rate of a campaign with known outcomes,
the same figures from a real outreach pass and real ingest, tenancy under row-level security, the CLI."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

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
from shared.engines.replies import inbox, ingest
from shared.engines.replies.webhooks import parse_message
from shared.settings import get_settings
from shared.status import Verdict
from tests import factories
from tests.email_sink import smtp_sink
from tests.replies_mail import WEBHOOK_SECRET, dsn, german_out_of_office, reply
from web.app import create_app
from web.server import background

pytestmark = pytest.mark.integration

SECRET = "test-outreach-secret"
D0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday; 05:00 in New York


@dataclass(frozen=True)
class Viewer:
    """A console principal as `db.enter_role` reads it."""

    client_id: int | None
    email: str = "viewer@test"

    @property
    def is_operator(self) -> bool:
        return self.client_id is None


def _send(conn, client, campaign, lead, step, status, box, at):
    return conn.execute(text(
        "INSERT INTO messages (client_id, campaign_id, lead_id, step, mailbox_id, message_id, subject, status, "
        "reserved_at, sent_at, smtp_reply, error, retry_at) VALUES (:c, :camp, :l, :s, :m, :mid, 'Hello', :st, :at, "
        ":sent, :reply, :err, :retry) RETURNING id"),
        {"c": client, "camp": campaign, "l": lead, "s": step, "m": box, "st": status, "at": at,
         "mid": f"<{client}.{campaign}.{lead}.{step}@test>", "sent": at if status == "sent" else None,
         "reply": "250 ok" if status == "sent" else None,
         "err": {"failed": "550 refused", "deferred": "451 later"}.get(status),
         "retry": at if status == "deferred" else None}).scalar_one()


def _inbound(conn, client, campaign, lead, pk, kind, at, *, verified=True, outcome="acted"):
    conn.execute(text(
        "INSERT INTO inbound_messages (client_id, source, provider, webhook_id, dedupe_key, raw, raw_bytes, "
        "message_pk, lead_id, campaign_id, match_kind, kind, evidence, received_at, processed_at, outcome, verified) "
        "VALUES (:c, 'webhook', 'standard_webhooks', :w, :w, 'x', 1, :pk, :l, :camp, 'message_id', :k, 'test', "
        ":at, :at, :o, :v)"),
        {"c": client, "w": f"w{random.random()}", "pk": pk, "l": lead, "camp": campaign, "k": kind, "at": at,
         "o": outcome, "v": verified})


def _email(conn, lead):
    return conn.execute(text("SELECT email FROM leads WHERE id = :l"), {"l": lead}).scalar_one()


def _client_world(conn, name):
    """One client's campaign `q4` (4 steps, 10 enrolled leads), a second campaign `other`, a mailbox."""
    client = factories.client(conn, name)
    camp = factories.campaign(conn, client, "q4")
    other = factories.campaign(conn, client, "other")
    leads = factories.leads(conn, client, 10, campaign_id=camp)
    box = mailboxes.add_mailbox(conn, client, from_address=f"rep@{name}.test", smtp_host="h", smtp_port=25)
    for c in (camp, other):
        sequences.set_schedule(conn, client, c, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17,
                               fallback_timezone="America/New_York")
    for step in (1, 2, 3, 4):
        sequences.set_step(conn, client, camp, step=step, subject="Hi", body="Hello", delay_amount=step - 1)
    sequences.set_step(conn, client, other, step=1, subject="Hi", body="Hello")
    conn.execute(text("INSERT INTO enrollments (client_id, campaign_id, lead_id, next_due_at, timezone, "
                      "timezone_source) SELECT :c, :camp, l, :at, 'UTC', 'test' FROM unnest(CAST(:ls AS bigint[])) l"),
                 {"c": client, "camp": camp, "ls": leads, "at": D0})
    return client, camp, other, leads, box


def _known_outcomes(conn, name):
    """The campaign whose every figure the test below states (L1..L10 are its leads)."""
    client, camp, other, L, box = _client_world(conn, name)
    L = [None, *L]  # L[1]..L[10]
    day = [D0 + timedelta(days=n) for n in range(7)]
    s1 = {i: _send(conn, client, camp, L[i], 1, "sent", box, day[0]) for i in range(1, 9)}
    s1[9] = _send(conn, client, camp, L[9], 1, "failed", box, day[0])
    s1[10] = _send(conn, client, camp, L[10], 1, "in_doubt", box, day[0])
    s2 = {i: _send(conn, client, camp, L[i], 2, "sent", box, day[2]) for i in range(1, 6)}
    for i, status in ((6, "deferred"), (7, "unknown"), (8, "sending")):
        s2[i] = _send(conn, client, camp, L[i], 2, status, box, day[2])
    at3 = day[4].replace(hour=3)  # 22:00 the day before in New York
    s3 = {i: _send(conn, client, camp, L[i], 3, "sent", box, at3) for i in (1, 2)}
    s3[3] = _send(conn, client, camp, L[3], 3, "failed", box, at3)
    _inbound(conn, client, camp, L[1], s1[1], "human_reply", day[1].replace(hour=15))
    _inbound(conn, client, camp, L[2], s1[2], "human_reply", day[1].replace(hour=16), verified=None)  # pre-0011
    _inbound(conn, client, camp, L[2], s2[2], "human_reply", day[3].replace(hour=2))  # 21:00 NY, day 2
    _inbound(conn, client, camp, L[3], s1[3], "human_reply", day[1], verified=False, outcome=ingest.UNVERIFIED)
    _inbound(conn, client, camp, L[3], s1[3], "auto_reply", day[1])
    _inbound(conn, client, camp, L[4], s2[4], "hard_bounce", day[2].replace(hour=12))
    _inbound(conn, client, camp, L[5], s1[5], "soft_bounce", day[1])
    _inbound(conn, client, camp, L[5], s1[5], "hard_bounce", day[1], verified=False, outcome=ingest.UNVERIFIED)
    _inbound(conn, client, camp, L[6], s1[6], "unsubscribe_request", day[1])
    _inbound(conn, client, camp, L[7], s1[7], "human_reply", day[1], verified=None, outcome=ingest.OURS)
    _inbound(conn, client, camp, L[8], s1[8], "complaint", day[1])
    # One-click: L3's latest delivered send is step 2 (step 3 failed); L10's is its in-doubt step 1;
    # L9's only send here failed and its latest is in `other`; L5's suppression was imported.
    o9 = _send(conn, client, other, L[9], 1, "sent", box, day[3])
    o1 = _send(conn, client, other, L[1], 1, "sent", box, day[3])
    _inbound(conn, client, other, L[1], o1, "human_reply", day[3])
    for i, source in ((3, suppression.ONE_CLICK_SOURCE), (10, suppression.ONE_CLICK_SOURCE),
                      (9, suppression.ONE_CLICK_SOURCE), (5, "import:dnc.csv")):
        suppression.suppress(conn, client, _email(conn, L[i]), reason="unsubscribed", source=source)
    assert o9
    # Verdicts: the newest counts (L2: not interested, then interested, in one transaction: the id breaks
    # the tie); L3's only reply is unverified, so its verdict makes no positive reply.
    inbox.mark(conn, L[1], Verdict.INTERESTED, by="test")
    inbox.mark(conn, L[2], Verdict.NOT_INTERESTED, by="test")
    inbox.mark(conn, L[2], Verdict.INTERESTED, by="test")
    inbox.mark(conn, L[3], Verdict.INTERESTED, by="test")
    inbox.mark(conn, L[4], Verdict.WRONG_PERSON, by="test")
    return client, camp


def _figures(**kw):
    base = dict.fromkeys(analytics.COUNTS, 0) | kw
    return base | {"rates": analytics.rates(base)}


EXPECTED_STEPS = [
    {"step": 1} | _figures(enrolled=10, contacted=8, sent=8, replied=2, positive=2, unsubscribed=2, complained=1,
                           in_doubt=1, failed=1),
    {"step": 2} | _figures(enrolled=8, contacted=5, sent=5, replied=1, positive=1, bounced=1, unsubscribed=1,
                           in_doubt=2, deferred=1),
    {"step": 3} | _figures(enrolled=5, contacted=2, sent=2, failed=1),
    {"step": 4} | _figures(enrolled=2),
]
EXPECTED_TOTALS = _figures(enrolled=10, contacted=8, sent=15, replied=2, positive=2, bounced=1, unsubscribed=3,
                           complained=1, in_doubt=3, failed=2, deferred=1)


@pytest.fixture
def known(engine):
    with engine.begin() as conn:
        a = _known_outcomes(conn, "alpha")
        _known_outcomes(conn, "bravo")  # the same rows for another client: nothing of it may count
    return a


def test_every_figure_and_rate_of_a_campaign_with_known_outcomes(engine, known):
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
    assert stats.steps == [{"step": 1} | _figures(enrolled=5, contacted=5, sent=5, replied=1, bounced=1,
                                                  unsubscribed=1),
                           {"step": 2} | _figures(enrolled=5, contacted=2, sent=2)]
    assert stats.totals == _figures(enrolled=5, contacted=5, sent=7, replied=1, bounced=1, unsubscribed=1)
