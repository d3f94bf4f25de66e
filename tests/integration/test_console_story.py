"""A lead's story in the console, built by the engines themselves: enrichment against the sandbox
provider over HTTP, a send through a real SMTP server, a bounce through the replies engine; then the
page over HTTP (real app, real Postgres, row-level security per transaction)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from orchestrator.flows.outreach import outreach_pass
from shared import workitems
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.engines.enrichment import enrich_chunk
from shared.engines.outreach import store
from shared.engines.replies import ingest
from shared.engines.replies.webhooks import parse_message
from devkit import sandbox
from shared.settings import Settings, get_settings
from tests import factories
from tests.console_helpers import SECRET, accounts, sign_in
from tests.email_sink import smtp_sink
from tests.replies_mail import dsn
from web.app import create_app

pytestmark = pytest.mark.integration

SUBJECT = "Hello <script>alert(1)</script> {{ first_name }}"
_ENTRY = re.compile(r'<li data-kind="(\w+)">\s*<time datetime="([^"]*)">.*?<strong>(.*?)</strong>(.*?)</li>', re.S)


@pytest.fixture(scope="module")
def sandbox_url():
    with sandbox.serve(latency_ms=0, hit_rate=1.0, seed=1) as server:
        yield server.url


@pytest.fixture
def sink():
    with smtp_sink() as (s, port):
        yield s, port


@pytest.fixture
def world(engine, env, sink, sandbox_url):
    """Client A's lead enriched, enrolled, sent step 1 and hard-bounced; client B with look-alike leads."""
    env(OUTREACH_SECRET="story-outreach-secret", PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="1")
    with engine.begin() as conn:
        a = factories.client(conn, "alpha", credits=100)
        b = factories.client(conn, "bravo", credits=100)
        campaign = factories.campaign(conn, a, "launch <b>week</b>", status="draft")
        leads_a = factories.leads(conn, a, 2, campaign_id=campaign, domain="alpha.example")
        leads_b = factories.leads(conn, b, 2, domain="bravo.example")
        conn.execute(text("UPDATE leads SET company_name = 'Alpha & <Co>', timezone = 'Europe/Berlin' WHERE id = :l"),
                     {"l": leads_a[0]})
        enrich_batch = factories.batch(conn, a, leads_a, campaign_id=campaign)
        claimed = [c.id for c in workitems.claim(conn, enrich_batch, 10)]
    report = enrich_chunk(claimed, engine=engine, settings=Settings(
        provider_order="heuristics,sandbox", sandbox_url=sandbox_url, provider_max_retries=0,
        provider_timeout_seconds=2.0))
    assert report.done == 2

    now = datetime.now(UTC)
    with engine.begin() as conn:
        mailboxes.add_mailbox(conn, a, from_address="rep1@alpha.test", from_name="Rep", smtp_host="127.0.0.1",
                          smtp_port=sink[1], tls_mode="none", daily_cap=50, min_gap_seconds=0, jitter_seconds=0,
                          ramp_started_at=now - timedelta(days=30))
        sequences.set_schedule(conn, a, campaign, weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24,
                           fallback_timezone="UTC")
        sequences.set_step(conn, a, campaign, step=1, subject=SUBJECT, body="Hi {{ first_name }}.")
        sequences.set_step(conn, a, campaign, step=2, subject="x", body="Following up.", delay_amount=2,
                       delay_unit="days")
        store.enroll(conn, a, campaign, now=now)
        assert campaigns.activate(conn, a, campaign) == []
    outreach_pass.fn(now, False)  # not simulated: sends are stamped with the real clock, like the history
    with engine.connect() as conn:
        sent = conn.execute(text("SELECT s.message_id, s.subject, l.email FROM messages s JOIN leads l ON "
                                 "l.id = s.lead_id WHERE s.lead_id = :l AND s.status = 'sent'"),
                            {"l": leads_a[0]}).one()
        send_batch = conn.execute(text("SELECT batch_id FROM work_items WHERE lead_id = :l AND step = 1"),
                                  {"l": leads_a[0]}).scalar_one()
    bounce = dsn(recipient=sent.email, original_message_id=sent.message_id, original_subject=sent.subject,
                 to="rep1@alpha.test")
    received = ingest.Received(bounce, parse_message(bounce), "webhook", provider="standard_webhooks",
                               webhook_id=f"msg_{random.random()}")
    result = ingest.ingest(engine, received, settings=get_settings())
    assert result.kind == "hard_bounce" and result.outcome
    return {"a": a, "b": b, "lead": leads_a[0], "other_a": leads_a[1], "leads_b": leads_b, "sent": sent,
            "enrich_batch": enrich_batch, "send_batch": send_batch, "acc": accounts(engine, a, b)}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def _as(app, email: str) -> TestClient:
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    assert sign_in(c, email).status_code == 303
    return c


def _entries(html: str) -> list[tuple[str, datetime, str, str]]:
    """(kind, time, title, the rest of the entry as text) for each timeline entry, in page order."""
    out = []
    for kind, at, title, rest in _ENTRY.findall(html):
        out.append((kind, datetime.fromisoformat(at), unescape(title),
                    unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rest)))))
    return out


def _index(entries, kind: str, title: str, after: int = -1) -> int:
    for i, (k, _, t, _) in enumerate(entries):
        if i > after and k == kind and t.startswith(title):
            return i
    raise AssertionError(f"no {kind} entry {title!r} after #{after}: {[(k, t) for k, _, t, _ in entries]}")


def test_the_story_lists_every_event_of_the_lead_in_time_order_with_its_details(app, world):
    page = _as(app, world["acc"].operator).get(f"/console/leads/{world['lead']}")
    assert page.status_code == 200
    html = page.text
    entries = _entries(html)
    times = [at for _, at, _, _ in entries]
    assert times == sorted(times) and len(entries) >= 15

    # The enrichment batch's transitions, the provider calls and charge inside them, in that order.
    queued = _index(entries, "transition", "PENDING → QUEUED")
    started = _index(entries, "transition", "QUEUED → IN_PROGRESS", queued)
    heuristics = _index(entries, "provider", "heuristics: hit", started)
    paid = _index(entries, "provider", "sandbox: hit", started)
    charge = _index(entries, "credit", "Credits reserve -1", started)
    done = _index(entries, "transition", "IN_PROGRESS → DONE", max(heuristics, paid, charge))
    assert f"batch {world['enrich_batch']} (enrich)" in entries[queued][3]
    assert "worker" in entries[started][3] and "attempt 1" in entries[started][3]
    assert "cost 1 credit(s)" in entries[paid][3] and "latency" in entries[paid][3]
    assert "provider sandbox" in entries[charge][3]
    # Then the sequence: enrolled, the send batch's item, the message with its headers, the bounce.
    enrolled = _index(entries, "enrollment", "Enrolled in launch <b>week</b>", done)
    send_started = _index(entries, "transition", "QUEUED → IN_PROGRESS", enrolled)
    message = _index(entries, "message", "Step 1 sent: Hello <script>alert(1)</script> First1", send_started)
    bounced = _index(entries, "inbound", "hard bounce", message)
    suppressed = _index(entries, "suppression", "Suppressed (email: person1@alpha.example)", bounced)
    assert f"batch {world['send_batch']} (send)" in entries[send_started][3] and "step 1" in entries[send_started][3]
    assert "now stopped stop reason bounced" in entries[enrolled][3]
    details = entries[message][3]
    assert f"Message-ID {world['sent'].message_id}" in details and "mailbox rep1@alpha.test" in details
    assert "SMTP reply 250" in details
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in details
    assert "List-Unsubscribe: <https://unsub.example.test/u/…>" in details  # the token itself is not shown
    assert f"Message-ID: {world['sent'].message_id}" in details and "Subject: Hello <script>" in details
    inbound = entries[bounced][3]
    assert "status code 5.1.1" in inbound and "matched by" in inbound and "evidence" in inbound
    assert "lead bounced and suppressed" in inbound
    assert "reason hard_bounce" in entries[suppressed][3]

    # Header and links back to each batch; data is escaped, never markup.
    assert "Alpha &amp; &lt;Co&gt;" in html and "Europe/Berlin" in html and "alpha" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "launch &lt;b&gt;week&lt;/b&gt;" in html and "<b>week" not in html
    assert f'href="/console/batches/{world["enrich_batch"]}"' in html
    assert f'href="/console/batches/{world["send_batch"]}"' in html
    assert 'data-testid="lead-status">bounced<' in html


def test_a_viewer_sees_its_own_story_and_another_clients_lead_is_not_found(app, world):
    viewer_a = _as(app, world["acc"].viewer_a)
    own = viewer_a.get(f"/console/leads/{world['lead']}")
    assert own.status_code == 200 and "hard bounce" in own.text
    theirs = viewer_a.get(f"/console/leads/{world['leads_b'][0]}")
    missing = viewer_a.get("/console/leads/987654321")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text == missing.text  # nothing says the id exists
    assert "bravo" not in theirs.text
    viewer_b = _as(app, world["acc"].viewer_b)
    assert viewer_b.get(f"/console/leads/{world['lead']}").status_code == 404
    assert viewer_b.get(f"/console/leads/{world['leads_b'][0]}").status_code == 200


def _rows(html: str) -> list[str]:
    body = html.split('data-testid="leads"', 1)[1]
    return re.findall(r'<a href="/console/leads/\d+">([^<]+)</a>', body)


def test_search_is_case_insensitive_newest_first_and_never_crosses_clients(app, world):
    operator = _as(app, world["acc"].operator)
    everyone = _rows(operator.get("/console/leads").text)
    assert set(everyone) == {"person1@alpha.example", "person2@alpha.example", "person1@bravo.example",
                             "person2@bravo.example"}
    assert everyone[:2] == ["person2@bravo.example", "person1@bravo.example"]  # newest first
    assert set(_rows(operator.get("/console/leads", params={"q": "PERSON1"}).text)) == {
        "person1@alpha.example", "person1@bravo.example"}
    assert _rows(operator.get("/console/leads", params={"q": "alpha & <co"}).text) == ["person1@alpha.example"]
    assert _rows(operator.get("/console/leads", params={"q": "first2 last2", "client": world["b"]}).text) == [
        "person2@bravo.example"]
    assert _rows(operator.get("/console/leads", params={"q": "%"}).text) == []  # a literal %, not a wildcard
    all_clients = operator.get("/console/leads", params={"q": "person2", "client": ""})  # the form's "all"
    assert all_clients.status_code == 200 and len(_rows(all_clients.text)) == 2
    assert operator.get("/console/leads", params={"q": "person1\x00"}).status_code == 200
    bad = operator.get("/console/leads", params={"client": "x<y"})
    assert bad.status_code == 200 and "is not a number" in bad.text and "x&lt;y" in bad.text

    viewer_a = _as(app, world["acc"].viewer_a)
    for params in ({}, {"q": "example"}, {"q": "bravo"}, {"q": "person", "client": world["b"]}):
        page = viewer_a.get("/console/leads", params=params)
        assert page.status_code == 200
        assert all(e.endswith("@alpha.example") for e in _rows(page.text)), params
        assert "@bravo.example" not in page.text and "<td>bravo</td>" not in page.text, params
    found = viewer_a.get("/console/leads", params={"q": "<Co>"})
    assert _rows(found.text) == ["person1@alpha.example"] and "&lt;Co&gt;" in found.text
    assert f'href="/console/leads/{world["lead"]}"' in found.text
