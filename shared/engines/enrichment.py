"""The enrichment engine: what a worker (Modal or a local thread) does for one chunk of work items.

For each item: start it (QUEUED → IN_PROGRESS, attempts+1, lease), check just in time that the
lead, the client's subscription and the campaign still allow work, run the provider waterfall
(credits reserved before each paid call and refunded on a miss), score the lead, and finish the
item fenced by its attempt. Database writes are batched per chunk; a provider round's calls run
together on the provider loop (async HTTP), with the chunk's leases renewed while they are in flight.

Transient provider trouble (5xx, rate limits, timeouts) that leaves a lead without a confident
answer gives the item back for a later attempt rather than settling for free heuristic data.
Credits another attempt holds only for the length of its call are waited for, not skipped over:
a lead is SKIPPED no_credits only when the balance plus every reservation in flight would not pay.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from shared import liveness, redact, workitems
from shared.db import get_engine, transaction
from shared.engines.clients import billing
from shared.engines.clients.billing import Reservation
from shared.engines.leads.scoring import IcpConfig, ScoreResult, score_lead
from shared.errors import ProviderError
from shared.integrations.providers import build_providers
from shared.integrations.providers.base import LeadInput, Provider, ProviderResult
from shared.settings import Settings, get_settings
from shared.status import ACTIVE_SUBSCRIPTIONS, ItemStatus, SkipReason
from shared.workitems import Outcome, Started

log = logging.getLogger(__name__)

CREDIT_POLL_FIRST_SECONDS = 0.05  # first pause before asking again for credits in flight elsewhere
CREDIT_POLL_MAX_SECONDS = 1.0  # the pause doubles up to this
LEASE_RENEWALS_PER_LEASE = 3  # renew when a third of the lease has passed: two chances before it runs out


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
_providers_lock = threading.Lock()


def default_providers(settings: Settings) -> list[Provider]:
    """One set of provider clients per process (they hold HTTP connection pools)."""
    key = settings.model_dump_json(include={"provider_order", "sandbox_url", "apollo_base_url", "hunter_base_url",
                                            "provider_timeout_seconds", "provider_max_retries",
                                            "provider_concurrency"})
    # A rotated key needs new clients; the cache key holds only a digest of it, never the key.
    secrets = "\x1f".join(v.get_secret_value() if v is not None else "" for v in
                          (settings.apollo_api_key, settings.hunter_api_key))
    key += "|" + hashlib.sha256(secrets.encode("utf-8", "surrogatepass")).hexdigest()
    with _providers_lock:  # chunk threads start together: one set of pools, not one per thread
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
    report = ChunkReport(requested=len(item_ids))

    with transaction(engine) as conn:
        # host:pid:... (shared.liveness): a rerun hands our items back at once if this process dies.
        worker_id = worker_id or liveness.me(conn).token()
        started, not_startable = workitems.start(
            conn, item_ids, worker_id=worker_id, lease_seconds=settings.lease_seconds
        )
    report.started, report.not_startable = len(started), len(not_startable)
    if not_startable:
        log.info("chunk: %d items were not startable (moved by someone else): %s", len(not_startable),
                 not_startable[:10])
    if not started:
        return report

    leads: list[_Lead] = []
    try:
        with transaction(engine) as conn:
            contexts = load_contexts(conn, started)
        leads = prepare(contexts)
        results = _run(leads, engine=engine, providers=providers, settings=settings, report=report)
    except Exception as exc:
        # Only what this chunk still holds goes back: items already finished keep their outcome (and charges).
        let_go = {lead.ctx.item.id for lead in leads if not lead.held}
        _give_back(engine, [s for s in started if s.id not in let_go], exc, settings)
        safe = redact.scrubbed(exc, settings)
        if safe is exc:
            raise
        raise safe from None  # the original's repr carries a secret: it must not reach a log
    report.provider_calls = sum(1 for r in results for a in r.attempts if a.outcome in ("hit", "miss", "error"))
    report.seconds = time.perf_counter() - t0
    return report


def _give_back(engine: Engine, started: Sequence[Started], exc: Exception, settings: Settings) -> None:
    """A bug or a lost database mid-chunk: hand the items back now rather than at lease expiry."""
    held = [(s.id, s.attempt) for s in started]
    error = redact.describe(exc, settings)
    log.error("chunk failed, handing back %d items: %s", len(held), error)
    if not held:
        return
    try:
        with transaction(engine) as conn:
            workitems.release(conn, held, error=f"internal error: {error}"[:500])
            billing.refund(conn, held, note="chunk failed")
    except Exception as again:  # the database is gone too: recovery will find the expired leases
        log.error("could not hand back %d items after a chunk failure: %s", len(held), redact.describe(again, settings))


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




@dataclass(slots=True)
class _Lead:
    """One lead on its way down the waterfall."""

    ctx: Context
    lead_in: LeadInput
    log: LeadLog
    result: LeadResult
    best: tuple[float, str] | None = None
    errors: list[str] = field(default_factory=list)
    transient: list[str] = field(default_factory=list)  # paid/remote trouble a later attempt may not meet
    paid_hit: bool = False  # a paid provider (or its cache) answered: the lead has paid data
    settled: bool = False  # a confident hit, or a final status: no more providers
    next_provider: int = 0  # index in the waterfall of the next provider to ask
    parked: bool = False  # waiting for credits that other attempts hold in flight
    held: bool = True  # this attempt still holds the item in Postgres (not finished, not fenced)

    def stop(self, status: ItemStatus | None, *, skip_reason: str | None = None, error: str | None = None) -> None:
        self.result.status, self.result.skip_reason, self.result.error = status, skip_reason, error
        self.settled = True


def prepare(contexts: Sequence[Context]) -> list[_Lead]:
    """A _Lead per context, with the JIT checks applied (a lead that must not be worked stops here)."""
    leads: list[_Lead] = []
    for ctx in contexts:
        item = ctx.item
        lead = _Lead(ctx, _lead_input(ctx.lead) if ctx.lead else LeadInput(item.lead_id, ""),
                     LeadLog(log, {"lead_id": item.lead_id, "item_id": item.id, "batch_id": item.batch_id}),
                     LeadResult(item, ItemStatus.DONE))
        reason = jit_skip_reason(ctx)
        if reason is not None:
            lead.stop(ItemStatus.SKIPPED, skip_reason=str(reason))
            lead.log.info("skipped: %s", reason)
        leads.append(lead)
    return leads


class _Leases:
    """Keeps the chunk's items leased while it works: between rounds, while calls are in flight, while waiting."""

    def __init__(self, leads: list[_Lead], engine: Engine, settings: Settings) -> None:
        self.leads, self.engine, self.settings = leads, engine, settings
        self.interval = max(0.05, settings.lease_seconds / LEASE_RENEWALS_PER_LEASE)
        self.renewed = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self.renewed >= self.interval:
            self.renew()

    def renew(self) -> None:
        """Renew every item still held; one recovered meanwhile is fenced and stops here."""
        self.renewed = time.monotonic()
        held = [lead for lead in self.leads if lead.held]
        if not held:
            return
        with transaction(self.engine) as conn:
            renewed = workitems.extend_lease(conn, [(lead.ctx.item.id, lead.ctx.item.attempt) for lead in held],
                                             lease_seconds=self.settings.lease_seconds)
        lost = set(renewed.lost)
        for lead in held:
            if lead.ctx.item.id in lost:
                lead.log.warning("lease lost to recovery mid-waterfall; stopping")
                lead.held, lead.parked = False, False
                lead.stop(None, error="fenced: lease lost mid-waterfall")

    def sleep(self, seconds: float) -> None:
        """Pause without letting a lease run out."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self.interval))
            self.renew_if_due()

    def wait(self, future: concurrent.futures.Future[Any]) -> Any:
        """The future's result, renewing leases each interval while it is pending."""
        try:
            while True:
                done, _ = concurrent.futures.wait([future], timeout=self.interval)
                if done:
                    return future.result()
                self.renew_if_due()
        except BaseException:
            future.cancel()  # a failed renewal (or an interrupt) must not leave calls running for nobody
            raise


def _run(leads: list[_Lead], *, engine: Engine, providers: Sequence[Provider], settings: Settings,
         report: ChunkReport) -> list[LeadResult]:
    """The waterfall in passes: finish what is decided, then wait for credits in flight for the rest.

    Finishing before waiting matters: an attempt's kept charges count as "in flight" for other
    chunks until its items leave IN_PROGRESS, so two chunks waiting while holding their hits would
    wait on each other.
    """
    leases = _Leases(leads, engine, settings)
    icps = {lead.ctx.campaign_id: IcpConfig.parse(lead.ctx.icp) for lead in leads}  # once per campaign
    results: list[LeadResult] = []
    todo = leads
    pause, waited_since = CREDIT_POLL_FIRST_SECONDS, None
    while todo:
        _providers_pass(todo, providers, engine, settings, leases)
        ready = [lead for lead in todo if not lead.parked]
        for lead in ready:
            _conclude(lead, icps[lead.ctx.campaign_id], settings)
        if ready:
            with transaction(engine) as conn:
                _finish_chunk(conn, [lead.result for lead in ready], report)
            for lead in ready:
                lead.held = False
            results.extend(lead.result for lead in ready)
        todo = [lead for lead in todo if lead.parked]
        if not todo:
            break
        waited_since = waited_since or time.monotonic()
        if time.monotonic() - waited_since > settings.credit_wait_seconds:
            for lead in todo:  # still in flight after all this time: a later attempt will see it settled
                lead.parked = False
                lead.stop(None, error=f"credits held by other attempts did not come back within "
                                      f"{settings.credit_wait_seconds:g}s")
            continue
        leases.sleep(pause)
        pause = min(pause * 2, CREDIT_POLL_MAX_SECONDS)
        for lead in todo:
            lead.parked = False
    return results


def _providers_pass(leads: list[_Lead], providers: Sequence[Provider], engine: Engine, settings: Settings,
                    leases: _Leases) -> None:
    """Each provider in turn, for the leads that reached it; a parked lead resumes at the same provider."""
    for index, provider in enumerate(providers):
        leases.renew_if_due()
        asking = [lead for lead in leads if not lead.settled and not lead.parked and lead.next_provider == index]
        _provider_round(provider, asking, engine, settings, leases)
        for lead in asking:
            if not lead.parked:
                lead.next_provider = index + 1


def _provider_round(provider: Provider, leads: list[_Lead], engine: Engine, settings: Settings,
                    leases: _Leases) -> None:
    asking = [(lead, key) for lead in leads if (key := provider.lookup_key(lead.lead_in)) is not None]
    if not asking:
        return
    if provider.cost:
        asking = _use_cache(provider, asking, engine, settings)
        asking = _reserve(provider, asking, engine)
    answers = _call_all(provider, asking, settings, leases)
    unkept: list[tuple[int, int]] = []
    for (lead, key), (answer, ms) in zip(asking, answers, strict=True):
        if not lead.held:  # fenced while the call was in flight: its answer belongs to nobody
            unkept.append((lead.ctx.item.id, lead.ctx.item.attempt))
            continue
        if isinstance(answer, ProviderError):
            error = redact.redact(str(answer), settings)[:500]
            lead.result.attempts.append(ProviderAttempt(provider.name, "error", 0, ms, error=error))
            lead.errors.append(f"{provider.name}: {error}")
            if answer.transient and (provider.cost or getattr(provider, "remote", False)):
                lead.transient.append(error)
            lead.log.warning("%s: %s error, falling through: %s", provider.name,
                             "transient" if answer.transient else "permanent", error)
            unkept.append((lead.ctx.item.id, lead.ctx.item.attempt))
            continue
        hit = answer.outcome == "hit"
        lead.result.attempts.append(ProviderAttempt(provider.name, answer.outcome, provider.cost if hit else 0, ms,
                                                    answer.confidence))
        lead.log.debug("%s: %s confidence %.2f in %.0f ms", provider.name, answer.outcome, answer.confidence, ms)
        if not hit:
            unkept.append((lead.ctx.item.id, lead.ctx.item.attempt))
        elif provider.cost:
            lead.result.fresh_hits.append((provider.name, key, answer))
        _apply(lead, provider, answer, settings)
    if provider.cost and unkept:  # pay on hit: misses and errors get their credits back, in one statement
        with transaction(engine) as conn:
            billing.refund(conn, unkept, note="miss or error", provider=provider.name)


def _use_cache(provider: Provider, asking: list[tuple[_Lead, str]], engine: Engine,
               settings: Settings) -> list[tuple[_Lead, str]]:
    """Apply cached answers (no call, no charge); return the leads that still need a call.

    The cache is the client's own: another client's answer to the same lookup is never used.
    """
    with transaction(engine) as conn:
        cached = {
            (r.client_id, r.lookup_key): ProviderResult("hit", r.confidence, r.result)
            for r in conn.execute(
                text("SELECT c.client_id, c.lookup_key, c.result, c.confidence FROM enrichment_cache c "
                     "JOIN unnest(CAST(:clients AS bigint[]), CAST(:keys AS text[])) AS v(client_id, lookup_key) "
                     "  ON c.client_id = v.client_id AND c.lookup_key = v.lookup_key "
                     "WHERE c.provider = :p AND c.fetched_at > now() - make_interval(secs => :ttl)"),
                {"p": provider.name, "clients": [lead.ctx.client_id for lead, _ in asking],
                 "keys": [k for _, k in asking], "ttl": settings.cache_ttl_seconds},
            )
        }
    rest = []
    for lead, key in asking:
        hit = cached.get((lead.ctx.client_id, key))
        if hit is not None:
            lead.result.attempts.append(ProviderAttempt(provider.name, "cache_hit", confidence=hit.confidence))
            lead.log.debug("%s: cache hit", provider.name)
            _apply(lead, provider, hit, settings)
        else:
            rest.append((lead, key))
    return rest



def _reserve(provider: Provider, asking: list[tuple[_Lead, str]], engine: Engine) -> list[tuple[_Lead, str]]:
    """Reserve credits for the round; leads that cannot pay stop here. Returns the leads to call.

    A lead whose credit is only held by other attempts' calls in flight is parked (asked again
    after this pass), never skipped: their misses come back as refunds.
    """
    if not asking:
        return asking
    by_client: dict[int, list[tuple[_Lead, str]]] = {}
    for lead, key in asking:
        by_client.setdefault(lead.ctx.client_id, []).append((lead, key))
    granted = []
    for client_id, group in by_client.items():
        with transaction(engine) as conn:
            answers = billing.reserve_many(conn, client_id=client_id, provider=provider.name, cost=provider.cost,
                                           held=[(lead.ctx.item.id, lead.ctx.item.attempt) for lead, _ in group])
        for lead, key in group:
            answer = answers[lead.ctx.item.id]
            if answer in (Reservation.RESERVED, Reservation.ALREADY_RESERVED):
                granted.append((lead, key))
            elif answer is Reservation.DEFERRED:
                lead.parked = True
                lead.log.debug("%s: credits in flight elsewhere; asking again shortly", provider.name)
            elif answer is Reservation.NO_CREDITS:
                # The paid enrichment did not happen: skip (not DONE on free data alone) so the lead
                # is picked up again once the client tops up.
                lead.result.attempts.append(ProviderAttempt(provider.name, "no_credits"))
                lead.log.info("%s: no credits left", provider.name)
                lead.stop(ItemStatus.SKIPPED, skip_reason=str(SkipReason.NO_CREDITS))
            elif answer is Reservation.INACTIVE:
                lead.stop(ItemStatus.SKIPPED, skip_reason=str(SkipReason.SUBSCRIPTION_INACTIVE))
            else:
                lead.log.warning("%s: attempt %d no longer holds the item; stopping", provider.name,
                                 lead.ctx.item.attempt)
                lead.held = False
                lead.stop(None, error="fenced: lease lost before a paid call")
    return granted


def _call_all(provider: Provider, asking: list[tuple[_Lead, str]], settings: Settings,
              leases: _Leases) -> list[tuple[ProviderResult | ProviderError, float]]:
    """Every call of the round; remote ones together on the provider loop, leases renewed while they run."""
    if not asking:
        return []
    if not (provider.cost or getattr(provider, "remote", False)):
        return [_call_now(provider, lead.lead_in) for lead, _ in asking]  # CPU-only: nothing to wait on
    from shared.integrations.providers.loop import provider_loop  # the loop thread starts on first remote use

    loop = provider_loop()
    future = loop.submit(_call_round(provider, [lead.lead_in for lead, _ in asking], loop.gate,
                                     settings.provider_concurrency, settings.lead_concurrency))
    return leases.wait(future)


def _call_now(provider: Provider, lead: LeadInput) -> tuple[ProviderResult | ProviderError, float]:
    t0 = time.perf_counter()
    try:
        answer: ProviderResult | ProviderError = provider.enrich(lead)
    except ProviderError as exc:
        answer = exc
    return answer, (time.perf_counter() - t0) * 1000


async def _call_round(provider: Provider, leads: list[LeadInput], gate_for: Any, cap: int,
                      width: int) -> list[tuple[ProviderResult | ProviderError, float]]:
    """Runs on the provider loop: at most `width` calls of this chunk and `cap` of this process at once.

    The process-wide cap is shared by every chunk: chunks spend part of their time in Postgres,
    and with more chunks than the cap allows calls, it stays full while others write.
    """
    gate = gate_for(provider.name, cap)
    mine = asyncio.Semaphore(max(1, width))
    aenrich = getattr(provider, "aenrich", None)

    async def one(lead: LeadInput) -> tuple[ProviderResult | ProviderError, float]:
        async with mine, gate:
            t0 = time.perf_counter()
            try:
                if aenrich is not None:
                    answer: ProviderResult | ProviderError = await aenrich(lead)
                else:
                    answer = await asyncio.to_thread(provider.enrich, lead)
            except ProviderError as exc:
                answer = exc
            return answer, (time.perf_counter() - t0) * 1000

    return list(await asyncio.gather(*(one(lead) for lead in leads)))


def _apply(lead: _Lead, provider: Provider, answer: ProviderResult, settings: Settings) -> None:
    if answer.outcome == "miss":
        if answer.data.get("email_status") == "invalid":
            lead.result.mark_lead_invalid = True
            lead.stop(ItemStatus.SKIPPED, skip_reason=str(SkipReason.INVALID_LEAD))
        return
    _merge(lead.result.data, answer.data)
    lead.paid_hit = lead.paid_hit or bool(provider.cost)
    if lead.best is None or answer.confidence >= lead.best[0]:  # on a tie, the later (paid) provider wins
        lead.best = (answer.confidence, provider.name)
    if answer.confidence >= settings.confidence_threshold:
        lead.settled = True


def _conclude(lead: _Lead, icp: IcpConfig, settings: Settings) -> None:
    """DONE with the best answer, SKIPPED when nobody knew the lead, or back for a retry."""
    result = lead.result
    if result.status is ItemStatus.DONE:
        confident = lead.best is not None and lead.best[0] >= settings.confidence_threshold
        tried = [a for a in result.attempts if a.outcome in ("miss", "hit", "cache_hit")]
        if lead.transient and not confident and not lead.paid_hit:
            # A paid provider had trouble that may pass (5xx, rate limit, timeout) and only free data
            # came back: finishing would mark the lead enriched for good, never to get paid data.
            # Give it back for a later attempt (FAILED with this error once attempts run out).
            result.status, result.error = None, "; ".join(lead.transient)[:500]
        elif lead.best is None:
            if lead.errors and not tried:
                # Every provider failed: nothing says the lead has no data; try again later.
                result.status, result.error = None, "; ".join(lead.errors)[:500]
            else:
                result.status, result.skip_reason = ItemStatus.SKIPPED, str(SkipReason.NO_PROVIDER_HIT)
        else:
            result.confidence, result.provider = lead.best
            result.score = score_lead(lead.ctx.lead or {}, result.data, icp)
            lead.log.info("enriched by %s (confidence %.2f), score %d tier %s", result.provider, result.confidence,
                          result.score.score, result.score.tier)
            return
    if result.status is None:
        lead.log.warning("released for retry: %s", result.error)
    else:
        lead.log.info("finished %s: %s", result.status, result.skip_reason or result.error)


def _lead_input(lead: dict[str, Any]) -> LeadInput:
    return LeadInput(lead["id"], lead["email"], lead["first_name"], lead["last_name"], lead["title"],
                     lead["company_name"], lead["company_domain"], lead["linkedin_url"])


def _merge(into: dict[str, Any], data: dict[str, Any]) -> None:
    """Later providers fill gaps and override with better data; empty values never erase."""
    for k, v in data.items():
        if v not in (None, "", [], {}):
            into[k] = v


# -- finishing -----------------------------------------------------------------------------------


def _finish_chunk(conn: Connection, results: list[LeadResult], report: ChunkReport) -> None:
    """One transaction: fenced finishes, lead updates for what finished, attempt rows, cache, refunds."""
    finals = [r for r in results if r.status is not None]
    retries = [r for r in results if r.status is None]
    outcomes = [Outcome(r.item.id, r.item.attempt, r.status, error=r.error, skip_reason=r.skip_reason)
                for r in finals]
    moved = workitems.finish(conn, outcomes)
    released = workitems.Moved()
    for error in sorted({r.error or "unknown error" for r in retries}):  # each item keeps its own error
        part = workitems.release(conn, [(r.item.id, r.item.attempt) for r in retries
                                        if (r.error or "unknown error") == error], error=error)
        released.moved += part.moved
        released.lost += part.lost
        released.failed += part.failed
    ok = set(moved.moved)
    lost = set(moved.lost) | set(released.lost)
    # A fenced attempt keeps nothing it reserved; neither does one that did not finish DONE.
    unkept = [(r.item.id, r.item.attempt) for r in results
              if r.item.id in lost or r.status is not ItemStatus.DONE]
    billing.refund(conn, unkept, note="attempt did not finish DONE")
    _write_leads(conn, [r for r in finals if r.item.id in ok])
    _write_attempts(conn, results)
    _write_cache(conn, [r for r in finals if r.item.id in ok])

    report.fenced += len(lost)
    report.retried += len(released.moved) - len(released.failed)
    report.failed += len(released.failed)
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
                    enrichment = v.data, enrichment_provider = v.provider,
                    enrichment_confidence = v.confidence, enriched_at = now(),
                    status = CASE WHEN l.status = 'new' THEN 'enriched' ELSE l.status END,
                    title = coalesce(l.title, v.data ->> 'title'),
                    company_name = coalesce(l.company_name, v.data ->> 'company_name'),
                    company_domain = coalesce(l.company_domain, v.data ->> 'company_domain'),
                    score = v.score, score_tier = v.tier, score_breakdown = v.breakdown,
                    scored_at = now(), updated_at = now()
                FROM (
                    SELECT id, CAST(data AS jsonb) AS data, provider, confidence, score, tier,
                           CAST(breakdown AS jsonb) AS breakdown
                    FROM unnest(CAST(:ids AS bigint[]), CAST(:data AS text[]), CAST(:providers AS text[]),
                                CAST(:confidences AS float8[]), CAST(:scores AS int[]), CAST(:tiers AS text[]),
                                CAST(:breakdowns AS text[]))
                        AS u(id, data, provider, confidence, score, tier, breakdown)
                    OFFSET 0  -- a fence: parse each JSON once, not once per reference
                ) v
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
    clients = {r.item.id: r.item.client_id for r in results}
    conn.execute(
        text(
            """
            INSERT INTO enrichment_attempts (client_id, work_item_id, lead_id, attempt, provider, outcome, cost,
                                             latency_ms, confidence, error)
            SELECT * FROM unnest(CAST(:clients AS bigint[]),
                                 CAST(:items AS bigint[]), CAST(:leads AS bigint[]), CAST(:attempts AS int[]),
                                 CAST(:providers AS text[]), CAST(:outcomes AS text[]), CAST(:costs AS int[]),
                                 CAST(:latencies AS float8[]), CAST(:confidences AS float8[]),
                                 CAST(:errors AS text[]))
            """
        ),
        {
            "clients": [clients[i] for i, _, _, _ in rows],
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
    """Remember paid answers for the same client only (keyed client, provider, lookup key)."""
    hits = {(r.item.client_id, p, k): a for r in results for p, k, a in r.fresh_hits}
    if not hits:
        return
    conn.execute(
        text(
            """
            INSERT INTO enrichment_cache (client_id, provider, lookup_key, result, confidence, fetched_at)
            SELECT c, p, k, CAST(r AS jsonb), conf, now()
            FROM unnest(CAST(:c AS bigint[]), CAST(:p AS text[]), CAST(:k AS text[]), CAST(:r AS text[]),
                        CAST(:conf AS float8[])) AS v(c, p, k, r, conf)
            ON CONFLICT (client_id, provider, lookup_key) DO UPDATE
                SET result = EXCLUDED.result, confidence = EXCLUDED.confidence, fetched_at = EXCLUDED.fetched_at
            """
        ),
        {
            "c": [c for c, _, _ in hits],
            "p": [p for _, p, _ in hits],
            "k": [k for _, _, k in hits],
            "r": [json.dumps(a.data, default=str) for a in hits.values()],
            "conf": [a.confidence for a in hits.values()],
        },
    )
