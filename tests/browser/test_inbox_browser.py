"""The inbox in headless Chromium: an operator filters by class, opens a reply, unfolds its quoted history
(a <details> element, no script), marks the lead interested and sees the verdict on the message and in the story."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in
from tests.console_helpers import accounts
from tests.integration.test_inbox import _reply, mail, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

QUOTED = ("Tuesday at 3 works, call me on my mobile.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Rep <rep1@acme.test> wrote:\n"
          "> Hi First1,\n> would a short call help?\n")


def test_operator_filters_opens_a_reply_unfolds_the_quote_and_marks_the_lead(console_url, new_page, engine, world,
                                                                              mail):
    a = world["A"]
    send = a["sends"][a["leads"][0]]
    quoted = _reply(engine, send, body=QUOTED, message_id=f"<browser@{uuid.uuid4().hex}.test>").inbound_id
    acc = accounts(engine, a["client"], world["B"]["client"])
    page = new_page()
    sign_in(page, console_url, acc.operator)
    page.get_by_role("link", name="Inbox").click()
    page.wait_for_url(f"{console_url}/console/inbox")
    table = page.get_by_test_id("inbox")
    expect(table).to_contain_text("hard bounce")

    page.get_by_label("Class").select_option("human_reply")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/console/inbox\?kind=human_reply"))
    expect(table).not_to_contain_text("hard bounce")
    expect(table.locator("tbody tr")).to_have_count(4)  # the quoted reply, A's two, B's one

    table.locator(f'tr[data-id="{quoted}"]').get_by_role("link", name="Re: Hello").click()
    page.wait_for_url(f"{console_url}/console/inbox/{quoted}")
    expect(page.get_by_test_id("own-text")).to_have_text("Tuesday at 3 works, call me on my mobile.")
    history = page.get_by_test_id("quoted")
    expect(history.get_by_text("> would a short call help?")).to_be_hidden()  # folded
    history.locator("summary").click()
    expect(history.get_by_text("> would a short call help?")).to_be_visible()
    expect(page.get_by_test_id("message-facts")).to_contain_text("step 1 of seq")

    page.get_by_test_id("mark").get_by_label("Note").fill("call Tuesday 3pm")
    page.get_by_role("button", name="Interested", exact=True).click()
    page.wait_for_url(re.compile(rf"/console/inbox/{quoted}\?notice="))
    expect(page.get_by_role("status")).to_contain_text(f"lead {send['email']}: interested")
    expect(page.get_by_test_id("message-verdict")).to_have_text("interested")
    expect(page.get_by_test_id("verdict")).to_contain_text("interested by ops@agency.test")
    expect(page.get_by_test_id("verdict")).to_contain_text("call Tuesday 3pm")
    page.get_by_test_id("quoted").locator("summary").click()
    shot(page, "inbox")

    page.get_by_test_id("lead-link").click()
    page.wait_for_url(f"{console_url}/console/leads/{a['leads'][0]}")
    story = page.get_by_test_id("timeline")
    expect(story.locator('li[data-kind="verdict"]')).to_contain_text("Marked interested")
    expect(story.locator('li[data-kind="verdict"]')).to_contain_text("call Tuesday 3pm")
