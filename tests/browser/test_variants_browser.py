"""A/B variants in the sequence editor, in headless Chromium: an operator opens a step's "add a variant"
form, the variant's live preview renders for the chosen lead as it is typed (no reload), saving lists
variant B under the step with its own preview, and deleting it removes it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from shared.engines.campaigns import sequences
from shared.engines.mailboxes import mailboxes
from tests import factories
from tests.browser.conftest import shot, sign_in
from tests.console_helpers import accounts

pytestmark = pytest.mark.integration


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "alpha")
        b = factories.client(conn, "bravo")
        mailboxes.add_mailbox(conn, a, from_address="rita@alpha.example", from_name="Rita Rep",
                              smtp_host="127.0.0.1", smtp_port=2525, tls_mode="none", daily_cap=50)
        camp = factories.campaign(conn, a, "Q1 outreach", status="draft")
        factories.leads(conn, a, 2, campaign_id=camp, domain="alpha.example")
        sequences.set_step(conn, a, camp, step=1, subject="Quick question, {{ first_name }}",
                           body="Hi {{ first_name }}, how is {{ company_name }}?")
    return {"camp": camp, "acc": accounts(engine, a, b)}


def test_operator_adds_a_variant_with_a_live_preview_and_deletes_it(console_url, new_page, world):
    page = new_page()
    sign_in(page, console_url, world["acc"].operator)
    page.goto(f"{console_url}/console/campaigns/{world['camp']}/sequence")
    step = page.get_by_test_id("step").nth(0)
    adding = step.get_by_test_id("new-variant")
    adding.locator("summary").click()
    page.evaluate("window.stillHere = true")  # gone if the page reloads
    adding.get_by_test_id("variant-label").fill("B")
    adding.get_by_test_id("variant-subject").fill("{{ company_name }} and us, {{ first_name }}?")
    body = adding.get_by_test_id("variant-body")
    body.fill("")
    body.press_sequentially("Hello {{ first_name }}, a shorter note.")
    preview = page.locator("#preview-1-new")
    expect(preview.get_by_test_id("body")).to_have_text("Hello First1, a shorter note.")
    expect(preview.get_by_test_id("subject")).to_have_text("Subject: Example Inc and us, First1?")
    assert page.evaluate("window.stillHere") is True
    adding.get_by_test_id("variant-save").click()
    expect(page.get_by_role("status")).to_have_text("step 1 variant B saved")
    variant = page.get_by_test_id("variant")
    expect(variant).to_have_count(1)
    expect(variant.get_by_test_id("variant-preview").get_by_test_id("body")).to_have_text("Hello First1, a shorter note.")
    shot(page, "variants")
    page.once("dialog", lambda d: d.accept())
    variant.get_by_test_id("variant-delete").click()
    expect(page.get_by_role("status")).to_have_text("step 1 variant B deleted")
    expect(page.get_by_test_id("variant")).to_have_count(0)
