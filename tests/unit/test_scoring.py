"""Lead scoring as pure rules: fit and penalties, explainable breakdowns, ICP validation, bounds."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import IcpError
from shared.lead_rules import classify_title, is_free_mail
from shared.engines.leads.scoring import IcpConfig, ScoreResult, score_lead
from shared.integrations.providers.base import LeadInput
from shared.integrations.providers.heuristics import HeuristicsProvider

ICP = IcpConfig.parse({
    "seniorities": ["vp", "c_level"],
    "departments": ["sales"],
    "title_keywords": ["sales", "revenue"],
    "industries": ["software"],
    "company_size": {"min": 50, "max": 1000},
    "countries": ["US", "GB"],
})

PERFECT_LEAD = {"email": "jane@acme.io", "title": "VP Sales", "country": "US"}
PERFECT_ENRICHMENT = {
    "email_status": "valid", "is_free_mail": False, "is_disposable": False, "is_role_address": False,
    "title": "VP Sales", "seniority": "vp", "department": "sales", "company_size": 200,
    "industry": "Computer Software", "country": "United States",
}


def _signals(result: ScoreResult) -> dict[str, dict]:
    return {s["signal"]: s for s in result.breakdown["signals"]}


def _assert_consistent(result: ScoreResult) -> None:
    assert isinstance(result.score, int)
    assert 0 <= result.score <= 100
    assert sum(s["points"] for s in result.breakdown["signals"]) == result.score
    assert result.breakdown["score"] == result.score
    assert result.breakdown["tier"] == result.tier
    for entry in result.breakdown["signals"]:
        assert entry["reason"], entry
    json.dumps(result.breakdown)  # it is stored as JSONB


def test_perfect_fit_scores_a():
    result = score_lead(PERFECT_LEAD, PERFECT_ENRICHMENT, ICP)
    assert (result.score, result.tier) == (100, "A")
    _assert_consistent(result)
    signals = _signals(result)
    assert signals["seniority"]["reason"] == "seniority vp matches target"
    assert signals["seniority"]["weight"] == 25
    assert signals["seniority"]["points"] == 25
    assert signals["industry"]["reason"] == "industry computer software matches target"


def test_poor_fit_scores_d():
    lead = {"email": "info@gmail.com", "title": "Marketing Intern", "country": "FR"}
    enrichment = {"email_status": "risky", "seniority": "entry", "department": "marketing", "company_size": 40,
                  "industry": "Retail", "country": "France"}
    result = score_lead(lead, enrichment, ICP)
    assert result.tier == "D"
    assert result.score < 40
    _assert_consistent(result)
    assert _signals(result)["company_size"]["reason"] == "company size 40 below min 50"


def test_breakdown_sums_to_score_for_partial_fit():
    enrichment = {**PERFECT_ENRICHMENT, "seniority": "director", "industry": None, "email_status": "unknown"}
    result = score_lead(PERFECT_LEAD, enrichment, ICP)
    _assert_consistent(result)
    signals = _signals(result)
    # Exact shares 12.5 (one level from target) and 2.5 (unverified) round to a total of 65; the
    # leftover point goes to the earlier signal.
    assert signals["seniority"]["points"] == 13
    assert signals["email_status"]["points"] == 2
    assert signals["industry"]["points"] == 0
    assert signals["industry"]["reason"] == "industry unknown"
    assert result.score == 65


def test_free_mail_penalty():
    company = score_lead(PERFECT_LEAD, {**PERFECT_ENRICHMENT, "is_free_mail": False}, ICP)
    free = score_lead(PERFECT_LEAD, {**PERFECT_ENRICHMENT, "is_free_mail": True}, ICP)
    assert company.score - free.score == 15
    entry = _signals(free)["free_mail"]
    assert entry["points"] == -15
    assert entry["reason"] == "free-mail address \u221215"
    _assert_consistent(free)


def test_free_mail_detected_from_the_address_without_enrichment():
    result = score_lead({"email": "jane@gmail.com", "title": "VP Sales"}, {}, ICP)
    assert _signals(result)["free_mail"]["points"] == -15


def test_free_mail_allowed_when_icp_says_so():
    icp = IcpConfig.parse({"seniorities": ["vp"], "exclude_free_mail": False})
    result = score_lead(PERFECT_LEAD, {**PERFECT_ENRICHMENT, "is_free_mail": True}, icp)
    assert _signals(result)["free_mail"]["points"] == 0
    assert result.score == 100


def test_penalties_floor_at_zero_and_say_so():
    lead = {"email": "info@mailinator.com"}
    enrichment = {"email_status": "invalid", "is_free_mail": True, "is_disposable": True, "is_role_address": True}
    result = score_lead(lead, enrichment, ICP)
    assert result.score == 0
    assert _signals(result)["floor"]["points"] > 0
    _assert_consistent(result)


def test_lead_without_enrichment_is_scored_from_its_columns():
    result = score_lead({"email": "pat@example.com", "title": "VP Sales", "country": "United Kingdom"}, {}, ICP)
    signals = _signals(result)
    assert signals["seniority"]["reason"] == "seniority vp (from title) matches target"
    assert signals["department"]["points"] == 15
    assert signals["title_keywords"]["reason"] == "title contains 'sales'"
    assert signals["country"]["reason"] == "country GB matches target"
    assert signals["company_size"]["reason"] == "company size unknown"
    _assert_consistent(result)


def test_missing_data_never_errors():
    for lead, enrichment in [({}, {}), ({"email": None, "title": None}, None), ({"email": "bad"}, {"company_size": "n/a"})]:
        result = score_lead(lead, enrichment, ICP)
        _assert_consistent(result)


def test_unconfigured_signals_sit_out_and_the_rest_scale_to_100():
    icp = IcpConfig.parse({"seniorities": ["vp"], "industries": ["software"]})
    result = score_lead(PERFECT_LEAD, PERFECT_ENRICHMENT, icp)
    assert result.score == 100
    signals = _signals(result)
    assert signals["country"]["points"] == 0
    assert "not scored" in signals["country"]["reason"]
    _assert_consistent(result)


def test_company_size_band_strings_are_understood():
    for raw, points in [("51-200", 15), ("10,000+", 0), ("20", 0), (75.0, 15), (True, 0)]:
        result = score_lead(PERFECT_LEAD, {**PERFECT_ENRICHMENT, "company_size": raw}, ICP)
        assert _signals(result)["company_size"]["points"] == points, raw


def test_tier_thresholds_come_from_the_icp():
    icp = IcpConfig.parse({"tiers": {"A": 95, "B": 90, "C": 85}})
    assert [icp.tier_for(s) for s in (95, 94, 85, 84)] == ["A", "B", "C", "D"]
    default = IcpConfig()
    assert [default.tier_for(s) for s in (80, 79, 60, 59, 40, 39)] == ["A", "B", "B", "C", "C", "D"]


def test_scoring_is_deterministic():
    assert score_lead(PERFECT_LEAD, PERFECT_ENRICHMENT, ICP) == score_lead(PERFECT_LEAD, PERFECT_ENRICHMENT, ICP)


def test_defaults():
    icp = IcpConfig.parse(None)
    assert icp == IcpConfig.parse({})
    assert icp.seniorities == ["c_level", "vp", "director"]
    assert (icp.tiers.A, icp.tiers.B, icp.tiers.C) == (80, 60, 40)
    assert icp.exclude_free_mail and icp.exclude_role_addresses and icp.exclude_disposable


@pytest.mark.parametrize(("raw", "field"), [
    ({"industrys": ["software"]}, "industrys"),
    ({"weights": {"senority": 10}}, "weights.senority"),
    ({"company_size": {"min": "many"}}, "company_size.min"),
    ({"company_size": {"min": 500, "max": 50}}, "company_size"),
    ({"seniorities": ["boss"]}, "seniorities.0"),
    ({"tiers": {"A": 50}}, "tiers"),
])
def test_invalid_icp_names_the_field(raw, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as info:
        IcpConfig.parse(raw)
    assert isinstance(info.value, IcpError)
    assert field in info.value.fields


def test_unknown_field_suggests_the_close_one():
    with pytest.raises(IcpError, match="did you mean 'industries'"):
        IcpConfig.parse({"industrys": []})


def test_scoring_is_fast():
    start = time.perf_counter()
    for _ in range(2_000):
        score_lead(PERFECT_LEAD, PERFECT_ENRICHMENT, ICP)
    # Thousands per second is the requirement; this bound is generous so a slow CI box passes.
    assert time.perf_counter() - start < 2.0


_any_value = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**7), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_enrichments = st.fixed_dictionaries({}, optional={
    "email_status": st.one_of(st.sampled_from(["valid", "invalid", "risky", "unknown"]), _any_value),
    "is_free_mail": _any_value, "is_disposable": _any_value, "is_role_address": _any_value,
    "title": st.one_of(st.sampled_from(["VP Sales", "CEO", "Head of Revenue", "Intern"]), _any_value),
    "seniority": st.one_of(st.sampled_from(["c_level", "vp", "director", "manager", "senior", "entry"]), _any_value),
    "department": _any_value,
    "company_size": st.one_of(st.integers(0, 100_000), _any_value),
    "industry": st.one_of(st.just("software"), _any_value),
    "country": st.one_of(st.sampled_from(["US", "gb", "France"]), _any_value),
})
_leads = st.fixed_dictionaries({}, optional={
    "email": st.one_of(st.emails(), _any_value), "title": _any_value, "country": _any_value,
})
_weights = st.fixed_dictionaries({}, optional={
    name: st.integers(0, 100) for name in
    ("seniority", "department", "title_keywords", "industry", "company_size", "country", "email_status",
     "free_mail", "role_address", "disposable", "invalid_email")
})
_icps = st.builds(
    lambda weights, sizes, flags: IcpConfig.parse({
        "seniorities": ["vp", "director"], "departments": ["sales"], "title_keywords": ["sales"],
        "industries": ["software"], "countries": ["us"], "weights": weights,
        "company_size": {"min": min(sizes), "max": max(sizes)}, "exclude_free_mail": flags,
    }),
    _weights, st.tuples(st.integers(0, 5_000), st.integers(0, 5_000)), st.booleans(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lead=_leads, enrichment=_enrichments, icp=st.one_of(st.just(ICP), st.just(IcpConfig()), _icps))
def test_score_is_bounded_and_explained_for_any_enrichment(lead, enrichment, icp):
    result = score_lead(lead, enrichment, icp)
    _assert_consistent(result)
    assert result.tier == icp.tier_for(result.score)
    assert score_lead(lead, enrichment, icp) == result


def test_scoring_and_the_providers_classify_a_title_the_same_way():
    """One classifier: an assistant to the CEO is entry level for heuristics, the paid mappers and scoring."""
    title = "Executive Assistant to the CEO"
    assert classify_title(title)[0] == "entry"
    enriched = HeuristicsProvider().enrich(LeadInput(1, "pat@acme-robotics.io", "Pat", "Lee", title))
    assert enriched.data["seniority"] == "entry"
    icp = IcpConfig.parse({"seniorities": ["c_level"]})
    result = score_lead({"email": "pat@acme-robotics.io", "title": title}, {}, icp)
    assert _signals(result)["seniority"]["reason"] == "seniority entry (from title) is not a target"
    assert _signals(result)["seniority"]["points"] == 0


def test_scoring_and_the_providers_share_one_free_mail_list():
    """gmx.at and yahoo.co.jp are free mail for the heuristics provider, so they are for scoring too."""
    icp = IcpConfig.parse({"seniorities": ["vp"]})
    for email in ("ann@gmx.at", "ann@yahoo.co.jp", "ann@posteo.de"):
        assert is_free_mail(email.rpartition("@")[2])
        assert _signals(score_lead({"email": email, "title": "VP Sales"}, {}, icp))["free_mail"]["points"] == -15
