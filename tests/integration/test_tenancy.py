"""Clients are tenants: Postgres refuses rows that join two clients, and nothing one client paid for
or wrote (cache entries, idempotency keys) reaches another (issue 11: cache leak, global top-up keys,
cross-tenant rows)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared import workitems
from shared.engines.clients import billing
from shared.engines.enrichment import enrich_chunk
from devkit import sandbox
from shared.settings import Settings
from tests import factories

pytestmark = pytest.mark.integration


@pytest.fixture
def two_tenants(engine):
    with engine.begin() as conn:
        a = factories.client(conn, "alpha", credits=100)
        b = factories.client(conn, "beta", credits=100)
        camp_a = factories.campaign(conn, a, "qa")
        camp_b = factories.campaign(conn, b, "qb")
        lead_a = factories.leads(conn, a, 1, campaign_id=camp_a, domain="a.example")[0]
        lead_b = factories.leads(conn, b, 1, campaign_id=camp_b, domain="b.example")[0]
        batch_b = factories.batch(conn, b, [lead_b], campaign_id=camp_b)
    return {"a": a, "b": b, "camp_a": camp_a, "camp_b": camp_b, "lead_a": lead_a, "lead_b": lead_b,
            "batch_b": batch_b}


CROSS_TENANT_WRITES = {
    "a work item in B's batch pointing at A's lead (claiming B)":
        "INSERT INTO work_items (batch_id, lead_id, client_id) VALUES (:batch_b, :lead_a, :b)",
    "a work item in B's batch pointing at A's lead (claiming A)":
        "INSERT INTO work_items (batch_id, lead_id, client_id) VALUES (:batch_b, :lead_a, :a)",
    "A's lead moved into B's campaign": "UPDATE leads SET campaign_id = :camp_b WHERE id = :lead_a",
    "a new lead of A in B's campaign":
        "INSERT INTO leads (client_id, campaign_id, email) VALUES (:a, :camp_b, 'x@a.example')",
    "A's batch with B's campaign": "INSERT INTO batches (client_id, campaign_id) VALUES (:a, :camp_b)",
    "B's batch handed to A": "UPDATE batches SET client_id = :a WHERE id = :batch_b",
    "a ledger row of A for B's work item":
        "INSERT INTO credit_ledger (client_id, delta, kind, idempotency_key, work_item_id) "
        "SELECT :a, 1, 'adjust', 'k', id FROM work_items WHERE batch_id = :batch_b",
    "an attempt row of A for B's work item":
        "INSERT INTO enrichment_attempts (client_id, work_item_id, lead_id, attempt, provider, outcome) "
        "SELECT :a, id, lead_id, 1, 'x', 'hit' FROM work_items WHERE batch_id = :batch_b",
}


@pytest.mark.parametrize("what", list(CROSS_TENANT_WRITES))
def test_the_database_refuses_cross_tenant_rows(engine, two_tenants, what):
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(CROSS_TENANT_WRITES[what]), two_tenants)


def test_deleting_a_campaign_only_clears_campaign_id(engine, two_tenants):
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM campaigns WHERE id = :camp_b"), two_tenants)
        lead = conn.execute(text("SELECT client_id, campaign_id FROM leads WHERE id = :lead_b"), two_tenants).one()
        batch = conn.execute(text("SELECT client_id, campaign_id FROM batches WHERE id = :batch_b"),
                             two_tenants).one()
    assert tuple(lead) == (two_tenants["b"], None)
    assert tuple(batch) == (two_tenants["b"], None)


def test_history_rows_carry_the_items_client(engine, two_tenants):
    with engine.begin() as conn:
        claimed = workitems.claim(conn, two_tenants["batch_b"], 10)
        started, _ = workitems.start(conn, [c.id for c in claimed], worker_id="t", lease_seconds=60)
        clients = set(conn.execute(text("SELECT client_id FROM status_history")).scalars())
    assert started[0].client_id == two_tenants["b"]
    assert clients == {two_tenants["b"]}


def test_top_up_keys_are_per_client(engine, two_tenants):
    with engine.begin() as conn:
        assert billing.add_credits(conn, two_tenants["a"], 50, key="pay-123")
        assert billing.add_credits(conn, two_tenants["b"], 70, key="pay-123")  # B's own payment, same id
        assert not billing.add_credits(conn, two_tenants["a"], 50, key="pay-123")  # A's repeat: once
        assert billing.balance(conn, two_tenants["a"]) == 150
        assert billing.balance(conn, two_tenants["b"]) == 170


def test_one_clients_paid_answers_never_answer_another_client(engine):
    """Two clients import the same email with different titles: B pays for its own lookup and keeps its own data."""
    with engine.begin() as conn:
        a, b = factories.client(conn, "alpha", credits=10), factories.client(conn, "beta", credits=10)
        batches = {}
        for client, title in ((a, "CEO"), (b, "Intern")):
            lead = conn.execute(text("INSERT INTO leads (client_id, email, first_name, last_name, title, company_name, "
                                     "company_domain) VALUES (:c, 'same.person@shared.example', 'Sam', 'Person', :t, "
                                     "'Shared Inc', 'shared.example') RETURNING id"), {"c": client, "t": title}).scalar()
            batches[client] = factories.batch(conn, client, [lead])
    with sandbox.serve(latency_ms=0, hit_rate=1.0, seed=3) as server:
        settings = Settings(provider_order="sandbox", sandbox_url=server.url, provider_max_retries=0)
        for client in (a, b):
            with engine.begin() as conn:
                ids = [c.id for c in workitems.claim(conn, batches[client], 10)]
            assert enrich_chunk(ids, settings=settings, engine=engine).done == 1
    with engine.begin() as conn:
        outcomes = dict(conn.execute(text("SELECT client_id, string_agg(outcome, ',') FROM enrichment_attempts "
                                          "GROUP BY client_id")).all())
        titles = dict(conn.execute(text("SELECT client_id, enrichment ->> 'title' FROM leads")).all())
        assert outcomes == {a: "hit", b: "hit"}  # no cache_hit across tenants
        assert billing.balance(conn, a) == 9 and billing.balance(conn, b) == 9  # each paid for its own lookup
        assert titles[b] == "Intern"  # the sandbox echoes the title it was given: B's, not A's "CEO"
        assert set(conn.execute(text("SELECT client_id FROM enrichment_cache")).scalars()) == {a, b}
