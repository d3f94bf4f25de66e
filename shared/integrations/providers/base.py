"""The provider contract: what every enrichment source (offline, sandbox, Apollo, Hunter…) speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class LeadInput:
    """What a provider is told about a lead: ids and a few fields, never a database row."""

    lead_id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company_name: str | None = None
    company_domain: str | None = None
    linkedin_url: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """A provider's answer. `data` uses the normalized keys below, whatever the provider's own shape.

    Normalized keys (all optional): email, email_status ('valid'|'invalid'|'risky'|'unknown'),
    is_free_mail, is_disposable, is_role_address, first_name, last_name, full_name, title,
    seniority ('c_level'|'vp'|'director'|'manager'|'senior'|'entry'), department, company_name,
    company_domain, company_size (employees, int), industry, country, phone, linkedin_url.
    """

    outcome: Literal["hit", "miss"]
    confidence: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    name: str
    cost: int  # credits per call; 0 means free (no reservation)

    def lookup_key(self, lead: LeadInput) -> str | None:
        """Cache key for this lead at this provider; None when the provider cannot be asked."""
        ...

    def enrich(self, lead: LeadInput) -> ProviderResult:
        """One lookup. Raises ProviderError on failure (after the adapter's own retries)."""
        ...
