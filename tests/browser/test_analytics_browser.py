"""The campaign analytics page in headless Chromium: from the campaign page to its analytics, the
per-step table and the daily chart, then another day range."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from shared.engines.campaigns import analytics
from tests.browser.conftest import shot, sign_in
from tests.campaign_outcomes import EXPECTED_STEPS, EXPECTED_TOTALS, into_recent_days, known_outcomes
from tests.console_helpers import accounts

pytestmark = pytest.mark.integration


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a, camp = known_outcomes(conn, "Northwind Traders")
        b, _ = known_outcomes(conn, "Contoso")
        into_recent_days(conn)
    return {"camp": camp, "acc": accounts(engine, a, b)}


def test_operator_opens_a_campaigns_analytics_and_switches_the_day_range(console_url, new_page, world):
    page = new_page()
    sign_in(page, console_url, world["acc"].operator)
    page.goto(f"{console_url}/console/campaigns/{world['camp']}")
    page.get_by_test_id("analytics-link").click()
    page.wait_for_url(re.compile(rf"/console/campaigns/{world['camp']}/analytics$"))

    table = page.get_by_test_id("analytics-table")
    # A row per step, one per variant of a step that has variants (step 1: A and B), and the total.
    rows = len(EXPECTED_STEPS) + sum(len(step["variants"]) for step in EXPECTED_STEPS) + 1
    expect(table.locator("tbody tr")).to_have_count(rows)
    total = table.locator('tr[data-row="total"]')
    for name in analytics.TABLE_COUNTS:
        expect(total.locator(f'[data-figure="{name}"]')).to_have_text(str(EXPECTED_TOTALS[name]))
    expect(total.locator('[data-figure="reply_rate"]')).to_have_text("25.0 %")
    expect(table.locator('tr[data-row="4"] [data-figure="reply_rate"]')).to_have_text("-")
    chart = page.get_by_test_id("analytics-chart")
    expect(chart.locator("rect.seg")).not_to_have_count(0)
    expect(page.locator("tr[data-day]")).to_have_count(30)

    page.get_by_test_id("days-7").click()
    page.wait_for_url(re.compile(r"analytics\?days=7$"))
    expect(page.locator("tr[data-day]")).to_have_count(7)
    expect(page.get_by_test_id("days")).to_have_value("7")

    page.get_by_test_id("days").fill("400")
    page.get_by_test_id("range").get_by_role("button", name="Show").click()
    # The browser refuses 400 (max 366) before sending: still the 7-day page (the server would say 400 too).
    assert page.get_by_test_id("days").evaluate("e => e.validity.rangeOverflow") is True
    assert page.url.endswith("analytics?days=7")
    page.get_by_test_id("days").fill("21")
    page.get_by_test_id("tz").fill("UTC")
    page.get_by_test_id("range").get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"analytics\?days=21&tz=UTC$"))
    expect(page.locator("tr[data-day]")).to_have_count(21)
    expect(chart.locator("text.axis").last).to_have_text("day (UTC)")
    expect(chart.locator('rect.seg[data-series="sent"]')).not_to_have_count(0)
    expect(total.locator('[data-figure="sent"]')).to_have_text(str(EXPECTED_TOTALS["sent"]))
    shot(page, "analytics")
