"""The HTTP layer the paid and sandbox providers share: async pooling, retries, rate limits, error mapping.

Calls are asynchronous (aiohttp) and run on the process's provider loop (`loop.provider_loop()`),
which owns one connection pool per provider: chunk threads hand a whole round to the loop and wait,
instead of a thread per call. Retries are tenacity's (the one retry loop). Every failure leaves as a
`ProviderError` whose `transient` flag tells the engine whether a later attempt could help:

- connect errors, 5xx and rate limits (429, or the statuses an adapter declares as its rate limit):
  retried here up to `max_retries` (exponential backoff with jitter, or the server's Retry-After
  when it sends one), then ProviderError(transient=True); a Retry-After longer than
  `max_retry_after` is not waited out: ProviderError(transient=True) at once;
- read timeouts and broken responses: ProviderError(transient=True) at once, without a retry here,
  because the provider may already have done (and billed) the lookup: the engine decides;
- 401/403: the key was refused, ProviderError(transient=False), unless the adapter declares the
  status as its rate limit (Hunter's 403); other 4xx likewise permanent, except the statuses an
  adapter declares as "not found" (returned as None, i.e. a miss) when the body is JSON;
- a 2xx body that is not a JSON object: ProviderError(transient=False, "malformed response …").

Secrets (API keys) are redacted from every message and log line, and URLs are logged without their
query string (Hunter's carries first and last names).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from shared import redact as redaction
from shared.errors import ProviderError
from shared.integrations.providers.base import LeadInput, ProviderResult
from shared.integrations.providers.loop import provider_loop
from shared.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF_BASE = 0.5  # seconds; doubled per retry, with jitter
DEFAULT_BACKOFF_MAX = 8.0  # seconds
DEFAULT_MAX_RETRY_AFTER = 30.0  # seconds; a server asking for a longer pause gets a transient error instead
CONNECTION_HEADROOM = 16  # connections beyond the cap on calls in flight (keep-alive churn)
KEEPALIVE_SECONDS = 30.0
USER_AGENT = "outbound-enrichment/0.2 (+aiohttp)"
REDACTED = redaction.REDACTED

_ERROR_DETAIL_CHARS = 200


class _Retry(Exception):
    """One try failed in a way a retry may fix; `retry_after` is the server's own pause, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class HttpClient:
    """JSON over HTTP for one provider, with the retry and error policy described in the module doc.

    The `a…` methods are coroutines for the provider loop; the plain ones run them there and wait
    (for scripts and tests that call one provider directly).
    """

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
        max_connections: int = 64 + CONNECTION_HEADROOM,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.max_retries = max(0, int(max_retries))
        self.timeout_seconds = float(timeout_seconds)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_retry_after = float(max_retry_after)
        self.miss_statuses = frozenset(miss_statuses)
        self.rate_limit_statuses = frozenset(rate_limit_statuses)
        self.max_connections = max(1, int(max_connections))
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **dict(headers or {})}
        self._secrets = tuple(s for s in secrets if s)
        redaction.register(*self._secrets)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    # -- public (sync) ----------------------------------------------------------------------------

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        return provider_loop().run(self.arequest_json("GET", path, params=params))

    def close(self) -> None:
        if self._session is not None and not self._session.closed:
            provider_loop().run(self._session.close(), timeout=10)
        self._session = None

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    # -- public (async) ---------------------------------------------------------------------------

    async def arequest_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The response's JSON object, or None for a declared "not found" status. Raises ProviderError."""
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            before_sleep=lambda state: self._log_retry(state, method, path),
            reraise=True,
        )
        tries = 0
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    return await self._once(method, path, clean_params, body)
        except _Retry as exc:
            raise self._error(f"{exc.message} after {tries} attempts", transient=True) from None
        raise self._error(f"{method} {path} gave up", transient=True)  # unreachable: the loop returns or raises

    # -- one try ----------------------------------------------------------------------------------

    async def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        # A session belongs to the loop that made it (a forked child gets a new loop, so a new session).
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session_loop = loop
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                             keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=300)
            # connect covers waiting for a pooled connection too; sock_read is the read timeout.
            timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_seconds,
                                            sock_connect=self.timeout_seconds, sock_read=self.timeout_seconds)
            self._session = aiohttp.ClientSession(headers=self.headers, connector=connector, timeout=timeout,
                                                  trust_env=False, auto_decompress=True)
            provider_loop().track(self._session)
        return self._session

    async def _once(self, method: str, path: str, params: Mapping[str, Any],
                    body: Mapping[str, Any] | None) -> dict[str, Any] | None:
        session = await self._client()
        try:
            async with session.request(method, f"{self.base_url}{path}", params=params or None, json=body,
                                       allow_redirects=False) as response:
                status = response.status
                raw = await response.read()
                retry_after_header = response.headers.get("Retry-After")
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            # The request never reached the provider: safe to try again (after a backoff).
            raise _Retry(f"cannot reach {method} {path} ({type(exc).__name__})") from None
        except (asyncio.TimeoutError, aiohttp.SocketTimeoutError) as exc:
            # A read timeout: the provider may have done (and billed) the lookup; don't repeat it here.
            raise self._error(f"timed out after {self.timeout_seconds:g}s on {method} {path} ({type(exc).__name__})",
                              transient=True) from None
        except aiohttp.ClientError as exc:
            raise self._error(f"transport error on {method} {path} ({type(exc).__name__})", transient=True) from None
        if 200 <= status < 300:
            return self._parse(raw, status, method, path)
        if status in self.rate_limit_statuses:
            wait = parse_retry_after(retry_after_header)
            if wait is not None and wait > self.max_retry_after:
                raise self._error(
                    f"rate limited on {method} {path}: Retry-After {wait:.0f}s exceeds {self.max_retry_after:g}s",
                    transient=True,
                )
            raise _Retry(f"rate limited on {method} {path} (HTTP {status})", retry_after=wait)
        if status >= 500:
            raise _Retry(f"HTTP {status} from {method} {path}{self._detail(raw)}")
        return self._client_error(raw, status, method, path)

    def _parse(self, raw: bytes, status: int, method: str, path: str) -> dict[str, Any]:
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise self._error(f"malformed response from {method} {path}: not JSON (HTTP {status})",
                              transient=False) from None
        if not isinstance(payload, dict):
            raise self._error(
                f"malformed response from {method} {path}: expected a JSON object, got {type(payload).__name__}",
                transient=False,
            )
        return payload

    def _client_error(self, raw: bytes, status: int, method: str, path: str) -> None:
        if status in self.miss_statuses and _is_json(raw):
            # The provider answered "no such person" in its own format; a bare 404 (HTML, empty)
            # more likely means a wrong base URL, which must not pass silently as a miss.
            return None
        if status in (401, 403):
            raise self._error(f"HTTP {status} from {method} {path}: the API key was refused{self._detail(raw)}",
                              transient=False)
        raise self._error(f"HTTP {status} from {method} {path}{self._detail(raw)}", transient=False)

    # -- waiting ----------------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return exc.retry_after
        return backoff_delay(state.attempt_number - 1, self.backoff_base, self.backoff_max)

    def _log_retry(self, state: RetryCallState, method: str, path: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.message if isinstance(exc, _Retry) else type(exc).__name__
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.warning("%s: %s, retrying in %.2fs (attempt %d/%d)", self.provider, self.redact(reason), delay,
                       state.attempt_number, self.max_retries + 1)

    # -- messages ---------------------------------------------------------------------------------

    def _error(self, message: str, *, transient: bool) -> ProviderError:
        return ProviderError(self.redact(f"{self.provider}: {message}"), transient=transient)

    def _detail(self, raw: bytes) -> str:
        detail = error_detail(raw)
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


def error_detail(raw: bytes) -> str:
    """A short human description from an error body: Hunter's errors[], Apollo's error/message, or text."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        text = " ".join(raw.decode("utf-8", "replace").split())
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


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
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
    """What the HTTP-backed adapters share: an HttpClient, `enrich()` over `aenrich()`, `close()`."""

    name: str
    cost: int
    remote = True  # the engine runs its calls on the provider loop
    http: HttpClient

    async def aenrich(self, lead: LeadInput) -> ProviderResult:
        raise NotImplementedError

    def enrich(self, lead: LeadInput) -> ProviderResult:
        """One lookup from synchronous code (the engine itself submits `aenrich` calls in bulk)."""
        return provider_loop().run(self.aenrich(lead))

    def _api_key(self, secret: SecretStr | None, env_name: str) -> str:
        if secret is None or not secret.get_secret_value():
            raise ValueError(f"provider {self.name!r} needs {env_name}")
        return secret.get_secret_value()

    def _http(self, settings: Settings, *, base_url: str, backoff_base: float, **options: Any) -> HttpClient:
        """The adapter's client, with the timeouts, retries and pool size every provider shares from settings."""
        return HttpClient(provider=self.name, base_url=base_url, timeout_seconds=settings.provider_timeout_seconds,
                          max_retries=settings.provider_max_retries, backoff_base=backoff_base,
                          max_connections=settings.provider_concurrency + CONNECTION_HEADROOM, **options)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HttpProviderBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
