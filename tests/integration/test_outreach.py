"""Outreach against real parts: Postgres, an aiosmtpd SMTP server, the unsubscribe app on a real socket."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from orchestrator.flows.outreach import outreach_pass
from shared import workitems
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.settings import get_settings
from shared.engines.outreach import sending, store, suppression
from shared.engines.outreach.scheduler import Send
from tests import factories
from tests.email_servers import imap_server  # noqa: F401  (pytest fixture)
from tests.email_sink import smtp_sink

pytestmark = pytest.mark.integration

SECRET = "test-outreach-secret"
MONDAY_10_UTC = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, inside 9-17 UTC


@pytest.fixture
def sink():
    with smtp_sink() as (s, port):
        yield s, port


@pytest.fixture
def outreach(engine, env, sink):
    """A client with two mailboxes on the sink, a three-step campaign and five enrolled leads."""
    env(OUTREACH_SECRET=SECRET, PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="2")
    _, port = sink
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        leads = factories.leads(conn, client, 5, campaign_id=campaign)
        boxes = [mailboxes.add_mailbox(conn, client, from_address=f"rep{i}@acme.test", from_name=f"Rep {i}",
                                   smtp_host="127.0.0.1", smtp_port=port, tls_mode="none", daily_cap=50,
                                   min_gap_seconds=0, jitter_seconds=0,
                                   ramp_started_at=MONDAY_10_UTC - timedelta(days=30)) for i in (1, 2)]
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17,
                           fallback_timezone="UTC")
        sequences.set_step(conn, client, campaign, step=1, subject="Hello {{ first_name }}",
                       body="Hi {{ first_name }}, {{ company_name }} looks great.")
        sequences.set_step(conn, client, campaign, step=2, subject="ignored", body="Following up, {{ first_name }}.",
                       delay_amount=2, delay_unit="business_days")
        sequences.set_step(conn, client, campaign, step=3, subject="ignored", body="Last note.", delay_amount=1,
                       delay_unit="days")
        store.enroll(conn, client, campaign, now=MONDAY_10_UTC)
        assert campaigns.activate(conn, client, campaign) == []
    return {"client": client, "campaign": campaign, "leads": leads, "boxes": boxes}


def _sent(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT lead_id, step, status, mailbox_id FROM messages ORDER BY lead_id, step")).all()


def test_missing_variable_blocks_activation_and_names_lead_and_variable(engine, env):
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        lead = factories.leads(conn, client, 1, campaign_id=campaign)[0]
        conn.execute(text("UPDATE leads SET company_name = NULL WHERE id = :l"), {"l": lead})
        mailboxes.add_mailbox(conn, client, from_address="a@acme.test", smtp_host="h", smtp_port=25)
        sequences.set_step(conn, client, campaign, step=1, subject="Hi {{ first_name }}", body="x")
        sequences.set_step(conn, client, campaign, step=2, subject="s", body="About {{ company_name }}", delay_amount=1)
        store.enroll(conn, client, campaign, now=MONDAY_10_UTC)
        problems = campaigns.activate(conn, client, campaign)
        status = conn.execute(text("SELECT status FROM campaigns WHERE id = :c"), {"c": campaign}).scalar()
    assert problems == [f"lead {lead} person1@example.com: step 2 needs {{{{ company_name }}}}"]
    assert status == "draft"
    assert _sent(engine) == []


def test_a_sequence_runs_threaded_with_headers_and_follow_ups_from_the_first_mailbox(engine, sink, outreach):
    s, _ = sink
    t = MONDAY_10_UTC
    for day in range(6):  # Mon … Sat at 10:00 UTC
        outreach_pass.fn(t + timedelta(days=day), True)
    rows = _sent(engine)
    assert Counter(r.step for r in rows if r.status == "sent") == {1: 5, 2: 5, 3: 5}
    by_lead = {}
    for r in rows:
        by_lead.setdefault(r.lead_id, set()).add(r.mailbox_id)
    assert all(len(boxes) == 1 for boxes in by_lead.values())  # follow-ups from step 1's mailbox
    assert len({next(iter(b)) for b in by_lead.values()}) == 2  # rotation used both mailboxes
    assert len(s.messages) == 15
    first = {m["Message-ID"]: m for _, _, m in s.messages}
    follow = [m for _, _, m in s.messages if m["In-Reply-To"]]
    assert len(follow) == 10
    for m in follow:
        assert m["Subject"].startswith("Re: Hello ")
        parent = first[m["In-Reply-To"]]
        assert m["References"].split()[-1] == parent["Message-ID"]
    m = s.messages[0][2]
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["List-Unsubscribe"].startswith("<https://unsub.example.test/u/")
    assert s.messages[0][0].startswith("bounces+")  # VERP envelope sender
    # Step 2 waited two business days: Monday → Wednesday.
    with engine.connect() as conn:
        days = conn.execute(text("SELECT step, min(sent_at) AS first_at FROM messages GROUP BY step ORDER BY step")).all()
    assert [d.first_at.date().isoformat() for d in days] == ["2026-11-23", "2026-11-25", "2026-11-26"]


def test_three_runs_at_the_same_moment_deliver_each_lead_step_once(engine, sink, outreach):
    s, _ = sink
    barrier = threading.Barrier(3)
    errors = []

    def run():
        try:
            barrier.wait()
            outreach_pass.fn(MONDAY_10_UTC, True)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    delivered = Counter((rcpt[0], m["Message-ID"]) for _, rcpt, m in s.messages)
    assert len(delivered) == 5 and set(delivered.values()) == {1}
    assert Counter(r.status for r in _sent(engine)) == {"sent": 5}


def test_caps_and_gaps_hold_under_concurrent_runs(engine, sink, outreach):
    s, _ = sink
    with engine.begin() as conn:
        conn.execute(text("UPDATE mailboxes SET daily_cap = 2, min_gap_seconds = 0"))
    barrier = threading.Barrier(3)

    def run():
        barrier.wait()
        outreach_pass.fn(MONDAY_10_UTC, True)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    per_box = Counter(r.mailbox_id for r in _sent(engine) if r.status == "sent")
    assert per_box and all(n <= 2 for n in per_box.values())
    assert len(s.messages) == sum(per_box.values()) == 4


def test_gaps_hold_under_concurrent_runs(engine, sink, outreach):
    s, _ = sink
    with engine.begin() as conn:
        conn.execute(text("UPDATE mailboxes SET min_gap_seconds = 1800, jitter_seconds = 60"))
    barrier = threading.Barrier(3)

    def run(at):
        barrier.wait()
        outreach_pass.fn(at, True)

    threads = [threading.Thread(target=run, args=(MONDAY_10_UTC,)) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(s.messages) == 2  # one per mailbox: the second send of each must wait its gap
    outreach_pass.fn(MONDAY_10_UTC + timedelta(minutes=29), True)
    assert len(s.messages) == 2
    outreach_pass.fn(MONDAY_10_UTC + timedelta(minutes=32), True)  # past 30 min + up to 60 s jitter
    assert len(s.messages) == 4
    with engine.connect() as conn:
        times = conn.execute(text("SELECT mailbox_id, reserved_at FROM messages ORDER BY mailbox_id, reserved_at")).all()
    for a, b in zip(times, times[1:]):
        if a.mailbox_id == b.mailbox_id:
            assert (b.reserved_at - a.reserved_at).total_seconds() >= 1800


def _queue_all(engine, outreach):
    """Plan and enqueue at Monday 10:00, claim the items (QUEUED): what a run does before sending."""
    from shared.engines.outreach import scheduler

    with engine.begin() as conn:
        inputs = store.planning_inputs(conn, MONDAY_10_UTC)
        plan = scheduler.due_sends(MONDAY_10_UTC, inputs.candidates, inputs.windows, inputs.mailboxes)
        (batch,) = store.enqueue_sends(conn, plan.sends)
        claimed = workitems.claim(conn, batch, 100)
    return batch, {c.lead_id: c.id for c in claimed}


@pytest.mark.parametrize("change, reason", [
    ("unsubscribe", "unsubscribed"), ("pause", "mailbox_paused"), ("cancel", "subscription_inactive"),
    ("suppress_domain", "suppressed"), ("campaign_pause", "campaign_paused"), ("late", "outside_window")])
def test_a_change_committed_between_queued_and_send_stops_it(engine, sink, outreach, change, reason):
    s, _ = sink
    _, items = _queue_all(engine, outreach)
    lead = outreach["leads"][0]
    with engine.begin() as conn:
        if change == "unsubscribe":
            conn.execute(text("UPDATE leads SET status = 'unsubscribed' WHERE id = :l"), {"l": lead})
        elif change == "pause":
            conn.execute(text("UPDATE mailboxes SET status = 'paused', status_reason = 'bounces' "))
        elif change == "cancel":
            conn.execute(text("UPDATE clients SET subscription_status = 'cancelled'"))
        elif change == "suppress_domain":
            suppression.suppress(conn, outreach["client"], "@example.com", reason="customer", source="test")
        elif change == "campaign_pause":
            conn.execute(text("UPDATE campaigns SET status = 'paused'"))
    # "late": the worker only gets to it after the window closed (17:00 UTC for these leads).
    at = MONDAY_10_UTC + timedelta(hours=7, minutes=5) if change == "late" else MONDAY_10_UTC
    report = sending.send_chunk([items[lead]], now=at)
    assert report.skipped == {reason: 1} and report.sent == 0
    assert s.messages == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status, skip_reason FROM work_items WHERE id = :i"),
                            {"i": items[lead]}).one() == ("SKIPPED", reason)


def test_failure_after_data_is_in_doubt_and_never_resent(engine, outreach, sink):
    """A server that drops the connection after DATA: the message is in doubt, the lead is held."""
    from aiosmtpd.controller import Controller

    from devkit.net import free_port

    class Dropper:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            server.transport.close()  # accepted or not? the client cannot know (RFC 1047)
            return "250 ok"

    port = free_port()
    controller = Controller(Dropper(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE mailboxes SET smtp_port = :p"), {"p": port})
        outreach_pass.fn(MONDAY_10_UTC, True)
        outreach_pass.fn(MONDAY_10_UTC + timedelta(hours=1), True)
    finally:
        controller.stop()
    rows = _sent(engine)
    assert len(rows) == 5 and {r.status for r in rows} == {"in_doubt"}
    with engine.connect() as conn:
        assert set(conn.execute(text("SELECT status FROM enrollments")).scalars()) == {"held"}


def test_deferred_at_rcpt_is_retried_later_under_the_same_message_id(engine, outreach):
    from aiosmtpd.controller import Controller

    from devkit.net import free_port
    from tests.email_sink import Sink

    class Refuser(Sink):
        refuse = True

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
            if Refuser.refuse:
                return "451 4.3.0 try later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    handler = Refuser()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE mailboxes SET smtp_port = :p"), {"p": port})
        outreach_pass.fn(MONDAY_10_UTC, True)
        assert {r.status for r in _sent(engine)} == {"deferred"} and handler.messages == []
        with engine.connect() as conn:
            ids = set(conn.execute(text("SELECT message_id FROM messages")).scalars())
        Refuser.refuse = False
        outreach_pass.fn(MONDAY_10_UTC + timedelta(hours=1), True)
    finally:
        controller.stop()
    assert {r.status for r in _sent(engine) if r.step == 1} == {"sent"}
    assert len(handler.messages) == 5
    assert {m["Message-ID"] for _, _, m in handler.messages} == ids  # the retry kept each Message-ID


def test_one_click_unsubscribe_over_a_real_socket(engine, sink, outreach):
    import httpx

    from devkit.net import free_port
    from web.app import create_app
    from web.server import background

    outreach_pass.fn(MONDAY_10_UTC, True)
    with engine.connect() as conn:
        pk, lead = conn.execute(text("SELECT id, lead_id FROM messages ORDER BY id LIMIT 1")).one()
    token = suppression.make_token(pk, SECRET)
    with background(create_app(engine, SECRET), port=free_port()) as base:
        body = {"content": b"List-Unsubscribe=One-Click",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
        forged = httpx.post(f"{base}/u/{pk}.AAAAAAAAAAAAAAAAAAAAAA", **body)
        tampered = httpx.post(f"{base}/u/{pk + 1}.{token.split('.')[1]}", **body)
        assert forged.status_code == tampered.status_code == 403
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM suppressions")).scalar() == 0
        page = httpx.get(f"{base}/u/{token}")
        assert page.status_code == 200 and "<form" in page.text
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM suppressions")).scalar() == 0  # GET changes nothing
        ok = httpx.post(f"{base}/u/{token}", follow_redirects=False, **body)
        assert ok.status_code == 200
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM leads WHERE id = :l"), {"l": lead}).scalar() == "unsubscribed"
        assert conn.execute(text("SELECT count(*) FROM suppressions WHERE kind = 'email'")).scalar() == 1
        assert conn.execute(text("SELECT status, stop_reason FROM enrollments WHERE lead_id = :l"),
                            {"l": lead}).one() == ("stopped", "unsubscribed")


def _run_to_the_end(start, campaign_id=None, max_passes=2000):
    """The flow's loop, pass by pass, on a simulated clock: jump to each wake-up the scheduler names."""
    clock = start
    for _ in range(max_passes):
        result = outreach_pass.fn(clock, True, campaign_id)
        if result["next_wake"] is None:
            return clock
        clock = datetime.fromisoformat(result["next_wake"])
    raise AssertionError("the campaign did not finish")


def test_forecast_matches_what_actually_went_out(engine, sink, outreach):
    from shared.engines.outreach.forecast import forecast

    s, _ = sink
    with engine.begin() as conn:
        # Tight limits so the forecast has something to predict: 2 a day per mailbox, 45 min apart,
        # a ramp on the second mailbox, a late Friday start so weekends count.
        conn.execute(text("UPDATE mailboxes SET daily_cap = 2, min_gap_seconds = 2700, jitter_seconds = 0"))
        conn.execute(text("UPDATE mailboxes SET ramp_start = 1, ramp_step = 1, ramp_started_at = :t WHERE id = :m"),
                     {"t": MONDAY_10_UTC, "m": outreach["boxes"][1]})
        more = factories.leads(conn, outreach["client"], 6, campaign_id=outreach["campaign"], domain="other.test")
        conn.execute(text("UPDATE leads SET country = 'DE' WHERE id = ANY(:ids)"), {"ids": more})
        store.enroll(conn, outreach["client"], outreach["campaign"], now=MONDAY_10_UTC)
        predicted = forecast(conn, outreach["client"], outreach["campaign"], now=MONDAY_10_UTC)
    _run_to_the_end(MONDAY_10_UTC)
    with engine.connect() as conn:
        actual = store.sends_per_day(conn, outreach["campaign"])
        last = conn.execute(text("SELECT max(sent_at) FROM messages")).scalar()
    flat = {(day, box): n for day, boxes in predicted.per_day.items() for box, n in boxes.items()}
    assert flat == actual
    assert predicted.last_send_at == last and predicted.unfinished == 0
    assert sum(flat.values()) == 11 * 3 == len(s.messages)
    assert max(flat.values()) <= 2


def test_the_outreach_flow_runs_a_simulated_week_under_prefect(engine, sink, outreach, prefect_harness):
    from orchestrator.flows.outreach import outreach_run

    s, _ = sink
    summary = outreach_run(now=MONDAY_10_UTC, until=MONDAY_10_UTC + timedelta(days=7))
    assert summary["sent"] == 15 and len(s.messages) == 15
    assert summary["passes"] >= 3


KILL_AFTER_250 = """
import os, signal, sys
from datetime import datetime
from shared.engines.outreach.sending import send_chunk
send_chunk([int(sys.argv[2])], now=datetime.fromisoformat(sys.argv[1]),
           after_reply=lambda pk: os.kill(os.getpid(), signal.SIGKILL))
"""


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_worker_killed_after_250_is_in_doubt_and_the_reconciler_finds_it_in_sent(engine, env, outreach, imap_server):
    """SIGKILL between the server's 250 and the commit: no resend; the Sent folder settles it."""
    import subprocess
    import sys

    from aiosmtpd.controller import Controller

    from shared.engines.outreach.reconcile import reconcile
    from devkit.net import free_port
    from tests.email_sink import Sink

    class GmailLike(Sink):
        """Files every accepted message in the account's Sent folder, as Gmail does for submitted mail."""

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            reply = await super().handle_DATA(server, session, envelope)
            imap_server.append("Sent", envelope.original_content or envelope.content)
            return reply

    def authenticator(server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        ok = auth_data.login == b"demouser" and auth_data.password == b"demopass"
        return AuthResult(success=ok)

    env(TEST_MAILBOX_PASSWORD="demopass")
    handler, port = GmailLike(), free_port()
    # SMTP AUTH with the password read from the env var the mailbox names (no TLS on a local socket).
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE mailboxes SET smtp_port = :p, imap_host = '127.0.0.1', imap_port = :i, "
                              "imap_tls_mode = 'none', username = 'demouser', secret_name = 'TEST_MAILBOX_PASSWORD'"),
                         {"p": port, "i": imap_server.port})
        _, items = _queue_all(engine, outreach)
        lead = outreach["leads"][0]
        proc = subprocess.run([sys.executable, "-c", KILL_AFTER_250, MONDAY_10_UTC.isoformat(), str(items[lead])],
                              capture_output=True, timeout=120)
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        assert len(handler.messages) == 1
        with engine.connect() as conn:
            pk, status = conn.execute(text("SELECT id, status FROM messages WHERE lead_id = :l"), {"l": lead}).one()
        assert status == "sending"  # the 250 came, the commit never did
        with engine.begin() as conn:
            factories.expire(conn, list(items.values()))
        result = reconcile(engine, stale_after_seconds=0)
        assert result.sent == [pk] and result.unknown == []
        with engine.connect() as conn:
            msg = conn.execute(text("SELECT status, smtp_reply FROM messages WHERE id = :m"), {"m": pk}).one()
            assert msg.status == "sent" and "Sent folder" in msg.smtp_reply
            assert conn.execute(text("SELECT next_step, status FROM enrollments WHERE lead_id = :l"),
                                {"l": lead}).one() == (2, "active")
        _run_to_the_end(MONDAY_10_UTC + timedelta(minutes=1))
    finally:
        controller.stop()
    per_lead_step = Counter((rcpt[0], m["In-Reply-To"] is None, m["Message-ID"]) for _, rcpt, m in handler.messages)
    assert set(per_lead_step.values()) == {1}  # nothing went out twice, the killed send included
    assert len(handler.messages) == 15


def test_in_doubt_not_in_sent_becomes_unknown_for_the_operator(engine, env, outreach, imap_server):
    from shared.engines.outreach.reconcile import in_doubt, reconcile

    env(TEST_MAILBOX_PASSWORD="demopass")
    with engine.begin() as conn:
        conn.execute(text("UPDATE mailboxes SET imap_host = '127.0.0.1', imap_port = :i, imap_tls_mode = 'none', "
                          "username = 'demouser', secret_name = 'TEST_MAILBOX_PASSWORD'"), {"i": imap_server.port})
        conn.execute(text("INSERT INTO messages (client_id, campaign_id, lead_id, step, mailbox_id, message_id, subject, "
                          "status, error, reserved_at) VALUES (:c, :camp, :l, 1, :m, '<lost@acme.test>', 's', 'in_doubt', "
                          "'connection dropped after DATA', :t)"),
                     {"c": outreach["client"], "camp": outreach["campaign"], "l": outreach["leads"][0],
                      "m": outreach["boxes"][0], "t": MONDAY_10_UTC})
    result = reconcile(engine)
    assert len(result.unknown) == 1 and result.sent == []
    (row,) = in_doubt(engine, outreach["client"])
    assert row["status"] == "unknown" and row["email"] == "person1@example.com"


def test_an_attempt_that_lost_its_item_to_recovery_does_not_send(engine, sink, outreach):
    s, _ = sink
    _, items = _queue_all(engine, outreach)
    lead = outreach["leads"][0]
    with engine.begin() as conn:
        (started,), _ = workitems.start(conn, [items[lead]], worker_id="slow", lease_seconds=60)
        factories.expire(conn, [items[lead]])
        workitems.recover(conn, queue_timeout_seconds=3600)  # the lease ran out: recovery takes it
    report = sending.SendReport()
    sending._send_round([started], MONDAY_10_UTC, engine, get_settings(), report)
    assert report.fenced == 1 and report.sent == 0 and s.messages == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 0
