"""Campaign and mailbox pages over HTTP against the real app, Postgres, an SMTP sink and the replies engine."""

from __future__ import annotations

import html
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import text

from orchestrator.flows.outreach import outreach_pass
from shared.engines.outreach import forecast as forecasting
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.engines.outreach import store
from shared.engines.replies import ingest
from shared.engines.replies.webhooks import parse_message
from shared.settings import get_settings
from tests import factories
from tests.console_helpers import SECRET, accounts, post_form, sign_in
from tests.email_sink import smtp_sink
from tests.replies_mail import dsn
from web.app import create_app

pytestmark = pytest.mark.integration

CAMPAIGN_NAME = 'Q4 <launch> & "more"'
def esc(value: str) -> str:
    """As the pages escape (Jinja's autoescape, markupsafe)."""
    return str(escape(value))


SEGMENT = re.compile(r'<rect class="seg"[^>]* data-day="([^"]+)" data-series="([^"]+)" data-count="(\d+)"')


@pytest.fixture
def sink():
    with smtp_sink() as (s, port):
        yield s, port


def _campaign(conn, client, name, n_leads, domain, boxes, now):
    camp = factories.campaign(conn, client, name, status="draft")
    leads = factories.leads(conn, client, n_leads, campaign_id=camp, domain=domain)
    sequences.set_schedule(conn, client, camp, weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24,
                       fallback_timezone="UTC")
    sequences.set_step(conn, client, camp, step=1, subject="Hello {{ first_name }}",
                   body="Hi {{ first_name }}, about {{ company_name }}.", delay_amount=0, delay_unit="days")
    sequences.set_step(conn, client, camp, step=2, subject="x", body="Following up on {{ company_name }}.",
                   delay_amount=2, delay_unit="days")
    sequences.set_step(conn, client, camp, step=3, subject="x", body="Last note from {{ sender_name }}.",
                   delay_amount=1, delay_unit="days")
    store.enroll(conn, client, camp, now=now)
    assert campaigns.activate(conn, client, camp) == []
    return camp, leads


@pytest.fixture
def world(engine, env, sink):
    """Alpha: a three-step campaign, 20 leads, two mailboxes (one ramping). Bravo: its own campaign and mailbox."""
    env(OUTREACH_SECRET="test-outreach-secret", PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="2",
        SHIELD_MIN_SENDS="5")
    port = sink[1]
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        a = factories.client(conn, "alpha", credits=100)
        b = factories.client(conn, "bravo", credits=100)
        box1 = mailboxes.add_mailbox(conn, a, from_address="rep1@alpha.example", from_name="Rep <1> & Co",
                                 smtp_host="127.0.0.1", smtp_port=port, tls_mode="none", daily_cap=50,
                                 min_gap_seconds=0, jitter_seconds=0, ramp_started_at=now - timedelta(days=30))
        box2 = mailboxes.add_mailbox(conn, a, from_address="rep2@alpha.example", smtp_host="127.0.0.1", smtp_port=port,
                                 tls_mode="none", daily_cap=50, ramp_start=5, ramp_step=5, ramp_ceiling=40,
                                 min_gap_seconds=0, jitter_seconds=0, ramp_started_at=now - timedelta(days=2, hours=1))
        box_b = mailboxes.add_mailbox(conn, b, from_address="rep@bravo.example", smtp_host="127.0.0.1", smtp_port=port,
                                  tls_mode="none", daily_cap=50, min_gap_seconds=0, jitter_seconds=0)
        camp_a, leads_a = _campaign(conn, a, CAMPAIGN_NAME, 20, "alpha.example", [box1, box2], now)
        camp_b, leads_b = _campaign(conn, b, "b-seq", 2, "bravo.example", [box_b], now)
        conn.execute(text("UPDATE leads SET first_name = '<i>Ann</i> & co' WHERE id = :l"), {"l": leads_a[0]})
    return {"a": a, "b": b, "camp_a": camp_a, "camp_b": camp_b, "leads_a": leads_a, "leads_b": leads_b,
            "box1": box1, "box2": box2, "box_b": box_b, "now": now, "acc": accounts(engine, a, b)}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def _client(app, email) -> TestClient:
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    assert sign_in(c, email).status_code == 303
    return c


def _row(engine, table, row_id):
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT status, status_reason, paused_at FROM {table} WHERE id = :i"),
                            {"i": row_id}).one()


def test_the_campaign_page_previews_the_chosen_lead_and_charts_the_engines_forecast(app, engine, world):
    c = _client(app, world["acc"].operator)
    listing = c.get("/console/campaigns")
    assert listing.status_code == 200
    assert esc(CAMPAIGN_NAME) in listing.text and CAMPAIGN_NAME not in listing.text
    assert "b-seq" in listing.text and "active 20" in listing.text  # enrollments by state

    ann, second = world["leads_a"][0], world["leads_a"][1]
    with engine.begin() as conn:  # data changed after activation: the preview must say so, not crash
        conn.execute(text("UPDATE leads SET company_name = NULL WHERE id = :l"), {"l": second})
    page = c.get(f"/console/campaigns/{world['camp_a']}")  # no lead chosen: the first
    assert page.status_code == 200
    assert "Hi &lt;i&gt;Ann&lt;/i&gt; &amp; co, about Example Inc." in page.text
    assert "Hello &lt;i&gt;Ann&lt;/i&gt; &amp; co" in page.text and "<i>Ann</i>" not in page.text
    assert "Last note from Rep &lt;1&gt; &amp; Co." in page.text  # the sender's variables, from its mailbox
    assert page.text.count("Re: Hello &lt;i&gt;Ann&lt;/i&gt; &amp; co") == 2  # follow-ups: step 1's thread
    chosen = c.get(f"/console/campaigns/{world['camp_a']}?lead={second}").text
    assert f'<option value="{second}" selected>' in chosen
    assert f"lead {second} person2@alpha.example: step 1 needs {{{{ company_name }}}}" in chosen
    assert f"lead {second} person2@alpha.example: step 2 needs {{{{ company_name }}}}" in chosen
    assert "Hi First2" not in chosen and "Last note from" in chosen  # step 3 still renders
    foreign = c.get(f"/console/campaigns/{world['camp_a']}?lead={world['leads_b'][0]}").text
    assert "bravo.example" not in foreign and "Hi &lt;i&gt;Ann" in foreign  # another campaign's lead: the first

    assert f'data-fragment="/console/campaigns/{world["camp_a"]}/forecast"' in page.text  # loaded by the page's script
    assert "style=" not in page.text and "<script>" not in page.text
    page = c.get(f"/console/campaigns/{world['camp_a']}/forecast")
    assert page.status_code == 200
    segments = {(html.unescape(d), html.unescape(m)): int(n) for d, m, n in SEGMENT.findall(page.text)}
    with engine.begin() as conn:
        expected = forecasting.forecast(conn, world["a"], world["camp_a"], now=datetime.now(UTC))
    assert segments == {(d, m): n for d, counts in expected.per_day.items() for m, n in counts.items() if n}
    assert sum(segments.values()) == 20 * 3 and {m for _, m in segments} == {"rep1@alpha.example",
                                                                            "rep2@alpha.example"}
    assert expected.last_send_at.strftime("%Y-%m-%d") in page.text
    table = page.text.split('data-testid="forecast-table"')[1].split("</table>")[0]
    first_day = min(expected.per_day)
    row = re.search(rf"<tr><td>{first_day}</td>(.*?)</tr>", table).group(1)
    counts = [int(x) for x in re.findall(r"<td>(\d+)</td>", row)]
    day = expected.per_day[first_day]
    assert counts == [day.get("rep1@alpha.example", 0), day.get("rep2@alpha.example", 0), sum(day.values())]
    assert "style=" not in page.text and "<script>" not in page.text


def test_an_operator_pauses_and_resumes_a_campaign_and_a_mailbox(app, engine, world):
    c = _client(app, world["acc"].operator)
    page = f"/console/campaigns/{world['camp_a']}"
    assert post_form(c, page, f"{page}/pause").status_code == 303
    row = _row(engine, "campaigns", world["camp_a"])
    assert row.status == "paused" and row.status_reason == "paused by hand" and row.paused_at is not None
    assert "paused by hand" in c.get(page).text and "paused by hand" in c.get("/console/campaigns").text
    assert post_form(c, page, f"{page}/resume").status_code == 303
    assert tuple(_row(engine, "campaigns", world["camp_a"])) == ("active", None, None)

    box = f"/console/mailboxes/{world['box1']}"
    refused = post_form(c, box, f"{box}/pause", {"reason": "  "})
    assert "needs+a+reason" in refused.headers["location"] or "needs%20a%20reason" in refused.headers["location"]
    assert _row(engine, "mailboxes", world["box1"]).status == "active"
    assert post_form(c, box, f"{box}/pause", {"reason": "<b>warming</b> & checking DNS"}).status_code == 303
    row = _row(engine, "mailboxes", world["box1"])
    assert row.status == "paused" and row.status_reason == "<b>warming</b> & checking DNS" and row.paused_at
    listing = c.get("/console/mailboxes").text
    assert "&lt;b&gt;warming&lt;/b&gt; &amp; checking DNS" in listing and "<b>warming" not in listing
    assert post_form(c, box, f"{box}/resume").status_code == 303
    assert tuple(_row(engine, "mailboxes", world["box1"])) == ("active", None, None)
    assert c.get("/console/campaigns/999999").status_code == 404
    assert post_form(c, box, "/console/mailboxes/999999/pause", {"reason": "x"}).status_code == 404


def _bounce(engine, message, now):
    raw = dsn(recipient=message.email, original_message_id=message.message_id, original_subject=message.subject,
              to=message.from_address)
    received = ingest.Received(raw, parse_message(raw), "webhook", provider="standard_webhooks",
                               webhook_id=f"msg_{random.random()}")
    return ingest.ingest(engine, received, settings=get_settings(), now=now)


def test_mailbox_health_shows_cap_ramp_and_the_shields_rates_and_a_shield_pause_needs_a_confirmed_resume(
        app, engine, world):
    outreach_pass.fn(world["now"], True)
    with engine.connect() as conn:
        sent = conn.execute(text(
            "SELECT s.id, s.message_id, s.subject, s.mailbox_id, l.email, m.from_address FROM messages s "
            "JOIN leads l ON l.id = s.lead_id JOIN mailboxes m ON m.id = s.mailbox_id "
            "WHERE s.status = 'sent' AND s.client_id = :a ORDER BY s.id"), {"a": world["a"]}).all()
    by_box = {b: [m for m in sent if m.mailbox_id == b] for b in (world["box1"], world["box2"])}
    # Same instant, no gap: the scheduler's rotation (least recently used, then lowest id) favours rep1.
    assert len(sent) == 20 and len(by_box[world["box1"]]) >= 5 and by_box[world["box2"]]
    for m in by_box[world["box1"]][:2]:
        assert _bounce(engine, m, world["now"] + timedelta(minutes=1)).kind == "hard_bounce"
    box = _row(engine, "mailboxes", world["box1"])
    camp = _row(engine, "campaigns", world["camp_a"])
    assert box.status == "paused" and box.status_reason.startswith("bounce shield: hard-bounce rate")
    assert camp.status == "paused" and camp.status_reason.startswith("bounce shield")

    c = _client(app, world["acc"].operator)
    listing = c.get("/console/mailboxes").text
    n1, n2 = len(by_box[world["box1"]]), len(by_box[world["box2"]])
    row1 = listing.split(f'data-mailbox="{world["box1"]}"')[1].split("</tr>")[0]
    row2 = listing.split(f'data-mailbox="{world["box2"]}"')[1].split("</tr>")[0]
    assert f"{n1} / 50" in row1 and f"{100 * 2 / n1:.1f} %</span> (2 of {n1})" in row1 and "limit 2.0 %" in row1
    assert esc(box.status_reason) in row1 and "resume despite the bounce shield" in row1
    assert f"{n2} / 15" in row2 and "day 3: 15/day, +5/day to 40" in row2  # ramp 5 + 5 × 2 days, ceiling 40
    assert f"0.0 %</span> (0 of {n2})" in row2 and "no ramp (cap 50)" in row1

    page = f"/console/campaigns/{world['camp_a']}"
    shown = c.get(page).text
    assert esc(camp.status_reason) in shown and "resume despite the bounce shield" in shown
    refused = post_form(c, page, f"{page}/resume")
    assert "bounce+shield" in refused.headers["location"] or "bounce%20shield" in refused.headers["location"]
    assert _row(engine, "campaigns", world["camp_a"]).status == "paused"
    post_form(c, page, f"{page}/resume", {"confirm_shield": "1"})
    assert tuple(_row(engine, "campaigns", world["camp_a"])) == ("active", None, None)
    mpage = f"/console/mailboxes/{world['box1']}"
    post_form(c, mpage, f"{mpage}/resume")
    assert _row(engine, "mailboxes", world["box1"]).status == "paused"
    post_form(c, mpage, f"{mpage}/resume", {"confirm_shield": "1"})
    assert tuple(_row(engine, "mailboxes", world["box1"])) == ("active", None, None)


def test_a_viewer_sees_only_its_clients_campaigns_and_mailboxes_and_acts_on_none(app, engine, world):
    c = _client(app, world["acc"].viewer_a)
    campaigns = c.get("/console/campaigns").text
    assert esc(CAMPAIGN_NAME) in campaigns and "b-seq" not in campaigns
    own = c.get(f"/console/campaigns/{world['camp_a']}")
    assert own.status_code == 200 and "Hi &lt;i&gt;Ann" in own.text and 'data-testid="pause"' not in own.text
    assert c.get(f"/console/campaigns/{world['camp_b']}").status_code == 404
    assert c.get(f"/console/campaigns/{world['camp_b']}?lead={world['leads_b'][0]}").status_code == 404
    mailboxes = c.get("/console/mailboxes").text
    assert "rep1@alpha.example" in mailboxes and "bravo.example" not in mailboxes and "Pause</button>" not in mailboxes
    assert c.get(f"/console/mailboxes/{world['box1']}").status_code == 200
    assert c.get(f"/console/mailboxes/{world['box_b']}").status_code == 404
    assert "bravo.example" not in c.get(f"/console/mailboxes?client={world['b']}").text
    for camp in (world["camp_a"], world["camp_b"]):
        for action in ("pause", "resume"):
            r = post_form(c, "/console/campaigns", f"/console/campaigns/{camp}/{action}", {"confirm_shield": "1"})
            assert r.status_code == 403, (camp, action)
    for box in (world["box1"], world["box_b"]):
        for action in ("pause", "resume"):
            r = post_form(c, "/console/campaigns", f"/console/mailboxes/{box}/{action}", {"reason": "x"})
            assert r.status_code == 403, (box, action)
    assert _row(engine, "campaigns", world["camp_a"]).status == "active"
    assert _row(engine, "campaigns", world["camp_b"]).status == "active"
    assert _row(engine, "mailboxes", world["box1"]).status == "active"
    assert _row(engine, "mailboxes", world["box_b"]).status == "active"
