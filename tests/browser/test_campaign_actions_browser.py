"""The campaign forms in headless Chromium: an operator creates a campaign, fixes a typo in its ICP,
sets its schedule, is shown the activation report (lead, step, missing variable), and pauses and
completes a running campaign."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from shared.engines.campaigns import sequences
from shared.engines.mailboxes import mailboxes
from tests import factories
from tests.browser.conftest import shot, sign_in
from tests.console_helpers import accounts

pytestmark = pytest.mark.integration

TYPO_ICP = '{"seniorities": ["vp", "director"], "industrys": ["software"]}'


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "Northwind Traders", credits=500)
        b = factories.client(conn, "Contoso", credits=500)
        mailboxes.add_mailbox(conn, a, from_address="rep@northwind.example", from_name="Nora Rep",
                              smtp_host="127.0.0.1", smtp_port=2525, tls_mode="none", daily_cap=50)
        running = factories.campaign(conn, a, "Winter renewals", status="active")
    return {"a": a, "running": running, "acc": accounts(engine, a, b)}


def _stand_in_for_the_step_editor(engine, client: int, campaign: int) -> list[int]:
    """Two leads of the campaign and a step that uses a variable no lead has (the step editor is another page)."""
    with engine.begin() as conn:
        leads = factories.leads(conn, client, 2, campaign_id=campaign, domain="northwind.example")
        sequences.set_step(conn, client, campaign, step=1, subject="Hi {{ first_name }}",
                           body="Hey {{ nickname }}, about {{ company_name }}.", delay_amount=0, delay_unit="days")
    return leads


def test_operator_creates_sets_up_and_activates_a_campaign_and_completes_another(console_url, new_page, world,
                                                                                   engine):
    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the pause / complete confirmations
    sign_in(page, console_url, world["acc"].operator)
    page.goto(f"{console_url}/console/campaigns")
    new = page.get_by_test_id("new-campaign")
    new.locator("summary").click()
    new.get_by_label("Client").select_option(str(world["a"]))
    new.get_by_label("Name").fill("Spring <launch>")
    new.get_by_test_id("create").click()
    page.wait_for_url(re.compile(r"/console/campaigns/\d+\?notice="))
    campaign = int(re.search(r"/campaigns/(\d+)", page.url).group(1))
    expect(page.get_by_role("status")).to_have_text(f"campaign Spring <launch> (id {campaign}) is draft")
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")

    icp = page.get_by_test_id("icp")
    icp.get_by_role("textbox").fill(TYPO_ICP)
    icp.get_by_test_id("save-icp").click()
    expect(page.get_by_test_id("icp-error")).to_contain_text("industrys")
    box = page.get_by_test_id("icp").get_by_role("textbox")
    expect(box).to_have_value(TYPO_ICP)  # what was typed is kept, to be fixed in place
    box.fill(TYPO_ICP.replace("industrys", "industries"))
    page.get_by_test_id("icp").get_by_test_id("save-icp").click()
    expect(page.get_by_role("status")).to_have_text("ICP: 0 settings -> 2 settings")
    expect(page.get_by_test_id("icp-error")).to_have_count(0)

    schedule = page.get_by_test_id("schedule")
    schedule.get_by_label("Fri").uncheck()
    schedule.get_by_label("From").fill("8")
    schedule.get_by_label("until").fill("16")
    schedule.get_by_label("Zone for leads without one").fill("Europe/Berlin")
    schedule.get_by_test_id("save-schedule").click()
    expect(page.get_by_role("status")).to_have_text("campaign Spring <launch> sends on [1, 2, 3, 4] 8:00-16:00 local")
    expect(page.get_by_test_id("schedule").get_by_label("Fri")).not_to_be_checked()
    expect(page.get_by_test_id("schedule").get_by_label("Zone for leads without one")).to_have_value("Europe/Berlin")

    leads = _stand_in_for_the_step_editor(engine, world["a"], campaign)
    page.reload()  # the steps arrived from elsewhere
    page.get_by_test_id("activate").click()
    report = page.get_by_test_id("activation-report")
    expect(report).to_contain_text("2 problem(s); nothing was sent")
    for lead, n in zip(leads, (1, 2)):
        expect(report).to_contain_text(f"lead {lead} person{n}@northwind.example: step 1 needs {{{{ nickname }}}}")
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")
    shot(page, "campaign-actions")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, icp FROM campaigns WHERE id = :c"), {"c": campaign}).one()
    assert row.status == "draft" and row.icp == {"seniorities": ["vp", "director"], "industries": ["software"]}

    page.goto(f"{console_url}/console/campaigns/{world['running']}")
    page.get_by_test_id("pause").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("paused")
    expect(page.get_by_test_id("paused-reason")).to_contain_text("paused by hand")
    page.get_by_test_id("complete").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("completed")
    expect(page.get_by_test_id("complete")).to_have_count(0)
    page.goto(f"{console_url}/console/campaigns")
    expect(page.locator(f'[data-campaign="{world["running"]}"]')).to_contain_text("completed")
