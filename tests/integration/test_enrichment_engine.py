"""The enrichment engine on real Postgres with real HTTP providers (the sandbox server, pytest-httpserver)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from werkzeug import Response

from shared import workitems
from shared.engines.clients import billing
from shared.engines.enrichment import enrich_chunk
from devkit import sandbox
from shared.integrations.providers import build_providers
from shared.integrations.providers.base import LeadInput, ProviderResult
from shared.settings import Settings
from tests import factories

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox_url():
    with sandbox.serve(latency_ms=0, hit_rate=1.0, seed=1) as server:
        yield server.url


@pytest.fixture(scope="module")
def down_sandbox_url():
    with sandbox.serve(latency_ms=0, hit_rate=1.0, error_rate=1.0, seed=1) as server:
        yield server.url


def _settings(**kw) -> Settings:
    base = {"provider_max_retries": 0, "provider_timeout_seconds": 2.0, "lead_concurrency": 8}
    return Settings(**(base | kw))


def _batch(engine, n, *, credits=1000, max_attempts=3, campaign_status="active"):
    with engine.begin() as conn:
        c = factories.client(conn, credits=credits)
        camp = factories.campaign(conn, c, status=campaign_status)
        leads = factories.leads(conn, c, n, campaign_id=camp)
        b = factories.batch(conn, c, leads, campaign_id=camp, max_attempts=max_attempts)
    return c, b


def _claim(engine, b, n=10_000):
    with engine.begin() as conn:
        return [x.id for x in workitems.claim(conn, b, n)]


def _scalar(engine, sql, **params):
    with engine.begin() as conn:
        return conn.execute(text(sql), params).scalar()


def test_chunk_is_enriched_scored_charged_and_recorded(engine, sandbox_url):
    s = _settings(provider_order="heuristics,sandbox", sandbox_url=sandbox_url)
    client, b = _batch(engine, 20, credits=100)
    report = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert report.done == 20 and report.started == 20
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"DONE": 20}
        leads = conn.execute(text("SELECT status, enrichment, enrichment_provider, score, score_tier, "
                                  "score_breakdown FROM leads")).all()
        assert all(r.status == "enriched" and r.enrichment_provider == "sandbox" for r in leads), [(r.status, r.enrichment_provider) for r in leads if r.enrichment_provider != "sandbox"] + [tuple(x) for x in conn.execute(text("SELECT provider, outcome, error FROM enrichment_attempts WHERE outcome <> 'hit'"))]
        assert all(0 <= r.score <= 100 and r.score_tier and r.score_breakdown for r in leads)
        assert all(r.enrichment.get("industry") for r in leads)
        assert billing.balance(conn, client) == 80
        assert billing.spent(conn, batch_id=b) == 20
        outcomes = conn.execute(text("SELECT provider, outcome, count(*) FROM enrichment_attempts "
                                     "GROUP BY 1, 2 ORDER BY 1")).all()
        assert [tuple(r) for r in outcomes] == [("heuristics", "hit", 20), ("sandbox", "hit", 20)]


@pytest.mark.parametrize("change,reason", [
    ("UPDATE leads SET status = 'unsubscribed' WHERE id IN (SELECT min(id) FROM leads)", "unsubscribed"),
    ("UPDATE clients SET subscription_status = 'cancelled'", "subscription_inactive"),
    ("UPDATE campaigns SET status = 'paused'", "campaign_paused"),
])
def test_jit_change_after_queued_is_skipped_never_enriched_or_charged(engine, sandbox_url, change, reason):
    s = _settings(provider_order="heuristics,sandbox", sandbox_url=sandbox_url)
    client, b = _batch(engine, 5, credits=100)
    ids = _claim(engine, b)
    with engine.begin() as conn:
        conn.execute(text(change))  # happens while the items sit QUEUED
    enrich_chunk(ids, settings=s, engine=engine)
    with engine.begin() as conn:
        skipped = conn.execute(text("SELECT w.lead_id FROM work_items w WHERE status = 'SKIPPED' "
                                    "AND skip_reason = :r"), {"r": reason}).scalars().all()
        assert skipped
        assert conn.execute(text("SELECT count(*) FROM enrichment_attempts WHERE lead_id = ANY(:ids)"),
                            {"ids": skipped}).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM leads WHERE id = ANY(:ids) AND enrichment IS NOT NULL"),
                            {"ids": skipped}).scalar() == 0
        charged = conn.execute(text("SELECT count(*) FROM credit_ledger l JOIN work_items w ON w.id = l.work_item_id "
                                    "WHERE w.lead_id = ANY(:ids)"), {"ids": skipped}).scalar()
        assert charged == 0


def test_credits_run_out_mid_batch(engine, sandbox_url):
    s = _settings(provider_order="sandbox", sandbox_url=sandbox_url, lead_concurrency=6)
    client, b = _batch(engine, 30, credits=10)
    ids = _claim(engine, b)
    report = enrich_chunk(ids, settings=s, engine=engine)
    assert report.done == 10 and report.skipped == {"no_credits": 20}
    with engine.begin() as conn:
        assert billing.balance(conn, client) == 0
        assert billing.spent(conn, batch_id=b) == 10
        # each DONE item holds exactly one kept reservation; no item was charged twice
        per_item = conn.execute(text("SELECT work_item_id, -sum(delta) FROM credit_ledger WHERE work_item_id IS NOT NULL "
                                     "GROUP BY 1")).all()
        assert all(net in (0, 1) for _, net in per_item)
        assert conn.execute(text("SELECT count(*) FROM enrichment_attempts WHERE outcome = 'no_credits'")).scalar() == 20


def _hunter_settings(httpserver, sandbox_url, **kw):
    return _settings(provider_order="hunter,sandbox", hunter_api_key="test-key-123",
                     hunter_base_url=httpserver.url_for("").rstrip("/"), sandbox_url=sandbox_url, **kw)


def _sleepy(_request):
    time.sleep(1.0)
    return Response("{}", status=200, content_type="application/json")


@pytest.mark.parametrize("failure", ["429", "503", "timeout", "malformed", "401"])
def test_provider_failures_fall_through_to_the_next_provider(engine, sandbox_url, httpserver, failure):
    if failure == "429":
        httpserver.expect_request("/v2/email-finder").respond_with_json(
            {"errors": [{"id": "too_many_requests", "code": 429, "details": "slow down"}]}, status=429,
            headers={"Retry-After": "0"})
    elif failure == "503":
        httpserver.expect_request("/v2/email-finder").respond_with_data("upstream down", status=503)
    elif failure == "timeout":
        httpserver.expect_request("/v2/email-finder").respond_with_handler(_sleepy)
    elif failure == "malformed":
        httpserver.expect_request("/v2/email-finder").respond_with_data("<html>not json", status=200,
                                                                        content_type="application/json")
    else:
        httpserver.expect_request("/v2/email-finder").respond_with_json(
            {"errors": [{"id": "authentication_failed", "code": 401, "details": "No user found for the API key"}]},
            status=401)
    s = _hunter_settings(httpserver, sandbox_url, provider_timeout_seconds=0.3)
    client, b = _batch(engine, 3, credits=100)
    report = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert report.done == 3
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT provider, outcome FROM enrichment_attempts ORDER BY id")).all()
        assert {tuple(r) for r in rows} == {("hunter", "error"), ("sandbox", "hit")}
        assert conn.execute(text("SELECT count(DISTINCT enrichment_provider) FROM leads")).scalar() == 1
        # hunter was reserved then refunded; only the sandbox hit is kept
        assert billing.balance(conn, client) == 100 - 3
    assert "test-key-123" not in " ".join(
        str(e) for e in (_scalar(engine, "SELECT string_agg(coalesce(error, ''), ' ') FROM enrichment_attempts"),))


def test_hunter_hit_stops_the_waterfall(engine, sandbox_url, httpserver):
    httpserver.expect_request("/v2/email-finder").respond_with_json({
        "data": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "score": 97,
                 "domain": "example.com", "accept_all": False, "position": "VP Sales", "company": "Example Inc",
                 "linkedin_url": None, "phone_number": None, "sources": [],
                 "verification": {"date": "2026-11-01", "status": "valid"}},
        "meta": {"params": {"first_name": "Ada", "last_name": "Lovelace", "domain": "example.com"}},
    })
    s = _hunter_settings(httpserver, sandbox_url)
    client, b = _batch(engine, 2, credits=100)
    enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT DISTINCT enrichment_provider FROM leads")).scalars().all() == ["hunter"]
        assert conn.execute(text("SELECT count(*) FROM enrichment_attempts WHERE provider = 'sandbox'")).scalar() == 0


def test_every_provider_down_releases_for_retry_then_fails_at_max_attempts(engine, down_sandbox_url):
    s = _settings(provider_order="sandbox", sandbox_url=down_sandbox_url)
    client, b = _batch(engine, 4, credits=100, max_attempts=2)
    first = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert first.retried == 4
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"PENDING": 4}
    second = enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    assert second.retried == 0 and second.failed == 4  # out of attempts
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"FAILED": 4}
        assert "sandbox" in conn.execute(text("SELECT last_error FROM work_items LIMIT 1")).scalar()
        assert billing.balance(conn, client) == 100


class _Gate:
    """A provider that blocks until released: a worker that lost its lease while it waited."""

    name, cost, remote = "slow", 1, True

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def lookup_key(self, lead: LeadInput) -> str:
        return lead.email

    def enrich(self, lead: LeadInput) -> ProviderResult:
        self.entered.set()
        assert self.release.wait(30)
        return ProviderResult("hit", 0.99, {"industry": "Zombie"})


def test_stale_worker_is_fenced_and_its_charge_refunded(engine, sandbox_url):
    s = _settings(provider_order="sandbox", sandbox_url=sandbox_url, lead_concurrency=1)
    client, b = _batch(engine, 1, credits=100)
    ids = _claim(engine, b)
    gate = _Gate()
    zombie = threading.Thread(target=lambda: enrich_chunk(ids, settings=s, engine=engine, providers=[gate],
                                                          worker_id="zombie"))
    zombie.start()
    assert gate.entered.wait(10)
    with engine.begin() as conn:  # the zombie's lease runs out; recovery hands the item to someone else
        factories.expire(conn, ids)
        recovered = workitems.recover(conn, queue_timeout_seconds=600, batch_id=b)
        assert billing.refund(conn, recovered.abandoned, note="abandoned") == 1
    fresh = enrich_chunk(_claim(engine, b), settings=s, engine=engine, worker_id="fresh")
    assert fresh.done == 1
    gate.release.set()
    zombie.join(30)
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"DONE": 1}
        assert conn.execute(text("SELECT enrichment_provider FROM leads")).scalar() == "sandbox"
        assert conn.execute(text("SELECT enrichment ->> 'industry' FROM leads")).scalar() != "Zombie"
        assert billing.balance(conn, client) == 99  # charged once, by the attempt that finished
        assert conn.execute(text("SELECT count(*) FROM status_history WHERE to_status = 'DONE'")).scalar() == 1


def test_cached_result_is_reused_without_a_call_or_a_charge(engine, sandbox_url):
    s = _settings(provider_order="sandbox", sandbox_url=sandbox_url)
    client, b = _batch(engine, 5, credits=100)
    enrich_chunk(_claim(engine, b), settings=s, engine=engine)
    with engine.begin() as conn:
        leads = conn.execute(text("SELECT id FROM leads ORDER BY id")).scalars().all()
        conn.execute(text("UPDATE leads SET status = 'new', enriched_at = NULL"))
        b2 = factories.batch(conn, client, leads)
    report = enrich_chunk(_claim(engine, b2), settings=s, engine=engine)
    assert report.done == 5 and report.provider_calls == 0
    with engine.begin() as conn:
        assert billing.balance(conn, client) == 95
        assert conn.execute(text("SELECT count(*) FROM enrichment_attempts WHERE outcome = 'cache_hit'")).scalar() == 5


def test_build_providers_names_the_missing_setting():
    with pytest.raises(ValueError, match="HUNTER_API_KEY"):
        build_providers(Settings(provider_order="hunter"))


def test_a_slow_waterfall_renews_its_leases(engine):
    """With a lease shorter than the waterfall, the worker keeps its items between provider rounds."""
    s = _settings(provider_order="noop", lease_seconds=1)
    client, b = _batch(engine, 3, credits=100)
    ids = _claim(engine, b)
    leased: list[bool] = []

    class Slow:
        name, cost = "slow", 0

        def lookup_key(self, lead):
            return lead.email

        def enrich(self, lead):
            time.sleep(0.4)  # three leads in a row: longer than the whole 1 s lease
            return ProviderResult("hit", 0.1, {"note": "slow"})

    class Probe:
        """The next round looks at the item's lease in Postgres before it answers."""

        name, cost = "probe", 0

        def lookup_key(self, lead):
            return lead.email

        def enrich(self, lead):
            with engine.connect() as conn:
                leased.append(conn.execute(text("SELECT lease_until > now() FROM work_items WHERE lead_id = :l"),
                                           {"l": lead.lead_id}).scalar())
            return ProviderResult("hit", 0.9, {})

    report = enrich_chunk(ids, settings=s, engine=engine, providers=[Slow(), Probe()])
    assert report.done == 3
    assert leased == [True, True, True]
