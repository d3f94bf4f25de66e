"""The HTTP layer the paid and sandbox providers share: pooling, retries, rate limits, error mapping.

One `HttpClient` per provider instance owns its connection pool (a few `httpx.Client` shards, see
`__init__`), so the ~200 worker threads of a process share keep-alive connections. Every failure leaves as a
`ProviderError` whose `transient` flag tells the engine whether a later attempt could help:

- connect errors / pool waits, 429 and 5xx: retried here (exponential backoff with jitter, or the
  server's Retry-After) up to `max_retries`, then ProviderError(transient=True);
- read/write timeouts: ProviderError(transient=True) at once, without a retry here, because the
  provider may already have done (and billed) the work: the engine decides about trying again;
- 401/403: the key was refused, ProviderError(transient=False); other 4xx likewise permanent, except
  the statuses an adapter declares as "not found" (returned as None, i.e. a miss);
- a 2xx body that is not a JSON object: ProviderError(transient=False, "malformed response …").

Secrets (API keys) are redacted from every message and log line, and URLs are logged without their
query string.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx
from pydantic import SecretStr

from shared.integrations.providers.base import ProviderError
from shared.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF_BASE = 0.5  # seconds; doubled per retry, with jitter
DEFAULT_BACKOFF_MAX = 8.0
DEFAULT_MAX_RETRY_AFTER = 30.0  # a server asking for a longer pause gets a transient error instead
DEFAULT_MAX_CONNECTIONS = 256  # ~200 worker threads per process, plus headroom
_SHARD_SIZE = 16
_MAX_SHARDS = 16
USER_AGENT = "outbound-enrichment/0.1 (+httpx)"
REDACTED = "***"

_ERROR_DETAIL_CHARS = 200


class HttpClient:
    """JSON over HTTP for one provider, with the retry and error policy described in the module doc."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        timeout_seconds: float,
        max_retries: int,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        miss_statuses: Collection[int] = (),
        rate_limit_statuses: Collection[int] = (429,),
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.max_retries = max(0, int(max_retries))
        self.timeout_seconds = float(timeout_seconds)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_retry_after = float(max_retry_after)
        self.miss_statuses = frozenset(miss_statuses)
        self.rate_limit_statuses = frozenset(rate_limit_statuses)
        self._secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        # Several small pools rather than one big one: httpcore's pool does work proportional to
        # its size under one lock on every request, and with ~200 threads on a 256-connection pool
        # throughput fell to ~100 req/s against a 200 ms server, where 16 pools of 16 gave ~800.
        # Each thread sticks to one shard, so its keep-alive connection is reused.
        shards = 1 if transport is not None else max(1, min(_MAX_SHARDS, math.ceil(max_connections / _SHARD_SIZE)))
        per_shard = math.ceil(max_connections / shards)
        ssl_context = httpx.create_ssl_context()  # built once: each one loads the CA bundle
        self._shards = tuple(
            httpx.Client(
                base_url=base_url.rstrip("/"),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json", **dict(headers or {})},
                timeout=httpx.Timeout(self.timeout_seconds),
                limits=httpx.Limits(
                    max_connections=per_shard,
                    max_keepalive_connections=per_shard,
                    keepalive_expiry=30.0,
                ),
                verify=ssl_context,
                transport=transport,
                follow_redirects=False,
            )
            for _ in range(shards)
        )
        self._local = threading.local()
        self._next_shard = itertools.count()

    # -- public -----------------------------------------------------------------------------------

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        return self.request_json("GET", path, params=params)

    def post_json(
        self, path: str, *, body: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        return self.request_json("POST", path, params=params, body=body)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The response's JSON object, or None for a declared "not found" status. Raises ProviderError."""
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.max_retries + 1):
            last_try = attempt == self.max_retries
            response = self._send(method, path, clean_params, body, attempt=attempt, last_try=last_try)
            if response is None:  # a retryable transport failure; _send already slept
                continue
            status = response.status_code
            if 200 <= status < 300:
                return self._parse(response, method, path)
            if status in self.rate_limit_statuses:
                self._wait_for_rate_limit(response, method, path, attempt=attempt, last_try=last_try)
                continue
            if status >= 500:
                if last_try:
                    raise self._error(
                        f"HTTP {status} from {method} {path} after {attempt + 1} attempts{self._detail(response)}",
                        transient=True,
                    )
                self._backoff(attempt, f"HTTP {status}", method, path)
                continue
            return self._client_error(response, method, path)
        # Unreachable: the last attempt always returns or raises.
        raise self._error(f"{method} {path} gave up", transient=True)

    def close(self) -> None:
        for client in self._shards:
            client.close()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._shards[next(self._next_shard) % len(self._shards)]
            self._local.client = client
        return client

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    # -- one attempt ------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        body: Mapping[str, Any] | None,
        *,
        attempt: int,
        last_try: bool,
    ) -> httpx.Response | None:
        try:
            return self._client().request(method, path, params=params or None, json=body)
        except (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ConnectError) as exc:
            # The request never reached the provider: safe to try again right away (after backoff).
            if last_try:
                raise self._error(
                    f"cannot reach {method} {path} after {attempt + 1} attempts ({type(exc).__name__})",
                    transient=True,
                ) from None
            self._backoff(attempt, type(exc).__name__, method, path)
            return None
        except httpx.TimeoutException as exc:
            # Read/write timeout: the provider may have done (and billed) the lookup; don't repeat it here.
            raise self._error(
                f"timed out after {self.timeout_seconds:g}s on {method} {path} ({type(exc).__name__})",
                transient=True,
            ) from None
        except httpx.TransportError as exc:
            raise self._error(f"transport error on {method} {path} ({type(exc).__name__})", transient=True) from None

    def _parse(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise self._error(
                f"malformed response from {method} {path}: not JSON (HTTP {response.status_code})",
                transient=False,
            ) from None
        if not isinstance(payload, dict):
            raise self._error(
                f"malformed response from {method} {path}: expected a JSON object, got {type(payload).__name__}",
                transient=False,
            )
        return payload

    def _client_error(self, response: httpx.Response, method: str, path: str) -> None:
        status = response.status_code
        if status in self.miss_statuses and _is_json(response):
            # The provider answered "no such person" in its own format; a bare 404 (HTML, empty)
            # more likely means a wrong base URL, which must not pass silently as a miss.
            return None
        if status in (401, 403):
            raise self._error(
                f"HTTP {status} from {method} {path}: the API key was refused{self._detail(response)}",
                transient=False,
            )
        raise self._error(f"HTTP {status} from {method} {path}{self._detail(response)}", transient=False)

    # -- waiting ----------------------------------------------------------------------------------

    def _wait_for_rate_limit(
        self, response: httpx.Response, method: str, path: str, *, attempt: int, last_try: bool
    ) -> None:
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is not None and wait > self.max_retry_after:
            raise self._error(
                f"rate limited on {method} {path}: Retry-After {wait:.0f}s exceeds {self.max_retry_after:g}s",
                transient=True,
            )
        if last_try:
            raise self._error(
                f"rate limited on {method} {path} (HTTP {response.status_code}) after {attempt + 1} attempts",
                transient=True,
            )
        if wait is None:
            self._backoff(attempt, f"HTTP {response.status_code}", method, path)
            return
        logger.warning(
            "%s: HTTP %s on %s %s, honouring Retry-After %.2fs (attempt %d/%d)",
            self.provider, response.status_code, method, path, wait, attempt + 1, self.max_retries + 1,
        )
        self._sleep(wait)

    def _backoff(self, attempt: int, reason: str, method: str, path: str) -> None:
        delay = backoff_delay(attempt, self.backoff_base, self.backoff_max)
        logger.warning(
            "%s: %s on %s %s, retrying in %.2fs (attempt %d/%d)",
            self.provider, reason, method, path, delay, attempt + 1, self.max_retries + 1,
        )
        self._sleep(delay)

    # -- messages ---------------------------------------------------------------------------------

    def _error(self, message: str, *, transient: bool) -> ProviderError:
        return ProviderError(self.redact(f"{self.provider}: {message}"), transient=transient)

    def _detail(self, response: httpx.Response) -> str:
        detail = error_detail(response)
        return f": {self.redact(detail)}" if detail else ""


# -- helpers (pure) -----------------------------------------------------------------------------


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """base·2^attempt, capped, with "equal jitter": half fixed, half random, so retries never bunch up."""
    ceiling = min(cap, base * (2**attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/garbled."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def error_detail(response: httpx.Response) -> str:
    """A short human description from an error body: Hunter's errors[], Apollo's error/message, or text."""
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        text = " ".join(response.text.split())
        return text[:_ERROR_DETAIL_CHARS]
    parts: list[str] = []
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, dict):
                    parts.append(str(item.get("details") or item.get("id") or item))
                else:
                    parts.append(str(item))
        for key in ("error", "message", "detail"):
            if isinstance(payload.get(key), str):
                parts.append(payload[key])
    if not parts:
        parts.append(json.dumps(payload)[:_ERROR_DETAIL_CHARS])
    return "; ".join(parts)[:_ERROR_DETAIL_CHARS]


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def expect_mapping(value: object, what: str, provider: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else the adapter's "malformed response" ProviderError."""
    if not isinstance(value, dict):
        raise ProviderError(
            f"{provider}: malformed response: {what} should be an object, got {type(value).__name__}",
            transient=False,
        )
    return value


class HttpProviderBase:
    """What the HTTP-backed adapters share: an HttpClient, `close()` and use as a context manager."""

    name: str
    cost: int
    http: HttpClient

    def _api_key(self, secret: SecretStr | None, env_name: str) -> str:
        if secret is None or not secret.get_secret_value():
            raise ValueError(f"provider {self.name!r} needs {env_name}")
        return secret.get_secret_value()

    def _http(self, settings: Settings, *, base_url: str, backoff_base: float, **options: Any) -> HttpClient:
        """The adapter's client, with the timeouts and retries every provider shares from settings."""
        return HttpClient(provider=self.name, base_url=base_url, timeout_seconds=settings.provider_timeout_seconds,
                          max_retries=settings.provider_max_retries, backoff_base=backoff_base, **options)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HttpProviderBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
