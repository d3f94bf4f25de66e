"""Apollo.io People Enrichment ("people match") as a provider: one lead in, one matched person out.

Request and response shapes follow Apollo's public docs, checked when this was written:
- https://docs.apollo.io/reference/people-enrichment and the "Enrich People Data" tutorial
  (https://docs.apollo.io/docs/enrich-people-data): `POST https://api.apollo.io/api/v1/people/match`,
  headers `X-Api-Key`, `Content-Type: application/json`, `Cache-Control: no-cache`; identifiers
  email, first_name, last_name, name, organization_name, domain, linkedin_url; personal emails and
  phones only with `reveal_personal_emails` / `reveal_phone_number` (extra credits, left off).
  The docs show these as query parameters; the tutorial's curl sends them as a JSON body, which the
  endpoint accepts too. We send the JSON body so that emails (PII) stay out of URLs and access logs.
- A 200 does not mean a match: `{"person": null}` is a miss (and costs Apollo no credit).
- person: first_name, last_name, name, title, seniority (c_suite, founder, owner, partner, vp, head,
  director, manager, senior, entry, intern), departments (e.g. "master_sales",
  "master_engineering_technical", "c_suite"), email, email_status ("verified", "likely to engage",
  "unverified", "unavailable"…), linkedin_url, country, phone_numbers [{raw_number,
  sanitized_number, type}], organization {name, primary_domain, website_url,
  estimated_num_employees, industry}. A locked email reads "email_not_unlocked@domain.com".
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

MATCH_PATH = "/api/v1/people/match"

_SENIORITY = {
    "c_suite": "c_level",
    "founder": "c_level",
    "owner": "c_level",
    "partner": "c_level",
    "vp": "vp",
    "head": "director",
    "director": "director",
    "manager": "manager",
    "senior": "senior",
    "entry": "entry",
    "intern": "entry",
}

_DEPARTMENT = {
    "c_suite": "executive",
    "master_sales": "sales",
    "master_marketing": "marketing",
    "master_engineering_technical": "engineering",
    "master_information_technology": "it",
    "master_finance": "finance",
    "master_human_resources": "hr",
    "master_operations": "operations",
    "master_legal": "legal",
    "master_support": "support",
    "product_management": "product",
    "design": "product",
}

_EMAIL_STATUS = {
    "verified": "valid",
    "likely to engage": "risky",
    "extrapolated": "risky",
    "guessed": "risky",
    "unverified": "unknown",
    "unavailable": "unknown",
    "bounced": "invalid",
    "invalid": "invalid",
}


class ApolloProvider(HttpProviderBase):
    """Apollo People Enrichment.

    Apollo gives no match score, so confidence is built from what the match carries:
    0.60 for a matched person, +0.25 if Apollo marks the email 'verified', +0.10 if it has a title,
    +0.05 if it has an organization (max 1.0).
    """

    name = "apollo"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        http: HttpClient | None = None,
    ) -> None:
        settings = settings or get_settings()
        key = self._api_key(settings.apollo_api_key, "APOLLO_API_KEY")
        self.cost = settings.apollo_cost
        self.http = http or self._http(
            settings,
            base_url=settings.apollo_base_url,
            backoff_base=backoff_base,
            headers={"X-Api-Key": key, "Content-Type": "application/json", "Cache-Control": "no-cache"},
            secrets=(key,),
        )

    def lookup_key(self, lead: LeadInput) -> str | None:
        email = _email_or_none(lead.email)
        if email:
            return email
        # Without an email Apollo can still match a full name at a company domain.
        domain = registered_domain(lead.company_domain)
        first, last = (lead.first_name or "").strip().lower(), (lead.last_name or "").strip().lower()
        if domain and first and last:
            return f"{first}|{last}|{domain}"
        return None

    async def aenrich(self, lead: LeadInput) -> ProviderResult:
        payload = await self.http.arequest_json("POST", MATCH_PATH, body=_request_body(lead))
        if payload is None:
            return ProviderResult("miss")
        if "person" not in payload:
            raise _malformed("no 'person' key in the response")
        person = payload["person"]
        if person is None:
            return ProviderResult("miss")
        return map_person(expect_mapping(person, "person", self.name))


def _request_body(lead: LeadInput) -> dict[str, Any]:
    domain = registered_domain(lead.company_domain)
    email = _email_or_none(lead.email)
    if domain is None and email and not is_free_mail(email.rpartition("@")[2]):
        domain = registered_domain(email.rpartition("@")[2])
    body = {
        "email": email,
        "first_name": _clean(lead.first_name),
        "last_name": _clean(lead.last_name),
        "organization_name": _clean(lead.company_name),
        "domain": domain,
        "linkedin_url": _clean(lead.linkedin_url),
        "reveal_personal_emails": False,
        "reveal_phone_number": False,
    }
    return {k: v for k, v in body.items() if v is not None}


def map_person(person: dict[str, Any]) -> ProviderResult:
    """Apollo's person object -> normalized ProviderResult data and confidence."""
    data: dict[str, Any] = {}
    _put(data, "first_name", person.get("first_name"))
    _put(data, "last_name", person.get("last_name"))
    _put(data, "full_name", person.get("name"))
    _put(data, "title", person.get("title"))
    _put(data, "linkedin_url", person.get("linkedin_url"))
    _put(data, "country", person.get("country"))

    email = person.get("email")
    if isinstance(email, str) and email and not email.startswith("email_not_unlocked"):
        _put(data, "email", _email_or_none(email))
    status = person.get("email_status")
    if isinstance(status, str) and status.lower() in _EMAIL_STATUS and "email" in data:
        data["email_status"] = _EMAIL_STATUS[status.lower()]

    _put_seniority_and_department(data, person)
    _put(data, "phone", _first_phone(person.get("phone_numbers")))

    org = person.get("organization")
    if isinstance(org, dict):
        _put(data, "company_name", org.get("name"))
        _put(data, "company_domain", registered_domain(org.get("primary_domain") or org.get("website_url")))
        _put(data, "industry", org.get("industry"))
        size = org.get("estimated_num_employees")
        if isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0:
            data["company_size"] = int(size)

    confidence = 0.60
    confidence += 0.25 if data.get("email_status") == "valid" else 0.0
    confidence += 0.10 if data.get("title") else 0.0
    confidence += 0.05 if isinstance(org, dict) and org else 0.0
    return ProviderResult("hit", round(min(confidence, 1.0), 2), data)


def _put_seniority_and_department(data: dict[str, Any], person: dict[str, Any]) -> None:
    seniority = _SENIORITY.get(str(person.get("seniority") or "").lower())
    departments = person.get("departments") if isinstance(person.get("departments"), list) else []
    department = next((_DEPARTMENT[d] for d in departments if isinstance(d, str) and d in _DEPARTMENT), None)
    # Apollo leaves these empty for some people; our own title rules fill the gap.
    if (seniority is None or department is None) and data.get("title"):
        guess_seniority, guess_department = classify_title(data["title"])
        seniority = seniority or guess_seniority
        department = department or guess_department
    _put(data, "seniority", seniority)
    _put(data, "department", department)


def _first_phone(numbers: object) -> str | None:
    if not isinstance(numbers, list):
        return None
    for item in numbers:
        if isinstance(item, dict):
            number = item.get("sanitized_number") or item.get("raw_number")
            if isinstance(number, str) and number.strip():
                return number.strip()
    return None


def _put(data: dict[str, Any], key: str, value: object) -> None:
    # Only plain strings: a provider changing a field's type must not put odd shapes in our data.
    if isinstance(value, str) and value.strip():
        data[key] = value.strip()


def _clean(value: str | None) -> str | None:
    text = " ".join((value or "").split())
    return text or None


def _email_or_none(raw: str | None) -> str | None:
    try:
        return normalize_email(raw or "")
    except InvalidEmail:
        return None


def _malformed(what: str) -> ProviderError:
    return ProviderError(f"apollo: malformed response: {what}", transient=False)
