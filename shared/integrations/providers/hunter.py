"""Hunter.io Email Finder as a provider: a name at a company domain in, the most likely email out.

Based on Hunter's API v2 docs (https://hunter.io/api-documentation/v2), checked when this was written:
- `GET https://api.hunter.io/v2/email-finder?domain=…&first_name=…&last_name=…` (or `company=`,
  `full_name=`). The key may go in the `api_key` query parameter or the `X-API-KEY` header; we use
  the header so the key never appears in a URL (httpx logs URLs at INFO).
- Success: `{"data": {"first_name", "last_name", "email", "score", "domain", "accept_all",
  "position", "twitter", "linkedin_url", "phone_number", "company", "sources": [...],
  "verification": {"date", "status"}}, "meta": {...}}`; `email: null` means not found.
- Errors: `{"errors": [{"id", "code", "details"}]}`. Statuses: 400 bad request, 401 bad key,
  403 *rate limit reached* (transient: retried with backoff), 404 not found, 429 *usage limit
  reached* (the plan is exhausted until it renews or is upgraded: permanent, never retried),
  451 the person asked Hunter to stop processing their data (a miss for us), 5xx.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.emails import normalize_email
from shared.errors import InvalidEmail, ProviderError
from shared.integrations.providers.base import LeadInput, ProviderResult
from shared.lead_rules import classify_title, is_free_mail, registered_domain
from shared.integrations.providers.http import DEFAULT_BACKOFF_BASE, HttpClient, HttpProviderBase, expect_mapping
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

FINDER_PATH = "/v2/email-finder"

_VERIFICATION_STATUS = {
    "valid": "valid",
    "accept_all": "risky",
    "webmail": "valid",
    "disposable": "risky",
    "unknown": "unknown",
    "invalid": "invalid",
}


class HunterProvider(HttpProviderBase):
    """Hunter Email Finder. Confidence is Hunter's own score (0–100) divided by 100."""

    name = "hunter"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        http: HttpClient | None = None,
    ) -> None:
        settings = settings or get_settings()
        key = self._api_key(settings.hunter_api_key, "HUNTER_API_KEY")
        self.cost = settings.hunter_cost
        self.http = http or self._http(
            settings,
            base_url=settings.hunter_base_url,
            backoff_base=backoff_base,
            headers={"X-API-KEY": key},
            secrets=(key,),
            # Hunter's docs: 403 means "rate limit reached" (retry); 429 "usage limit reached", i.e. the
            # plan is used up, which no retry fixes (it falls to the permanent 4xx branch); 404/451: nobody found.
            miss_statuses=(404, 451),
            rate_limit_statuses=(403,),
        )

    def lookup_key(self, lead: LeadInput) -> str | None:
        query = finder_query(lead)
        if query is None:
            return None
        name = query.get("full_name") or f"{query['first_name']} {query['last_name']}"
        return f"{query['domain']}|{name.lower()}"

    async def aenrich(self, lead: LeadInput) -> ProviderResult:
        query = finder_query(lead)
        if query is None:
            # The engine asks lookup_key first and skips us; being called anyway is a caller bug.
            raise ProviderError("hunter: needs a company domain and a name", transient=False)
        payload = await self.http.arequest_json("GET", FINDER_PATH, params=query)
        if payload is None:
            return ProviderResult("miss")
        if "data" not in payload:
            raise ProviderError("hunter: malformed response: no 'data' key", transient=False)
        found = payload["data"]
        if found is None:
            return ProviderResult("miss")
        return map_finder_data(expect_mapping(found, "data", self.name))


def finder_query(lead: LeadInput) -> dict[str, str] | None:
    """Email Finder parameters for a lead, or None when it lacks a domain or a name."""
    domain = registered_domain(lead.company_domain)
    if domain is None:
        email_domain = _email_domain(lead.email)
        if email_domain and not is_free_mail(email_domain):
            domain = registered_domain(email_domain)
    if domain is None:
        return None
    first, last = _clean(lead.first_name), _clean(lead.last_name)
    if first and last:
        return {"domain": domain, "first_name": first, "last_name": last}
    # One field holding a whole name ("Jane Doe") is still usable as full_name.
    whole = first or last
    if whole and " " in whole:
        return {"domain": domain, "full_name": whole}
    return None


def map_finder_data(found: dict[str, Any]) -> ProviderResult:
    """Hunter's `data` object -> normalized ProviderResult (miss when it has no email)."""
    email = found.get("email")
    try:
        email = normalize_email(email) if isinstance(email, str) and email else None
    except InvalidEmail:
        email = None
    if email is None:
        return ProviderResult("miss")

    data: dict[str, Any] = {"email": email}
    verification = found.get("verification")
    status = verification.get("status") if isinstance(verification, dict) else None
    if isinstance(status, str) and status in _VERIFICATION_STATUS:
        data["email_status"] = _VERIFICATION_STATUS[status]
    elif found.get("accept_all") is True:
        data["email_status"] = "risky"
    _put(data, "first_name", found.get("first_name"))
    _put(data, "last_name", found.get("last_name"))
    if data.get("first_name") or data.get("last_name"):
        data["full_name"] = " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p)
    _put(data, "title", found.get("position"))
    if data.get("title"):
        seniority, department = classify_title(data["title"])
        _put(data, "seniority", seniority)
        _put(data, "department", department)
    _put(data, "company_name", found.get("company"))
    _put(data, "company_domain", registered_domain(found.get("domain")))
    _put(data, "linkedin_url", found.get("linkedin_url"))
    _put(data, "phone", found.get("phone_number"))
    return ProviderResult("hit", _confidence(found.get("score")), data)


def _confidence(score: object) -> float:
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return 0.0
    return round(max(0.0, min(float(score), 100.0)) / 100.0, 2)


def _email_domain(raw: str | None) -> str | None:
    try:
        return normalize_email(raw or "").rpartition("@")[2]
    except InvalidEmail:
        return None


def _put(data: dict[str, Any], key: str, value: object) -> None:
    if isinstance(value, str) and value.strip():
        data[key] = value.strip()


def _clean(value: str | None) -> str | None:
    text = " ".join((value or "").split())
    return text or None
