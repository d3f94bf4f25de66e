"""Enrichment providers, the preflight that validates their settings, and the factory that builds the waterfall.

The built-in providers are named here. Others (the dev-only `sandbox` of devkit/) register through
an entry point of the group PLUGIN_GROUP in an installed distribution's metadata, naming a
`ProviderPlugin`: this package never imports them by name. Production (the Modal images, the
Prefect Managed pull) does not pip-install the project, so it has no such entry point and a
PROVIDER_ORDER naming one fails preflight as an unknown provider.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from urllib.parse import urlsplit

from shared.errors import ProviderConfigError
from shared.integrations.providers.base import LeadInput, Provider, ProviderResult
from shared.settings import Settings, get_settings

__all__ = [
    "AUTO",
    "PLUGIN_GROUP",
    "LeadInput",
    "Provider",
    "ProviderPlugin",
    "ProviderResult",
    "build_providers",
    "close_providers",
    "known_providers",
    "preflight",
]

AUTO = "auto"
PLUGIN_GROUP = "outbound.providers"

# HTTP client libraries log each request's URL at INFO; Hunter's query string carries first and
# last names, which must stay out of INFO logs (Prefect Cloud, the Modal dashboard).
_URL_LOGGERS = ("httpx", "httpcore", "aiohttp.client", "urllib3")


def _heuristics(settings: Settings) -> Provider:
    from shared.integrations.providers.heuristics import HeuristicsProvider

    return HeuristicsProvider()


def _noop(settings: Settings) -> Provider:
    from shared.integrations.providers.noop import NoopProvider

    return NoopProvider()


def _apollo(settings: Settings) -> Provider:
    from shared.integrations.providers.apollo import ApolloProvider

    return ApolloProvider(settings)


def _hunter(settings: Settings) -> Provider:
    from shared.integrations.providers.hunter import HunterProvider

    return HunterProvider(settings)


_FACTORIES: dict[str, Callable[[Settings], Provider]] = {
    "heuristics": _heuristics,
    "noop": _noop,
    "apollo": _apollo,
    "hunter": _hunter,
}

# A setting a provider needs: (its name as people type it, the Settings attribute, "key" or "url").
Need = tuple[str, str, str]
_NEEDS: dict[str, tuple[Need, ...]] = {
    "apollo": (("APOLLO_API_KEY", "apollo_api_key", "key"), ("APOLLO_BASE_URL", "apollo_base_url", "url")),
    "hunter": (("HUNTER_API_KEY", "hunter_api_key", "key"), ("HUNTER_BASE_URL", "hunter_base_url", "url")),
}


@dataclass(frozen=True)
class ProviderPlugin:
    """A provider from outside this package, named by an entry point in PLUGIN_GROUP (the entry point's name is the provider's).

    `needs` are checked by preflight like a built-in provider's; under `auto` the provider joins the
    waterfall, after the built-in ones, when every one of them is set.
    """

    factory: Callable[[Settings], Provider]
    needs: tuple[Need, ...] = ()


@functools.cache
def _plugin_entry_points() -> dict[str, EntryPoint]:
    """The registered plugins by provider name (a built-in name cannot be taken over)."""
    found = {ep.name.strip().lower(): ep for ep in entry_points(group=PLUGIN_GROUP)}
    return {name: ep for name, ep in sorted(found.items()) if name not in _FACTORIES and name != AUTO}


@functools.cache
def _plugin(name: str) -> ProviderPlugin:
    entry = _plugin_entry_points()[name]
    try:
        plugin = entry.load()
    except ImportError as exc:
        raise ProviderConfigError(f"provider {name!r} is registered ({PLUGIN_GROUP} entry point {entry.value}) "
                                  f"but cannot be imported here: {exc}") from exc
    if not isinstance(plugin, ProviderPlugin):
        raise ProviderConfigError(f"provider {name!r}: entry point {entry.value} is not a ProviderPlugin")
    return plugin


def known_providers() -> tuple[str, ...]:
    """Every provider name PROVIDER_ORDER may use here: the built-in ones, then the registered plugins."""
    return (*_FACTORIES, *_plugin_entry_points())


def _needs(name: str) -> tuple[Need, ...]:
    return _NEEDS.get(name, ()) if name in _FACTORIES else _plugin(name).needs


def resolve_order(settings: Settings) -> list[str]:
    """PROVIDER_ORDER as names; `auto` means heuristics plus every paid provider whose settings are present."""
    names = [n.strip().lower() for n in settings.provider_order.split(",") if n.strip()]
    if names == [AUTO]:
        names = ["heuristics"]
        names += ["apollo"] if _secret(settings, "apollo_api_key") else []
        names += ["hunter"] if _secret(settings, "hunter_api_key") else []
        names += [name for name in _plugin_entry_points() if _configured_plugin(settings, name)]
    return names


def _configured_plugin(settings: Settings, name: str) -> bool:
    """Under `auto`: a plugin that imports here and whose every setting is set (one that cannot import is left out)."""
    try:
        needs = _plugin(name).needs
    except ProviderConfigError:
        logging.getLogger(__name__).debug("provider %r left out of auto: it cannot be loaded here", name)
        return False
    return all(_secret(settings, attr).strip() if kind == "key" else (getattr(settings, attr, None) or "").strip()
               for _, attr, kind in needs)


def preflight(settings: Settings | None = None, names: Sequence[str] | None = None) -> list[str]:
    """The provider names the waterfall would use, after checking their settings. No network call.

    Raises ProviderConfigError with a one-line message naming the missing or bad setting (never its
    value): an unknown or repeated name, a provider without its key or URL, a key that cannot go
    in an HTTP header, a base URL that is not http(s), or limits that make no sense.
    """
    settings = settings or get_settings()
    order = [n.strip().lower() for n in names if n.strip()] if names is not None else resolve_order(settings)
    source = "the provider list" if names is not None else "PROVIDER_ORDER"
    known = known_providers()
    if not order:
        raise ProviderConfigError(f"{source} is empty (known providers: {', '.join(known)}, or auto)")
    for name in order:
        if name not in known:
            raise ProviderConfigError(f"{source} names unknown provider {name!r} "
                                      f"(known here: {', '.join(known)}, or auto alone; providers outside "
                                      f"shared are registered by an installed {PLUGIN_GROUP} entry point)")
    repeated = sorted({n for n in order if order.count(n) > 1})
    if repeated:
        raise ProviderConfigError(f"{source} lists provider {repeated[0]!r} more than once")
    for name in order:
        for env_name, attr, kind in _needs(name):
            if kind == "key":
                _check_key(settings, source, name, env_name, attr)
            else:
                _check_url(settings, source, name, env_name, attr)
    if any(_needs(name) for name in order):
        for env_name, attr, low in (("PROVIDER_CONCURRENCY", "provider_concurrency", 1),
                                    ("LEAD_CONCURRENCY", "lead_concurrency", 1),
                                    ("PROVIDER_MAX_RETRIES", "provider_max_retries", 0)):
            if getattr(settings, attr) < low:
                raise ProviderConfigError(f"{env_name} must be at least {low}, got {getattr(settings, attr)}")
        if not settings.provider_timeout_seconds > 0:
            raise ProviderConfigError(f"PROVIDER_TIMEOUT_SECONDS must be positive, got {settings.provider_timeout_seconds}")
    return order


def _secret(settings: Settings, attr: str) -> str:
    value = getattr(settings, attr, None)
    return value.get_secret_value() if value is not None else ""


def _check_key(settings: Settings, source: str, name: str, env_name: str, attr: str) -> None:
    key = _secret(settings, attr)
    if not key.strip():
        raise ProviderConfigError(f"{source} names {name!r} but {env_name} is not set")
    for position, char in enumerate(key, start=1):
        if not char.isascii():
            raise ProviderConfigError(f"{env_name} contains a non-ASCII character (position {position}); "
                                      f"HTTP headers need ASCII")
        if not char.isprintable() or char.isspace():
            raise ProviderConfigError(f"{env_name} contains a space or control character (position {position}); "
                                      f"copy the key again without it")


def _check_url(settings: Settings, source: str, name: str, env_name: str, attr: str) -> None:
    url = (getattr(settings, attr, None) or "").strip()
    if not url:
        raise ProviderConfigError(f"{source} names {name!r} but {env_name} is not set")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and url.isascii()
    except ValueError:
        ok = False
    if not ok:
        raise ProviderConfigError(f"{env_name} must be an http(s) URL with a host, like https://api.example.com")


def build_providers(settings: Settings | None = None, names: Sequence[str] | None = None) -> list[Provider]:
    """Providers in waterfall order: `names` if given, else PROVIDER_ORDER (`auto` resolved), after preflight.

    Raises ProviderConfigError (see `preflight`) before any provider is built.
    """
    settings = settings or get_settings()
    order = preflight(settings, names)
    for name in _URL_LOGGERS:
        if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
            logging.getLogger(name).setLevel(logging.WARNING)
    built: list[Provider] = []
    try:
        for provider_name in order:
            factory = _FACTORIES.get(provider_name) or _plugin(provider_name).factory
            built.append(factory(settings))
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
