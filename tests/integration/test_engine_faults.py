"""The engine under provider trouble, credit contention and slow calls: real Postgres, real local HTTP servers."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import pytest
from sqlalchemy import text
from werkzeug import Request, Response

from shared import workitems
from shared.emails import normalize_email
from shared.engines.clients import billing
from shared.engines.enrichment import enrich_chunk
from devkit import sandbox
from shared.integrations.providers import build_providers, close_providers
from shared.integrations.providers.base import LeadInput, ProviderResult
from shared.settings import Settings
from tests import factories

pytestmark = pytest.mark.integration

APOLLO_KEY = "apollo-faults-KEY-5d1e"


def _batch(engine, n, *, credits=0, max_attempts=3):
    with engine.begin() as conn:
        c = factories.client(conn, credits=0)
        if credits:
            billing.add_credits(conn, c, credits, key="topup-1")
        camp = factories.campaign(conn, c)
        leads = factories.leads(conn, c, n, campaign_id=camp)
        b = factories.batch(conn, c, leads, campaign_id=camp, max_attempts=max_attempts)
    return c, b


def _claim(engine, b, n=10_000):
    with engine.begin() as conn:
        return [x.id for x in workitems.claim(conn, b, n)]


def _ledger_matches_balance(conn, client_id) -> int:
    balance = billing.balance(conn, client_id)
    ledger = conn.execute(text("SELECT coalesce(sum(delta), 0) FROM credit_ledger WHERE client_id = :c"),
                          {"c": client_id}).scalar()
    assert balance == ledger >= 0
    return balance


# -- 7.4: transient paid-provider trouble releases the item -----------------------------------------


class _Apollo:
    """Apollo's People Enrichment shape; answers 503 for the emails in `down` while `healthy` is off."""

    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.healthy = False

    def __call__(self, request: Request) -> Response:
        email = json.loads(request.get_data())["email"]
        if not self.healthy and email in self.down:
            return Response(json.dumps({"error": "upstream unavailable"}), status=503, content_type="application/json")
        person = {"first_name": "Pat", "last_name": "Doe", "name": "Pat Doe", "title": "VP Sales", "email": email,
                  "email_status": "verified", "seniority": "vp", "departments": ["master_sales"],
                  "organization": {"name": "Example Inc", "primary_domain": "example.com",
                                   "estimated_num_employees": 120, "industry": "computer software"}}
        return Response(json.dumps({"person": person}), content_type="application/json")


def test_transient_paid_errors_release_the_item_and_a_healthy_retry_gets_paid_data(engine, httpserver):
    apollo = _Apollo(down={"person1@example.com", "person2@example.com"})
    httpserver.expect_request("/api/v1/people/match", method="POST").respond_with_handler(apollo)
    s = Settings(provider_order="heuristics,apollo", apollo_api_key=APOLLO_KEY,
                 apollo_base_url=httpserver.url_for("").rstrip("/"), provider_max_retries=0)
    client, b = _batch(engine, 5, credits=100)

    first = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert (first.done, first.retried) == (3, 2)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT l.email, w.status, w.last_error, l.status AS lead_status "
                                 "FROM work_items w JOIN leads l ON l.id = w.lead_id ORDER BY l.id")).all()
        by_email = {r.email: r for r in rows}
        for email in apollo.down:  # heuristics answered (below the threshold): not good enough to finish on
            assert by_email[email].status == "PENDING"
            assert "HTTP 503" in by_email[email].last_error
            assert by_email[email].lead_status == "new"
        assert {r.status for r in rows if r.email not in apollo.down} == {"DONE"}
        assert _ledger_matches_balance(conn, client) == 97  # only the three paid hits are charged

    apollo.healthy = True
    second = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert second.done == 2
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"DONE": 5}
        assert set(conn.execute(text("SELECT enrichment_provider FROM leads")).scalars()) == {"apollo"}
        assert set(conn.execute(text("SELECT status FROM leads")).scalars()) == {"enriched"}
        assert _ledger_matches_balance(conn, client) == 95


def test_transient_trouble_on_the_last_attempt_fails_and_leaves_the_lead_new(engine, httpserver):
    httpserver.expect_request("/api/v1/people/match").respond_with_data("bad gateway", status=502)
    s = Settings(provider_order="heuristics,apollo", apollo_api_key=APOLLO_KEY,
                 apollo_base_url=httpserver.url_for("").rstrip("/"), provider_max_retries=0)
    client, b = _batch(engine, 2, credits=10, max_attempts=1)
    report = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert report.failed == 2
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"FAILED": 2}
        assert all("HTTP 502" in e for e in conn.execute(text("SELECT last_error FROM work_items")).scalars())
        # The lead is not 'enriched': the next batch picks it up again.
        assert set(conn.execute(text("SELECT status FROM leads")).scalars()) == {"new"}
        assert _ledger_matches_balance(conn, client) == 10


def test_permanent_paid_errors_still_fall_through_to_free_data(engine, httpserver):
    httpserver.expect_request("/api/v1/people/match").respond_with_json({"error": "invalid key"}, status=401)
    s = Settings(provider_order="heuristics,apollo", apollo_api_key=APOLLO_KEY,
                 apollo_base_url=httpserver.url_for("").rstrip("/"), provider_max_retries=0)
    _, b = _batch(engine, 2, credits=10)
    assert enrich_chunk(_claim(engine, b), settings=s, engine=engine).done == 2
    with engine.begin() as conn:
        assert set(conn.execute(text("SELECT enrichment_provider FROM leads")).scalars()) == {"heuristics"}


# -- 7.5: skips never race refunds ---------------------------------------------------------------


def test_concurrent_chunks_never_skip_no_credits_while_credit_may_come_back(engine):
    """4 chunks of 50 at once, credits for exactly the hits: every hit is paid, none skipped no_credits."""
    seed, rate = 7, 0.7
    with sandbox.serve(latency_ms=80, hit_rate=rate, seed=seed) as server:
        with engine.begin() as conn:
            emails = [f"person{g}@example.com" for g in range(1, 201)]
        hits = sum(sandbox.is_hit(normalize_email(e), seed=seed, hit_rate=rate) for e in emails)
        client, b = _batch(engine, 200, credits=hits)
        chunks = [_claim(engine, b, 50) for _ in range(4)]
        s = Settings(provider_order="sandbox", sandbox_url=server.url, provider_max_retries=0, lead_concurrency=10)
        barrier = threading.Barrier(4)
        reports, errors = [], []

        def run(ids):
            barrier.wait()
            try:
                reports.append(enrich_chunk(ids, settings=s, engine=engine))
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(ids,)) for ids in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors
    with engine.begin() as conn:
        assert workitems.skip_reasons(conn, b) == {"no_provider_hit": 200 - hits}
        assert workitems.counts(conn, b) == {"DONE": hits, "SKIPPED": 200 - hits}
        assert _ledger_matches_balance(conn, client) == 0
        assert billing.spent(conn, batch_id=b) == hits


def test_a_lead_is_skipped_no_credits_once_nothing_is_in_flight(engine):
    with sandbox.serve(latency_ms=0, hit_rate=1.0, seed=1) as server:
        client, b = _batch(engine, 6, credits=4)
        s = Settings(provider_order="sandbox", sandbox_url=server.url, provider_max_retries=0)
        report = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert report.done == 4 and report.skipped == {"no_credits": 2}
    with engine.begin() as conn:
        assert _ledger_matches_balance(conn, client) == 0


# -- 7.8: leases are renewed while calls are in flight --------------------------------------------


def test_leases_are_renewed_while_a_slow_call_is_in_flight(engine):
    """A 1 s lease and a 2.5 s call: recovery, run over and over meanwhile, never takes the items."""
    with sandbox.serve(latency_ms=2500, hit_rate=1.0, seed=2) as server:
        client, b = _batch(engine, 3, credits=10)
        s = Settings(provider_order="sandbox", sandbox_url=server.url, provider_max_retries=0, lease_seconds=1,
                     provider_timeout_seconds=10)
        ids = _claim(engine, b)
        done = threading.Event()
        reports = []

        def run():
            try:
                reports.append(enrich_chunk(ids, settings=s, engine=engine))
            finally:
                done.set()

        worker = threading.Thread(target=run)
        worker.start()
        recovered, leased = [], []
        while not done.wait(0.2):
            with engine.begin() as conn:
                recovered += workitems.recover(conn, queue_timeout_seconds=600, batch_id=b).abandoned
                leased += conn.execute(text("SELECT bool_and(lease_until > now()) FROM work_items "
                                            "WHERE status = 'IN_PROGRESS'")).scalars().all()
        worker.join()
    assert recovered == []
    assert len(leased) >= 10 and all(v in (True, None) for v in leased)
    assert reports[0].done == 3
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"DONE": 3}
        assert _ledger_matches_balance(conn, client) == 7


# -- 11.3: secrets stay out of logs and last_error -------------------------------------------------


@pytest.mark.parametrize("key", ["hunter-k\u00e9y-0123456789abcdef", "hunter-key-\u200b0123456789abcdef"])
def test_an_exception_carrying_a_key_is_logged_and_stored_without_it(engine, caplog, key):
    class Broken:
        """What a non-ASCII key in a header did: every call raised UnicodeEncodeError holding the whole key."""

        name, cost, remote = "hunter", 1, True

        def lookup_key(self, lead: LeadInput) -> str:
            return lead.email

        def enrich(self, lead: LeadInput) -> ProviderResult:
            raise UnicodeEncodeError("ascii", key, 11, 12, "ordinal not in range(128)")

    s = Settings(hunter_api_key=key, provider_order="heuristics")
    _, b = _batch(engine, 2, credits=10)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(Exception) as info:
            enrich_chunk(_claim(engine, b), settings=s, engine=engine, providers=[Broken()])
    for text_ in (str(info.value), repr(info.value), caplog.text):
        assert key not in text_ and ascii(key)[1:-1] not in text_ and repr(key)[1:-1] not in text_
    assert "UnicodeEncodeError" in str(info.value)
    with engine.begin() as conn:
        errors = conn.execute(text("SELECT last_error FROM work_items")).scalars().all()
        history = " ".join(conn.execute(text("SELECT coalesce(detail, '') FROM status_history")).scalars())
        assert workitems.counts(conn, b) == {"PENDING": 2}
    assert all("internal error: UnicodeEncodeError" in e for e in errors)
    assert all(key not in e and ascii(key)[1:-1] not in e for e in errors + [history])


def test_personal_data_in_request_urls_stays_out_of_info_logs(httpserver, caplog):
    """Hunter's query string carries first and last names; no INFO line of ours or of the HTTP clients has them."""
    httpserver.expect_request("/v2/email-finder").respond_with_json({"data": None})
    httpserver.expect_request("/ping").respond_with_json({})
    s = Settings(provider_order="auto", hunter_api_key="hunter-log-KEY-1234",
                 hunter_base_url=httpserver.url_for("").rstrip("/"), provider_max_retries=0)
    with caplog.at_level(logging.INFO):
        providers = build_providers(s)
        try:
            assert [p.name for p in providers] == ["heuristics", "hunter"]
            providers[1].enrich(LeadInput(1, "zelda.quixote@example.com", "Zelda", "Quixote",
                                          company_domain="example.com"))
            httpx.get(httpserver.url_for("/ping"), params={"first_name": "Zelda", "last_name": "Quixote"})
        finally:
            close_providers(providers)
    ours = [r for r in caplog.records if r.name != "werkzeug"]  # werkzeug is the test server's own access log
    assert not [r.getMessage() for r in ours if "Zelda" in r.getMessage() or "Quixote" in r.getMessage()]
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


def test_credit_held_in_flight_too_long_releases_the_items_for_later(engine):
    """The deferred-credit wait gives up (releases) after CREDIT_WAIT_SECONDS when credit stays in flight."""
    with sandbox.serve(latency_ms=0, hit_rate=1.0, seed=4) as server:
        client, b = _batch(engine, 2, credits=1)
        other_client_batch = b
        # Another live attempt holds the only credit and never finishes within the wait.
        with engine.begin() as conn:
            holder = factories.batch(conn, client, factories.leads(conn, client, 1, domain="other.example"))
            [held] = [x.id for x in workitems.claim(conn, holder, 1)]
            workitems.start(conn, [held], worker_id="elsewhere", lease_seconds=600)
            assert billing.reserve(conn, client_id=client, item_id=held, attempt=1, provider="sandbox",
                                   cost=1) is billing.Reservation.RESERVED
        s = Settings(provider_order="sandbox", sandbox_url=server.url, provider_max_retries=0,
                     credit_wait_seconds=0.5)
        started = time.monotonic()
        report = enrich_chunk(_claim(engine, other_client_batch), settings=s, engine=engine)
    assert time.monotonic() - started >= 0.5
    # The credit in flight could come back for either lead: both wait, then go back for a later attempt.
    assert report.retried == 2 and report.skipped == {}
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"PENDING": 2}
        assert all("did not come back" in e for e in conn.execute(
            text("SELECT last_error FROM work_items WHERE batch_id = :b"), {"b": b}).scalars())
        assert _ledger_matches_balance(conn, client) == 0
