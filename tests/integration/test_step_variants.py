"""A/B variants of sequence steps against real parts: Postgres, the SMTP sink, the CLI.

Each lead gets one variant of a step (`variants.variant_for`), the message row records it, a retry
keeps it, follow-ups thread on the step 1 subject the lead actually got, a variant already sent is
fixed, activation dry-renders every variant, and the step editor's renumbering carries variants along."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.flows.outreach import outreach_pass
from shared.engines.campaigns import campaigns, sequences
from shared.engines.mailboxes import mailboxes
from shared.engines.outreach import store
from shared.engines.outreach.variants import variant_for
from shared.errors import OutreachError, TemplateProblem
from tests import factories
from tests.email_sink import smtp_sink

pytestmark = pytest.mark.integration

SECRET = "test-outreach-secret"
MONDAY_10_UTC = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SUBJECTS = {"A": "Hello {{ first_name }}", "B": "Quick question, {{ first_name }}"}


@pytest.fixture
def sink():
    with smtp_sink() as (s, port):
        yield s, port


def _world(conn, port, n_leads=12):
    client = factories.client(conn, "acme")
    campaign = factories.campaign(conn, client, "ab", status="draft")
    leads = factories.leads(conn, client, n_leads, campaign_id=campaign)
    mailboxes.add_mailbox(conn, client, from_address="rep@acme.test", from_name="Rep", smtp_host="127.0.0.1",
                          smtp_port=port, tls_mode="none", daily_cap=100, min_gap_seconds=0, jitter_seconds=0,
                          ramp_started_at=MONDAY_10_UTC - timedelta(days=30))
    sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17,
                           fallback_timezone="UTC")
    sequences.set_step(conn, client, campaign, step=1, subject=SUBJECTS["A"], body="Body A for {{ first_name }}.")
    sequences.set_step(conn, client, campaign, step=2, subject="ignored", body="Following up.", delay_amount=1,
                       delay_unit="days")
    sequences.set_variant(conn, client, campaign, 1, "B", SUBJECTS["B"], "Body B for {{ first_name }}.")
    store.enroll(conn, client, campaign, now=MONDAY_10_UTC)
    return client, campaign, leads


@pytest.fixture
def ab(engine, env, sink):
    env(OUTREACH_SECRET=SECRET, PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="1")
    with engine.begin() as conn:
        client, campaign, leads = _world(conn, sink[1])
        assert campaigns.activate(conn, client, campaign) == []
    return client, campaign, leads


def _messages(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT m.lead_id, m.step, m.variant, m.subject, m.status, l.email, l.first_name "
                                 "FROM messages m JOIN leads l ON l.id = m.lead_id ORDER BY m.lead_id, m.step")).all()


def test_each_lead_gets_its_assigned_variant_recorded_and_follow_ups_thread_on_it(engine, sink, ab):
    s, _ = sink
    _, campaign, leads = ab
    outreach_pass.fn(MONDAY_10_UTC, True)
    outreach_pass.fn(MONDAY_10_UTC + timedelta(days=1), True)
    rows = _messages(engine)
    first = {r.lead_id: r for r in rows if r.step == 1}
    assert set(first) == set(leads) and {r.status for r in rows} == {"sent"}
    for lead, r in first.items():
        assert r.variant == variant_for(lead, campaign, 1, ["A", "B"])
        assert r.subject == SUBJECTS[r.variant].replace("{{ first_name }}", r.first_name)
    assert set(Counter(r.variant for r in first.values())) == {"A", "B"}  # both variants went out
    assert {r.variant for r in rows if r.step == 2} == {None}  # step 2 has no variants: none recorded
    got = {(m["To"], m["Subject"]): m.get_content() for _, _, m in s.messages}
    for r in first.values():
        assert got[(r.email, r.subject)].strip() == f"Body {r.variant} for {r.first_name}."
        assert got[(r.email, f"Re: {r.subject}")].strip() == "Following up."  # step 2 replies to what it got


def test_a_retry_keeps_the_variant_its_message_recorded(engine, env):
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

    env(OUTREACH_SECRET=SECRET, PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="1")
    handler, port = Refuser(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with engine.begin() as conn:
            client, campaign, leads = _world(conn, port)
            assert campaigns.activate(conn, client, campaign) == []
        outreach_pass.fn(MONDAY_10_UTC, True)
        deferred = {r.lead_id: r.variant for r in _messages(engine)}
        assert set(deferred) == set(leads) and {r.status for r in _messages(engine)} == {"deferred"}
        with engine.begin() as conn:  # a third variant now: a first send would be split three ways
            sequences.set_variant(conn, client, campaign, 1, "C", "Third {{ first_name }}", "Body C.")
        assert any(variant_for(lead, campaign, 1, "ABC") != v for lead, v in deferred.items())
        Refuser.refuse = False
        outreach_pass.fn(MONDAY_10_UTC + timedelta(hours=1), True)
    finally:
        controller.stop()
    after = {r.lead_id: r for r in _messages(engine) if r.step == 1}
    assert {lead: r.variant for lead, r in after.items()} == deferred and {r.status for r in after.values()} == {"sent"}
    delivered = {m["To"]: m for _, _, m in handler.messages}
    for r in after.values():
        assert delivered[r.email]["Subject"] == r.subject
        assert delivered[r.email].get_content().strip() == f"Body {r.variant} for {r.first_name}."


def test_a_variant_already_sent_is_fixed_and_labels_are_checked(engine, sink, ab):
    client, campaign, _ = ab
    with engine.begin() as conn:
        sequences.set_variant(conn, client, campaign, 2, "B", "s", "Step two, B.")
        assert [v["variant"] for v in sequences.variants(conn, campaign, 2)] == ["B"]
        sequences.delete_variant(conn, client, campaign, 2, "B")  # nothing sent it yet
        assert sequences.variants(conn, campaign, 2) == []
    outreach_pass.fn(MONDAY_10_UTC, True)
    with engine.begin() as conn:
        n = conn.execute(text("SELECT count(*) FROM messages WHERE variant = 'B'")).scalar_one()
        with pytest.raises(OutreachError, match=f"cannot change step 1 variant B: step 1 variant B was already sent "
                                                f"\\(or is being sent\\) to {n} lead"):
            sequences.set_variant(conn, client, campaign, 1, "B", "new", "new")
        with pytest.raises(OutreachError, match="cannot delete step 1 variant B"):
            sequences.delete_variant(conn, client, campaign, 1, "B")
        sequences.set_variant(conn, client, campaign, 1, "B", SUBJECTS["B"], "Body B for {{ first_name }}.")  # same
        with pytest.raises(OutreachError, match="variant A is step 1's own subject and body"):
            sequences.set_variant(conn, client, campaign, 1, "A", "s", "b")
        with pytest.raises(OutreachError, match="a variant label is a capital letter"):
            sequences.set_variant(conn, client, campaign, 1, "b!", "s", "b")
        with pytest.raises(OutreachError, match="step 5 does not exist"):
            sequences.set_variant(conn, client, campaign, 5, "B", "s", "b")
        with pytest.raises(OutreachError, match="step 2 has no variant C"):
            sequences.delete_variant(conn, client, campaign, 2, "C")
        with pytest.raises(TemplateProblem, match="step 2 variant C body"):
            sequences.set_variant(conn, client, campaign, 2, "C", "s", "{% if %}")


def test_activation_dry_renders_every_variant(engine, env):
    with engine.begin() as conn:
        client, campaign, leads = _world(conn, 25, n_leads=1)
        sequences.set_variant(conn, client, campaign, 2, "B", "s", "About {{ nope }}")
        problems = campaigns.activate(conn, client, campaign)
    assert problems == [f"lead {leads[0]} person1@example.com: step 2 variant B needs {{{{ nope }}}}"]


def test_moving_and_deleting_steps_carries_their_variants(engine, env):
    with engine.begin() as conn:
        client, campaign, _ = _world(conn, 25, n_leads=1)
        sequences.move_step(conn, client, campaign, 1, 2)
        assert sequences.variants(conn, campaign, 2)[0]["subject_template"] == SUBJECTS["B"]
        assert sequences.variants(conn, campaign, 1) == []
        sequences.delete_step(conn, client, campaign, 2)
        assert sequences.all_variants(conn, campaign) == []


def test_the_cli_sets_and_deletes_a_variant(engine, env, tmp_path):
    with engine.begin() as conn:
        _world(conn, 25, n_leads=1)
    body = tmp_path / "c.txt"
    body.write_text("Body C, {{ first_name }}.")
    runner = CliRunner()
    ok = runner.invoke(app, ["sequences", "variant", "acme", "ab", "2", "C", "--subject", "Hi", "--body-file", str(body)])
    assert ok.exit_code == 0 and "step 2 variant C of ab saved" in ok.output, ok.output
    with engine.connect() as conn:
        campaign = conn.execute(text("SELECT id FROM campaigns WHERE name = 'ab'")).scalar_one()
        assert [v["body_template"] for v in sequences.variants(conn, campaign, 2)] == ["Body C, {{ first_name }}."]
    missing = runner.invoke(app, ["sequences", "variant", "acme", "ab", "2", "C", "--subject", "Hi"])
    assert missing.exit_code == 2 and "--subject and --body-file are required" in missing.output
    bad = runner.invoke(app, ["sequences", "variant", "acme", "ab", "2", "A", "--subject", "Hi", "--body-file", str(body)])
    assert bad.exit_code == 2 and "variant A is step 2's own subject and body" in bad.output
    gone = runner.invoke(app, ["sequences", "variant", "acme", "ab", "2", "C", "--delete"])
    assert gone.exit_code == 0 and "deleted" in gone.output
    with engine.connect() as conn:
        assert sequences.variants(conn, campaign, 2) == []
