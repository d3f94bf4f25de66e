"""The HTTP providers against real HTTP servers: Apollo and Hunter shapes on pytest-httpserver, and the sandbox.

Nothing of ours is mocked: requests go through the real HttpClient, over TCP, to a server answering
with the providers' documented response shapes (or failures).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from werkzeug import Request, Response

from devkit.net import free_port
from devkit.sandbox import SandboxProvider, fake_record, is_hit, serve
from shared.errors import ProviderConfigError, ProviderError
from shared.integrations.providers import build_providers, close_providers, preflight
from shared.integrations.providers.apollo import ApolloProvider
from shared.integrations.providers.base import LeadInput, Provider
from shared.integrations.providers.heuristics import HeuristicsProvider
from shared.integrations.providers.http import HttpClient, parse_retry_after
from shared.integrations.providers.hunter import HunterProvider
from shared.integrations.providers.noop import NoopProvider
from shared.settings import Settings

APOLLO_KEY = "apollo-secret-KEY-9f3a"
HUNTER_KEY = "hunter-secret-KEY-71bc"
FAST_BACKOFF = 0.01

LEAD = LeadInput(
    lead_id=7, email="tim.zheng@apollo.io", first_name="Tim", last_name="Zheng", company_name="Apollo",
    company_domain="apollo.io",
)

# Trimmed from the People Enrichment reference's example (extra fields kept to show they're ignored).
APOLLO_HIT = {
    "person": {
        "id": "64a7ff0cc4dfae00013df1a5",
        "first_name": "Tim",
        "last_name": "Zheng",
        "name": "Tim Zheng",
        "linkedin_url": "http://www.linkedin.com/in/tim-zheng-677ba010",
        "title": "Founder & CEO",
        "email_status": "verified",
        "photo_url": "https://static.licdn.com/aero-v1/sc/h/9c8pery4andzj6ohjkjp54ma2",
        "twitter_url": None,
        "headline": "Founder & CEO at Apollo",
        "email": "tim@apollo.io",
        "organization_id": "5e66b6381e05b4008c8331b8",
        "employment_history": [{"organization_name": "Apollo", "title": "Founder & CEO", "current": True}],
        "state": "California",
        "city": "San Francisco",
        "country": "United States",
        "departments": ["c_suite"],
        "subdepartments": ["executive"],
        "seniority": "founder",
        "phone_numbers": [{"raw_number": "+1 415-555-0100", "sanitized_number": "+14155550100", "type": "work_hq"}],
        "organization": {
            "id": "5e66b6381e05b4008c8331b8",
            "name": "Apollo.io",
            "website_url": "http://www.apollo.io",
            "primary_domain": "apollo.io",
            "industry": "information technology & services",
            "estimated_num_employees": 1600,
            "linkedin_url": "http://www.linkedin.com/company/apolloio",
        },
    }
}

# Hunter Email Finder's documented response shape.
HUNTER_HIT = {
    "data": {
        "first_name": "Alexis",
        "last_name": "Ohanian",
        "email": "alexis@reddit.com",
        "score": 97,
        "domain": "reddit.com",
        "accept_all": False,
        "position": "Cofounder",
        "twitter": None,
        "linkedin_url": None,
        "phone_number": None,
        "company": "Reddit",
        "sources": [
            {
                "domain": "redditinc.com",
                "uri": "http://redditinc.com/press",
                "extracted_on": "2023-05-10",
                "last_seen_on": "2024-04-02",
                "still_on_page": True,
            }
        ],
        "verification": {"date": "2024-04-02", "status": "valid"},
    },
    "meta": {"params": {"first_name": "Alexis", "last_name": "Ohanian", "full_name": None, "domain": "reddit.com",
                        "company": None, "max_duration": None}},
}
HUNTER_LEAD = LeadInput(lead_id=8, email="alexis@reddit.com", first_name="Alexis", last_name="Ohanian")


def _settings(httpserver, **overrides) -> Settings:
    base = httpserver.url_for("/").rstrip("/")
    values = {
        "apollo_api_key": APOLLO_KEY,
        "apollo_base_url": base,
        "hunter_api_key": HUNTER_KEY,
        "hunter_base_url": base,
        "sandbox_url": base,
        "provider_timeout_seconds": 2.0,
        "provider_max_retries": 2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def apollo(httpserver):
    provider = ApolloProvider(_settings(httpserver), backoff_base=FAST_BACKOFF)
    yield provider
    provider.close()


@pytest.fixture
def hunter(httpserver):
    provider = HunterProvider(_settings(httpserver), backoff_base=FAST_BACKOFF)
    yield provider
    provider.close()


def _assert_no_secret(exc: BaseException) -> None:
    for secret in (APOLLO_KEY, HUNTER_KEY):
        assert secret not in str(exc)
        assert secret not in repr(exc)


# -- Apollo ---------------------------------------------------------------------------------------


def test_apollo_hit_maps_the_person(httpserver, apollo):
    httpserver.expect_request(
        "/api/v1/people/match", method="POST", headers={"X-Api-Key": APOLLO_KEY}
    ).respond_with_json(APOLLO_HIT)
    result = apollo.enrich(LEAD)

    assert result.outcome == "hit"
    assert result.confidence == pytest.approx(1.0)  # verified email, title and organization
    assert result.data == {
        "first_name": "Tim",
        "last_name": "Zheng",
        "full_name": "Tim Zheng",
        "title": "Founder & CEO",
        "linkedin_url": "http://www.linkedin.com/in/tim-zheng-677ba010",
        "country": "United States",
        "email": "tim@apollo.io",
        "email_status": "valid",
        "seniority": "c_level",
        "department": "executive",
        "phone": "+14155550100",
        "company_name": "Apollo.io",
        "company_domain": "apollo.io",
        "industry": "information technology & services",
        "company_size": 1600,
    }
    sent = json.loads(httpserver.log[0][0].get_data())
    assert sent == {
        "email": "tim.zheng@apollo.io",
        "first_name": "Tim",
        "last_name": "Zheng",
        "organization_name": "Apollo",
        "domain": "apollo.io",
        "reveal_personal_emails": False,
        "reveal_phone_number": False,
    }
    assert APOLLO_KEY not in httpserver.log[0][0].url  # the key travels in a header only


def test_apollo_null_person_is_a_miss(httpserver, apollo):
    httpserver.expect_request("/api/v1/people/match", method="POST").respond_with_json({"person": None})
    result = apollo.enrich(LEAD)
    assert result.outcome == "miss"
    assert result.data == {}


def test_apollo_locked_email_is_dropped(httpserver, apollo):
    person = dict(APOLLO_HIT["person"], email="email_not_unlocked@domain.com", email_status="verified")
    httpserver.expect_request("/api/v1/people/match").respond_with_json({"person": person})
    result = apollo.enrich(LEAD)
    assert "email" not in result.data
    assert "email_status" not in result.data
    assert result.confidence == pytest.approx(0.75)


def test_apollo_fills_missing_seniority_from_the_title(httpserver, apollo):
    person = {"first_name": "Ann", "last_name": "Lee", "title": "VP of Sales", "departments": [], "seniority": None}
    httpserver.expect_request("/api/v1/people/match").respond_with_json({"person": person})
    result = apollo.enrich(LEAD)
    assert (result.data["seniority"], result.data["department"]) == ("vp", "sales")


def test_apollo_lookup_key():
    provider = ApolloProvider(Settings(apollo_api_key=APOLLO_KEY))
    try:
        assert provider.lookup_key(LeadInput(1, " Tim@Apollo.io ")) == "tim@apollo.io"
        by_name = LeadInput(1, "bad", "Tim", "Zheng", company_domain="apollo.io")
        assert provider.lookup_key(by_name) == "tim|zheng|apollo.io"
        assert provider.lookup_key(LeadInput(1, "bad", "Tim")) is None
    finally:
        provider.close()


def test_rate_limit_honours_retry_after_seconds_then_succeeds(httpserver, apollo):
    httpserver.expect_ordered_request("/api/v1/people/match").respond_with_json(
        {"error": "rate limited"}, status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request("/api/v1/people/match").respond_with_json(APOLLO_HIT)
    started = time.monotonic()
    result = apollo.enrich(LEAD)
    assert result.outcome == "hit"
    assert time.monotonic() - started >= 0.95
    assert len(httpserver.log) == 2


def test_rate_limit_honours_retry_after_as_an_http_date(httpserver, apollo):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
    httpserver.expect_ordered_request("/api/v1/people/match").respond_with_json(
        {}, status=429, headers={"Retry-After": when}
    )
    httpserver.expect_ordered_request("/api/v1/people/match").respond_with_json(APOLLO_HIT)
    started = time.monotonic()
    assert apollo.enrich(LEAD).outcome == "hit"
    # HTTP dates have one-second resolution, so the wait is between 1 and 2 seconds.
    assert time.monotonic() - started >= 0.9


def test_rate_limit_asking_too_long_a_wait_fails_transiently_without_waiting(httpserver, apollo):
    httpserver.expect_request("/api/v1/people/match").respond_with_json({}, status=429, headers={"Retry-After": "3600"})
    with pytest.raises(ProviderError) as info:
        apollo.enrich(LEAD)
    assert info.value.transient is True
    assert "Retry-After" in str(info.value)
    assert len(httpserver.log) == 1


def test_persistent_rate_limit_without_retry_after_gives_up_transiently(httpserver, apollo):
    httpserver.expect_request("/api/v1/people/match").respond_with_json({}, status=429)
    with pytest.raises(ProviderError) as info:
        apollo.enrich(LEAD)
    assert info.value.transient is True
    assert len(httpserver.log) == 3  # 1 + provider_max_retries


def test_server_error_then_success_is_retried(httpserver, apollo):
    httpserver.expect_ordered_request("/api/v1/people/match").respond_with_data("Bad gateway", status=502)
    httpserver.expect_ordered_request("/api/v1/people/match").respond_with_json({"error": "oops"}, status=503)
    httpserver.expect_ordered_request("/api/v1/people/match").respond_with_json(APOLLO_HIT)
    assert apollo.enrich(LEAD).outcome == "hit"
    assert len(httpserver.log) == 3


def test_persistent_server_error_is_transient_after_the_retries(httpserver, apollo, caplog):
    httpserver.expect_request("/api/v1/people/match").respond_with_json(
        {"error": f"key {APOLLO_KEY} broke"}, status=500
    )
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ProviderError) as info:
            apollo.enrich(LEAD)
    assert info.value.transient is True
    assert "HTTP 500" in str(info.value)
    assert len(httpserver.log) == 3
    _assert_no_secret(info.value)
    assert APOLLO_KEY not in caplog.text  # retries are logged, the key never is


def test_timeout_is_transient(httpserver):
    def slow(request: Request) -> Response:
        time.sleep(0.6)
        return Response(json.dumps(APOLLO_HIT), content_type="application/json")

    httpserver.expect_request("/api/v1/people/match").respond_with_handler(slow)
    provider = ApolloProvider(_settings(httpserver, provider_timeout_seconds=0.2), backoff_base=FAST_BACKOFF)
    try:
        with pytest.raises(ProviderError) as info:
            provider.enrich(LEAD)
    finally:
        provider.close()
    assert info.value.transient is True
    assert "timed out" in str(info.value)
    _assert_no_secret(info.value)


def test_malformed_json_is_permanent(httpserver, apollo):
    httpserver.expect_request("/api/v1/people/match").respond_with_data(
        "<html>not json</html>", content_type="application/json"
    )
    with pytest.raises(ProviderError) as info:
        apollo.enrich(LEAD)
    assert info.value.transient is False
    assert "malformed response" in str(info.value)


@pytest.mark.parametrize("body", [[], {"people": []}, {"person": "Tim"}])
def test_wrong_shape_is_permanent(httpserver, apollo, body):
    httpserver.expect_request("/api/v1/people/match").respond_with_json(body)
    with pytest.raises(ProviderError) as info:
        apollo.enrich(LEAD)
    assert info.value.transient is False
    assert "malformed response" in str(info.value)


def test_refused_key_is_permanent_and_never_echoed(httpserver, apollo):
    httpserver.expect_request("/api/v1/people/match").respond_with_json(
        {"error": f"Invalid access credentials: {APOLLO_KEY}"}, status=401
    )
    with pytest.raises(ProviderError) as info:
        apollo.enrich(LEAD)
    assert info.value.transient is False
    assert "401" in str(info.value)
    assert "***" in str(info.value)
    _assert_no_secret(info.value)
    assert len(httpserver.log) == 1  # a bad key is not retried


def test_other_client_errors_are_permanent(httpserver, apollo):
    httpserver.expect_request("/api/v1/people/match").respond_with_json({"error": "invalid domain"}, status=422)
    with pytest.raises(ProviderError) as info:
        apollo.enrich(LEAD)
    assert info.value.transient is False
    assert "invalid domain" in str(info.value)


@pytest.mark.parametrize("which", ["apollo", "hunter"])
def test_a_bare_404_is_not_taken_for_a_miss(httpserver, apollo, hunter, which):
    # What a wrong base URL gets (an HTML 404) must fail loudly, not look like "nobody found".
    httpserver.expect_request(re.compile(".*")).respond_with_data(
        "<h1>Not Found</h1>", status=404, content_type="text/html"
    )
    provider, lead = (apollo, LEAD) if which == "apollo" else (hunter, HUNTER_LEAD)
    with pytest.raises(ProviderError) as info:
        provider.enrich(lead)
    assert info.value.transient is False
    assert "404" in str(info.value)


def test_unreachable_server_is_transient():
    settings = Settings(apollo_api_key=APOLLO_KEY, apollo_base_url=f"http://127.0.0.1:{free_port()}")  # nobody listens
    provider = ApolloProvider(settings, backoff_base=FAST_BACKOFF)
    try:
        with pytest.raises(ProviderError) as info:
            provider.enrich(LEAD)
    finally:
        provider.close()
    assert info.value.transient is True
    assert "cannot reach" in str(info.value)


# -- Hunter ---------------------------------------------------------------------------------------


def test_hunter_hit_maps_the_finder_data(httpserver, hunter):
    httpserver.expect_request(
        "/v2/email-finder",
        method="GET",
        headers={"X-API-KEY": HUNTER_KEY},
        query_string={"domain": "reddit.com", "first_name": "Alexis", "last_name": "Ohanian"},
    ).respond_with_json(HUNTER_HIT)
    result = hunter.enrich(HUNTER_LEAD)
    assert result.outcome == "hit"
    assert result.confidence == pytest.approx(0.97)
    assert result.data == {
        "email": "alexis@reddit.com",
        "email_status": "valid",
        "first_name": "Alexis",
        "last_name": "Ohanian",
        "full_name": "Alexis Ohanian",
        "title": "Cofounder",
        "seniority": "c_level",
        "department": "executive",
        "company_name": "Reddit",
        "company_domain": "reddit.com",
    }
    assert "api_key" not in httpserver.log[0][0].args  # the key is sent as a header, not in the URL


def test_hunter_null_email_is_a_miss(httpserver, hunter):
    body = {"data": dict(HUNTER_HIT["data"], email=None, score=None, verification={"date": None, "status": None})}
    httpserver.expect_request("/v2/email-finder").respond_with_json(body)
    assert hunter.enrich(HUNTER_LEAD).outcome == "miss"


def test_hunter_accept_all_is_risky(httpserver, hunter):
    data = dict(HUNTER_HIT["data"], score=61, accept_all=True, verification={"date": None, "status": "accept_all"})
    httpserver.expect_request("/v2/email-finder").respond_with_json({"data": data, "meta": {}})
    result = hunter.enrich(HUNTER_LEAD)
    assert result.data["email_status"] == "risky"
    assert result.confidence == pytest.approx(0.61)


@pytest.mark.parametrize("status", [404, 451])
def test_hunter_not_found_and_opted_out_are_misses(httpserver, hunter, status):
    errors = {"errors": [{"id": "not_found", "code": status, "details": "No result"}]}
    httpserver.expect_request("/v2/email-finder").respond_with_json(errors, status=status)
    assert hunter.enrich(HUNTER_LEAD).outcome == "miss"


def test_hunter_403_is_its_rate_limit_and_transient(httpserver, hunter):
    errors = {"errors": [{"id": "too_many_requests", "code": 403, "details": "You have reached the rate limit"}]}
    httpserver.expect_ordered_request("/v2/email-finder").respond_with_json(errors, status=403)
    httpserver.expect_ordered_request("/v2/email-finder").respond_with_json(HUNTER_HIT)
    assert hunter.enrich(HUNTER_LEAD).outcome == "hit"


def test_hunter_429_is_an_exhausted_plan_and_permanent(httpserver, hunter):
    # Hunter's 429 means the plan's monthly searches are used up: no retry can help, so none is made.
    errors = {"errors": [{"id": "too_many_requests", "code": 429,
                          "details": "You have used all the searches of your plan. Upgrade to continue."}]}
    httpserver.expect_request("/v2/email-finder").respond_with_json(errors, status=429, headers={"Retry-After": "0"})
    with pytest.raises(ProviderError) as info:
        hunter.enrich(HUNTER_LEAD)
    assert info.value.transient is False
    assert "429" in str(info.value) and "searches of your plan" in str(info.value)
    assert len(httpserver.log) == 1


def test_hunter_persistent_403_rate_limit_gives_up_transiently(httpserver, hunter):
    errors = {"errors": [{"id": "too_many_requests", "code": 403, "details": "You have reached the rate limit"}]}
    httpserver.expect_request("/v2/email-finder").respond_with_json(errors, status=403)
    with pytest.raises(ProviderError) as info:
        hunter.enrich(HUNTER_LEAD)
    assert info.value.transient is True
    assert len(httpserver.log) == 3  # 1 + provider_max_retries


def test_hunter_401_is_permanent_and_never_echoed(httpserver, hunter):
    errors = {"errors": [{"id": "authentication_failed", "code": 401, "details": f"No user found for {HUNTER_KEY}"}]}
    httpserver.expect_request("/v2/email-finder").respond_with_json(errors, status=401)
    with pytest.raises(ProviderError) as info:
        hunter.enrich(HUNTER_LEAD)
    assert info.value.transient is False
    _assert_no_secret(info.value)


def test_hunter_400_reports_the_error_details(httpserver, hunter):
    errors = {"errors": [{"id": "wrong_params", "code": 400, "details": "You are missing the domain parameter"}]}
    httpserver.expect_request("/v2/email-finder").respond_with_json(errors, status=400)
    with pytest.raises(ProviderError) as info:
        hunter.enrich(HUNTER_LEAD)
    assert info.value.transient is False
    assert "missing the domain parameter" in str(info.value)


def test_hunter_persistent_5xx_is_transient(httpserver, hunter):
    httpserver.expect_request("/v2/email-finder").respond_with_data("upstream down", status=503)
    with pytest.raises(ProviderError) as info:
        hunter.enrich(HUNTER_LEAD)
    assert info.value.transient is True
    assert len(httpserver.log) == 3


def test_hunter_malformed_json_is_permanent(httpserver, hunter):
    httpserver.expect_request("/v2/email-finder").respond_with_data('{"data": ', content_type="application/json")
    with pytest.raises(ProviderError) as info:
        hunter.enrich(HUNTER_LEAD)
    assert info.value.transient is False


def test_hunter_needs_a_domain_and_a_name(hunter):
    assert hunter.lookup_key(HUNTER_LEAD) == "reddit.com|alexis ohanian"
    assert hunter.lookup_key(LeadInput(1, "alexis@gmail.com", "Alexis", "Ohanian")) is None  # free mail: no domain
    assert hunter.lookup_key(LeadInput(1, "alexis@reddit.com")) is None  # no name
    assert hunter.lookup_key(LeadInput(1, "x", "Alexis Ohanian", company_domain="reddit.com")) == (
        "reddit.com|alexis ohanian"
    )
    with pytest.raises(ProviderError):
        hunter.enrich(LeadInput(1, "alexis@reddit.com"))


# -- HTTP layer details ---------------------------------------------------------------------------


def test_parse_retry_after():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0  # in the past: no wait
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_one_client_serves_many_threads(httpserver):
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    client = HttpClient(provider="test", base_url=httpserver.url_for("/"), timeout_seconds=5, max_retries=0)
    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(lambda _: client.get_json("/ping"), range(64)))
    finally:
        client.close()
    assert results == [{"ok": True}] * 64


# -- build_providers -------------------------------------------------------------------------------


def test_build_providers_follows_the_order(httpserver):
    settings = _settings(httpserver, provider_order="heuristics, sandbox ,apollo,hunter,noop")
    providers = build_providers(settings)
    try:
        assert [p.name for p in providers] == ["heuristics", "sandbox", "apollo", "hunter", "noop"]
        assert all(isinstance(p, Provider) for p in providers)
        assert isinstance(providers[0], HeuristicsProvider) and isinstance(providers[-1], NoopProvider)
        assert [p.cost for p in providers] == [0, 1, 1, 1, 0]
    finally:
        close_providers(providers)
    names_only = build_providers(settings, ["noop"])
    assert [p.name for p in names_only] == ["noop"]


@pytest.mark.parametrize(
    ("name", "setting"), [("apollo", "APOLLO_API_KEY"), ("hunter", "HUNTER_API_KEY"), ("sandbox", "SANDBOX_URL")]
)
def test_build_providers_names_the_missing_setting(name, setting):
    settings = Settings(apollo_api_key=None, hunter_api_key=None, sandbox_url=None)
    with pytest.raises(ProviderConfigError, match=f"names '{name}' but {setting} is not set"):
        build_providers(settings, ["heuristics", name])
    with pytest.raises(ProviderConfigError, match=f"^PROVIDER_ORDER names '{name}' but {setting} is not set$"):
        preflight(Settings(provider_order=f"heuristics,{name}", apollo_api_key=None, hunter_api_key=None,
                           sandbox_url=None))


def test_build_providers_rejects_unknown_and_repeated_names():
    with pytest.raises(ProviderConfigError, match="unknown provider 'clearbit'"):
        build_providers(Settings(), ["heuristics", "clearbit"])
    with pytest.raises(ProviderConfigError, match="more than once"):
        build_providers(Settings(), ["noop", "noop"])


# -- preflight -------------------------------------------------------------------------------------


def _bare(**values: object) -> Settings:
    """Settings from these values only (not the developer's environment or .env)."""
    base: dict[str, object] = {"apollo_api_key": None, "hunter_api_key": None, "sandbox_url": None}
    return Settings(_env_file=None, **(base | values))


@pytest.mark.parametrize(("values", "expected"), [
    ({}, ["heuristics"]),
    ({"hunter_api_key": HUNTER_KEY}, ["heuristics", "hunter"]),
    ({"apollo_api_key": APOLLO_KEY, "hunter_api_key": HUNTER_KEY}, ["heuristics", "apollo", "hunter"]),
    ({"apollo_api_key": APOLLO_KEY, "sandbox_url": "http://127.0.0.1:8765"}, ["heuristics", "apollo", "sandbox"]),
    ({"provider_order": " Heuristics , hunter", "hunter_api_key": HUNTER_KEY}, ["heuristics", "hunter"]),
])
def test_preflight_auto_uses_what_is_configured(values, expected):
    assert _bare(**values).provider_order == values.get("provider_order", "auto")
    assert preflight(_bare(**values)) == expected


@pytest.mark.parametrize(("values", "message"), [
    ({"provider_order": "heuristics,apollo"}, "PROVIDER_ORDER names 'apollo' but APOLLO_API_KEY is not set"),
    ({"provider_order": "sandbox"}, "PROVIDER_ORDER names 'sandbox' but SANDBOX_URL is not set"),
    ({"provider_order": "auto,hunter"}, "PROVIDER_ORDER names unknown provider 'auto'"),
    ({"provider_order": "heuristics,clearbit"}, "PROVIDER_ORDER names unknown provider 'clearbit'"),
    ({"provider_order": " , "}, "PROVIDER_ORDER is empty"),
    ({"hunter_api_key": "hunter-k\u00e9y-123"}, "HUNTER_API_KEY contains a non-ASCII character (position 9); "
                                               "HTTP headers need ASCII"),
    ({"apollo_api_key": "apollo-key\n"}, "APOLLO_API_KEY contains a space or control character (position 11)"),
    ({"sandbox_url": "localhost:8765"}, "SANDBOX_URL must be an http(s) URL"),
    ({"hunter_api_key": HUNTER_KEY, "hunter_base_url": "ftp://api.hunter.io"}, "HUNTER_BASE_URL must be an http(s) URL"),
    ({"hunter_api_key": HUNTER_KEY, "provider_concurrency": 0}, "PROVIDER_CONCURRENCY must be at least 1"),
])
def test_preflight_names_the_bad_setting_in_one_line_without_its_value(values, message):
    with pytest.raises(ProviderConfigError) as info:
        preflight(_bare(**values))
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text
    for secret in ("k\u00e9y", "apollo-key", HUNTER_KEY):
        assert secret not in text
    assert isinstance(info.value, ValueError)


def test_build_providers_runs_preflight_first():
    with pytest.raises(ProviderConfigError, match="non-ASCII"):
        build_providers(_bare(provider_order="heuristics,hunter", hunter_api_key="cl\u00e9-0123456789"))


# -- the sandbox server and its client ------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_sandbox():
    with serve(latency_ms=0, hit_rate=0.7, seed=42) as server:
        yield server


def _sandbox_provider(url: str, **overrides: object) -> SandboxProvider:
    values: dict[str, object] = {"sandbox_url": url, "provider_timeout_seconds": 10, "provider_max_retries": 2}
    values.update(overrides)
    return SandboxProvider(Settings(**values), backoff_base=FAST_BACKOFF)


def test_sandbox_is_deterministic(fast_sandbox):
    provider = _sandbox_provider(fast_sandbox.url)
    leads = [LeadInput(i, f"person{i}@company{i % 7}.com") for i in range(40)]
    try:
        first = [provider.enrich(lead) for lead in leads]
        second = [provider.enrich(lead) for lead in leads]
    finally:
        provider.close()
    assert first == second
    for lead, result in zip(leads, first):
        assert (result.outcome == "hit") == is_hit(lead.email, seed=42, hit_rate=0.7)
    assert fake_record("a@b.com", seed=1) == fake_record("a@b.com", seed=1)
    assert fake_record("a@b.com", seed=1) != fake_record("a@b.com", seed=2)


def test_sandbox_hit_rate_matches_over_500_emails(fast_sandbox):
    provider = _sandbox_provider(fast_sandbox.url)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(provider.enrich, [LeadInput(i, f"lead{i}@firm{i % 50}.io") for i in range(500)]))
    finally:
        provider.close()
    hits = [r for r in results if r.outcome == "hit"]
    assert 0.63 <= len(hits) / 500 <= 0.77
    sample = hits[0]
    assert 0.6 <= sample.confidence <= 0.99
    for key in ("email", "email_status", "first_name", "last_name", "title", "seniority", "department",
                "company_name", "company_domain", "company_size", "industry", "country", "linkedin_url"):
        assert key in sample.data, key


def test_sandbox_hit_uses_the_leads_own_fields(fast_sandbox):
    provider = _sandbox_provider(fast_sandbox.url)
    candidates = (f"x{i}@acme-robotics.io" for i in range(100))
    hit_email = next(e for e in candidates if is_hit(e, seed=42, hit_rate=0.7))
    try:
        result = provider.enrich(LeadInput(1, hit_email, "Grace", "Hopper"))
    finally:
        provider.close()
    assert (result.data["first_name"], result.data["last_name"]) == ("Grace", "Hopper")
    assert (result.data["company_domain"], result.data["company_name"]) == ("acme-robotics.io", "Acme Robotics")


def test_sandbox_requires_a_bearer_token(fast_sandbox):
    response = httpx.post(f"{fast_sandbox.url}/v1/enrich", json={"email": "a@b.com"})
    assert response.status_code == 401
    response = httpx.post(
        f"{fast_sandbox.url}/v1/enrich", json={"email": "nope"}, headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 422


def test_sandbox_applies_latency_and_serves_200_concurrent_requests():
    with serve(latency_ms=200, hit_rate=0.7, seed=3) as server:
        provider = _sandbox_provider(server.url)
        try:
            started = time.monotonic()
            provider.enrich(LeadInput(1, "first@acme.com"))
            assert time.monotonic() - started >= 0.19  # lower bound only: slow machines are fine

            barrier = threading.Barrier(200)

            def call(i: int):
                barrier.wait()  # all 200 in flight together
                return provider.enrich(LeadInput(i, f"user{i}@acme{i % 9}.com"))

            with ThreadPoolExecutor(200) as pool:
                results = list(pool.map(call, range(200)))
        finally:
            provider.close()
        assert len(results) == 200
        assert all(r.outcome in ("hit", "miss") for r in results)
        assert server.stats.requests == 201
        assert server.stats.errors == 0


def test_sandbox_injected_errors_become_transient_provider_errors():
    with serve(latency_ms=0, error_rate=1.0) as server:
        provider = _sandbox_provider(server.url)
        try:
            with pytest.raises(ProviderError) as info:
                provider.enrich(LeadInput(1, "a@acme.com"))
        finally:
            provider.close()
    assert info.value.transient is True
    assert server.stats.errors == 3  # first try + 2 retries


def test_sandbox_injected_rate_limits_are_retried():
    with serve(latency_ms=0, rate_limit_rate=0.5, retry_after_seconds=0, seed=5) as server:
        provider = _sandbox_provider(server.url, provider_max_retries=10)
        try:
            results = [provider.enrich(LeadInput(i, f"p{i}@acme.com")) for i in range(30)]
        finally:
            provider.close()
    assert len(results) == 30
    assert server.stats.rate_limited > 0


def test_sandbox_provider_needs_a_url_and_a_valid_email():
    with pytest.raises(ValueError, match="SANDBOX_URL"):
        SandboxProvider(Settings(sandbox_url=None))
    provider = SandboxProvider(Settings(sandbox_url="http://127.0.0.1:9"))
    try:
        assert provider.lookup_key(LeadInput(1, "not an email")) is None
        assert provider.lookup_key(LeadInput(1, " A@Acme.COM ")) == "a@acme.com"
    finally:
        provider.close()
