"""Offline enrichment that runs for every lead: email checks, name parsing, company domain, title rules.

No network, no key. The free-mail, role and disposable lists and the title rules are
`shared.lead_rules`'s (scoring uses the same). Everything expensive (the public-suffix trie, regexes,
the sets) is built once at import; per-lead work is a few set lookups and regex searches, with caches
on the parts that repeat across a list (domains, names, titles).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

from nameparser import HumanName

# The rules themselves live in shared.lead_rules (scoring reads the same ones); re-exported for callers of this module.
from shared.errors import InvalidEmail
from shared.lead_rules import (  # noqa: F401
    _TLD,
    LOCAL_SEPARATORS,
    classify_title,
    is_disposable,
    is_free_mail,
    is_role_address,
    registered_domain,
)
from shared.emails import normalize_email
from shared.integrations.providers.base import LeadInput, ProviderResult


def company_name_from_domain(domain: str) -> str | None:
    """Best guess at a company name from its registered domain: 'acme-robotics.io' -> 'Acme Robotics'."""
    label = domain.split(".", 1)[0]
    words = [w for w in LOCAL_SEPARATORS.sub(" ", label).split() if w]
    if not words:
        return None
    return " ".join(w.upper() if len(w) <= 3 and len(words) > 1 else w.capitalize() for w in words)


# -- names ----------------------------------------------------------------------------------------

# A plain name part: letters, optionally joined by an apostrophe or hyphen (O'Neil, Mary-Jane).
_SIMPLE_NAME = re.compile(r"^[^\W\d_]+(?:['\u2019-][^\W\d_]+)*$")
_LOCAL_NAME_TOKEN = re.compile(r"^[^\W\d_]+$")
_DIGITS = re.compile(r"\d+")


def _capitalize(part: str) -> str:
    # Only fix all-lower or all-upper input; mixed case ("McDonald", "van der Berg") is the
    # person's own spelling.
    return part.title() if part.islower() or part.isupper() else part


@lru_cache(maxsize=65536)
def parse_name(first: str | None, last: str | None) -> tuple[str | None, str | None]:
    """Clean (first, last) from what the lead gave; titles/suffixes/full names go through nameparser."""
    first = " ".join((first or "").split()) or None
    last = " ".join((last or "").split()) or None
    if first is None and last is None:
        return None, None
    # Fast path for the common case (one plain word each): nameparser costs ~150 µs a call.
    if (first is None or _SIMPLE_NAME.match(first)) and (last is None or _SIMPLE_NAME.match(last)):
        return (_capitalize(first) if first else None), (_capitalize(last) if last else None)
    parsed = HumanName(" ".join(p for p in (first, last) if p))
    return (_capitalize(parsed.first) or None), (_capitalize(parsed.last) or None)


@lru_cache(maxsize=65536)
def name_from_local_part(local_part: str) -> tuple[str | None, str | None]:
    """'john.doe' / 'john_doe' / 'j.doe' -> a name guess; a single token ('jdoe') says nothing."""
    base = _DIGITS.sub("", local_part.split("+", 1)[0])
    tokens = [t for t in LOCAL_SEPARATORS.split(base) if t]
    if len(tokens) < 2 or len(tokens) > 3 or not all(_LOCAL_NAME_TOKEN.match(t) for t in tokens):
        return None, None
    first, last = tokens[0], tokens[-1]
    if len(last) < 2:
        return None, None
    parsed = parse_name(first if len(first) > 1 else None, last)
    return parsed


# -- the provider -------------------------------------------------------------------------------

# Derived data is worth at most 0.6: below the default threshold, so a paid provider still verifies.
DERIVED_WEIGHT = 2 / 3


class HeuristicsProvider:
    """Free, offline enrichment from the lead's own fields.

    Confidence (how far the lead is already usable without a paid lookup), rounded to 2 places:

        0.30  the email is syntactically valid (always, for a hit)
      + 0.20  the email domain is corporate (neither free-mail nor disposable)
      + 0.20  first and last name given by the lead (0.10 if only one of them, or if the
              name was only guessed from the local part, e.g. john.doe@)
      + 0.20  a title given and classified to a seniority (0.10 if given but not classified)
      caps:   disposable domain -> at most 0.20; role address (info@, sales@…) -> at most 0.40;
              free-mail -> at most 0.60 (the employer is unknown).

    That raw sum is then scaled by DERIVED_WEIGHT (2/3): everything here is derived, nothing is
    verified, so the best heuristic answer (0.90 raw → 0.60) stays below the default confidence
    threshold (0.7) and the paid providers after it in the waterfall still run. A valid corporate
    email with a full name and a recognised title scores 0.60; the same lead on gmail 0.40. An invalid email is a "miss" with data {email_status: 'invalid',
    reason}: not a confident answer about a bad address, which would stop the waterfall.
    """

    name = "heuristics"
    cost = 0

    def lookup_key(self, lead: LeadInput) -> str | None:
        # The result depends on every field, not just the email, so the key covers them all.
        raw = "\x1f".join(
            (
                _safe_normalize(lead.email) or (lead.email or "").strip().lower(),
                lead.first_name or "",
                lead.last_name or "",
                lead.title or "",
                lead.company_name or "",
                lead.company_domain or "",
            )
        )
        return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

    def enrich(self, lead: LeadInput) -> ProviderResult:
        try:
            email = normalize_email(lead.email or "")
        except InvalidEmail as exc:
            return ProviderResult("miss", 0.0, {"email_status": "invalid", "reason": str(exc)})
        local_part, _, domain = email.rpartition("@")
        free = is_free_mail(domain)
        disposable = is_disposable(domain)
        role = is_role_address(local_part)

        data: dict[str, Any] = {
            "email": email,
            "email_status": "risky" if (disposable or role) else "unknown",
            "is_free_mail": free,
            "is_disposable": disposable,
            "is_role_address": role,
        }
        name_score = _add_name(data, lead, local_part, role)
        title_score = _add_title(data, lead.title)
        _add_company(data, lead, domain, corporate=not (free or disposable))
        if lead.linkedin_url and lead.linkedin_url.strip():
            data["linkedin_url"] = lead.linkedin_url.strip()

        confidence = 0.30 + (0.0 if (free or disposable) else 0.20) + name_score + title_score
        if disposable:
            confidence = min(confidence, 0.20)
        if role:
            confidence = min(confidence, 0.40)
        if free:
            confidence = min(confidence, 0.60)
        return ProviderResult("hit", round(confidence * DERIVED_WEIGHT, 2), data)


def _safe_normalize(email: str | None) -> str | None:
    try:
        return normalize_email(email or "")
    except InvalidEmail:
        return None


def _add_name(data: dict[str, Any], lead: LeadInput, local_part: str, role: bool) -> float:
    first, last = parse_name(lead.first_name, lead.last_name)
    score = 0.20 if (first and last) else 0.10 if (first or last) else 0.0
    if not (first or last) and not role:
        first, last = name_from_local_part(local_part)
        score = 0.10 if (first or last) else 0.0
    if first:
        data["first_name"] = first
    if last:
        data["last_name"] = last
    if first or last:
        data["full_name"] = " ".join(p for p in (first, last) if p)
    return score


def _add_title(data: dict[str, Any], title: str | None) -> float:
    cleaned = " ".join((title or "").split())
    if not cleaned:
        return 0.0
    data["title"] = cleaned
    seniority, department = classify_title(cleaned)
    if seniority:
        data["seniority"] = seniority
    if department:
        data["department"] = department
    return 0.20 if seniority else 0.10


def _add_company(data: dict[str, Any], lead: LeadInput, email_domain: str, *, corporate: bool) -> None:
    # The lead's own company domain wins; otherwise a corporate email domain names the employer.
    domain = registered_domain(lead.company_domain) or (registered_domain(email_domain) if corporate else None)
    if domain:
        data["company_domain"] = domain
    company = " ".join((lead.company_name or "").split())
    if not company and domain:
        company = company_name_from_domain(domain) or ""
    if company:
        data["company_name"] = company
