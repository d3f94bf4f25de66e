"""The campaign pages' operator forms over HTTP against the real app and Postgres: create, ICP,
schedule, activation (the engine's dry-render report), pause / resume / complete, and the tenant walls."""

from __future__ import annotations

import html
from datetime import UTC, datetime
import re
from urllib.parse import unquote

import pytest
from sqlalchemy import text

from shared.engines.campaigns import sequences
from shared.engines.leads.scoring import validated_icp
from shared.engines.mailboxes import mailboxes
from shared.engines.outreach import store
from shared.errors import IcpError
from tests import factories
from tests.console_helpers import SECRET, accounts, post_form, signed_in
from web.app import create_app

pytestmark = pytest.mark.integration

LIST = "/console/campaigns"
TYPO_ICP = '{"seniorities": ["vp"], "industrys": ["software"]}'


@pytest.fixture
def world(engine):
    """Alpha: a draft whose step needs {{ nickname }} (no lead has one), with two leads and a mailbox.
    Bravo: its own active campaign."""
    with engine.begin() as conn:
        a = factories.client(conn, "alpha", credits=100)
        b = factories.client(conn, "bravo", credits=100)
        mailboxes.add_mailbox(conn, a, from_address="rep@alpha.example", smtp_host="127.0.0.1", smtp_port=2525,
                              tls_mode="none", daily_cap=50)
        draft = factories.campaign(conn, a, "needs-nickname", status="draft")
        leads = factories.leads(conn, a, 2, campaign_id=draft, domain="alpha.example")
        sequences.set_step(conn, a, draft, step=1, subject="Hi {{ first_name }}", body="Hey {{ nickname }}!",
                           delay_amount=0, delay_unit="days")
        theirs = factories.campaign(conn, b, "bravo-secret", status="active")
    return {"a": a, "b": b, "draft": draft, "leads": leads, "theirs": theirs, "acc": accounts(engine, a, b)}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def row(engine, campaign_id: int):
    with engine.connect() as conn:
        return conn.execute(text("SELECT name, status, icp, status_reason FROM campaigns WHERE id = :i"),
                            {"i": campaign_id}).one()


def schedule_row(engine, campaign_id: int):
    with engine.connect() as conn:
        return conn.execute(text("SELECT weekdays, start_hour, end_hour, fallback_timezone FROM sequences "
                                 "WHERE campaign_id = :i"), {"i": campaign_id}).first()


def notice(response) -> str:
    """The notice a redirect carries to the page."""
    found = re.search(r"notice=([^&]*)", response.headers["location"])
    return unquote(found.group(1)) if found else ""


def shown(response) -> str:
    return html.unescape(response.text)


def engine_message(raw: str) -> str:
    with pytest.raises(IcpError) as caught:
        validated_icp(raw)
    return str(caught.value)


def test_an_operator_creates_a_campaign_with_a_validated_icp(app, engine, world):
    c = signed_in(app, world["acc"].operator)
    page = c.get(LIST).text
    assert 'action="/console/campaigns"' in page and 'data-testid="new-campaign"' in page
    r = post_form(c, LIST, LIST, {"client_id": str(world["a"]), "name": "  Q1 <push>\x00 ", "status": "draft",
                                  "icp": '{"seniorities": ["vp"], "industries": ["software"]}'})
    assert r.status_code == 303
    cid = int(re.search(r"/campaigns/(\d+)", r.headers["location"]).group(1))
    assert row(engine, cid).name == "Q1 <push>" and row(engine, cid).status == "draft"
    assert row(engine, cid).icp == {"seniorities": ["vp"], "industries": ["software"]}
    assert notice(r) == f"campaign Q1 <push> (id {cid}) is draft"
    created = c.get(r.headers["location"])
    assert created.status_code == 200 and "Q1 &lt;push&gt;" in created.text and '"software"' in shown(created)

    again = post_form(c, LIST, LIST, {"client_id": str(world["a"]), "name": "Q1 <push>"})
    assert again.status_code == 422 and "campaign &#39;Q1 &lt;push&gt;&#39; already exists" in again.text
    blank = post_form(c, LIST, LIST, {"client_id": str(world["a"]), "name": "  "})
    assert blank.status_code == 422 and "a campaign needs a name" in blank.text
    bad_icp = post_form(c, LIST, LIST, {"client_id": str(world["a"]), "name": "typo", "icp": TYPO_ICP})
    assert bad_icp.status_code == 422 and engine_message(TYPO_ICP) in shown(bad_icp) and "industrys" in shown(bad_icp)
    assert "typo" in bad_icp.text and "industrys" in bad_icp.text.split("<textarea", 1)[1]  # what was typed stays
    not_json = post_form(c, LIST, LIST, {"client_id": str(world["a"]), "name": "typo", "icp": "{seniorities"})
    assert not_json.status_code == 422 and "invalid ICP: not valid JSON" in shown(not_json)
    no_client = post_form(c, LIST, LIST, {"name": "x"})
    assert no_client.status_code == 422 and "choose a client" in no_client.text
    assert post_form(c, LIST, LIST, {"client_id": "999999", "name": "x"}).status_code == 404
    bad_status = post_form(c, LIST, LIST, {"client_id": str(world["a"]), "name": "x", "status": "exploded"})
    assert bad_status.status_code == 422 and "exploded" in shown(bad_status)
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM campaigns WHERE client_id = :c"), {"c": world["a"]}).scalars())
    assert names == {"needs-nickname", "Q1 <push>"}


def test_the_icp_is_edited_with_the_clis_validation_and_a_typo_keeps_what_was_typed(app, engine, world):
    c = signed_in(app, world["acc"].operator)
    page = f"/console/campaigns/{world['draft']}"
    typo = post_form(c, page, f"{page}/icp", {"icp": TYPO_ICP})
    assert typo.status_code == 422 and engine_message(TYPO_ICP) in shown(typo)
    assert "industrys" in shown(typo).split("<textarea", 1)[1]
    assert row(engine, world["draft"]).icp == {}
    fixed = post_form(c, page, f"{page}/icp", {"icp": TYPO_ICP.replace("industrys", "industries")})
    assert fixed.status_code == 303 and notice(fixed) == "ICP: 0 settings -> 2 settings"
    assert row(engine, world["draft"]).icp == {"seniorities": ["vp"], "industries": ["software"]}
    assert row(engine, world["draft"]).status == "draft"  # the status stays, as `campaigns update --icp`
    same = post_form(c, page, f"{page}/icp", {"icp": TYPO_ICP.replace("industrys", "industries")})
    assert notice(same) == "ICP: nothing changed"
    assert '&#34;industries&#34;' in c.get(page).text or '"industries"' in shown(c.get(page))
    huge = post_form(c, page, f"{page}/icp", {"icp": '{"departments": ["' + "x" * 70_000 + '"]}'})
    assert huge.status_code == 422 and "the limit is" in huge.text
    nul = post_form(c, page, f"{page}/icp", {"icp": '{"departments": ["sa\\u0000les"]}'})  # jsonb cannot hold it
    assert nul.status_code == 422 and "field &#39;departments.0&#39; holds a NUL" in nul.text


def test_the_schedule_is_set_with_the_engines_checks(app, engine, world):
    c = signed_in(app, world["acc"].operator)
    page = f"/console/campaigns/{world['draft']}"
    ok = post_form(c, page, f"{page}/schedule", {"weekday_2": "on", "weekday_4": "on", "start_hour": "8",
                                                 "end_hour": "12", "fallback_timezone": "Europe/Berlin"})
    assert ok.status_code == 303 and notice(ok) == "campaign needs-nickname sends on [2, 4] 8:00-12:00 local"
    assert tuple(schedule_row(engine, world["draft"])) == ([2, 4], 8, 12, "Europe/Berlin")
    again = c.get(page).text
    assert 'name="weekday_2" checked' in again and 'name="weekday_1" >' in again and 'value="Europe/Berlin"' in again
    for form, words in (
        ({"start_hour": "9", "end_hour": "17", "fallback_timezone": "Mars/Olympus"},
         "fallback timezone 'Mars/Olympus' is not an IANA zone"),
        ({"weekday_1": "on", "start_hour": "17", "end_hour": "9", "fallback_timezone": "UTC"},
         "hours must satisfy 0 <= start < end <= 24, got 17-9"),
        ({"start_hour": "9", "end_hour": "17", "fallback_timezone": "UTC"}, "weekdays must be ISO numbers"),
        ({"weekday_1": "on", "start_hour": "nine", "end_hour": "17", "fallback_timezone": "UTC"},
         "start hour: 'nine' is not an hour (0-24)"),
    ):
        r = post_form(c, page, f"{page}/schedule", form)
        assert r.status_code == 422 and words in shown(r), (form, shown(r)[:200])
    assert tuple(schedule_row(engine, world["draft"])) == ([2, 4], 8, 12, "Europe/Berlin")


def test_activation_refused_names_each_lead_step_and_variable_and_then_goes_through(app, engine, world):
    c = signed_in(app, world["acc"].operator)
    page = f"/console/campaigns/{world['draft']}"
    refused = post_form(c, page, f"{page}/activate")
    assert refused.status_code == 422 and 'data-testid="activation-report"' in refused.text
    for lead, n in zip(world["leads"], (1, 2)):
        assert f"lead {lead} person{n}@alpha.example: step 1 needs {{{{ nickname }}}}" in shown(refused)
    assert "2 problem(s); nothing was sent" in refused.text
    assert row(engine, world["draft"]).status == "draft"
    with engine.connect() as conn:  # as the CLI: the enrollments stay, nothing is sent
        assert conn.execute(text("SELECT count(*) FROM enrollments WHERE campaign_id = :c"),
                            {"c": world["draft"]}).scalar() == 2
    with engine.begin() as conn:
        sequences.set_step(conn, world["a"], world["draft"], step=1, subject="Hi {{ first_name }}",
                           body="Hey {{ nickname | default('there') }}!", delay_amount=0, delay_unit="days")
    ok = post_form(c, page, f"{page}/activate")
    assert ok.status_code == 303 and notice(ok) == "enrolled: nobody new; campaign needs-nickname is active"
    assert row(engine, world["draft"]).status == "active"
    with engine.begin() as conn:
        empty = factories.campaign(conn, world["a"], "no-steps", status="draft")
    no_steps = post_form(c, page, f"/console/campaigns/{empty}/activate")
    assert no_steps.status_code == 422 and f"campaign {empty} has no sequence" in no_steps.text
    assert row(engine, empty).status == "draft"


def test_pause_resume_and_complete(app, engine, world):
    c = signed_in(app, world["acc"].operator)
    with engine.begin() as conn:
        camp = factories.campaign(conn, world["a"], "running", status="active")
    page = f"/console/campaigns/{camp}"
    assert 'data-testid="complete"' in c.get(page).text
    assert notice(post_form(c, page, f"{page}/pause")).startswith("paused")
    assert row(engine, camp).status == "paused" and row(engine, camp).status_reason == "paused by hand"
    assert notice(post_form(c, page, f"{page}/resume")) == "resumed" and row(engine, camp).status == "active"
    done = post_form(c, page, f"{page}/complete")
    assert notice(done) == "campaign running is completed"
    assert row(engine, camp).status == "completed" and row(engine, camp).status_reason is None
    assert 'data-testid="complete"' not in c.get(page).text
    assert notice(post_form(c, page, f"{page}/complete")) == "this campaign is already completed"
    assert notice(post_form(c, page, f"{page}/pause")) == "only an active campaign can be paused (this one is completed)"


def test_a_viewer_sees_the_settings_without_forms_and_may_act_on_nothing(app, engine, world):
    with engine.begin() as conn:
        sequences.set_schedule(conn, world["a"], world["draft"], weekdays=[1, 3], start_hour=7, end_hour=11,
                               fallback_timezone="Asia/Tokyo")
        store.enroll(conn, world["a"], world["draft"], now=datetime.now(UTC))
    c = signed_in(app, world["acc"].viewer_a)
    page = f"/console/campaigns/{world['draft']}"
    own = c.get(page)
    assert own.status_code == 200 and "Mon Wed · 7:00–11:00 local · otherwise Asia/Tokyo" in own.text
    for form in ("/icp", "/schedule", "/activate", "/complete", "/pause"):
        assert f'action="/console/campaigns/{world["draft"]}{form}"' not in own.text
    assert 'data-testid="new-campaign"' not in c.get(LIST).text
    assert c.get(f"/console/campaigns/{world['theirs']}").status_code == 404
    before = [row(engine, x) for x in (world["draft"], world["theirs"])]
    for camp in (world["draft"], world["theirs"]):
        for action in ("icp", "schedule", "activate", "complete"):
            r = post_form(c, LIST, f"/console/campaigns/{camp}/{action}",
                          {"icp": "{}", "weekday_1": "on", "start_hour": "1", "end_hour": "2", "fallback_timezone": "UTC"})
            assert r.status_code == 403, (camp, action)
    assert post_form(c, LIST, LIST, {"client_id": str(world["a"]), "name": "sneaky"}).status_code == 403
    assert [row(engine, x) for x in (world["draft"], world["theirs"])] == before
    assert tuple(schedule_row(engine, world["draft"])) == ([1, 3], 7, 11, "Asia/Tokyo")


def test_another_clients_campaign_is_not_found_for_every_action(app, engine, world):
    """An operator id that does not exist answers 404 like a viewer's foreign id (the tenancy test walks the rest)."""
    c = signed_in(app, world["acc"].operator)
    for action in ("icp", "schedule", "activate", "complete", "pause", "resume"):
        assert post_form(c, LIST, f"/console/campaigns/987654/{action}").status_code == 404, action
        assert post_form(c, LIST, f"/console/campaigns/x1/{action}").status_code == 404, action
