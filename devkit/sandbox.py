"""A local stand-in for a paid enrichment API, for the demo, tests and benchmarks: server and client provider.

Server: `serve()` starts an aiohttp app on its own event loop in a background thread (latency is an
`asyncio.sleep`, so thousands of requests can wait at once on one core). Run it standalone with

    python -m devkit.sandbox --port 8765 --latency-ms 200 --hit-rate 0.7

`POST /v1/enrich` takes {"email", "first_name", "last_name", "company_domain"} and a header
`Authorization: Bearer <anything>`. Whether an email is a hit, and the person and company returned,
come from a hash of (seed, email): the same seed gives the same answers on every run. Injected
failures (503 at `error_rate`, 429 with Retry-After at `rate_limit_rate`) are drawn per request from
a seeded generator, so a retry can succeed. `GET /health` and `GET /stats` help scripts.

Client: `SandboxProvider`, a provider like Apollo's, over the shared (async) HTTP layer. `PLUGIN`
registers it as provider `sandbox` (pyproject.toml's `outbound.providers` entry point, read by
shared.integrations.providers): PROVIDER_ORDER may name it wherever the project is pip-installed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import signal
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.emails import normalize_email
from shared.errors import InvalidEmail, ProviderError
from shared.integrations.providers import ProviderPlugin
from shared.integrations.providers.base import LeadInput, ProviderResult
from shared.lead_rules import classify_title, is_free_mail, registered_domain
from shared.integrations.providers.heuristics import company_name_from_domain, name_from_local_part
from shared.integrations.providers.http import DEFAULT_BACKOFF_BASE, HttpClient, HttpProviderBase, expect_mapping
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

ENRICH_PATH = "/v1/enrich"
DEFAULT_TOKEN = "sandbox"  # the sandbox accepts any bearer token; it has no key setting

# -- deterministic fake data ---------------------------------------------------------------------

_FIRST_NAMES = (
    "Ava", "Liam", "Maya", "Noah", "Sofia", "Ethan", "Lena", "Omar", "Priya", "Lucas",
    "Chloe", "Mateo", "Hana", "Jonas", "Zara", "Felix", "Amara", "Leo", "Ines", "Kai",
)
_LAST_NAMES = (
    "Martin", "Nguyen", "Schmidt", "Garcia", "Rossi", "Kowalski", "Okafor", "Tanaka", "Dubois", "Silva",
    "Johansson", "Patel", "Cohen", "Murphy", "Novak", "Haddad", "Larsen", "Moreau", "Fischer", "Reyes",
)
_TITLES = (
    "Chief Executive Officer", "Chief Revenue Officer", "Chief Technology Officer", "Chief Marketing Officer",
    "VP of Sales", "VP of Engineering", "VP Marketing", "Head of Growth", "Head of People",
    "Director of Sales", "Director of Engineering", "Director of Finance", "Sales Manager",
    "Engineering Manager", "Marketing Manager", "Operations Manager", "Product Manager",
    "Customer Success Manager", "Senior Software Engineer", "Senior Account Executive",
    "Software Engineer", "Account Executive", "Sales Development Representative", "Marketing Specialist",
    "Financial Analyst", "Recruiter", "IT Manager", "General Counsel", "Data Scientist", "UX Designer",
)
_INDUSTRIES = (
    "computer software", "information technology & services", "financial services", "marketing & advertising",
    "hospital & health care", "retail", "logistics & supply chain", "real estate", "education management",
    "manufacturing", "telecommunications", "consumer goods",
)
_COUNTRIES = (
    "United States", "United States", "United States", "United Kingdom", "Germany", "France", "Canada",
    "Netherlands", "Australia", "Spain", "Sweden", "India",
)
_EMPLOYEES = (4, 12, 28, 55, 120, 240, 480, 950, 2400, 7800, 21000)
_COMPANY_WORDS = (
    ("Blue", "North", "Bright", "Silver", "Nova", "Summit", "Vertex", "Harbor", "Atlas", "Lumen"),
    ("Labs", "Systems", "Analytics", "Logistics", "Health", "Works", "Cloud", "Partners", "Dynamics", "Foods"),
)


def _digest(seed: int, email: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x1f{email}".encode("utf-8", "surrogatepass"), digest_size=32).digest()


def _fraction(digest: bytes, offset: int) -> float:
    """A number in [0, 1) from 4 bytes of the digest; different offsets are independent draws."""
    return int.from_bytes(digest[offset : offset + 4], "big") / 2**32


def _pick(options: tuple[Any, ...], digest: bytes, offset: int) -> Any:
    return options[int.from_bytes(digest[offset : offset + 2], "big") % len(options)]


def is_hit(email: str, *, seed: int, hit_rate: float) -> bool:
    """The sandbox's deterministic hit/miss decision for one (normalized) email."""
    return _fraction(_digest(seed, email), 0) < hit_rate


def fake_record(
    email: str,
    *,
    seed: int,
    first_name: str | None = None,
    last_name: str | None = None,
    company_domain: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """A realistic person + company for `email`, the same for the same (seed, email).

    What the caller already knows (name, domain, title) is echoed back, as a real provider would
    confirm it, so a demo lead's score matches the title shown next to it.
    """
    d = _digest(seed, email)
    local_part, _, email_domain = email.rpartition("@")
    guessed_first, guessed_last = name_from_local_part(local_part)
    first = (first_name or "").strip() or guessed_first or _pick(_FIRST_NAMES, d, 4)
    last = (last_name or "").strip() or guessed_last or _pick(_LAST_NAMES, d, 6)
    title = (title or "").strip() or _pick(_TITLES, d, 8)
    seniority, department = classify_title(title)

    domain = registered_domain(company_domain)
    if domain is None and not is_free_mail(email_domain):
        domain = registered_domain(email_domain)
    if domain is None:  # a gmail user still works somewhere: invent the employer
        company = f"{_pick(_COMPANY_WORDS[0], d, 10)} {_pick(_COMPANY_WORDS[1], d, 12)}"
        domain = company.lower().replace(" ", "") + ".com"
    else:
        company = company_name_from_domain(domain) or domain
    country = _pick(_COUNTRIES, d, 14)
    slug = f"{first}-{last}".lower().replace(" ", "-")
    return {
        "status": "hit",
        "confidence": round(0.6 + 0.39 * _fraction(d, 16), 2),
        "person": {
            "email": email,
            "email_status": "valid" if _fraction(d, 20) < 0.85 else "accept_all",
            "first_name": first,
            "last_name": last,
            "full_name": f"{first} {last}",
            "title": title,
            "seniority": seniority,
            "department": department,
            "country": country,
            "phone": f"+1-555-{int.from_bytes(d[24:26], 'big') % 10000:04d}",
            "linkedin_url": f"https://www.linkedin.com/in/{slug}-{d[26:28].hex()}",
        },
        "company": {
            "name": company,
            "domain": domain,
            "employees": _pick(_EMPLOYEES, d, 28),
            "industry": _pick(_INDUSTRIES, d, 30),
            "country": country,
            "linkedin_url": f"https://www.linkedin.com/company/{domain.split('.', 1)[0]}",
        },
    }


# -- server --------------------------------------------------------------------------------------


@dataclass
class SandboxStats:
    requests: int = 0
    hits: int = 0
    misses: int = 0
    errors: int = 0
    rate_limited: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Behaviour:
    latency_ms: float
    hit_rate: float
    error_rate: float
    rate_limit_rate: float
    retry_after_seconds: float
    seed: int
    rng: random.Random = field(init=False)
    stats: SandboxStats = field(default_factory=SandboxStats)

    def __post_init__(self) -> None:
        # Only the server's event loop thread draws from it, so no lock is needed.
        self.rng = random.Random(self.seed)


def _json(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


def _make_app(behaviour: _Behaviour) -> web.Application:
    async def enrich(request: web.Request) -> web.Response:
        stats = behaviour.stats
        stats.requests += 1
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            stats.rejected += 1
            return _json({"error": "missing bearer token"}, status=401)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            stats.rejected += 1
            return _json({"error": "body must be JSON"}, status=400)
        email = body.get("email") if isinstance(body, dict) else None
        try:
            email = normalize_email(email) if isinstance(email, str) else None
        except InvalidEmail:
            email = None
        if email is None:
            stats.rejected += 1
            return _json({"error": "a valid email is required"}, status=422)

        roll = behaviour.rng.random()
        if behaviour.latency_ms > 0:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        if roll < behaviour.error_rate:
            stats.errors += 1
            return _json({"error": "injected failure"}, status=503)
        if roll < behaviour.error_rate + behaviour.rate_limit_rate:
            stats.rate_limited += 1
            retry_after = {"Retry-After": f"{behaviour.retry_after_seconds:g}"}
            return _json({"error": "rate limited"}, status=429, headers=retry_after)
        if not is_hit(email, seed=behaviour.seed, hit_rate=behaviour.hit_rate):
            stats.misses += 1
            return _json({"status": "miss"})
        stats.hits += 1
        return _json(
            fake_record(
                email,
                seed=behaviour.seed,
                first_name=_str_or_none(body.get("first_name")),
                last_name=_str_or_none(body.get("last_name")),
                company_domain=_str_or_none(body.get("company_domain")),
                title=_str_or_none(body.get("title")),
            )
        )

    async def health(_: web.Request) -> web.Response:
        return _json({"ok": True})

    async def stats(_: web.Request) -> web.Response:
        return _json(behaviour.stats.as_dict())

    app = web.Application()
    app.router.add_post(ENRICH_PATH, enrich)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class SandboxServer:
    """A running sandbox: `.url`, `.stats`, `.stop()`; also a context manager."""

    def __init__(self, host: str, sock: socket.socket, behaviour: _Behaviour) -> None:
        self.host = host
        self.port: int = sock.getsockname()[1]
        self._sock = sock
        self._behaviour = behaviour
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def stats(self) -> SandboxStats:
        return self._behaviour.stats

    def start(self, timeout: float = 10.0) -> SandboxServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("sandbox server did not start in time")
        if self._startup_error is not None:
            raise RuntimeError(f"sandbox server failed to start: {self._startup_error}") from self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                future.result(timeout)
            except Exception:  # stopping anyway; a slow cleanup must not hang the caller
                logger.warning("sandbox: cleanup did not finish cleanly", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start_site())
        except BaseException as exc:  # reported to start() rather than lost in the thread
            self._startup_error = exc
            self._sock.close()
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _start_site(self) -> None:
        # access_log=None: a log line per request would cost more than the request itself.
        self._runner = web.AppRunner(_make_app(self._behaviour), access_log=None, handle_signals=False)
        await self._runner.setup()
        # A short shutdown_timeout: stop() should not wait out requests still sleeping their latency.
        await web.SockSite(self._runner, self._sock, backlog=4096, shutdown_timeout=1.0).start()


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    latency_ms: float = 200,
    hit_rate: float = 0.7,
    error_rate: float = 0.0,
    rate_limit_rate: float = 0.0,
    retry_after_seconds: float = 1.0,
    seed: int = 0,
) -> SandboxServer:
    """Start the sandbox in a background thread (port 0 picks a free port) and return it running."""
    for label, rate in (("hit_rate", hit_rate), ("error_rate", error_rate), ("rate_limit_rate", rate_limit_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{label} must be between 0 and 1, got {rate}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    behaviour = _Behaviour(
        latency_ms=latency_ms,
        hit_rate=hit_rate,
        error_rate=error_rate,
        rate_limit_rate=rate_limit_rate,
        retry_after_seconds=retry_after_seconds,
        seed=seed,
    )
    return SandboxServer(host, sock, behaviour).start()


# -- client provider ----------------------------------------------------------------------------


class SandboxProvider(HttpProviderBase):
    """The sandbox as a waterfall provider. Confidence is the sandbox's own `confidence` field."""

    name = "sandbox"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        url: str | None = None,
        token: str = DEFAULT_TOKEN,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        http: HttpClient | None = None,
    ) -> None:
        settings = settings or get_settings()
        base_url = url or settings.sandbox_url
        if not base_url:
            raise ValueError("provider 'sandbox' needs SANDBOX_URL")
        self.cost = settings.sandbox_cost
        self.http = http or self._http(
            settings,
            base_url=base_url,
            backoff_base=backoff_base,
            headers={"Authorization": f"Bearer {token}"},
            secrets=(token,) if token != DEFAULT_TOKEN else (),
        )

    def lookup_key(self, lead: LeadInput) -> str | None:
        try:
            return normalize_email(lead.email or "")
        except InvalidEmail:
            return None  # the sandbox needs a valid email

    async def aenrich(self, lead: LeadInput) -> ProviderResult:
        email = self.lookup_key(lead)
        if email is None:
            raise ProviderError("sandbox: needs a valid email", transient=False)
        body = {
            "email": email,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "company_domain": lead.company_domain,
            "title": lead.title,
        }
        payload = await self.http.arequest_json("POST", ENRICH_PATH, body={k: v for k, v in body.items() if v})
        if payload is None:
            return ProviderResult("miss")
        return map_sandbox_response(payload)


PLUGIN = ProviderPlugin(factory=SandboxProvider, needs=(("SANDBOX_URL", "sandbox_url", "url"),))


def map_sandbox_response(payload: dict[str, Any]) -> ProviderResult:
    status = payload.get("status")
    if status == "miss":
        return ProviderResult("miss")
    if status != "hit":
        raise ProviderError(f"sandbox: malformed response: status {status!r}", transient=False)
    person = expect_mapping(payload.get("person"), "person", "sandbox")
    company = expect_mapping(payload.get("company") or {}, "company", "sandbox")
    confidence = payload.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise ProviderError("sandbox: malformed response: confidence is not a number", transient=False)

    data: dict[str, Any] = {}
    for key in ("email", "first_name", "last_name", "full_name", "title", "seniority", "department",
                "country", "phone", "linkedin_url"):
        _put(data, key, person.get(key))
    status_map = {"valid": "valid", "accept_all": "risky", "invalid": "invalid"}
    data["email_status"] = status_map.get(str(person.get("email_status")), "unknown")
    _put(data, "company_name", company.get("name"))
    _put(data, "company_domain", company.get("domain"))
    _put(data, "industry", company.get("industry"))
    if "country" not in data:
        _put(data, "country", company.get("country"))
    employees = company.get("employees")
    if isinstance(employees, int) and not isinstance(employees, bool) and employees > 0:
        data["company_size"] = employees
    return ProviderResult("hit", round(max(0.0, min(float(confidence), 1.0)), 2), data)


def _put(data: dict[str, Any], key: str, value: object) -> None:
    if isinstance(value, str) and value.strip():
        data[key] = value.strip()


# -- standalone ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local sandbox enrichment API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--hit-rate", type=float, default=0.7)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds, sent with injected 429s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    server = serve(
        args.host,
        args.port,
        latency_ms=args.latency_ms,
        hit_rate=args.hit_rate,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after_seconds=args.retry_after,
        seed=args.seed,
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"sandbox listening on {server.url} (SANDBOX_URL={server.url})", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        print(f"sandbox stopped: {server.stats.as_dict()}", flush=True)


if __name__ == "__main__":
    main()
