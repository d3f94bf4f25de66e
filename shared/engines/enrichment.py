"""The enrichment engine: what a worker (Modal or a local thread) does for one chunk of work items.

For each item: start it (QUEUED → IN_PROGRESS, attempts+1, lease), check just in time that the
lead, the client's subscription and the campaign still allow work, run the provider waterfall
(credits reserved before each paid call and refunded on a miss), score the lead, and finish the
item fenced by its attempt. Database writes are batched per chunk; provider calls run per lead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from shared import workitems
from shared.db import get_engine
from shared.engines import billing
from shared.engines.billing import Reservation
from shared.engines.scoring import IcpConfig, ScoreResult, score_lead
from shared.integrations.providers import build_providers
from shared.integrations.providers.base import LeadInput, Provider, ProviderError, ProviderResult
from shared.settings import Settings, get_settings
from shared.status import ACTIVE_SUBSCRIPTIONS, ItemStatus, SkipReason
from shared.workitems import Outcome, Started

log = logging.getLogger(__name__)


class LeadLog(logging.LoggerAdapter):
    """Every line carries lead_id, item_id and batch_id: what people search for in the Modal dashboard."""

    def process(self, msg: Any, kwargs: Any) -> tuple[str, Any]:
        ctx = self.extra or {}
        return f"lead_id={ctx['lead_id']} item_id={ctx['item_id']} batch_id={ctx['batch_id']} {msg}", kwargs


@dataclass(slots=True)
class Context:
    """What the JIT checks and the waterfall need, loaded in one query right after start."""

    item: Started
    client_id: int
    subscription_status: str
    lead: dict[str, Any] | None
    campaign_id: int | None
    campaign_status: str | None
    icp: dict[str, Any]


@dataclass(slots=True)
class ProviderAttempt:
    provider: str
    outcome: str  # hit | miss | error | cache_hit | no_credits
    cost: int = 0
    latency_ms: float = 0.0
    confidence: float | None = None
    error: str | None = None


@dataclass(slots=True)
class LeadResult:
    item: Started
    status: ItemStatus | None  # None: give the item back for a retry (transient trouble)
    skip_reason: str | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    confidence: float | None = None
    score: ScoreResult | None = None
    attempts: list[ProviderAttempt] = field(default_factory=list)
    fresh_hits: list[tuple[str, str, ProviderResult]] = field(default_factory=list)  # cache writes
    mark_lead_invalid: bool = False


@dataclass(slots=True)
class ChunkReport:
    """What one chunk did; small and plain so it travels back from Modal."""

    requested: int = 0
    started: int = 0
    not_startable: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    fenced: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    provider_calls: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- entry point ---------------------------------------------------------------------------------

_providers_cache: dict[str, list[Provider]] = {}


def default_providers(settings: Settings) -> list[Provider]:
    """One set of provider clients per process (they hold HTTP connection pools)."""
    key = settings.model_dump_json(include={"provider_order", "sandbox_url", "apollo_base_url", "hunter_base_url",
                                            "provider_timeout_seconds", "provider_max_retries"})
    if key not in _providers_cache:
        _providers_cache[key] = build_providers(settings)
    return _providers_cache[key]


def enrich_chunk(
    item_ids: Sequence[int],
    *,
    worker_id: str | None = None,
    engine: Engine | None = None,
    providers: Sequence[Provider] | None = None,
    settings: Settings | None = None,
) -> ChunkReport:
    """Work one chunk of QUEUED items to a terminal status (or back to PENDING for a retry)."""
    t0 = time.perf_counter()
    settings = settings or get_settings()
    engine = engine or get_engine()
    providers = list(providers) if providers is not None else default_providers(settings)
    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    report = ChunkReport(requested=len(item_ids))

    with engine.begin() as conn:
        started, not_startable = workitems.start(
            conn, item_ids, worker_id=worker_id, lease_seconds=settings.lease_seconds
        )
    report.started, report.not_startable = len(started), len(not_startable)
    if not_startable:
        log.info("chunk: %d items were not startable (moved by someone else): %s", len(not_startable),
                 not_startable[:10])
    if not started:
        return report

    with engine.connect() as conn:
        contexts = load_contexts(conn, started)
    results = _run_leads(contexts, engine, providers, settings)
    with engine.begin() as conn:
        _finish_chunk(conn, results, report)
    report.provider_calls = sum(1 for r in results for a in r.attempts if a.outcome != "cache_hit")
    report.seconds = time.perf_counter() - t0
    return report


def _run_leads(contexts: list[Context], engine: Engine, providers: Sequence[Provider],
               settings: Settings) -> list[LeadResult]:
    work = lambda ctx: process_lead(ctx, engine=engine, providers=providers, settings=settings)  # noqa: E731
    width = min(settings.lead_concurrency, len(contexts))
    if width <= 1 or all(p.cost == 0 and not getattr(p, "remote", False) for p in providers):
        return [work(ctx) for ctx in contexts]  # CPU-only providers gain nothing from threads
    with ThreadPoolExecutor(width, thread_name_prefix="lead") as pool:
        return list(pool.map(work, contexts))


# -- loading -------------------------------------------------------------------------------------

_CONTEXTS = text(
    """
    SELECT w.id AS item_id, c.id AS client_id, c.subscription_status,
           l.id AS lead_id, l.email, l.first_name, l.last_name, l.title, l.company_name, l.company_domain,
           l.linkedin_url, l.phone, l.country, l.status AS lead_status,
           camp.id AS campaign_id, camp.status AS campaign_status, camp.icp
    FROM work_items w
    JOIN batches b ON b.id = w.batch_id
    JOIN clients c ON c.id = b.client_id
    LEFT JOIN leads l ON l.id = w.lead_id
    LEFT JOIN campaigns camp ON camp.id = coalesce(b.campaign_id, l.campaign_id)
    WHERE w.id = ANY(:ids)
    """
)

_LEAD_FIELDS = ("email", "first_name", "last_name", "title", "company_name", "company_domain",
                "linkedin_url", "phone", "country")


def load_contexts(conn: Connection, started: Sequence[Started]) -> list[Context]:
    by_id = {s.id: s for s in started}
    contexts = []
    for r in conn.execute(_CONTEXTS, {"ids": list(by_id)}).mappings():
        lead = None
        if r["lead_id"] is not None:
            lead = {k: r[k] for k in _LEAD_FIELDS} | {"id": r["lead_id"], "status": r["lead_status"]}
        contexts.append(Context(by_id[r["item_id"]], r["client_id"], r["subscription_status"], lead,
                                r["campaign_id"], r["campaign_status"], r["icp"] or {}))
    return contexts


# -- one lead ------------------------------------------------------------------------------------


def jit_skip_reason(ctx: Context) -> SkipReason | None:
    """The just-in-time checks, in the order a person would explain them."""
    if ctx.lead is None:
        return SkipReason.LEAD_MISSING
    if ctx.lead["status"] == "unsubscribed":
        return SkipReason.UNSUBSCRIBED
    if ctx.lead["status"] in ("invalid", "bounced"):
        return SkipReason.INVALID_LEAD
    if ctx.subscription_status not in ACTIVE_SUBSCRIPTIONS:
        return SkipReason.SUBSCRIPTION_INACTIVE
    if ctx.campaign_status == "paused":
        return SkipReason.CAMPAIGN_PAUSED
    if ctx.campaign_status == "completed":
        return SkipReason.CAMPAIGN_COMPLETED
    return None


def process_lead(ctx: Context, *, engine: Engine, providers: Sequence[Provider], settings: Settings) -> LeadResult:
    item = ctx.item
    llog = LeadLog(log, {"lead_id": item.lead_id, "item_id": item.id, "batch_id": item.batch_id})
    reason = jit_skip_reason(ctx)
    if reason is not None:
        llog.info("skipped: %s", reason)
        return LeadResult(item, ItemStatus.SKIPPED, skip_reason=str(reason))
    try:
        result = _waterfall(ctx, engine, providers, settings, llog)
    except Exception as exc:  # a bug or the database going away: give the item back, keep the chunk going
        llog.exception("unexpected error, item released for retry")
        return LeadResult(item, None, error=f"internal error: {type(exc).__name__}: {exc}"[:500])
    if result.status is ItemStatus.DONE:
        result.score = score_lead(ctx.lead, result.data, _icp(ctx))
        llog.info("enriched by %s (confidence %.2f), score %d tier %s", result.provider, result.confidence or 0,
                  result.score.score, result.score.tier)
    elif result.status is not None:
        llog.info("finished %s: %s", result.status, result.skip_reason or result.error)
    return result


_icp_cache: dict[str, IcpConfig] = {}


def _icp(ctx: Context) -> IcpConfig:
    key = json.dumps(ctx.icp, sort_keys=True)
    if key not in _icp_cache:
        _icp_cache[key] = IcpConfig.parse(ctx.icp)
    return _icp_cache[key]


def _lead_input(lead: dict[str, Any]) -> LeadInput:
    return LeadInput(lead["id"], lead["email"], lead["first_name"], lead["last_name"], lead["title"],
                     lead["company_name"], lead["company_domain"], lead["linkedin_url"])


def _waterfall(ctx: Context, engine: Engine, providers: Sequence[Provider], settings: Settings,
               llog: LeadLog) -> LeadResult:
    """Ask providers in order; stop at the first hit confident enough; merge what earlier ones found."""
    item = ctx.item
    result = LeadResult(item, ItemStatus.DONE)
    lead_in = _lead_input(ctx.lead)  # type: ignore[arg-type]
    best: tuple[float, str] | None = None
    errors: list[str] = []
    for provider in providers:
        key = provider.lookup_key(lead_in)
        if key is None:
            continue
        answer = _cached(engine, provider, key, settings) if provider.cost else None
        if answer is not None:
            result.attempts.append(ProviderAttempt(provider.name, "cache_hit", confidence=answer.confidence))
            llog.debug("%s: cache hit", provider.name)
        else:
            answer = _call(ctx, provider, lead_in, engine, result, errors, llog)
            if isinstance(answer, LeadResult):
                return answer  # out of credits, subscription gone, or fenced
            if answer is None:
                continue
            if answer.outcome == "hit" and provider.cost:
                result.fresh_hits.append((provider.name, key, answer))
        if answer.outcome == "miss":
            if answer.data.get("email_status") == "invalid":
                return LeadResult(item, ItemStatus.SKIPPED, skip_reason=str(SkipReason.INVALID_LEAD),
                                  attempts=result.attempts, mark_lead_invalid=True)
            continue
        _merge(result.data, answer.data)
        if best is None or answer.confidence >= best[0]:  # on a tie, the later (paid) provider's word wins
            best = (answer.confidence, provider.name)
        if answer.confidence >= settings.confidence_threshold:
            break
    if best is None:
        if errors and not any(a.outcome in ("miss", "hit", "cache_hit") for a in result.attempts):
            # Every provider failed (timeouts, 5xx…): nothing says the lead has no data; try again later.
            return LeadResult(item, None, error="; ".join(errors)[:500], attempts=result.attempts)
        return LeadResult(item, ItemStatus.SKIPPED, skip_reason=str(SkipReason.NO_PROVIDER_HIT),
                          attempts=result.attempts)
    result.confidence, result.provider = best
    return result


def _call(ctx: Context, provider: Provider, lead_in: LeadInput, engine: Engine, result: LeadResult,
          errors: list[str], llog: LeadLog) -> ProviderResult | LeadResult | None:
    """One provider call, paid for first when it costs credits; refunded unless it hits."""
    item = ctx.item
    if provider.cost:
        with engine.begin() as conn:
            reservation = billing.reserve(conn, client_id=ctx.client_id, item_id=item.id, attempt=item.attempt,
                                          provider=provider.name, cost=provider.cost)
        if reservation is Reservation.NO_CREDITS:
            result.attempts.append(ProviderAttempt(provider.name, "no_credits"))
            # The paid enrichment did not happen: skip (not DONE on free data alone) so the lead is
            # picked up again once the client tops up.
            llog.info("%s: no credits left", provider.name)
            return LeadResult(item, ItemStatus.SKIPPED, skip_reason=str(SkipReason.NO_CREDITS),
                              attempts=result.attempts)
        if reservation is Reservation.INACTIVE:
            return LeadResult(item, ItemStatus.SKIPPED, skip_reason=str(SkipReason.SUBSCRIPTION_INACTIVE),
                              attempts=result.attempts)
        if reservation is Reservation.FENCED:
            llog.warning("%s: attempt %d no longer holds the item; stopping", provider.name, item.attempt)
            return LeadResult(item, None, error="fenced: lease lost before a paid call", attempts=result.attempts)
    t0 = time.perf_counter()
    try:
        answer = provider.enrich(lead_in)
    except ProviderError as exc:
        ms = (time.perf_counter() - t0) * 1000
        result.attempts.append(ProviderAttempt(provider.name, "error", 0, ms, error=str(exc)[:500]))
        errors.append(f"{provider.name}: {exc}")
        llog.warning("%s: error (%s), falling through: %s", provider.name,
                     "transient" if exc.transient else "permanent", exc)
        _refund(engine, ctx, provider, "provider error")
        return None
    ms = (time.perf_counter() - t0) * 1000
    kept = answer.outcome == "hit"
    result.attempts.append(ProviderAttempt(provider.name, answer.outcome, provider.cost if kept else 0, ms,
                                           answer.confidence))
    llog.debug("%s: %s confidence %.2f in %.0f ms", provider.name, answer.outcome, answer.confidence, ms)
    if not kept:
        _refund(engine, ctx, provider, "miss")
    return answer


def _refund(engine: Engine, ctx: Context, provider: Provider, note: str) -> None:
    if provider.cost:
        with engine.begin() as conn:
            billing.refund(conn, [(ctx.item.id, ctx.item.attempt)], note=note, provider=provider.name)


def _merge(into: dict[str, Any], data: dict[str, Any]) -> None:
    """Later providers fill gaps and override with better data; empty values never erase."""
    for k, v in data.items():
        if v not in (None, "", [], {}):
            into[k] = v


def _cached(engine: Engine, provider: Provider, key: str, settings: Settings) -> ProviderResult | None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT result, confidence FROM enrichment_cache WHERE provider = :p AND lookup_key = :k "
                 "AND fetched_at > now() - make_interval(secs => :ttl)"),
            {"p": provider.name, "k": key, "ttl": settings.cache_ttl_seconds},
        ).first()
    return ProviderResult("hit", row.confidence, row.result) if row else None


# -- finishing -----------------------------------------------------------------------------------


def _finish_chunk(conn: Connection, results: list[LeadResult], report: ChunkReport) -> None:
    """One transaction: fenced finishes, lead updates for what finished, attempt rows, cache, refunds."""
    finals = [r for r in results if r.status is not None]
    retries = [r for r in results if r.status is None]
    outcomes = [Outcome(r.item.id, r.item.attempt, r.status, error=r.error, skip_reason=r.skip_reason)
                for r in finals]
    moved = workitems.finish(conn, outcomes)
    released = workitems.release(conn, [(r.item.id, r.item.attempt) for r in retries],
                                 error="; ".join(sorted({r.error or "" for r in retries}))[:500])
    ok = set(moved.moved)
    lost = set(moved.lost) | set(released.lost)
    # A fenced attempt keeps nothing it reserved; neither does one that did not finish DONE.
    unkept = [(r.item.id, r.item.attempt) for r in results
              if r.item.id in lost or r.status is not ItemStatus.DONE]
    billing.refund(conn, unkept, note="attempt did not finish DONE")
    _write_leads(conn, [r for r in finals if r.item.id in ok])
    _write_attempts(conn, results)
    _write_cache(conn, [r for r in finals if r.item.id in ok])

    report.fenced = len(lost)
    report.retried = len(released.moved)
    for r in finals:
        if r.item.id not in ok:
            continue
        if r.status is ItemStatus.DONE:
            report.done += 1
        elif r.status is ItemStatus.FAILED:
            report.failed += 1
        else:
            report.skipped[r.skip_reason or "?"] = report.skipped.get(r.skip_reason or "?", 0) + 1


def _write_leads(conn: Connection, results: list[LeadResult]) -> None:
    done = [r for r in results if r.status is ItemStatus.DONE]
    if done:
        conn.execute(
            text(
                """
                UPDATE leads l SET
                    enrichment = CAST(v.data AS jsonb), enrichment_provider = v.provider,
                    enrichment_confidence = v.confidence, enriched_at = now(),
                    status = CASE WHEN l.status = 'new' THEN 'enriched' ELSE l.status END,
                    title = coalesce(l.title, CAST(v.data AS jsonb) ->> 'title'),
                    company_name = coalesce(l.company_name, CAST(v.data AS jsonb) ->> 'company_name'),
                    company_domain = coalesce(l.company_domain, CAST(v.data AS jsonb) ->> 'company_domain'),
                    score = v.score, score_tier = v.tier, score_breakdown = CAST(v.breakdown AS jsonb),
                    scored_at = now(), updated_at = now()
                FROM unnest(CAST(:ids AS bigint[]), CAST(:data AS text[]), CAST(:providers AS text[]),
                            CAST(:confidences AS float8[]), CAST(:scores AS int[]), CAST(:tiers AS text[]),
                            CAST(:breakdowns AS text[]))
                    AS v(id, data, provider, confidence, score, tier, breakdown)
                WHERE l.id = v.id
                """
            ),
            {
                "ids": [r.item.lead_id for r in done],
                "data": [json.dumps(r.data, default=str) for r in done],
                "providers": [r.provider for r in done],
                "confidences": [r.confidence for r in done],
                "scores": [r.score.score if r.score else None for r in done],
                "tiers": [r.score.tier if r.score else None for r in done],
                "breakdowns": [json.dumps(r.score.breakdown, default=str) if r.score else None for r in done],
            },
        )
    invalid = [r.item.lead_id for r in results if r.mark_lead_invalid]
    if invalid:
        conn.execute(text("UPDATE leads SET status = 'invalid', updated_at = now() WHERE id = ANY(:ids)"),
                     {"ids": invalid})


def _write_attempts(conn: Connection, results: list[LeadResult]) -> None:
    rows = [(r.item.id, r.item.lead_id, r.item.attempt, a) for r in results for a in r.attempts]
    if not rows:
        return
    conn.execute(
        text(
            """
            INSERT INTO enrichment_attempts (work_item_id, lead_id, attempt, provider, outcome, cost, latency_ms,
                                             confidence, error)
            SELECT * FROM unnest(CAST(:items AS bigint[]), CAST(:leads AS bigint[]), CAST(:attempts AS int[]),
                                 CAST(:providers AS text[]), CAST(:outcomes AS text[]), CAST(:costs AS int[]),
                                 CAST(:latencies AS float8[]), CAST(:confidences AS float8[]),
                                 CAST(:errors AS text[]))
            """
        ),
        {
            "items": [i for i, _, _, _ in rows],
            "leads": [lead for _, lead, _, _ in rows],
            "attempts": [n for _, _, n, _ in rows],
            "providers": [a.provider for *_, a in rows],
            "outcomes": [a.outcome for *_, a in rows],
            "costs": [a.cost for *_, a in rows],
            "latencies": [a.latency_ms for *_, a in rows],
            "confidences": [a.confidence for *_, a in rows],
            "errors": [a.error for *_, a in rows],
        },
    )


def _write_cache(conn: Connection, results: list[LeadResult]) -> None:
    hits = {(p, k): a for r in results for p, k, a in r.fresh_hits}
    if not hits:
        return
    conn.execute(
        text(
            """
            INSERT INTO enrichment_cache (provider, lookup_key, result, confidence, fetched_at)
            SELECT p, k, CAST(r AS jsonb), c, now()
            FROM unnest(CAST(:p AS text[]), CAST(:k AS text[]), CAST(:r AS text[]), CAST(:c AS float8[])) AS v(p, k, r, c)
            ON CONFLICT (provider, lookup_key) DO UPDATE
                SET result = EXCLUDED.result, confidence = EXCLUDED.confidence, fetched_at = EXCLUDED.fetched_at
            """
        ),
        {
            "p": [p for p, _ in hits],
            "k": [k for _, k in hits],
            "r": [json.dumps(a.data, default=str) for a in hits.values()],
            "c": [a.confidence for a in hits.values()],
        },
    )


def summarize(reports: Sequence[ChunkReport]) -> dict[str, Any]:
    """Add chunk reports up (used by executors and the flow's logs)."""
    total: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for r in reports:
        for k in ("requested", "started", "not_startable", "done", "failed", "retried", "fenced", "provider_calls"):
            total[k] += getattr(r, k)
        skipped.update(r.skipped)
    return dict(total) | {"skipped": dict(skipped)}


