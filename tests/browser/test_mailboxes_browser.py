"""The mailbox forms in headless Chromium: an operator adds a mailbox on the local SMTP server (naming its
password's Secret, never typing the password), tests the connection, reads the server's answer line by line,
then changes the cap and sees it saved."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from devkit.smtp_sink import smtp_sink
from tests import factories
from tests.browser.conftest import shot, sign_in
from tests.console_helpers import accounts

pytestmark = pytest.mark.integration

PASSWORD = "browser-smtp-pass"


@pytest.fixture
def world(engine, env):
    env(MAILBOX_RITA_PASSWORD=PASSWORD)
    with engine.begin() as conn:
        a = factories.client(conn, "alpha")
        b = factories.client(conn, "bravo")
    return {"a": a, "acc": accounts(engine, a, b)}


def test_operator_adds_tests_and_edits_a_mailbox(console_url, new_page, world):
    with smtp_sink(password=PASSWORD) as (sink, port):
        page = new_page()
        sign_in(page, console_url, world["acc"].operator)
        page.get_by_role("link", name="Mailboxes").click()
        page.wait_for_url(f"{console_url}/console/mailboxes")
        add = page.get_by_test_id("add-mailbox")
        expect(add.locator('input[type="password"]')).to_have_count(0)
        add.get_by_label("Client").select_option(label="alpha")
        add.get_by_label("From address").fill("rita@alpha.example")
        add.get_by_label("SMTP host").fill("127.0.0.1")
        add.locator("[name=smtp_port]").fill(str(port))
        add.locator("[name=tls_mode]").select_option("none")
        add.get_by_label("Username").fill("rita")
        add.get_by_label("Secret name").fill("MAILBOX_RITA_PASSWORD")
        add.get_by_label("Daily cap").fill("30")
        add.get_by_role("button", name="Add").click()
        page.wait_for_url(re.compile(r"/console/mailboxes/\d+\?notice="))
        expect(page.get_by_role("status")).to_contain_text("mailbox rita@alpha.example")
        expect(page.get_by_test_id("mailboxes")).to_contain_text("rita@alpha.example")

        page.get_by_role("button", name="Test connection").click()
        probe = page.get_by_test_id("probe")
        expect(probe).to_have_attribute("data-ok", "yes")
        expect(probe).to_contain_text("connect: 220")
        expect(probe).to_contain_text("AUTH: 235 2.7.0 Authentication successful")
        expect(probe).not_to_contain_text(PASSWORD)
        shot(page, "mailboxes")

        edit = page.get_by_test_id("edit-mailbox")
        edit.get_by_label("Daily cap").fill("45")
        edit.get_by_role("button", name="Save").click()
        page.wait_for_url(re.compile(r"\?notice="))
        expect(page.get_by_role("status")).to_contain_text("saved")
        expect(page.get_by_test_id("usage")).to_contain_text("/ 45")
        assert not sink.messages  # a connection test sends nothing
