"""The console in headless Chromium: sign in, launch a batch and watch it finish without a reload,
open a lead's story, and a client's viewer turned away from another client's batch."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from shared.engines import batches
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
