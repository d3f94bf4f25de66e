"""outreach_run: one pass that sends what is due now and exits; scheduled every few minutes.

A pass: recover stale items, turn stale 'sending' rows into 'in doubt', read the planning inputs,
plan at `now` with the pure scheduler, enqueue one send batch per campaign, claim its items in
chunks and run them through the executor (local threads, or Modal's `send_chunk` with `.map`),
then ask the scheduler when something next becomes sendable. The flow never waits for that
moment: the deployment's schedule (every 5 minutes) comes back, so no managed worker slot is held
asleep (issue 16.2). Before any pass, the send engine's settings are checked (`sending.preflight`,
and the Modal App's `check_config`) so a missing OUTREACH_SECRET fails the run with nothing
claimed; a run whose send chunks all raised ends Failed with the count.

`run_passes` is the one loop, shared by the flow, `outbound outreach run` and the demo: one pass,
or passes until `until`, on the real clock (the CLI waits between passes, in its own process) or
a simulated one (`now` given: it jumps from one wake-up to the next, so a week runs in seconds).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from orchestrator.executor import Executor, get_executor
from orchestrator.secrets import ensure_runtime_secrets
from shared import workitems
from shared.db import get_engine, transaction
from shared.engines.batches.batches import chunks
from shared.engines.outreach import scheduler, sending, store
from shared.errors import OutreachRunFailed
from shared.settings import Settings, get_settings

# A 'sending' row untouched this long has lost its worker: in doubt, never resent on its own.
STALE_SENDING_SECONDS = 15 * 60
PASS_LIMIT = 10_000  # passes per run: a guard, far above a day of 1-minute gaps
COUNTED = ("sent", "failed", "in_doubt", "deferred", "bounced", "mailbox_failures")
ERRORS_KEPT = 3  # chunk errors quoted in a summary


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow run (the CLI)
        return logging.getLogger(__name__)


def _send_report(item_ids: list[int], *, now: datetime | None) -> dict[str, Any]:
    return sending.send_chunk(item_ids, now=now).as_dict()


def outreach_executor(settings: Settings, now: datetime | None = None) -> Executor:
    """The executor for send chunks: `send_chunk` locally or on Modal, checked by the send engine's preflight."""
    fn: Callable[[list[int]], dict[str, Any]] = functools.partial(_send_report, now=now)
    return get_executor(settings, local_fn=fn, local_check=functools.partial(sending.preflight, settings),
                        modal_function=(settings.modal_outreach_app_name, settings.modal_outreach_function_name))


@task(cache_policy=NO_CACHE)
def outreach_pass(now: datetime, simulated: bool, campaign_id: int | None = None, chunk_size: int | None = None,
                  executor: Executor | None = None) -> dict[str, Any]:
    """One plan → enqueue → dispatch round at `now`; returns totals and the next wake-up time."""
    settings = get_settings()
    engine = get_engine()
    with transaction() as conn:
        # A sender that died (kill -9, OOM) is taken over at once when provably gone (shared.liveness),
        # else when its 30 s lease runs out: what it was sending is in doubt, the rest is sent now.
        gone = workitems.gone_workers(conn)
        sending.in_doubt_from_gone_workers(conn, gone)
        workitems.recover(conn, queue_timeout_seconds=settings.queue_timeout_seconds, gone_workers=gone)
        sending.stale_sending(conn, older_than_seconds=STALE_SENDING_SECONDS)
        inputs = store.planning_inputs(conn, now, campaign_id=campaign_id)
        plan = scheduler.due_sends(now, inputs.candidates, inputs.windows, inputs.mailboxes)
        batch_ids = store.enqueue_sends(conn, plan.sends)
        batch_ids += [b for b in store.open_send_batches(conn, campaign_id) if b not in batch_ids]
    executor = executor or outreach_executor(settings, now if simulated else None)
    totals: dict[str, Any] = {"planned": len(plan.sends), **{k: 0 for k in COUNTED}, "skipped": {}, "chunks": 0,
                              "chunk_errors": 0, "errors": [], "waiting_window": plan.waiting_window,
                              "waiting_mailbox": plan.waiting_mailbox}
    size = chunk_size or settings.outreach_chunk_size
    for batch_id in batch_ids:
        for result in executor.run(chunks(engine, batch_id, size)):
            totals["chunks"] += 1
            if isinstance(result, BaseException):
                totals["chunk_errors"] += 1
                if len(totals["errors"]) < ERRORS_KEPT:
                    totals["errors"].append(f"{type(result).__name__}: {result}"[:300])
                _logger().error("batch_id=%s send chunk failed (recovery will find it): %r", batch_id, result)
                continue
            for key in COUNTED:
                totals[key] += result.get(key, 0)
            for reason, n in result["skipped"].items():
                totals["skipped"][reason] = totals["skipped"].get(reason, 0) + n
    with transaction() as conn:
        store.finish_send_batches(conn, batch_ids)
        after = store.planning_inputs(conn, now, campaign_id=campaign_id)
        later = store.planning_inputs(conn, now + timedelta(days=8), campaign_id=campaign_id)
    wake = scheduler.next_wake(now, later.candidates, later.windows, after.mailboxes,
                               horizon=now + timedelta(days=8))
    totals["next_wake"] = wake.isoformat() if wake else None
    return totals


@task(cache_policy=NO_CACHE)
def reconcile_in_doubt() -> dict[str, int]:
    """Settle sends that are in doubt from their mailboxes' Sent folders (never by resending)."""
    from shared.engines.outreach.reconcile import reconcile

    result = reconcile(get_engine(), stale_after_seconds=STALE_SENDING_SECONDS)
    counts = {"sent": len(result.sent), "unknown": len(result.unknown), "unchecked": len(result.unchecked)}
    if any(counts.values()):
        _logger().warning("in-doubt sends reconciled: %s", counts)
    return counts


def run_passes(pass_fn: Callable[..., dict[str, Any]], *, now: datetime | None = None, until: datetime | None = None,
               campaign_id: int | None = None, chunk_size: int | None = None, executor: Executor | None = None,
               on_pass: Callable[[int, datetime, dict[str, Any]], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Preflight, then one pass at `now` (None: the real clock), or passes until `until`.

    With `now` the clock is simulated (jumps to each wake-up); without it, waits in this process
    between passes (the CLI; a flow run never does). `on_pass(n, at, totals)` after each pass.
    Raises the preflight's OutreachConfigError before anything is claimed, and OutreachRunFailed
    when every chunk raised."""
    settings = get_settings()
    simulated = now is not None
    clock = now or datetime.now(UTC)
    sending.preflight(settings)
    (executor or outreach_executor(settings, clock if simulated else None)).preflight()
    summary: dict[str, Any] = {"passes": 0, **{k: 0 for k in COUNTED}, "skipped": {}, "chunks": 0,
                               "chunk_errors": 0, "errors": [], "next_wake": None}
    for _ in range(PASS_LIMIT):
        result = pass_fn(clock, simulated, campaign_id, chunk_size, executor)
        summary["passes"] += 1
        for key in (*COUNTED, "chunks", "chunk_errors"):
            summary[key] += result[key]
        summary["errors"] = (summary["errors"] + result["errors"])[:ERRORS_KEPT]
        for reason, n in result["skipped"].items():
            summary["skipped"][reason] = summary["skipped"].get(reason, 0) + n
        summary["next_wake"] = result["next_wake"]
        if on_pass is not None:
            on_pass(summary["passes"], clock, result)
        wake = datetime.fromisoformat(result["next_wake"]) if result["next_wake"] else None
        if until is None or wake is None or wake >= until:
            break
        if simulated:
            clock = wake
        else:
            sleep(max(0.0, (wake - datetime.now(UTC)).total_seconds()))
            clock = datetime.now(UTC)
    if summary["chunks"] and summary["chunk_errors"] == summary["chunks"]:
        raise OutreachRunFailed(f"all {summary['chunks']} send chunks failed (nothing sent); first: "
                                f"{summary['errors'][0] if summary['errors'] else '?'}")
    return summary


@flow(name="outreach_run", description="One pass: send the due sequence steps inside windows and caps, at most once, "
                                       "then exit (the schedule comes back).")
def outreach_run(now: datetime | None = None, until: datetime | None = None, campaign_id: int | None = None,
                 chunk_size: int | None = None) -> dict[str, Any]:
    """One pass at `now` (default: the real clock) and exit. `until` needs a simulated `now`: the
    flow jumps from one wake-up to the next and never sleeps (tests, the demo)."""
    if until is not None and now is None:
        raise ValueError("outreach_run never waits on the real clock (it would hold a worker slot asleep): "
                         "give `now` for a simulated run, or run passes with `outbound outreach run --until`")
    ensure_runtime_secrets()
    sending.preflight()  # before reconciling or claiming anything
    summary = {"reconciled": reconcile_in_doubt()}
    summary |= run_passes(outreach_pass, now=now, until=until, campaign_id=campaign_id, chunk_size=chunk_size)
    get_run_logger().info("outreach: %s", summary)
    return summary
