"""The lead import page in headless Chromium: upload a CSV with bad rows, map its unknown email column,
watch the progress bar move without a reload, see the rejects and download them."""

from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from tests import factories
from tests.browser.conftest import shot, sign_in
from tests.console_helpers import accounts

pytestmark = pytest.mark.integration

ROWS = 20_000  # enough for the bar to be seen between empty and full (on_progress every 1,000 rows)
BAD_LINES = {2: "not-an-email", 7: "=HYPERLINK(\"x\")@evil.example", 12: ""}


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "Northwind Traders", credits=10)
        b = factories.client(conn, "Contoso", credits=10)
    return {"a": a, "acc": accounts(engine, a, b)}


@pytest.fixture
def leads_file(tmp_path):
    path = tmp_path / "trade show.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Contact", "Name", "Company"])
        for line in range(2, ROWS + 2):
            out.writerow([BAD_LINES.get(line, f"person{line}@northwind.example"), f"Person {line}", "Northwind"])
    return path


def test_operator_uploads_maps_watches_and_downloads_the_rejects(console_url, new_page, world, leads_file, engine):
    page = new_page()
    sign_in(page, console_url, world["acc"].operator)
    page.get_by_role("link", name="Import").click()
    form = page.get_by_test_id("upload-leads")
    form.get_by_label("Client").select_option(str(world["a"]))
    form.get_by_label("Campaign (optional)").fill("Trade show")
    form.get_by_label(re.compile("CSV file")).set_input_files(str(leads_file))
    form.get_by_role("button", name="Upload").click()

    mapping = page.get_by_test_id("column-map")
    expect(mapping).to_contain_text("Contact")
    expect(mapping.get_by_test_id("map-0")).to_have_value("-")  # not recognised: the operator names it
    expect(mapping.get_by_test_id("map-1")).to_have_value("full_name")
    mapping.get_by_test_id("map-0").select_option("email")
    mapping.get_by_test_id("start-import").click()

    job = page.get_by_test_id("import-job")
    page.evaluate("""() => {
        window.__sameDocument = 'yes';
        window.__seen = [];
        setInterval(() => {
            const bar = document.querySelector('[data-testid="import-progress"]');
            if (bar) window.__seen.push([bar.closest('[data-state]').dataset.state, bar.value, bar.max]);
        }, 50);
    }""")
    expect(page.locator('[data-testid="import-job"][data-state="done"]')).to_be_visible(timeout=120_000)
    assert page.evaluate("window.__sameDocument") == "yes"  # followed, not reloaded
    expect(page.get_by_test_id("recent-imports")).to_contain_text("done")
    seen = page.evaluate("window.__seen")
    assert any(state == "running" and 0 < value < ROWS for state, value, _max in seen), seen[:20]

    expect(job.locator('[data-count="imported"]')).to_have_text(str(ROWS - len(BAD_LINES)))
    expect(job.locator('[data-count="rejected"]')).to_have_text(str(len(BAD_LINES)))
    rejects = job.get_by_test_id("rejects")
    expect(rejects).to_contain_text("invalid email 'not-an-email': there is no @-sign")
    expect(rejects.locator("tbody tr").first.locator("td").first).to_have_text("2")
    shot(page, "imports")

    with page.expect_download() as download:
        job.get_by_test_id("download-rejects").click()
    assert download.value.suggested_filename == "trade-show.rejects.csv"
    with open(download.value.path(), encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "Contact", "Name", "Company"]
    assert [r[0] for r in rows[1:]] == ["2", "7", "12"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE client_id = :c"), {"c": world["a"]}).scalar() \
            == ROWS - len(BAD_LINES)
