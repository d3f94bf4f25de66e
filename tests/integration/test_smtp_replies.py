"""Issue 21 against a real SMTP server we script (tests.email_servers): every reply is a definite answer.

4xx defers (same Message-ID, retried after the backoff, each message delivered exactly once on a
simulated clock), 5xx refuses, 5.1.x at RCPT is a hard bounce, only silence after the final dot is
in doubt; a mailbox whose server fails backs off, and pauses with the server's words when the
problem is permanent; a client's first steps spread over its mailboxes by remaining room.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from orchestrator.flows.outreach import outreach_pass
from shared.engines.outreach import store
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes.mailboxes import add_mailbox
from shared.engines.campaigns import sequences
from tests import factories
from tests.email_servers import Faults, smtp_server  # noqa: F401  (pytest fixture)
from devkit.net import free_port
from tests.email_sink import smtp_sink

pytestmark = pytest.mark.integration

SECRET = "test-outreach-secret"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


def _campaign(engine, env, port: int, *, leads: int, mailboxes: int = 1, steps: int = 1, daily_cap: int = 500,
              **box) -> dict:
    env(OUTREACH_SECRET=SECRET, PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="2")
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        lead_ids = factories.leads(conn, client, leads, campaign_id=campaign)
        boxes = [add_mailbox(conn, client, from_address=f"rep{i}@acme.test", smtp_host="127.0.0.1",
                                   smtp_port=port, tls_mode="none", daily_cap=daily_cap, min_gap_seconds=0,
                                   jitter_seconds=0, ramp_started_at=START - timedelta(days=30), **box)
                 for i in range(1, mailboxes + 1)]
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
        for step in range(1, steps + 1):
            sequences.set_step(conn, client, campaign, step=step, subject="Hello {{ first_name }}", body="Hi.",
                           delay_amount=0 if step == 1 else 1, delay_unit="days")
        store.enroll(conn, client, campaign, now=START)
        assert campaigns.activate(conn, client, campaign) == []
    return {"client": client, "campaign": campaign, "leads": lead_ids, "boxes": boxes}


def _run_until_quiet(start, *, max_passes=500, until=None):
    """Passes on a simulated clock, each at the scheduler's next wake-up, until nothing is left (or `until`)."""
    clock, passes = start, 0
    for passes in range(1, max_passes + 1):  # noqa: B007
        result = outreach_pass.fn(clock, True)
        if result["next_wake"] is None:
            return clock, passes
        clock = datetime.fromisoformat(result["next_wake"])
        if until is not None and clock >= until:
            return clock, passes
    raise AssertionError("outreach did not settle")


def _messages(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT m.lead_id, m.status, m.deferrals, m.message_id, m.error, l.email "
                                 "FROM messages m JOIN leads l ON l.id = m.lead_id ORDER BY m.lead_id")).all()


def test_451_after_the_dot_is_deferred_and_every_message_arrives_exactly_once(engine, env, smtp_server):
    smtp_server.handler.faults = Faults(defer_every=5)
    _campaign(engine, env, smtp_server.port, leads=100, mailboxes=2)
    _run_until_quiet(START)
    handler = smtp_server.handler
    delivered = Counter(m["Message-ID"] for _, _, m in handler.accepted)
    assert len(delivered) == 100 and set(delivered.values()) == {1}  # every message, none twice
    assert Counter(rcpt[0] for _, rcpt, _ in handler.accepted) == Counter(f"person{i}@example.com"
                                                                         for i in range(1, 101))
    rows = _messages(engine)
    assert {r.status for r in rows} == {"sent"}
    assert len(handler.deferred) >= 20 and sum(r.deferrals for r in rows) == len(handler.deferred)
    # A deferred message was tried again with the same Message-ID, and then delivered.
    assert {mid for _, mid in handler.deferred} <= set(delivered)


def test_the_backoff_spaces_the_retries_and_gives_up_with_the_servers_words(engine, env, smtp_server):
    smtp_server.handler.faults = Faults(defer_every=1)  # this server never takes anything
    _campaign(engine, env, smtp_server.port, leads=1)
    _run_until_quiet(START)
    (row,) = _messages(engine)
    assert row.status == "failed" and row.deferrals == 6  # tried at 0, +5 min, +15 min, +1 h, +4 h, +12 h
    assert "451 4.3.0 try again later" in row.error
    assert len(smtp_server.handler.deferred) == 6 and smtp_server.handler.accepted == []
    assert len({mid for _, mid in smtp_server.handler.deferred}) == 1  # one Message-ID throughout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status, stop_reason FROM enrollments")).one() == ("stopped",
                                                                                         "deferred_too_long")
        tries = conn.execute(text("SELECT reserved_at FROM messages")).scalar()
    assert tries == START + timedelta(minutes=5 + 15 + 60 + 240 + 720)  # the last try's slot time


def test_550_511_at_rcpt_is_a_hard_bounce_554_refuses_and_silence_after_the_dot_is_in_doubt(engine, env,
                                                                                             smtp_server):
    smtp_server.handler.faults = Faults(unknown={"person2@example.com"}, rejected={"person3@example.com"},
                                        drop_after_dot={"person4@example.com"})
    made = _campaign(engine, env, smtp_server.port, leads=5, steps=2)
    _run_until_quiet(START)
    rows = {r.email: r for r in _messages(engine)}
    with engine.connect() as conn:
        leads = dict(conn.execute(text("SELECT email, status FROM leads")).all())
        enrollments = dict(conn.execute(text("SELECT l.email, e.status || ':' || coalesce(e.stop_reason, '') "
                                             "FROM enrollments e JOIN leads l ON l.id = e.lead_id")).all())
        suppressed = set(conn.execute(text("SELECT value FROM suppressions")).scalars())
    bounced, refused, doubt = rows["person2@example.com"], rows["person3@example.com"], rows["person4@example.com"]
    assert bounced.status == "failed" and "550 5.1.1" in bounced.error
    assert leads["person2@example.com"] == "bounced" and suppressed == {"person2@example.com"}
    assert enrollments["person2@example.com"] == "stopped:bounced"
    assert refused.status == "failed" and "554 5.7.1" in refused.error
    assert enrollments["person3@example.com"] == "stopped:rejected"
    assert doubt.status == "in_doubt" and enrollments["person4@example.com"] == "held:"
    # The in-doubt one reached the server once and was never sent again; the others got both steps.
    to = Counter(rcpt[0] for _, rcpt, _ in smtp_server.handler.accepted)
    assert to == {"person1@example.com": 2, "person4@example.com": 1, "person5@example.com": 2}
    assert len(made["leads"]) == 5


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_server_without_auth_pauses_the_mailbox_after_three_tries_without_a_hot_loop(engine, env, smtp_server):
    env(MAILBOX_PASSWORD="s3cret-value")
    made = _campaign(engine, env, smtp_server.port, leads=50, username="rep", secret_name="MAILBOX_PASSWORD")
    for minute in range(0, 240):  # a pass every simulated minute for four hours
        outreach_pass.fn(START + timedelta(minutes=minute), True)
    # Three tries (at 0, +1 min, +6 min), then paused. Two chunks run at once (LOCAL_WORKERS=2), so a
    # try may be two connections at the same moment: they count as one failure.
    assert 3 <= smtp_server.handler.sessions <= 6
    with engine.connect() as conn:
        box = conn.execute(text("SELECT status, status_reason, smtp_failures FROM mailboxes")).one()
        failed_items = conn.execute(text("SELECT count(*) FROM work_items WHERE status = 'FAILED'")).scalar()
        statuses = Counter(conn.execute(text("SELECT status FROM messages")).scalars())
    assert box.status == "paused" and box.smtp_failures == 3
    assert "SMTP AUTH extension not supported by server" in box.status_reason
    assert "s3cret-value" not in box.status_reason
    assert failed_items == smtp_server.handler.sessions  # no other attempt: the rest waited or were held
    assert sum(statuses.values()) <= 2 and set(statuses) == {"failed"}  # the step stays due for when it resumes
    assert len(made["leads"]) == 50


def test_connection_refused_backs_the_mailbox_off_but_never_pauses_it(engine, env):
    made = _campaign(engine, env, free_port(), leads=10)  # nothing listens on that port
    for minute in range(0, 120):
        outreach_pass.fn(START + timedelta(minutes=minute), True)
    with engine.connect() as conn:
        box = conn.execute(text("SELECT status, smtp_failures, smtp_last_error, smtp_retry_at FROM mailboxes")).one()
        tries = conn.execute(text("SELECT count(*) FROM work_items WHERE status = 'FAILED'")).scalar()
    assert box.status == "active" and "ConnectionRefusedError" in box.smtp_last_error
    assert tries == box.smtp_failures == 5  # at 0, +1, +6, +21 and +81 min: the backoff, not every pass
    assert box.smtp_retry_at == START + timedelta(minutes=81 + 240)
    assert len(made["leads"]) == 10


def test_first_steps_spread_over_five_mailboxes_by_remaining_room(engine, env):
    with smtp_sink() as (sink, port):
        made = _campaign(engine, env, port, leads=300, mailboxes=5, daily_cap=100)
        result = outreach_pass.fn(START, True)
    assert result["sent"] == 300 and len(sink.messages) == 300
    with engine.connect() as conn:
        per_box = Counter(conn.execute(text("SELECT mailbox_id FROM messages WHERE status = 'sent'")).scalars())
    assert set(per_box) == set(made["boxes"])
    assert all(59 <= n <= 61 for n in per_box.values()), per_box
