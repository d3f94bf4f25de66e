"""The campaign analytics page over HTTP against the real app and Postgres: every number is the engine's
(`analytics.campaign_stats` / `daily`) for a campaign with known outcomes, tenancy, and bad input."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from shared import db
from shared.engines.campaigns import analytics
from tests.campaign_outcomes import EXPECTED_TOTALS, into_recent_days, known_outcomes
from tests.console_helpers import SECRET, accounts, sign_in
from web.app import create_app

pytestmark = pytest.mark.integration

ROW = re.compile(r'<tr data-row="([^"]+)"[^>]*>(.*?)</tr>', re.S)
CELL = re.compile(r'<td data-figure="([^"]+)">([^<]*)</td>')
SEGMENT = re.compile(r'<rect class="seg"[^>]* data-day="([^"]+)" data-series="([^"]+)" data-count="(\d+)"')


@pytest.fixture
def world(engine):
    with engine.begin() as conn:
        a, camp_a = known_outcomes(conn, "alpha")
        b, camp_b = known_outcomes(conn, "bravo")
        d0 = into_recent_days(conn)
        other = conn.execute(text("SELECT id FROM campaigns WHERE client_id = :a AND name = 'other'"),
                             {"a": a}).scalar_one()
    return {"camp_a": camp_a, "camp_b": camp_b, "other": other, "d0": d0, "acc": accounts(engine, a, b)}


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


def _client(app, email) -> TestClient:
    c = TestClient(app, base_url="http://testserver", follow_redirects=False)
    assert sign_in(c, email).status_code == 303
    return c


def _table(page: str) -> dict[str, dict[str, str]]:
    return {label: dict(CELL.findall(cells)) for label, cells in ROW.findall(page)}


def _as_shown(row: dict) -> dict[str, str]:
    """A stats row as the page (and the CLI) prints it."""
    return {c: str(row[c]) for c in analytics.TABLE_COUNTS} | \
        {r: analytics.percent(row["rates"][r]) for r in analytics.TABLE_RATES}


def test_every_number_on_the_page_is_the_engines(app, engine, world):
    camp = world["camp_a"]
    c = _client(app, world["acc"].operator)
    campaign_page = c.get(f"/console/campaigns/{camp}")
    assert f'href="/console/campaigns/{camp}/analytics"' in campaign_page.text
    page = c.get(f"/console/campaigns/{camp}/analytics?days=366")
    assert page.status_code == 200, page.text
    with db.transaction(engine) as conn:
        stats = analytics.campaign_stats(conn, camp)
        series = analytics.daily(conn, camp, 366, tz=stats.timezone)
    assert stats is not None and series is not None and stats.totals == EXPECTED_TOTALS
    shown = _table(page.text)
    assert list(shown) == ["1", "1 A", "1 B", "2", "3", "4", "total"]  # step 1's A/B variants under it
    assert shown == {label: _as_shown(row) for label, row in stats.table()}
    assert shown["1 B"] == _as_shown(stats.steps[0]["variants"][1]) and shown["1 B"]["unsubscribed"] == "2"
    assert shown["total"]["reply_rate"] == "25.0 %" and shown["4"]["bounce_rate"] == "-"  # as the CLI prints them
    # The chart: one bar per (day, series) with a count, the engine's daily series in the fallback timezone.
    want = {(d["day"].isoformat(), s): d[s] for d in series for s in ("sent", "replied", "bounced") if d[s]}
    assert {(day, s): int(n) for day, s, n in SEGMENT.findall(page.text)} == want
    assert sum(want.values()) > 0 and "day (America/New_York)" in page.text
    assert len(re.findall(r'<tr data-day="', page.text)) == 366
    assert "style=" not in page.text and "<script>" not in page.text


def test_the_day_range_and_timezone_choose_the_series(app, engine, world):
    camp = world["camp_a"]
    c = _client(app, world["acc"].operator)
    default = c.get(f"/console/campaigns/{camp}/analytics")
    assert default.status_code == 200 and len(re.findall(r'<tr data-day="', default.text)) == 30
    week = c.get(f"/console/campaigns/{camp}/analytics", params={"days": "7", "tz": "Europe/Berlin"})
    assert week.status_code == 200 and len(re.findall(r'<tr data-day="', week.text)) == 7
    assert "day (Europe/Berlin)" in week.text and 'value="Europe/Berlin"' in week.text
    assert 'href="/console/campaigns/%d/analytics?days=30&amp;tz=Europe/Berlin"' % camp in week.text


def test_the_local_calendar_moves_a_late_send_to_the_day_before(app, engine, world):
    """Step 3 went out at 03:00 UTC on day 4: 22:00 on day 3 in New York, the fallback timezone."""
    camp = world["camp_a"]
    c = _client(app, world["acc"].operator)
    ny = dict(((d, s), int(n)) for d, s, n in SEGMENT.findall(c.get(
        f"/console/campaigns/{camp}/analytics?days=30").text))
    utc = dict(((d, s), int(n)) for d, s, n in SEGMENT.findall(c.get(
        f"/console/campaigns/{camp}/analytics?days=30&tz=UTC").text))
    d0 = world["d0"]
    late_ny, late_utc = (d0 + timedelta(days=3)).date().isoformat(), (d0 + timedelta(days=4)).date().isoformat()
    assert ny.get((late_ny, "sent")) == 2 and (late_utc, "sent") not in ny
    assert utc.get((late_utc, "sent")) == 2 and (late_ny, "sent") not in utc


def test_a_viewer_sees_its_own_campaign_and_another_clients_is_not_found(app, world):
    a = _client(app, world["acc"].viewer_a)
    own = a.get(f"/console/campaigns/{world['camp_a']}/analytics")
    assert own.status_code == 200 and _table(own.text)["total"] == _as_shown(EXPECTED_TOTALS)
    foreign = a.get(f"/console/campaigns/{world['camp_b']}/analytics")
    assert foreign.status_code == 404 and "Not found (or not yours)." in foreign.text
    assert "bravo" not in foreign.text
    missing = a.get("/console/campaigns/99999999/analytics")
    assert missing.status_code == 404 and missing.text == foreign.text
    b = _client(app, world["acc"].viewer_b)
    assert b.get(f"/console/campaigns/{world['camp_a']}/analytics").status_code == 404
    assert b.get(f"/console/campaigns/{world['camp_b']}/analytics").status_code == 200


@pytest.mark.parametrize(("query", "message"), [
    ({"days": "0"}, "days must be between 1 and 366, not 0"),
    ({"days": "367"}, "days must be between 1 and 366, not 367"),
    ({"days": "-5"}, "days must be between 1 and 366, not -5"),
    ({"days": "a week"}, "days must be between 1 and 366, not &#39;a week&#39;"),
    ({"days": "9" * 400}, "days must be between 1 and 366, not"),
    ({"tz": "Mars/Olympus"}, "unknown timezone &#39;Mars/Olympus&#39; (an IANA name, e.g. Europe/Berlin)"),
    ({"tz": "../../etc/passwd"}, "unknown timezone"),
    ({"tz": "Europe/Berlin\x00"}, "unknown timezone"),
    ({"tz": "localtime"}, "unknown timezone"),  # files of the zoneinfo directory that Postgres does not know
    ({"tz": "posix/Europe/Berlin"}, "unknown timezone"),
    ({"tz": "right/UTC"}, "unknown timezone"),
])
def test_bad_days_or_timezone_is_named_on_the_page_and_the_table_stays(app, world, query, message):
    c = _client(app, world["acc"].operator)
    page = c.get(f"/console/campaigns/{world['camp_a']}/analytics", params=query)
    assert page.status_code == 400, page.text
    assert 'data-testid="analytics-error"' in page.text and message in page.text
    assert _table(page.text)["total"] == _as_shown(EXPECTED_TOTALS) and "<svg" not in page.text


def test_a_campaign_without_sequence_or_sends_shows_zeros_and_dashes(app, engine, world):
    c = _client(app, world["acc"].operator)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM inbound_messages WHERE campaign_id = :c"), {"c": world["other"]})
        conn.execute(text("DELETE FROM messages WHERE campaign_id = :c"), {"c": world["other"]})
    page = c.get(f"/console/campaigns/{world['other']}/analytics")
    assert page.status_code == 200
    total = _table(page.text)["total"]
    assert {total[k] for k in analytics.TABLE_COUNTS} == {"0"} and {total[r] for r in analytics.TABLE_RATES} == {"-"}
    assert SEGMENT.findall(page.text) == []


def test_the_campaign_list_and_page_show_the_analytics_figures(app, world):
    """One definition of sent / replied / bounced: the list's own query counted L7's copy of our own mail
    (`ingest.OURS`) as a reply (3); analytics does not (2)."""
    c = _client(app, world["acc"].operator)
    listing = c.get("/console/campaigns").text
    row = listing.split(f'<tr data-campaign="{world["camp_a"]}">')[1].split("</tr>")[0]
    assert re.findall(r"<td>(\d+)</td>", row)[-3:] == [str(EXPECTED_TOTALS[k]) for k in ("sent", "replied", "bounced")]
    page = c.get(f"/console/campaigns/{world['camp_a']}").text
    assert "sent 15 · replied 2 · bounced 1" in page
