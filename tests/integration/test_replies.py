"""Replies and bounces against real parts: Postgres, an aiosmtpd sink, a pymap IMAP server, the web app on a socket."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from orchestrator.flows.outreach import outreach_pass
from shared import workitems
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.engines.leads import story
from shared.engines.outreach import scheduler, sending, store
from shared.engines.replies import ingest, recovery
from shared.engines.replies.webhooks import parse_message
from devkit.net import free_port
from shared.settings import get_settings
from tests import factories
from tests.email_servers import DEMO_PASSWORD, imap_server  # noqa: F401  (pytest fixture)
from tests.email_sink import smtp_sink
from tests.replies_mail import WEBHOOK_SECRET, dsn, german_out_of_office, mailgun_form, reply, standard_webhook
from web.app import create_app
from web.server import background

pytestmark = pytest.mark.integration

SECRET = "test-outreach-secret"
MAILGUN_KEY = "key-mailgun-test-signing"
MONDAY_10_UTC = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WEDNESDAY_10_UTC = MONDAY_10_UTC + timedelta(days=2)


@pytest.fixture
def sink():
    with smtp_sink() as (s, port):
        yield s, port


def _setup(engine, env, port, n_leads=5, *, imap=None, daily_cap=500, steps=3):
    env(OUTREACH_SECRET=SECRET, PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="2",
        STANDARD_WEBHOOK_SECRET=WEBHOOK_SECRET, MAILGUN_SIGNING_KEY=MAILGUN_KEY, IMAP_TEST_PASSWORD=DEMO_PASSWORD)
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        leads = factories.leads(conn, client, n_leads, campaign_id=campaign)
        box = mailboxes.add_mailbox(conn, client, from_address="rep1@acme.test", from_name="Rep", smtp_host="127.0.0.1",
                                smtp_port=port, tls_mode="none", daily_cap=daily_cap, min_gap_seconds=0,
                                jitter_seconds=0, ramp_started_at=MONDAY_10_UTC - timedelta(days=30),
                                username="demouser" if imap else None,
                                secret_name="IMAP_TEST_PASSWORD" if imap else None,
                                imap_host=imap.host if imap else None, imap_port=imap.port if imap else None,
                                imap_tls_mode="none")
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=0, end_hour=24,
                           fallback_timezone="UTC")
        sequences.set_step(conn, client, campaign, step=1, subject="Hello {{ first_name }}", body="Hi {{ first_name }}.")
        for step in range(2, steps + 1):
            sequences.set_step(conn, client, campaign, step=step, subject="x", body=f"Follow-up {step}.",
                           delay_amount=2, delay_unit="days")
        store.enroll(conn, client, campaign, now=MONDAY_10_UTC)
        assert campaigns.activate(conn, client, campaign) == []
    return {"client": client, "campaign": campaign, "leads": leads, "box": box}


@pytest.fixture
def world(engine, env, sink):
    return _setup(engine, env, sink[1])


def _sent(engine, step=1):
    with engine.connect() as conn:
        return {r.lead_id: r for r in conn.execute(
            text("SELECT s.id, s.lead_id, s.message_id, s.subject, l.email FROM messages s JOIN leads l ON "
                 "l.id = s.lead_id WHERE s.step = :s AND s.status = 'sent' ORDER BY s.lead_id"), {"s": step})}


def _reply_to(m, **kw):
    return reply(frm=m.email, to="rep1@acme.test", subject=f"Re: {m.subject}", in_reply_to=m.message_id, **kw)


def _ingest(engine, raw, *, now=MONDAY_10_UTC + timedelta(hours=2), **kw):
    received = ingest.Received(raw, parse_message(raw), "webhook", provider="standard_webhooks",
                               webhook_id=kw.pop("webhook_id", f"msg_{random.random()}"), **kw)
    return ingest.ingest(engine, received, settings=get_settings(), now=now)


def _queue(engine, at):
    with engine.begin() as conn:
        inputs = store.planning_inputs(conn, at)
        plan = scheduler.due_sends(at, inputs.candidates, inputs.windows, inputs.mailboxes)
        batches = store.enqueue_sends(conn, plan.sends)
        claimed = [c for b in batches for c in workitems.claim(conn, b, 1000)]
    return {c.lead_id: c.id for c in claimed}


def _lead(engine, lead_id):
    with engine.connect() as conn:
        return conn.execute(text("SELECT l.status, e.status AS enrollment, e.stop_reason, e.next_due_at, "
                                 "e.next_step FROM leads l JOIN enrollments e ON e.lead_id = l.id WHERE l.id = :l"),
                            {"l": lead_id}).one()


def test_a_reply_between_two_steps_stops_the_next_step_even_when_already_queued(engine, sink, world):
    s, _ = sink
    outreach_pass.fn(MONDAY_10_UTC, True)
    first = _sent(engine)
    items = _queue(engine, WEDNESDAY_10_UTC)  # step 2 is QUEUED for every lead
    lead = world["leads"][0]
    assert lead in items
    result = _ingest(engine, _reply_to(first[lead]))
    assert (result.kind, result.match.by, result.new) == ("human_reply", "message_id", True)
    report = sending.send_chunk(list(items.values()), now=WEDNESDAY_10_UTC)
    assert report.skipped == {"replied": 1} and report.sent == len(world["leads"]) - 1
    state = _lead(engine, lead)
    assert (state.status, state.enrollment, state.stop_reason) == ("replied", "stopped", "replied")
    to_lead = [m for _, rcpts, m in s.messages if first[lead].email in rcpts]
    assert len(to_lead) == 1  # step 1 only


def test_an_auto_reply_does_not_stop_the_sequence_and_german_ooo_is_recognized(engine, sink, world):
    outreach_pass.fn(MONDAY_10_UTC, True)
    first = _sent(engine)
    lead = world["leads"][1]
    m = first[lead]
    before = _lead(engine, lead)
    raw = german_out_of_office(frm=m.email, to="rep1@acme.test", subject=m.subject, in_reply_to=m.message_id)
    result = _ingest(engine, raw, now=MONDAY_10_UTC + timedelta(hours=1))
    assert result.kind == "auto_reply"
    after = _lead(engine, lead)
    assert after.status != "replied" and after.enrollment == "active" and after.next_step == 2
    assert after.next_due_at == max(before.next_due_at, MONDAY_10_UTC + timedelta(hours=1, days=3))
    # Wednesday: the others get step 2, this lead waits; Thursday 11:00 it is due and goes out.
    items = _queue(engine, WEDNESDAY_10_UTC)
    assert lead not in items
    outreach_pass.fn(MONDAY_10_UTC + timedelta(days=3, hours=1), True)
    assert lead in _sent(engine, step=2)


def test_an_auto_reply_pushes_back_a_step_that_was_already_queued(engine, sink, world):
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = _sent(engine)[world["leads"][2]]
    items = _queue(engine, WEDNESDAY_10_UTC)
    raw = reply(frm=m.email, to="rep1@acme.test", subject=f"Automatic reply: {m.subject}", in_reply_to=m.message_id,
                body="I am out of the office.", headers={"Auto-Submitted": "auto-replied"})
    assert _ingest(engine, raw, now=WEDNESDAY_10_UTC - timedelta(minutes=1)).kind == "auto_reply"
    report = sending.send_chunk([items[world["leads"][2]]], now=WEDNESDAY_10_UTC)
    assert report.skipped == {"not_due": 1}


def test_our_own_follow_up_copied_back_is_not_a_reply(engine, sink, world):
    s, _ = sink
    outreach_pass.fn(MONDAY_10_UTC, True)
    outreach_pass.fn(WEDNESDAY_10_UTC, True)
    follow_up = next(raw for _, _, raw in ((a, b, m) for a, b, m in s.messages) if raw["In-Reply-To"])
    result = _ingest(engine, follow_up.as_bytes())
    assert result.ours and result.outcome == ingest.OURS
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE status = 'replied'")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM enrollments WHERE status = 'stopped'")).scalar() == 0


def test_unsubscribe_request_hard_and_soft_bounces_act(engine, sink, world, env):
    outreach_pass.fn(MONDAY_10_UTC, True)
    first = _sent(engine)
    a, b, c = world["leads"][:3]
    assert _ingest(engine, _reply_to(first[a], body="Please remove me from your list.")).kind == "unsubscribe_request"
    hard = dsn(recipient=first[b].email, original_message_id=first[b].message_id, original_subject=first[b].subject,
               to="rep1@acme.test")
    assert _ingest(engine, hard).kind == "hard_bounce"
    soft = dsn(recipient=first[c].email, original_message_id=first[c].message_id, original_subject=first[c].subject,
               to="rep1@acme.test", status="4.2.2")
    result = _ingest(engine, soft)
    assert result.kind == "soft_bounce" and "retried" in result.outcome
    with engine.connect() as conn:
        supp = dict(conn.execute(text("SELECT value, reason FROM suppressions")).all())
    assert supp == {first[a].email: "unsubscribed", first[b].email: "hard_bounce"}
    with engine.connect() as conn:  # the reader's evidence is stored beside the class (issue 18)
        stored = {r.kind: (r.reason, r.rule, r.status_code) for r in conn.execute(
            text("SELECT kind, reason, rule, status_code FROM inbound_messages WHERE kind LIKE '%bounce'"))}
    assert stored == {"hard_bounce": ("user_unknown", "rfc3464", "5.1.1"), "soft_bounce": ("mailbox_full", "rfc3464", "4.2.2")}
    assert _lead(engine, a).status == "unsubscribed" and _lead(engine, b).status == "bounced"
    retry = _lead(engine, c)
    assert (retry.enrollment, retry.next_step) == ("active", 1)
    # The retry goes out a day later, under the same Message-ID.
    outreach_pass.fn(MONDAY_10_UTC + timedelta(days=1, hours=3), True)
    assert _sent(engine)[c].message_id == first[c].message_id
    # N (2) retries allowed: the third soft bounce is handled as hard.
    for _ in range(2):
        again = dsn(recipient=first[c].email, original_message_id=first[c].message_id,
                    original_subject=first[c].subject, to="rep1@acme.test", status="4.2.2")
        result = _ingest(engine, again, now=MONDAY_10_UTC + timedelta(days=1, hours=4))
    assert "treated as hard" in result.outcome and _lead(engine, c).status == "bounced"


def test_stop_whole_company_on_reply_when_the_campaign_says_so(engine, sink, world):
    with engine.begin() as conn:
        conn.execute(text("UPDATE sequences SET stop_company_on_reply = true"))
        conn.execute(text("UPDATE leads SET company_domain = 'same.example' WHERE id = ANY(:ids)"),
                     {"ids": world["leads"][:3]})
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = _sent(engine)[world["leads"][0]]
    result = _ingest(engine, _reply_to(m))
    assert "2 at the same company" in result.outcome
    assert [_lead(engine, lead).enrollment for lead in world["leads"]] == ["stopped"] * 3 + ["active"] * 2


# -- webhooks over HTTP --------------------------------------------------------------------------


@pytest.fixture
def web(engine, world):
    port = free_port()
    with background(create_app(engine, SECRET), port=port) as base:
        yield base


def _counts(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT (SELECT count(*) FROM inbound_messages) AS inbound, "
                                 "(SELECT count(*) FROM leads WHERE status = 'replied') AS replied, "
                                 "(SELECT count(*) FROM enrollments WHERE status = 'stopped') AS stopped")).one()


def test_forged_stale_oversized_and_replayed_webhooks(engine, sink, world, web, env):
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = _sent(engine)[world["leads"][0]]
    raw = _reply_to(m)
    url = f"{web}/webhooks/inbound"
    body, headers = standard_webhook(raw, secret="whsec_" + "Zm9yZ2VkLXNlY3JldC1mb3JnZWQtc2VjcmV0IQ==")
    forged = httpx.post(url, content=body, headers=headers)
    body, headers = standard_webhook(raw, at=datetime.now(UTC) - timedelta(minutes=10))
    stale = httpx.post(url, content=body, headers=headers)
    missing = httpx.post(url, content=body, headers={"content-type": "application/json"})
    env(WEBHOOK_MAX_BYTES="2000")
    body, headers = standard_webhook(raw + b"x" * 3000)
    oversized = httpx.post(url, content=body, headers=headers)
    assert [r.status_code for r in (forged, stale, missing, oversized)] == [401, 401, 401, 413]
    assert "timestamp" in stale.text
    assert _counts(engine) == (0, 0, 0)
    env(WEBHOOK_MAX_BYTES=str(25 * 1024 * 1024))
    body, headers = standard_webhook(raw)
    first = httpx.post(url, content=body, headers=headers)
    replay = httpx.post(url, content=body, headers=headers)
    body2, headers2 = standard_webhook(raw)  # the same message under a new webhook-id
    again = httpx.post(url, content=body2, headers=headers2)
    assert [r.status_code for r in (first, replay, again)] == [200, 200, 200]
    assert first.json()["duplicate"] is False and replay.json()["duplicate"] is True and again.json()["duplicate"]
    assert _counts(engine) == (1, 1, 1)
    bad, bad_headers = standard_webhook(b"this is not a mail message at all")
    malformed = httpx.post(url, content=bad, headers=bad_headers)
    assert malformed.status_code == 422 and "header" in malformed.text


def test_mailgun_route_webhook(engine, sink, world, web):
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = _sent(engine)[world["leads"][1]]
    form = mailgun_form(_reply_to(m), MAILGUN_KEY)
    ok = httpx.post(f"{web}/webhooks/mailgun/mime", data=form)
    forged = httpx.post(f"{web}/webhooks/mailgun", data=mailgun_form(_reply_to(m), "wrong-key"))
    stale = httpx.post(f"{web}/webhooks/mailgun", data=mailgun_form(_reply_to(m), MAILGUN_KEY,
                                                                     timestamp=datetime.now(UTC).timestamp() - 3600))
    assert (ok.status_code, forged.status_code, stale.status_code) == (200, 401, 401)
    assert ok.json()["kind"] == "human_reply" and _lead(engine, world["leads"][1]).status == "replied"


def test_unmatched_webhook_mail_is_stored_and_not_acted_on(engine, sink, world, web):
    body, headers = standard_webhook(reply(frm="stranger@else.example", to="rep1@acme.test", subject="Hi",
                                           in_reply_to=None))
    r = httpx.post(f"{web}/webhooks/inbound", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["matched"] is False
    with engine.connect() as conn:
        row = conn.execute(text("SELECT client_id, outcome FROM inbound_messages")).one()
    assert row.client_id is None and row.outcome == ingest.UNMATCHED


# -- bounce shield -------------------------------------------------------------------------------


@pytest.mark.parametrize("sends, bounces, paused", [(19, 1, False), (50, 1, False), (50, 2, True)])
def test_bounce_shield(engine, env, sink, sends, bounces, paused):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    w = _setup(engine, env, sink[1], n_leads=sends, steps=1)
    outreach_pass.fn(MONDAY_10_UTC, True)
    first = _sent(engine)
    assert len(first) == sends
    for m in list(first.values())[:bounces]:
        raw = dsn(recipient=m.email, original_message_id=m.message_id, original_subject=m.subject, to="rep1@acme.test")
        result = _ingest(engine, raw)
        assert result.kind == "hard_bounce"
    with engine.connect() as conn:
        box = conn.execute(text("SELECT status, status_reason, paused_at FROM mailboxes")).one()
        camp = conn.execute(text("SELECT status, status_reason FROM campaigns")).one()
    assert (box.status == "paused") is paused and (camp.status == "paused") is paused
    runner = CliRunner()
    env(COLUMNS="400")  # one table row per line, whatever the terminal
    shown = runner.invoke(app, ["mailboxes", "list", "acme"]).output
    listed = runner.invoke(app, ["campaigns", "list", "--client", "acme"]).output
    if paused:
        assert box.status_reason == ("bounce shield: hard-bounce rate 4.0 % (2 of 50 sends in 7 days) is above 2 %")
        assert box.paused_at is not None and "hard-bounce rate 4.0 %" in camp.status_reason
        assert "paused since" in shown and "hard-bounce rate 4.0" in shown
        assert "paused since" in listed and "bounce shield" in listed
        # Resuming is explicit: the campaign command clears the reason.
        assert runner.invoke(app, ["campaigns", "status", "acme", "seq", "active"]).exit_code == 0
        with engine.connect() as conn:
            assert conn.execute(text("SELECT status, status_reason FROM campaigns")).one() == ("active", None)
    else:
        assert box.status_reason is None and "paused" not in shown


# -- reply recovery over IMAP --------------------------------------------------------------------


def _append_all(server, folder, raws):
    with server.mailbox() as box:
        for raw in raws:
            box.append(raw, folder, flag_set=[])


def test_dropped_webhooks_are_backfilled_by_one_recovery_run(engine, env, sink, imap_server, prefect_harness):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from orchestrator.flows.replies import reply_recovery

    w = _setup(engine, env, sink[1], n_leads=200, imap=imap_server, steps=2)
    outreach_pass.fn(MONDAY_10_UTC, True)
    first = _sent(engine)
    assert len(first) == 200
    raws = [_reply_to(m) for m in first.values()]
    _append_all(imap_server, "INBOX", raws)  # every reply reaches the mailbox
    rng = random.Random(9)
    dropped = {i for i in range(200) if rng.random() < 0.30}
    port = free_port()
    with background(create_app(engine, SECRET), port=port) as base, httpx.Client(base_url=base) as http:
        for i, raw in enumerate(raws):
            if i not in dropped:
                body, headers = standard_webhook(raw)
                assert http.post("/webhooks/inbound", content=body, headers=headers).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE status = 'replied'")).scalar() == 200 - len(dropped)
    result = reply_recovery()
    assert result["backfilled"] == {"replies": len(dropped), "bounces": 0, "complaints": 0}
    [row] = result["mailboxes"]
    assert (row["fetched"], row["already_recorded"], row["error"]) == (200, 200 - len(dropped), None)
    with engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT count(*) AS rows, count(DISTINCT dedupe_key) AS keys, count(DISTINCT lead_id) AS leads, "
            "count(*) FILTER (WHERE processed_at IS NULL) AS pending FROM inbound_messages")).one()
        replied = conn.execute(text("SELECT count(*) FROM leads WHERE status = 'replied'")).scalar()
    assert tuple(counts) == (200, 200, 200, 0) and replied == 200  # 100 % recorded, none twice
    assert all("\\Seen" not in f for f in imap_server.flags("INBOX").values())  # never marked seen

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["reply-recovery"])))

    artifacts = asyncio.run(read())
    assert any(f"{len(dropped)} replies, 0 bounces, 0 complaints" in a.data for a in artifacts)
    # A second run finds nothing new: the cursor moved past every UID.
    again = recovery.recover_mailbox(w["box"])
    assert (again.fetched, again.backfilled["replies"]) == (0, 0)
    # Step 2 goes to nobody: they all replied.
    outreach_pass.fn(WEDNESDAY_10_UTC, True)
    assert _sent(engine, step=2) == {}


def test_uidvalidity_change_rescans_without_duplicates(engine, env, sink, imap_server):
    w = _setup(engine, env, sink[1], n_leads=4, imap=imap_server)
    outreach_pass.fn(MONDAY_10_UTC, True)
    first = list(_sent(engine).values())
    raws = [_reply_to(m) for m in first]
    _append_all(imap_server, "INBOX", raws[:3])
    one = recovery.recover_mailbox(w["box"])
    assert (one.fetched, one.backfilled["replies"], one.rescanned) == (3, 3, [])
    imap_server.restart()  # new UIDVALIDITY, UIDs start over
    _append_all(imap_server, "INBOX", raws)
    two = recovery.recover_mailbox(w["box"])
    assert two.rescanned == ["INBOX"]
    assert (two.fetched, two.already_recorded, two.backfilled["replies"]) == (4, 3, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM inbound_messages")).scalar() == 4


def test_our_follow_up_in_sent_or_copied_back_is_not_a_reply(engine, env, sink, imap_server):
    s, _ = sink
    w = _setup(engine, env, sink[1], n_leads=2, imap=imap_server)
    env(REPLY_FOLDERS="INBOX,Sent")
    outreach_pass.fn(MONDAY_10_UTC, True)
    outreach_pass.fn(WEDNESDAY_10_UTC, True)
    follow_ups = [m.as_bytes() for _, _, m in s.messages if m["In-Reply-To"]]
    assert len(follow_ups) == 2
    _append_all(imap_server, "Sent", follow_ups)
    _append_all(imap_server, "INBOX", follow_ups[:1])  # a BCC-to-self copy
    result = recovery.recover_mailbox(w["box"])
    assert (result.fetched, result.ours, result.backfilled["replies"]) == (3, 2, 0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE status = 'replied'")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM enrollments WHERE status = 'stopped'")).scalar() == 0


def test_a_bounce_only_in_the_inbox_is_recovered(engine, env, sink, imap_server):
    w = _setup(engine, env, sink[1], n_leads=2, imap=imap_server)
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = next(iter(_sent(engine).values()))
    _append_all(imap_server, "INBOX", [dsn(recipient=m.email, original_message_id=m.message_id,
                                           original_subject=m.subject, to="rep1@acme.test")])
    result = recovery.recover_mailbox(w["box"])
    assert result.backfilled == {"replies": 0, "bounces": 1, "complaints": 0}
    assert _lead(engine, m.lead_id).status == "bounced"


def test_another_clients_mailbox_never_acts_on_this_clients_leads(engine, env, sink, imap_server):
    w = _setup(engine, env, sink[1], n_leads=2)
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = next(iter(_sent(engine).values()))
    with engine.begin() as conn:
        other = factories.client(conn, "globex")
        box = mailboxes.add_mailbox(conn, other, from_address="rep@globex.test", smtp_host="127.0.0.1", smtp_port=25,
                                username="demouser", secret_name="IMAP_TEST_PASSWORD", imap_host=imap_server.host,
                                imap_port=imap_server.port, imap_tls_mode="none")
    # Acme's lead's reply (naming Acme's Message-ID) lands in Globex's inbox.
    _append_all(imap_server, "INBOX", [_reply_to(m)])
    result = recovery.recover_mailbox(box)
    assert (result.unmatched, result.backfilled["replies"]) == (1, 0)
    assert _lead(engine, m.lead_id).status != "replied"
    with engine.connect() as conn:
        row = conn.execute(text("SELECT client_id, message_pk, outcome FROM inbound_messages")).one()
    assert (row.client_id, row.message_pk, row.outcome) == (other, None, ingest.UNMATCHED)
    assert w["client"] != other


def test_recovery_flow_maps_one_mailbox_per_modal_call_and_reports_a_dead_imap(engine, env, sink, imap_server,
                                                                               prefect_harness, monkeypatch):
    import modal

    from modal_apps.replies import recover_mailbox
    from orchestrator.flows.replies import reply_recovery

    w = _setup(engine, env, sink[1], n_leads=2, imap=imap_server)
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = next(iter(_sent(engine).values()))
    _append_all(imap_server, "INBOX", [_reply_to(m)])
    with engine.begin() as conn:  # a second mailbox whose IMAP server is down
        mailboxes.add_mailbox(conn, w["client"], from_address="rep2@acme.test", smtp_host="127.0.0.1", smtp_port=25,
                          username="demouser", secret_name="IMAP_TEST_PASSWORD", imap_host="127.0.0.1",
                          imap_port=free_port(), imap_tls_mode="none")
    from tests.modal_function import ModalFunction

    fake = ModalFunction(recover_mailbox.local, containers=2)  # Modal's capacity and buffering, the real body
    looked_up = []
    monkeypatch.setattr(modal.Function, "from_name", lambda app, name, **kw: looked_up.append((app, name)) or fake)
    env(EXECUTOR="modal", MODAL_TOKEN_ID="ak-test", MODAL_TOKEN_SECRET="as-test")
    result = reply_recovery()
    assert looked_up == [("outbound-replies", "recover_mailbox")]
    assert sorted(item for _, item in fake.started) == [[w["box"]], [w["box"] + 1]]  # one mailbox per call
    good, dead = result["mailboxes"]
    assert good["backfilled"]["replies"] == 1 and good["error"] is None
    assert dead["error"] and "login failed" in dead["error"] and DEMO_PASSWORD not in dead["error"]
    assert "rep2@acme.test" in result["markdown"] and _lead(engine, m.lead_id).status == "replied"


def test_a_complaint_found_by_its_verp_address_suppresses_and_trips_the_complaint_shield(engine, env, sink):
    from tests.replies_mail import arf

    s, port = sink
    _setup(engine, env, port, n_leads=20, steps=2)
    outreach_pass.fn(MONDAY_10_UTC, True)
    envelope_from, rcpts, original = s.messages[0]
    report = arf(recipient=rcpts[0], return_path=envelope_from, original_subject=original["Subject"])
    result = _ingest(engine, report)
    assert (result.kind, result.match.by) == ("complaint", "verp")
    with engine.connect() as conn:
        supp = conn.execute(text("SELECT value, reason FROM suppressions")).one()
        box = conn.execute(text("SELECT status, status_reason FROM mailboxes")).one()
    assert tuple(supp) == (rcpts[0], "complaint")
    assert box.status == "paused" and "complaint rate 5.0 % (1 of 20 sends" in box.status_reason
    assert _lead(engine, result.match.lead_id).status == "unsubscribed"
    # A forged VERP token names nothing.
    other_from, other_rcpts, _ = s.messages[1]
    local, _, domain = other_from.partition("@")
    forged = arf(recipient=other_rcpts[0], return_path=f"{local.rsplit('-', 1)[0]}-{'0' * 12}@{domain}",
                 original_subject="other")
    assert _ingest(engine, forged).match is None


def test_cli_reply_policy_received_mail_and_unmatched(engine, sink, world):
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["sequences", "replies", "acme", "seq", "--stop-company", "--auto-reply-wait", "5"])
    assert ok.exit_code == 0 and "the whole company" in ok.output and "5 days" in ok.output
    bad = runner.invoke(app, ["sequences", "replies", "acme", "seq", "--auto-reply-wait", "99"])
    assert bad.exit_code == 2 and "0 to 60" in bad.output
    outreach_pass.fn(MONDAY_10_UTC, True)
    m = _sent(engine)[world["leads"][0]]
    _ingest(engine, _reply_to(m))
    _ingest(engine, reply(frm="stranger@else.example", to="rep1@acme.test", subject="Hi", in_reply_to=None))
    rows = json.loads(runner.invoke(app, ["replies", "list", "acme", "--json"]).output)
    assert [(r["kind"], r["lead"]) for r in rows] == [("human_reply", m.email)]
    assert rows[0]["outcome"].startswith("replied: 1 enrollment(s) stopped")
    unmatched = json.loads(runner.invoke(app, ["replies", "unmatched", "--json"]).output)
    assert [u["from_address"] for u in unmatched] == ["stranger@else.example"]
    assert runner.invoke(app, ["replies", "list", "acme"]).exit_code == 0


def test_a_forged_in_reply_to_from_a_stranger_stops_nobody(engine, sink, world):
    """Our Message-IDs are derivable from (campaign, lead, step): one in a stranger's mail proves nothing.
    The lead's colleague (same domain) still counts; a 'bounce' that does not name the lead does not."""
    outreach_pass.fn(MONDAY_10_UTC, True)
    first = _sent(engine)
    a, b, c = world["leads"][:3]
    forged = reply(frm="mallory@evil.example", to="rep1@acme.test", subject=f"Re: {first[a].subject}",
                   in_reply_to=first[a].message_id, body="Please remove me from your list.")
    assert _ingest(engine, forged).match is None
    fake_bounce = dsn(recipient="someone@else.example", original_message_id=first[c].message_id,
                      original_subject=first[c].subject, to="rep1@acme.test")
    assert _ingest(engine, fake_bounce).match is None
    colleague = "boss@" + first[b].email.rpartition("@")[2]
    answered = _ingest(engine, reply(frm=colleague, to="rep1@acme.test", subject=f"Re: {first[b].subject}",
                                     in_reply_to=first[b].message_id))
    assert answered.match is not None and answered.match.lead_id == b
    with engine.connect() as conn:
        stopped = set(conn.execute(text("SELECT lead_id FROM enrollments WHERE status = 'stopped'")).scalars())
        assert conn.execute(text("SELECT count(*) FROM suppressions")).scalar() == 0
    assert stopped == {b}


# -- forged mail (issue 17): what a stranger can write acts on nobody ------------------------------

PUBLIC_NAMESPACE = uuid.UUID("8f0b5a9e-4d0c-5c43-9b8e-0d5f3e1a7c21")  # in the source before issue 17


def _computed_id(m, campaign):
    """What an attacker computes for a send: the uuid5 of campaign/lead/step under the public namespace."""
    return f"<{uuid.uuid5(PUBLIC_NAMESPACE, f'{campaign}/{m.lead_id}/1')}@acme.test>"


def _untouched(engine, lead_ids):
    with engine.connect() as conn:
        leads = dict(conn.execute(text("SELECT id, status FROM leads WHERE id = ANY(:ids)"), {"ids": lead_ids}).all())
        stopped = conn.execute(text("SELECT count(*) FROM enrollments WHERE status = 'stopped'")).scalar()
        suppressed = conn.execute(text("SELECT count(*) FROM suppressions")).scalar()
        box = conn.execute(text("SELECT status FROM mailboxes")).scalar()
        camp = conn.execute(text("SELECT status FROM campaigns")).scalar()
    assert not set(leads.values()) & {"replied", "unsubscribed", "bounced"}, leads
    return {"stopped": stopped, "suppressed": suppressed, "mailbox": box,
            "campaign": camp}


UNTOUCHED = {"stopped": 0, "suppressed": 0, "mailbox": "active", "campaign": "active"}


def _make_legacy(engine, m, campaign):
    """A send made before keyed Message-IDs: its row holds the uuid5 id (still matched, by lookup)."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE messages SET message_id = :mid WHERE id = :id"),
                     {"mid": _computed_id(m, campaign), "id": m.id})


@pytest.mark.parametrize("legacy", [False, True])
def test_a_spoofed_reply_from_the_leads_own_address_stops_and_unsubscribes_nobody(engine, sink, world, web, legacy):
    """Issue 17 attack 1: From is the lead's address (spoofing it takes nothing), In-Reply-To the computable
    Message-ID, "please remove me", through the correctly signed webhook. Stored, shown unverified, no effect."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    outreach_pass.fn(MONDAY_10_UTC, True)
    m = _sent(engine)[world["leads"][0]]
    if legacy:
        _make_legacy(engine, m, world["campaign"])
    forged = reply(frm=m.email, to="rep1@acme.test", subject=f"Re: {m.subject}",
                   in_reply_to=_computed_id(m, world["campaign"]), body="Please remove me from your list.")
    body, headers = standard_webhook(forged)
    r = httpx.post(f"{web}/webhooks/inbound", content=body, headers=headers)
    assert r.status_code == 200
    assert _untouched(engine, world["leads"]) == UNTOUCHED
    with engine.connect() as conn:
        row = conn.execute(text("SELECT lead_id, kind, match_kind, verified, trust, outcome, processed_at "
                                "FROM inbound_messages")).one()
    assert (row.lead_id, row.kind, row.verified) == (m.lead_id, "unsubscribe_request", False)
    assert row.match_kind == ("message_id" if legacy else "sender_subject")
    assert row.outcome.startswith(ingest.UNVERIFIED) and "not authenticated" in row.trust
    assert ("legacy Message-ID" in row.trust) is legacy and row.processed_at is not None
    shown = json.loads(CliRunner().invoke(app, ["replies", "list", "acme", "--json"]).output)
    assert [(s["lead"], s["verified"]) for s in shown] == [(m.email, False)]
    assert "UNVERIFIED" in CliRunner().invoke(app, ["replies", "list", "acme"], env={"COLUMNS": "400"}).output
    with engine.connect() as conn:  # the lead's story in the console
        [entry] = story.inbound(conn, m.lead_id)
    assert entry.title.startswith("unverified unsubscribe request") and entry.badge == "unverified"
    assert dict(entry.details)["trust"] == row.trust
    # The same text from the lead, authenticated by the receiving service, acts.
    real = reply(frm=m.email, to="rep1@acme.test", subject=f"Re: {m.subject}", in_reply_to=None,
                 body="Please remove me from your list.", headers={
                     "Authentication-Results": f"mx.inbound.test; dkim=pass header.d={m.email.rpartition('@')[2]}; "
                                               "spf=fail smtp.mailfrom=elsewhere.example"})
    assert _ingest(engine, real).verified is False  # no authserv-id is trusted yet
    real_again = real.replace(b"Message-ID: <", b"Message-ID: <again-")
    env_ok = get_settings().model_copy(update={"trusted_authserv_ids": "mx.inbound.test"})
    done = ingest.ingest(engine, ingest.Received(real_again, parse_message(real_again), "webhook",
                                                 provider="standard_webhooks", webhook_id="msg_real"),
                         settings=env_ok, now=MONDAY_10_UTC + timedelta(hours=3))
    assert done.verified is True and "dkim=pass" in done.trust
    assert _lead(engine, m.lead_id).status == "unsubscribed"


@pytest.mark.parametrize("legacy", [False, True])
def test_forged_bounces_bounce_nobody_and_never_trip_the_shield(engine, env, sink, legacy):
    """Issue 17 attack 2: DSNs from MAILER-DAEMON@attacker naming each lead in Final-Recipient and its computable
    Message-ID. Two in 50 sends would trip the 2 % shield; none may bounce, suppress or pause anything."""
    w = _setup(engine, env, sink[1], n_leads=50, steps=1)
    outreach_pass.fn(MONDAY_10_UTC, True)
    sent, results = list(_sent(engine).values()), []
    for m in sent[:5]:
        if legacy:
            _make_legacy(engine, m, w["campaign"])
        forged = dsn(recipient=m.email, original_message_id=_computed_id(m, w["campaign"]),
                     original_subject=m.subject, to="rep1@acme.test", mta="mx.attacker.example").replace(
            b"MAILER-DAEMON@smtp.agency.example", b"MAILER-DAEMON@attacker.example")
        results.append(_ingest(engine, forged))
    assert [r.kind for r in results] == ["hard_bounce"] * 5
    assert _untouched(engine, w["leads"]) == UNTOUCHED
    assert [r.verified for r in results] == [False] * 5
    # A real bounce quoting the keyed Message-ID (what the relay returns) still acts, and the shield judges
    # it alone: 1 of 50 sends is not above 2 % (with the five forged ones counted it would be 12 %).
    m = sent[10]
    real = _ingest(engine, dsn(recipient=m.email, original_message_id=m.message_id, original_subject=m.subject,
                               to="rep1@acme.test"))
    assert real.verified is True and _lead(engine, m.lead_id).status == "bounced"
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT (SELECT status FROM mailboxes), (SELECT status FROM campaigns)")).one()
    assert real.paused == [] and tuple(statuses) == ("active", "active")


def test_a_reply_the_provider_authenticated_for_its_from_domain_acts_and_a_foreign_signature_does_not(
        engine, sink, world, web):
    """The webhook's own signed SPF/DKIM verdicts count only for the From domain: anyone can DKIM-sign as
    themselves, and SPF speaks for the envelope sender."""
    outreach_pass.fn(MONDAY_10_UTC, True)
    sent = _sent(engine)
    a, b, c = (sent[lead] for lead in world["leads"][:3])

    def post(m, extra):
        raw = reply(frm=m.email, to="rep1@acme.test", subject=f"Re: {m.subject}", in_reply_to=None)
        body, headers = standard_webhook(raw, extra=extra)
        return httpx.post(f"{web}/webhooks/inbound", content=body, headers=headers)

    foreign = post(a, {"dkim": [{"domain": "evil.example", "result": "pass"}], "spf": "pass",
                       "envelope_from": "bounce@evil.example"})
    dkim_ok = post(b, {"dkim": [{"domain": b.email.rpartition("@")[2], "result": "pass"}]})
    spf_ok = post(c, {"spf": "pass", "envelope_from": c.email})
    malformed = post(a, {"dkim": "pass"})
    assert [r.status_code for r in (foreign, dkim_ok, spf_ok, malformed)] == [200, 200, 200, 422]
    assert [r.json()["verified"] for r in (foreign, dkim_ok, spf_ok)] == [False, True, True]
    assert [_lead(engine, m.lead_id).status for m in (a, b, c)] == ["new", "replied", "replied"]
    assert "dkim" in malformed.text


def test_an_operator_may_accept_an_unverified_reply_after_checking_it(engine, sink, world):
    """A lead's real answer that quotes nothing of ours and comes from an unauthenticated server stays
    unverified until someone who checked says so; only that client's unverified messages can be accepted."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    outreach_pass.fn(MONDAY_10_UTC, True)
    m = _sent(engine)[world["leads"][0]]
    stored = _ingest(engine, reply(frm=m.email, to="rep1@acme.test", subject=f"Re: {m.subject}", in_reply_to=None))
    verified = _ingest(engine, _reply_to(_sent(engine)[world["leads"][1]]))
    assert (stored.verified, verified.verified) == (False, True) and _lead(engine, m.lead_id).status == "new"
    runner = CliRunner()
    with engine.begin() as conn:
        factories.client(conn, "globex")
    assert runner.invoke(app, ["replies", "accept", "globex", str(stored.inbound_id)]).exit_code == 1
    assert runner.invoke(app, ["replies", "accept", "acme", str(verified.inbound_id)]).exit_code == 1
    ok = runner.invoke(app, ["replies", "accept", "acme", str(stored.inbound_id)])
    assert ok.exit_code == 0 and "replied: 1 enrollment(s) stopped" in ok.output
    assert _lead(engine, m.lead_id).status == "replied"
    again = runner.invoke(app, ["replies", "accept", "acme", str(stored.inbound_id)])
    assert again.exit_code == 1 and "no unverified received message" in again.output
