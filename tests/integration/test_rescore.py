"""Re-scoring a campaign on real Postgres: from stored enrichment, page by page, nothing else touched."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from shared.engines.leads.scoring import IcpConfig, load_icp, rescore_campaign, score_lead
from shared.errors import IcpError
from tests import factories

pytestmark = pytest.mark.integration

ICP = {
    "seniorities": ["vp", "c_level"],
    "departments": ["sales"],
    "industries": ["software"],
    "company_size": {"min": 50, "max": 1000},
    "countries": ["US"],
}
FIT = {"email_status": "valid", "seniority": "vp", "department": "sales", "industry": "software",
       "company_size": 200, "country": "US", "is_free_mail": False}
MISFIT = {"email_status": "invalid", "seniority": "entry", "department": "hr", "industry": "retail",
          "company_size": 5, "country": "FR", "is_free_mail": True}


def _enrich(conn, lead_ids, data):
    conn.execute(
        text("UPDATE leads SET enrichment = CAST(:e AS jsonb), status = 'enriched', enriched_at = now() "
             "WHERE id = ANY(:ids)"),
        {"e": json.dumps(data), "ids": list(lead_ids)},
    )


def _scores(conn, campaign_id):
    return conn.execute(
        text("SELECT id, email, title, country, enrichment, score, score_tier, score_breakdown, scored_at "
             "FROM leads WHERE campaign_id = :c ORDER BY id"),
        {"c": campaign_id},
    ).mappings().all()


def _setup(engine, n, icp=ICP):
    with engine.begin() as conn:
        client_id = factories.client(conn)
        campaign_id = factories.campaign(conn, client_id, icp=icp)
        ids = factories.leads(conn, client_id, n, campaign_id=campaign_id)
    return client_id, campaign_id, ids


def test_rescore_writes_what_score_lead_computes(engine):
    _, campaign_id, ids = _setup(engine, 30)
    with engine.begin() as conn:
        _enrich(conn, ids[:10], FIT)
        _enrich(conn, ids[10:20], MISFIT)
    assert rescore_campaign(engine, campaign_id) == 30
    icp = IcpConfig.parse(ICP)
    with engine.begin() as conn:
        rows = _scores(conn, campaign_id)
    for row in rows:
        expected = score_lead(row, row["enrichment"] or {}, icp)
        assert (row["score"], row["score_tier"]) == (expected.score, expected.tier)
        assert row["score_breakdown"] == expected.breakdown
        assert sum(s["points"] for s in row["score_breakdown"]["signals"]) == row["score"]
        assert row["scored_at"] is not None
    by_id = {r["id"]: r for r in rows}
    assert {by_id[i]["score_tier"] for i in ids[:10]} == {"A"}
    assert {by_id[i]["score_tier"] for i in ids[10:20]} == {"D"}


def test_leads_without_enrichment_are_scored_from_their_columns(engine):
    _, campaign_id, ids = _setup(engine, 3)
    assert rescore_campaign(engine, campaign_id) == 3
    with engine.begin() as conn:
        rows = _scores(conn, campaign_id)
    for row in rows:
        assert row["enrichment"] is None
        signals = {s["signal"]: s for s in row["score_breakdown"]["signals"]}
        # The factory's title is "VP Sales": seniority and department come from it.
        assert signals["seniority"]["reason"] == "seniority vp (from title) matches target"
        assert signals["department"]["points"] > 0
        assert signals["industry"]["reason"] == "industry unknown"
        assert row["score"] > 0


def test_rescore_pages_through_every_lead_and_only_that_campaign(engine):
    client_id, campaign_id, ids = _setup(engine, 23)
    with engine.begin() as conn:
        other = factories.campaign(conn, client_id, name="other", icp=ICP)
        other_ids = factories.leads(conn, client_id, 5, campaign_id=other, domain="other.com")
        loose = factories.leads(conn, client_id, 2, domain="loose.com")
        _enrich(conn, ids, FIT)
    assert rescore_campaign(engine, campaign_id, page_size=5) == 23
    with engine.begin() as conn:
        unscored = conn.execute(text("SELECT id FROM leads WHERE score IS NULL ORDER BY id")).scalars().all()
    assert unscored == sorted(other_ids + loose)


def test_rescore_applies_a_changed_icp_without_re_enriching(engine):
    _, campaign_id, ids = _setup(engine, 4)
    with engine.begin() as conn:
        _enrich(conn, ids, FIT)
    rescore_campaign(engine, campaign_id)
    with engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET icp = CAST(:i AS jsonb) WHERE id = :c"),
                     {"i": json.dumps({**ICP, "industries": ["banking"]}), "c": campaign_id})
        enriched_before = conn.execute(text("SELECT enriched_at FROM leads WHERE id = :i"), {"i": ids[0]}).scalar()
    assert rescore_campaign(engine, campaign_id) == 4
    with engine.begin() as conn:
        rows = _scores(conn, campaign_id)
        enriched_after = conn.execute(text("SELECT enriched_at FROM leads WHERE id = :i"), {"i": ids[0]}).scalar()
    assert enriched_after == enriched_before
    for row in rows:
        industry = next(s for s in row["score_breakdown"]["signals"] if s["signal"] == "industry")
        assert (industry["points"], industry["reason"]) == (0, "industry software is not a target")
        # 75 of the 90 configured weight points (title keywords sit out), scaled to 100.
        assert row["score"] == 83


def test_rescore_of_a_large_campaign_uses_several_pages(engine):
    _, campaign_id, ids = _setup(engine, 12_000)
    with engine.begin() as conn:
        _enrich(conn, ids[::2], FIT)
    assert rescore_campaign(engine, campaign_id) == 12_000
    with engine.begin() as conn:
        tiers = dict(conn.execute(
            text("SELECT score_tier, count(*) FROM leads WHERE campaign_id = :c GROUP BY score_tier"),
            {"c": campaign_id},
        ).all())
    assert sum(tiers.values()) == 12_000
    assert tiers["A"] >= 6_000


def test_empty_campaign_scores_nothing(engine):
    _, campaign_id, _ = _setup(engine, 0)
    assert rescore_campaign(engine, campaign_id) == 0


def test_missing_campaign_is_a_lookup_error(engine):
    with pytest.raises(LookupError, match="campaign 999"):
        rescore_campaign(engine, 999)


def test_invalid_stored_icp_is_refused_naming_the_field(engine):
    _, campaign_id, _ = _setup(engine, 2, icp={"industrys": ["software"]})
    with pytest.raises(IcpError, match="industrys"):
        rescore_campaign(engine, campaign_id)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE score IS NOT NULL")).scalar() == 0
        with pytest.raises(IcpError):
            load_icp(conn, campaign_id)
