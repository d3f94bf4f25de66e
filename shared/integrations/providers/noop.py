"""A provider that answers instantly with an empty hit: benchmarks use it to time the state machine alone."""

from __future__ import annotations

from shared.integrations.providers.base import LeadInput, ProviderResult

_EMPTY_HIT = ProviderResult("hit", 1.0, {})


class NoopProvider:
    name = "noop"
    cost = 0

    def lookup_key(self, lead: LeadInput) -> str | None:
        # Never None (None would make the engine skip it); no validation, to stay free of cost.
        return (lead.email or "").strip().lower() or f"lead:{lead.lead_id}"

    def enrich(self, lead: LeadInput) -> ProviderResult:
        # A fresh dict each time: callers may merge into `data`, and a shared one would leak.
        return ProviderResult(_EMPTY_HIT.outcome, _EMPTY_HIT.confidence, {})
