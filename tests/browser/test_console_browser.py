"""The console in headless Chromium: sign in, launch a batch and watch it finish without a reload,
open a lead's story, and a client's viewer turned away from another client's batch."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from shared.engines.batches import batches
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from tests import factories
from tests.browser.conftest import shot, sign_in
from tests.console_helpers import accounts

pytestmark = pytest.mark.integration

FINISHED = re.compile(r"^completed(_with_errors)?$")


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "Northwind Traders", credits=500)
        b = factories.client(conn, "Contoso", credits=500)
        factories.leads(conn, a, 24, domain="northwind.example")
        lead_b = factories.leads(conn, b, 5, domain="contoso.example")
        batch_b = factories.batch(conn, b, lead_b)
    return {"a": a, "b": b, "batch_b": batch_b, "acc": accounts(engine, a, b)}


def test_operator_launches_a_batch_and_sees_it_complete_without_reloading(console_url, new_page, world, engine):
    page = new_page()
    sign_in(page, console_url, world["acc"].operator, screenshot="login")
    form = page.get_by_test_id("new-batch")
    form.get_by_role("combobox").select_option(str(world["a"]))
    form.get_by_role("button", name="Create batch").click()
    page.wait_for_url(re.compile(r"/console/batches/\d+"))
    batch_id = int(re.search(r"/batches/(\d+)", page.url).group(1))
    expect(page.get_by_test_id("batch-status")).to_have_text("draft")

    page.get_by_test_id("launch").click()
    page.wait_for_url(re.compile(rf"/console/batches/{batch_id}\?"))
    page.evaluate("window.__sameDocument = 'yes'")  # a reload or navigation would forget this
    expect(page.get_by_test_id("batch-status")).to_have_text(FINISHED, timeout=180_000)
    assert page.evaluate("window.__sameDocument") == "yes"

    with engine.begin() as conn:
        summary = batches.summary(conn, batch_id)
    assert summary.status in ("completed", "completed_with_errors") and summary.total == 24
    for status, n in summary.counts.items():  # the live numbers are the database's
        expect(page.locator(f'[data-count="{status}"]')).to_have_text(str(n))
    expect(page.locator('[data-live="credits"]')).to_have_text(str(summary.credits_spent))
    expect(page.get_by_test_id("launch")).to_have_count(0)
    expect(page.get_by_test_id("items").locator("tbody")).not_to_contain_text("PENDING")  # the table follows too
    shot(page, "batch")

    page.goto(f"{console_url}/console/batches")
    expect(page.get_by_test_id("batches")).to_contain_text("Northwind Traders")
    shot(page, "batches")

    # A lead's story, from the batch's item table: its transitions and provider calls in time order.
    page.goto(f"{console_url}/console/batches/{batch_id}")
    lead = page.get_by_test_id("items").get_by_role("link").first
    email = lead.inner_text()
    lead.click()
    page.wait_for_url(re.compile(r"/console/leads/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(email)
    timeline = page.get_by_test_id("timeline")
    expect(timeline).to_contain_text("IN_PROGRESS")
    expect(timeline).to_contain_text("DONE")
    expect(timeline).to_contain_text("heuristics")
    shot(page, "lead")


def test_a_viewer_is_turned_away_from_another_clients_batch(console_url, new_page, world):
    page = new_page()
    sign_in(page, console_url, world["acc"].viewer_a)
    expect(page.get_by_test_id("who")).to_contain_text("viewer of Northwind Traders")
    expect(page.get_by_test_id("new-batch")).to_have_count(0)  # viewers read; they do not act
    response = page.goto(f"{console_url}/console/batches/{world['batch_b']}")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert "Contoso" not in page.content()
    page.goto(f"{console_url}/console/batches")
    expect(page.get_by_test_id("batches")).not_to_contain_text("Contoso")


@pytest.fixture
def outreach_world(engine, world):
    """Northwind's three-step campaign over two mailboxes (one ramping), its leads enrolled and active."""
    from datetime import UTC, datetime, timedelta

    from shared.engines.outreach import store

    now = datetime.now(UTC).replace(microsecond=0)
    a = world["a"]
    with engine.begin() as conn:
        for address, ramp in (("maria@northwind.example", None), ("sam@northwind.example", 5)):
            mailboxes.add_mailbox(conn, a, from_address=address, from_name=address.split("@")[0].title(),
                              smtp_host="smtp.northwind.example", smtp_port=587, daily_cap=40, ramp_start=ramp,
                              ramp_step=5 if ramp else 0, ramp_ceiling=30 if ramp else None,
                              ramp_started_at=now - timedelta(days=3))
        camp = factories.campaign(conn, a, "Q1 Logistics Leaders", status="draft")
        factories.leads(conn, a, 60, campaign_id=camp, domain="freight.example")
        sequences.set_schedule(conn, a, camp, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17)
        sequences.set_step(conn, a, camp, step=1, subject="{{ first_name }}, a question about {{ company_name }}",
                       body="Hi {{ first_name }},\n\nHow does {{ company_name }} plan its routes today?\n\n{{ sender_name }}")
        sequences.set_step(conn, a, camp, step=2, subject="x", body="Following up, {{ first_name }}.", delay_amount=3)
        sequences.set_step(conn, a, camp, step=3, subject="x", body="Last note, {{ first_name }}.", delay_amount=4)
        store.enroll(conn, a, camp, now=now)
        assert campaigns.activate(conn, a, camp) == []
    return world | {"campaign": camp}


def test_campaign_preview_forecast_chart_and_mailbox_health(console_url, new_page, outreach_world):
    page = new_page()
    sign_in(page, console_url, outreach_world["acc"].operator)
    page.get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="Q1 Logistics Leaders").click()
    chooser = page.get_by_test_id("preview-lead")
    second = chooser.locator("option").nth(1)
    chooser.select_option(second.get_attribute("value"))
    page.get_by_role("button", name="Preview").click()
    first_name = second.inner_text().split("(")[1].split()[0]
    expect(page.get_by_test_id("subject").first).to_contain_text(f"{first_name}, a question about Example Inc")
    expect(page.locator("svg.chart rect.seg").first).to_be_visible()
    shot(page, "campaign")

    page.get_by_role("link", name="Mailboxes").click()
    expect(page.get_by_test_id("ramp").nth(1)).to_contain_text("day 4")
    page.get_by_label("reason for pausing sam@northwind.example").fill("warming up a new domain")
    page.get_by_label("reason for pausing sam@northwind.example").press("Enter")
    expect(page.get_by_test_id("mailbox-reason")).to_contain_text("warming up a new domain")
    page.get_by_role("link", name="Mailboxes").click()
    expect(page.get_by_test_id("mailboxes")).to_contain_text("maria@northwind.example")
    expect(page.get_by_test_id("mailbox-reason")).to_contain_text("warming up a new domain")


def test_suppressions_import_add_search_and_export(console_url, new_page, world, tmp_path):
    upload = tmp_path / "do-not-contact.csv"
    upload.write_text("email,reason\nceo@rival.example,asked in person\nlegal.example,whole domain\n"
                      "not an address,oops\n", encoding="utf-8")
    page = new_page()
    sign_in(page, console_url, world["acc"].operator)
    page.get_by_role("link", name="Suppressions").click()
    form = page.get_by_test_id("import-suppressions")
    form.get_by_role("combobox").select_option(str(world["a"]))
    form.locator('input[type="file"]').set_input_files(str(upload))
    form.get_by_role("button", name="Import").click()
    expect(page.get_by_test_id("import-result")).to_contain_text("2")
    expect(page.get_by_test_id("import-problems")).to_contain_text("line 4")

    page.goto(f"{console_url}/console/suppressions")
    add = page.get_by_test_id("add-suppression")
    add.get_by_role("combobox").select_option(str(world["a"]))
    add.get_by_label("Email or domain").fill("Unsubscribed.Person@Northwind.example")
    add.get_by_label("Reason").fill("asked on a call")
    add.get_by_role("button", name="Add").click()
    table = page.get_by_test_id("suppressions")
    expect(table).to_contain_text("unsubscribed.person@northwind.example")

    search = page.get_by_test_id("search-suppressions")
    search.get_by_role("combobox").select_option(str(world["a"]))
    search.get_by_label("Search").fill("rival")
    search.get_by_role("button", name="Search").click()
    expect(table).to_contain_text("ceo@rival.example")
    expect(table).not_to_contain_text("legal.example")
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    exported = download.value.path().read_text(encoding="utf-8")
    assert "ceo@rival.example" in exported and "legal.example" in exported
    search.get_by_label("Search").fill("")
    search.get_by_role("button", name="Search").click()
    shot(page, "suppressions")
