"""The sequence editor in headless Chromium: an operator writes three steps, the live preview names a
mistyped variable as it is typed (no reload), the fix clears it, two steps are reordered, and the
follow-up's subject shows as it is sent (step 1's, with `Re:`)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

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
    return {"camp": camp, "acc": accounts(engine, a, b)}


def _add(page, subject: str, body: str) -> None:
    new = page.get_by_test_id("new-step")
    new.get_by_test_id("subject-input").fill(subject)
    new.get_by_test_id("body-input").fill(body)
    new.get_by_test_id("save").click()
    page.wait_for_load_state()


def test_operator_writes_fixes_reorders_and_sees_the_follow_up_subject(console_url, new_page, world):
    page = new_page()
    sign_in(page, console_url, world["acc"].operator)
    page.goto(f"{console_url}/console/campaigns/{world['camp']}")
    page.get_by_test_id("edit-sequence").click()
    page.wait_for_url(f"**/campaigns/{world['camp']}/sequence")

    new = page.get_by_test_id("new-step")
    preview = new.get_by_test_id("preview")
    page.evaluate("window.stillHere = true")  # gone if the page reloads
    new.get_by_test_id("subject-input").fill("Quick question, {{ first_name }}")
    new.get_by_test_id("body-input").press_sequentially("Hi {{ frist_name }}, how is {{ company_name }}?")
    expect(preview.get_by_test_id("missing")).to_have_text("Not defined for this lead: frist_name")
    expect(preview.get_by_test_id("undefined")).to_have_text("{{ frist_name }}")
    expect(preview.get_by_test_id("problem")).to_contain_text("step 1 needs {{ frist_name }}")
    expect(preview.get_by_test_id("subject")).to_have_text("Subject: Quick question, First1")
    body = new.get_by_test_id("body-input")
    body.fill("Hi {{ first_name }}, how is {{ company_name }}?")
    body.press("End")  # fill() sets the value; a keystroke is what an operator's fix ends with
    expect(preview.get_by_test_id("body")).to_have_text("Hi First1, how is Example Inc?")
    expect(preview.get_by_test_id("missing")).to_have_count(0)
    assert page.evaluate("window.stillHere") is True
    new.get_by_test_id("save").click()
    page.wait_for_load_state()

    _add(page, "unused", "Just bumping this, {{ first_name }}.")
    _add(page, "unused", "Last one from {{ sender_name }}.")
    steps = page.get_by_test_id("step")
    expect(steps).to_have_count(3)
    steps.nth(1).get_by_test_id("move-down").click()  # the last note goes second
    expect(page.get_by_role("status")).to_have_text("step 2 is now step 3")
    second = page.get_by_test_id("step").nth(1).get_by_test_id("preview")
    expect(second.get_by_test_id("body")).to_have_text("Last one from Rita Rep.")
    expect(page.get_by_test_id("step").nth(2).get_by_test_id("body")).to_have_text("Just bumping this, First1.")
    expect(second.get_by_test_id("subject")).to_have_text("Subject: Re: Quick question, First1")

    page.evaluate("window.stillHere = true")
    first_subject = page.get_by_test_id("step").nth(0).get_by_test_id("subject-input")
    first_subject.fill("Hello {{ first_name }}")
    first_subject.press("End")
    expect(second.get_by_test_id("subject")).to_have_text("Subject: Re: Hello First1")  # follow-ups follow step 1
    new = page.get_by_test_id("new-step")
    new.get_by_test_id("body-input").press_sequentially("P.S. {{ compnay_name }} is hiring.")
    expect(new.get_by_test_id("undefined")).to_have_text("{{ compnay_name }}")
    assert page.evaluate("window.stillHere") is True
    shot(page, "sequence")
    page.get_by_test_id("preview-lead").select_option(label="person2@alpha.example (First2 Last2)")
    expect(second.get_by_test_id("subject")).to_have_text("Subject: Re: Hello First2")  # another lead, live
    assert page.evaluate("window.stillHere") is True
