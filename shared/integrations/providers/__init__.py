"""Enrichment providers and the factory that builds the waterfall from settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shared.integrations.providers.base import LeadInput, Provider, ProviderError, ProviderResult
from shared.settings import Settings, get_settings

__all__ = [
    "KNOWN_PROVIDERS",
    "LeadInput",
    "Provider",
    "ProviderError",
    "ProviderResult",
    "build_providers",
    "close_providers",
]


def _heuristics(settings: Settings) -> Provider:
    from shared.integrations.providers.heuristics import HeuristicsProvider

    return HeuristicsProvider()


def _noop(settings: Settings) -> Provider:
    from shared.integrations.providers.noop import NoopProvider

    return NoopProvider()


def _sandbox(settings: Settings) -> Provider:
    # Imported lazily: the sandbox module pulls in aiohttp, which workers that never use it skip.
    from shared.integrations.providers.sandbox import SandboxProvider

    return SandboxProvider(settings)


def _apollo(settings: Settings) -> Provider:
    from shared.integrations.providers.apollo import ApolloProvider

    return ApolloProvider(settings)


def _hunter(settings: Settings) -> Provider:
    from shared.integrations.providers.hunter import HunterProvider

    return HunterProvider(settings)


_FACTORIES: dict[str, Callable[[Settings], Provider]] = {
    "heuristics": _heuristics,
    "noop": _noop,
    "sandbox": _sandbox,
    "apollo": _apollo,
    "hunter": _hunter,
}
KNOWN_PROVIDERS: tuple[str, ...] = tuple(_FACTORIES)


def build_providers(settings: Settings | None = None, names: Sequence[str] | None = None) -> list[Provider]:
    """Providers in waterfall order: `names` if given, else settings.providers() (PROVIDER_ORDER).

    Raises ValueError for an unknown or repeated name, or when a provider lacks its key/URL
    (e.g. "provider 'apollo' needs APOLLO_API_KEY"), before any provider is left half-built.
    """
    settings = settings or get_settings()
    order = [n.strip().lower() for n in (names if names is not None else settings.providers()) if n.strip()]
    unknown = [n for n in order if n not in _FACTORIES]
    if unknown:
        raise ValueError(f"unknown provider {unknown[0]!r} (known: {', '.join(KNOWN_PROVIDERS)})")
    repeated = sorted({n for n in order if order.count(n) > 1})
    if repeated:
        raise ValueError(f"provider {repeated[0]!r} is listed more than once")
    built: list[Provider] = []
    try:
        for provider_name in order:
            built.append(_FACTORIES[provider_name](settings))
    except Exception:
        close_providers(built)
        raise
    return built


def close_providers(providers: Sequence[object]) -> None:
    """Close the HTTP pools of providers that have one (the offline ones have nothing to close)."""
    for provider in providers:
        close = getattr(provider, "close", None)
        if callable(close):
            close()
