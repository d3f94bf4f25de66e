"""outreach_hourly: plan the due sends with the pure scheduler, enqueue them as send items, dispatch.

Each pass: recover stale items, turn stale 'sending' rows into 'in doubt', read the planning
inputs, plan at `now`, enqueue one send batch per campaign, claim its items in chunks and run
them through the executor (local threads, or Modal's `send_chunk` with `.map`). Then the flow
asks the scheduler when something next becomes sendable (a mailbox's gap ends, a window opens)
and, within its hour, waits for it — with a simulated clock (tests, demo) it jumps there.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from orchestrator.executor import get_executor
from orchestrator.secrets import ensure_runtime_secrets
from shared import workitems
from shared.db import get_engine, transaction
from shared.engines.batches import chunks
from shared.engines.outreach import scheduler, sending, store
from shared.settings import get_settings

# A 'sending' row untouched this long has lost its worker: in doubt, never resent on its own.
STALE_SENDING_SECONDS = 15 * 60
PASS_LIMIT = 10_000  # passes per run: a guard, far above a day of 1-minute gaps


def _send_report(item_ids: list[int], *, now: datetime | None) -> dict[str, Any]:
    return sending.send_chunk(item_ids, now=now).as_dict()


@task(cache_policy=NO_CACHE)
def outreach_pass(now: datetime, simulated: bool, campaign_id: int | None = None,
                  chunk_size: int | None = None) -> dict[str, Any]:
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
    fn: Callable[[list[int]], dict[str, Any]] = functools.partial(_send_report, now=now if simulated else None)
    executor = get_executor(settings, local_fn=fn, modal_function=(settings.modal_outreach_app_name,
                                                                   settings.modal_outreach_function_name))
    totals: dict[str, Any] = {"planned": len(plan.sends), "sent": 0, "failed": 0, "in_doubt": 0, "skipped": {},
                              "chunk_errors": 0, "waiting_window": plan.waiting_window,
                              "waiting_mailbox": plan.waiting_mailbox}
    size = chunk_size or settings.outreach_chunk_size
    for batch_id in batch_ids:
        for result in executor.run(chunks(engine, batch_id, size)):
            if isinstance(result, BaseException):
                totals["chunk_errors"] += 1
                get_run_logger().error("batch_id=%s send chunk failed (recovery will find it): %r", batch_id, result)
                continue
            for key in ("sent", "failed", "in_doubt"):
                totals[key] += result[key]
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
        get_run_logger().warning("in-doubt sends reconciled: %s", counts)
    return counts


@flow(name="outreach_hourly", description="Plan due sequence steps inside windows and caps, send them, at most once.")
def outreach_hourly(now: datetime | None = None, until: datetime | None = None, campaign_id: int | None = None,
                    chunk_size: int | None = None) -> dict[str, Any]:
    """Run passes from `now` until `until` (default: the real clock, one hour).

    With `now` given the clock is simulated: the flow jumps from one wake-up to the next and
    never sleeps, so a week of a campaign runs in seconds.
    """
    ensure_runtime_secrets()
    logger = get_run_logger()
    simulated = now is not None
    clock = now or datetime.now(UTC)
    end = until or clock + timedelta(hours=1)
    summary: dict[str, Any] = {"passes": 0, "sent": 0, "failed": 0, "in_doubt": 0, "skipped": {}}
    summary["reconciled"] = reconcile_in_doubt()
    for _ in range(PASS_LIMIT):
        result = outreach_pass(clock, simulated, campaign_id, chunk_size)
        summary["passes"] += 1
        for key in ("sent", "failed", "in_doubt"):
            summary[key] += result[key]
        for reason, n in result["skipped"].items():
            summary["skipped"][reason] = summary["skipped"].get(reason, 0) + n
        wake = datetime.fromisoformat(result["next_wake"]) if result["next_wake"] else None
        if wake is None or wake >= end:
            break
        if simulated:
            clock = wake
        else:
            time.sleep(max(0.0, (wake - datetime.now(UTC)).total_seconds()))
            clock = datetime.now(UTC)
    logger.info("outreach: %s", summary)
    return summary
