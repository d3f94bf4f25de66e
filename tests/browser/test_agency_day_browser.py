"""An operator's day across the console in headless Chromium, every part real: a campaign created,
leads imported from a CSV with bad rows, a three-step sequence written (a typo caught by the live
preview), a mailbox on a local SMTP server, activation refused and then accepted, an outreach pass
into the SMTP sink, a reply through the signed inbound webhook, the lead marked interested in the
inbox, and the campaign's analytics counting exactly that."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

import httpx
import pytest
from playwright.sync_api import expect

from orchestrator.flows.outreach import outreach_pass
from shared.engines.mailboxes import mailboxes
from tests import factories
from tests.browser.conftest import shot, sign_in
from tests.console_helpers import accounts
from tests.integration.test_outreach import sink  # noqa: F401  (fixture: the local SMTP sink)
from tests.replies_mail import WEBHOOK_SECRET, reply, standard_webhook

pytestmark = pytest.mark.integration

CAMPAIGN = "Northwind spring launch"
# Four good rows (the last without a company) and two the import rejects.
ROWS = [("ada@fabrikam.example", "Ada", "Fabrikam"), ("not-an-email", "Bob", "Fabrikam"),
        ("cy@tailspin.example", "Cy", "Tailspin"), ("", "Dee", "Tailspin"),
        ("eve@litware.example", "Eve", "Litware"), ("fay@adatum.example", "Fay", "")]
GOOD = [r for r in ROWS if "@" in r[0]]
FOLLOW_UPS = ("Just bumping this, {{ first_name }}.", "Last note from {{ sender_name }} to {{ company_name }}.")


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "Northwind Traders", credits=100)
        b = factories.client(conn, "Contoso", credits=100)
    return {"a": a, "acc": accounts(engine, a, b)}


@pytest.fixture
def leads_file(tmp_path):
    path = tmp_path / "northwind leads.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Email", "First name", "Company"])
        out.writerows(ROWS)
    return path


def _add_mailbox_through_the_engine(engine, client: int, port: int) -> int:
    """The mailbox on the test SMTP server, added as `outbound mailboxes add` does, warmed up, with no gap
    and no jitter so one outreach pass sends to every lead: the console's add form sets no jitter (its
    default spreads sends over minutes). Adding and testing a mailbox in the console is
    tests/browser/test_mailboxes_browser.py's walk."""
    with engine.begin() as conn:
        return mailboxes.add_mailbox(conn, client, from_address="nora@northwind.example", from_name="Nora Rep",
                                     smtp_host="127.0.0.1", smtp_port=port, tls_mode="none", daily_cap=50,
                                     min_gap_seconds=0, jitter_seconds=0,
                                     ramp_started_at=datetime.now(UTC) - timedelta(days=30))


def _open_campaign(page, base: str, campaign: int) -> None:
    """From anywhere: the Campaigns tab, then the campaign's name in the list."""
    page.get_by_role("link", name="Campaigns", exact=True).click()
    page.get_by_role("link", name=CAMPAIGN, exact=True).click()
    page.wait_for_url(f"{base}/console/campaigns/{campaign}")


def _create_campaign(page, base: str, client: int) -> int:
    page.get_by_role("link", name="Campaigns", exact=True).click()
    new = page.get_by_test_id("new-campaign")
    new.locator("summary").click()
    new.get_by_label("Client").select_option(str(client))
    new.get_by_label("Name").fill(CAMPAIGN)
    new.get_by_test_id("create").click()
    page.wait_for_url(re.compile(r"/console/campaigns/\d+\?notice="))
    return int(re.search(r"/campaigns/(\d+)", page.url).group(1))


def _send_every_day_all_day(page) -> None:
    schedule = page.get_by_test_id("schedule")
    for box in schedule.locator('input[type="checkbox"]').all():
        box.check()
    schedule.get_by_label("From").fill("0")
    schedule.get_by_label("until").fill("24")
    schedule.get_by_label("Zone for leads without one").fill("UTC")
    schedule.get_by_test_id("save-schedule").click()
    expect(page.get_by_role("status")).to_contain_text("sends on [1, 2, 3, 4, 5, 6, 7] 0:00-24:00 local")


def _import(page, client: int, leads_file) -> None:
    page.get_by_role("link", name="Import").click()
    form = page.get_by_test_id("upload-leads")
    form.get_by_label("Client").select_option(str(client))
    form.get_by_label("Campaign (optional)").fill(CAMPAIGN)
    form.get_by_label(re.compile("CSV file")).set_input_files(str(leads_file))
    form.get_by_role("button", name="Upload").click()
    mapping = page.get_by_test_id("column-map")
    expect(mapping.get_by_test_id("map-0")).to_have_value("email")
    mapping.get_by_test_id("start-import").click()
    job = page.locator('[data-testid="import-job"][data-state="done"]')
    expect(job).to_be_visible(timeout=60_000)
    expect(job.locator('[data-count="imported"]')).to_have_text(str(len(GOOD)))
    expect(job.locator('[data-count="rejected"]')).to_have_text(str(len(ROWS) - len(GOOD)))
    rejects = job.get_by_test_id("rejects")
    expect(rejects).to_contain_text("invalid email 'not-an-email': there is no @-sign")
    expect(rejects.locator("tbody tr")).to_have_count(2)


def _write_sequence(page) -> None:
    """Step 1 typed with a typo the live preview names, fixed before saving; then two follow-ups."""
    page.get_by_test_id("edit-sequence").click()
    page.wait_for_url("**/sequence")
    new = page.get_by_test_id("new-step")
    preview = new.get_by_test_id("preview")
    page.evaluate("window.stillHere = true")  # gone if the page reloads
    new.get_by_test_id("subject-input").fill("A short question, {{ first_name }}")
    body = new.get_by_test_id("body-input")
    body.press_sequentially("Hi {{ frist_name }}, would a short call help?")
    expect(preview.get_by_test_id("missing")).to_have_text("Not defined for this lead: frist_name")
    expect(preview.get_by_test_id("undefined")).to_have_text("{{ frist_name }}")
    body.fill("Hi {{ first_name }}, would a short call help?")
    body.press("End")
    expect(preview.get_by_test_id("body")).to_have_text("Hi Ada, would a short call help?")
    expect(preview.get_by_test_id("missing")).to_have_count(0)
    assert page.evaluate("window.stillHere") is True
    new.get_by_test_id("save").click()
    expect(page.get_by_role("status")).to_have_text("step 1 saved")
    for number, text in enumerate(FOLLOW_UPS, start=2):
        new = page.get_by_test_id("new-step")
        new.get_by_test_id("subject-input").fill("unused")
        new.get_by_test_id("body-input").fill(text)
        new.get_by_test_id("delay-input").fill("2")
        new.get_by_test_id("save").click()
        expect(page.get_by_role("status")).to_have_text(f"step {number} saved")
    expect(page.get_by_test_id("step")).to_have_count(3)


def _activate(page, base: str, campaign: int) -> None:
    """Refused first (Fay has no company for step 3: the report says so), accepted after step 3 gets a default."""
    page.get_by_role("heading", level=1).get_by_role("link", name=CAMPAIGN).click()  # the sequence page's title
    page.wait_for_url(f"{base}/console/campaigns/{campaign}")
    page.get_by_test_id("activate").click()
    report = page.get_by_test_id("activation-report")
    expect(report).to_contain_text("1 problem(s); nothing was sent")
    expect(report).to_contain_text("fay@adatum.example: step 3 needs {{ company_name }}")
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")
    page.get_by_test_id("edit-sequence").click()
    third = page.locator('[data-testid="step"][data-step="3"]')
    with_default = FOLLOW_UPS[1].replace("company_name", "company_name | default('your team')")
    third.get_by_test_id("body-input").fill(with_default)
    third.get_by_test_id("save").click()
    expect(page.get_by_role("status")).to_have_text("step 3 saved")
    page.get_by_role("heading", level=1).get_by_role("link", name=CAMPAIGN).click()
    page.wait_for_url(f"{base}/console/campaigns/{campaign}")
    page.get_by_test_id("activate").click()
    expect(page.get_by_role("status")).to_contain_text(f"campaign {CAMPAIGN} is active")
    expect(page.get_by_test_id("campaign-status")).to_have_text("active")


def _reply_through_the_webhook(base: str, sent) -> None:
    raw = reply(frm=parseaddr(sent["To"])[1], to=parseaddr(sent["From"])[1], subject=f"Re: {sent['Subject']}",
                in_reply_to=sent["Message-ID"], body="Yes, Tuesday at 3 works. Call me.")
    body, headers = standard_webhook(raw)
    answer = httpx.post(f"{base}/webhooks/inbound", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["duplicate"] is False


def _mark_interested(page, subject: str) -> None:
    page.get_by_role("link", name="Inbox").click()
    table = page.get_by_test_id("inbox")
    table.get_by_role("link", name=f"Re: {subject}").click()
    page.wait_for_url(re.compile(r"/console/inbox/\d+$"))
    expect(page.get_by_test_id("own-text")).to_have_text("Yes, Tuesday at 3 works. Call me.")
    page.get_by_test_id("mark").get_by_label("Note").fill("call Tuesday 3pm")
    page.get_by_role("button", name="Interested", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("ada@fabrikam.example: interested")
    expect(page.get_by_test_id("message-verdict")).to_have_text("interested")


def _analytics(page, base: str, campaign: int) -> None:
    _open_campaign(page, base, campaign)
    page.get_by_test_id("analytics-link").click()
    page.wait_for_url(re.compile(rf"/console/campaigns/{campaign}/analytics$"))
    total = page.get_by_test_id("analytics-table").locator('tr[data-row="total"]')
    for figure, value in (("sent", len(GOOD)), ("contacted", len(GOOD)), ("replied", 1), ("positive", 1),
                          ("bounced", 0)):
        expect(total.locator(f'[data-figure="{figure}"]')).to_have_text(str(value))


def test_an_operators_day_from_a_new_campaign_to_its_analytics(console_url, new_page, world, leads_file, sink, engine,
                                                                env):
    env(OUTREACH_SECRET="agency-day-secret", PUBLIC_BASE_URL="https://unsub.example.test",
        STANDARD_WEBHOOK_SECRET=WEBHOOK_SECRET)
    messages, port = sink
    page = new_page()
    sign_in(page, console_url, world["acc"].operator)
    campaign = _create_campaign(page, console_url, world["a"])
    _send_every_day_all_day(page)
    _import(page, world["a"], leads_file)
    _add_mailbox_through_the_engine(engine, world["a"], port)
    _open_campaign(page, console_url, campaign)
    _write_sequence(page)
    _activate(page, console_url, campaign)

    totals = outreach_pass.fn(datetime.now(UTC), True, campaign_id=campaign)  # the console has no button for it
    assert sorted(parseaddr(m["To"])[1] for _, _, m in messages.messages) == sorted(r[0] for r in GOOD), totals
    first = next(m for _, _, m in messages.messages if parseaddr(m["To"])[1] == "ada@fabrikam.example")
    assert first["Subject"] == "A short question, Ada"
    _reply_through_the_webhook(console_url, first)

    _mark_interested(page, first["Subject"])
    _analytics(page, console_url, campaign)
    shot(page, "agency-day")
