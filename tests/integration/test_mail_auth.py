"""Our own mail's authentication against real parts: a DNS server on a loopback port (dnslib), Postgres, the SMTP sink.

`outbound mailboxes check` reads SPF, DKIM and DMARC through dnspython and names what is missing or
wrong; a mailbox with a DKIM key signs every send, and dkimpy verifies the bytes the sink received
against the same DNS server, with h= covering the RFC 8058 headers.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.flows.outreach import outreach_pass
from shared.engines.outreach import store
from shared import errors
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.integrations import mailauth
from tests import factories
from tests.dns_server import dns_server
from tests.email_sink import smtp_sink
from tests.integration.test_replies import _ingest
from tests.replies_mail import dsn

pytestmark = pytest.mark.integration

MONDAY_10_UTC = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DOMAIN = "acme.test"


def _keypair() -> tuple[str, str]:
    """(PEM private key, the p= value of its DNS record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode()


def _right_zone(public: str) -> dict[str, list[str]]:
    return {DOMAIN: ["v=spf1 ip4:127.0.0.1 include:_spf.relay.test -all", "google-site-verification=abc"],
            f"s1._domainkey.{DOMAIN}": [f"v=DKIM1; k=rsa; p={public}"],
            f"_dmarc.{DOMAIN}": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@acme.test"]}


@pytest.fixture
def sink():
    with smtp_sink() as (s, port):
        yield s, port


def _world(engine, env, port, pem, **mailbox):
    env(OUTREACH_SECRET="mail-auth-secret", PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="1",
        DKIM_KEY_REP1=pem.replace("\n", "\\n"))  # one line, as a Modal Secret or .env holds it
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        leads = factories.leads(conn, client, 2, campaign_id=campaign)
        mailboxes.add_mailbox(conn, client, from_address=f"rep1@{DOMAIN}", from_name="Rep", smtp_host="127.0.0.1",
                          smtp_port=port, tls_mode="none", daily_cap=500, min_gap_seconds=0, jitter_seconds=0,
                          ramp_started_at=MONDAY_10_UTC - timedelta(days=30), **mailbox)
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=0, end_hour=24,
                           fallback_timezone="UTC")
        sequences.set_step(conn, client, campaign, step=1, subject="Hello {{ first_name }}", body="Hi {{ first_name }}.")
        store.enroll(conn, client, campaign, now=MONDAY_10_UTC)
        assert campaigns.activate(conn, client, campaign) == []
    return leads


def test_mailboxes_check_names_what_is_missing_or_wrong_then_passes_once_published(engine, env, sink):
    pem, public = _keypair()
    _, other_public = _keypair()
    _world(engine, env, sink[1], pem, dkim_selector="s1", dkim_secret_name="DKIM_KEY_REP1")
    zone = {DOMAIN: ["v=spf1 +all"], f"s1._domainkey.{DOMAIN}": [f"v=DKIM1; k=rsa; p={other_public}"],
            f"_dmarc.{DOMAIN}": ["v=DMARC1; rua=mailto:x@acme.test"]}
    runner = CliRunner()
    with dns_server(zone) as ns:
        wrong = runner.invoke(app, ["mailboxes", "check", "acme", "--nameserver", ns])
        assert wrong.exit_code == 1, wrong.output
        assert "lets any server send as acme.test" in wrong.output
        assert "does not verify a signature made with the mailbox's private key" in wrong.output
        assert "has no valid p=" in wrong.output and "error: 3 record(s) missing or wrong" in wrong.output
        zone.clear()  # nothing published at all
        missing = runner.invoke(app, ["mailboxes", "check", "acme", f"rep1@{DOMAIN}", "--nameserver", ns])
        assert missing.exit_code == 1
        assert missing.output.count("MISSING") == 3 and f"_dmarc.{DOMAIN}" in missing.output
        zone[DOMAIN] = ["v=spf1 -all", "v=spf1 include:_spf.relay.test -all"]
        assert "2 SPF records" in runner.invoke(app, ["mailboxes", "check", "acme", "--nameserver", ns]).output
        zone.update(_right_zone(public))
        env(DNS_NAMESERVERS=ns)  # the setting instead of the option
        right = runner.invoke(app, ["mailboxes", "check", "acme"])
        assert right.exit_code == 0, right.output
        assert right.output.count(" ok ") == 3 and "signed by us" in right.output
    assert pem.splitlines()[1] not in wrong.output + right.output  # the key itself is never printed


def test_a_relay_signed_mailbox_is_checked_at_the_relays_selector(engine, env, sink):
    _, public = _keypair()
    _world(engine, env, sink[1], "-")
    zone = _right_zone(public) | {f"google._domainkey.{DOMAIN}": [f"v=DKIM1; k=rsa; p={public}"]}
    with dns_server(zone) as ns:
        unknown = CliRunner().invoke(app, ["mailboxes", "check", "acme", "--nameserver", ns])
        assert unknown.exit_code == 1 and "no selector known" in unknown.output
        relay = CliRunner().invoke(app, ["mailboxes", "check", "acme", "--selector", "google", "--nameserver", ns])
        assert relay.exit_code == 0 and f"google._domainkey.{DOMAIN}" in relay.output


def test_a_signed_send_verifies_against_dns_and_covers_the_one_click_headers(engine, env, sink):
    s, port = sink
    pem, public = _keypair()
    _world(engine, env, port, pem, dkim_selector="s1", dkim_secret_name="DKIM_KEY_REP1")
    outreach_pass.fn(MONDAY_10_UTC, True)
    assert len(s.raws) == 2
    with dns_server(_right_zone(public)) as ns:
        lookup = mailauth.dnsfunc(mailauth.resolver([ns]))
        for raw in s.raws:
            assert dkim.verify(raw, dnsfunc=lookup), raw[:400]
            signature = raw.split(b"\r\n\r\n", 1)[0].decode()
            h = signature.split(" h=", 1)[1].split(";", 1)[0].replace("\r\n", "").replace(" ", "").lower().split(":")
            for name in ("from", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
                assert name in h, (name, h)
            # Any covered header changed on the way (a relay, an attacker) breaks the signature.
            tampered = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                                   b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks")
            assert tampered != raw and not dkim.verify(tampered, dnsfunc=lookup)


def test_a_missing_dkim_key_fails_the_send_before_smtp_naming_the_secret(engine, env, sink):
    s, port = sink
    _world(engine, env, port, "-", dkim_selector="s1", dkim_secret_name="DKIM_KEY_NOBODY_SET")
    outreach_pass.fn(MONDAY_10_UTC, True)
    assert s.raws == []
    with engine.connect() as conn:
        errors = set(conn.execute(text("SELECT last_error FROM work_items WHERE step = 1")).scalars())
    assert errors and all("DKIM_KEY_NOBODY_SET is not set" in e for e in errors)


def test_a_relay_that_rewrites_verp_gets_our_address_and_its_bounces_are_known_by_message_id(engine, env, sink):
    s, port = sink
    leads = _world(engine, env, port, "-", keeps_verp=False)
    outreach_pass.fn(MONDAY_10_UTC, True)
    assert {envelope for envelope, _, _ in s.messages} == {f"rep1@{DOMAIN}"}
    _, rcpts, original = s.messages[0]
    bounce = _ingest(engine, dsn(recipient=rcpts[0], original_message_id=original["Message-ID"],
                                 original_subject=original["Subject"], to=f"rep1@{DOMAIN}"))
    assert (bounce.kind, bounce.match.by, bounce.verified) == ("hard_bounce", "message_id", True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM leads WHERE id = :l"), {"l": bounce.match.lead_id}).scalar() \
            == "bounced"
    assert bounce.match.lead_id in leads


def test_dkim_settings_are_refused_when_half_given_or_not_a_dns_label(engine):
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        for fields, message in (({"dkim_selector": "s1"}, "both a selector"),
                                ({"dkim_selector": "s1;x", "dkim_secret_name": "K"}, "not a DNS label")):
            with pytest.raises(errors.OutreachError, match=message):
                mailboxes.add_mailbox(conn, client, from_address="rep@acme.test", smtp_host="h", smtp_port=25, **fields)


def test_mailboxes_add_takes_the_verp_and_dkim_settings_and_refuses_half_of_dkim(engine):
    import json

    runner = CliRunner()
    with engine.begin() as conn:
        factories.client(conn, "acme")
    base = ["mailboxes", "add", "acme", f"rep1@{DOMAIN}", "--host", "smtp.gmail.com"]
    half = runner.invoke(app, [*base, "--dkim-selector", "s1"])
    assert half.exit_code == 2 and "both a selector and the name of the secret" in half.output
    ok = runner.invoke(app, [*base, "--no-verp", "--dkim-selector", "S1", "--dkim-secret-name", "DKIM_KEY_REP1"])
    assert ok.exit_code == 0, ok.output
    [box] = json.loads(runner.invoke(app, ["mailboxes", "list", "acme", "--json"]).output)
    assert (box["keeps_verp"], box["dkim_selector"], box["dkim_secret_name"]) == (False, "s1", "DKIM_KEY_REP1")


def test_dns_that_does_not_answer_or_a_bad_resolver_is_one_line(engine, env, sink):
    from devkit.net import free_port

    _world(engine, env, sink[1], "-")
    down = CliRunner().invoke(app, ["mailboxes", "check", "acme", "--nameserver", f"127.0.0.1:{free_port()}"])
    assert down.exit_code == 1 and "DNS lookup of acme.test TXT failed" in down.output
    bad = CliRunner().invoke(app, ["mailboxes", "check", "acme", "--nameserver", "127.0.0.1:x"])
    assert bad.exit_code == 1 and "is not ip or ip:port" in bad.output and "Traceback" not in bad.output
