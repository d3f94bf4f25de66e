"""Prefect tasks: thin wrappers over engine calls. Policy lives in the decorators."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.exceptions import MissingContextError
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from orchestrator.executor import get_executor
from shared import workitems
from shared.db import get_engine, retry_transient_condition, retrying, transaction
from shared.engines.batches import batches
from shared.engines.clients import billing
from shared.settings import get_settings
from shared.status import TERMINAL, ItemStatus

# Database-touching tasks retry transient database errors (shared.db.is_transient) and nothing
# else: a NotFound or bad input fails the task at once. The pauses add up to a little over a
# minute, enough for a Postgres restart or failover.
DB_RETRIES: dict[str, Any] = {"retries": 5, "retry_delay_seconds": [1, 3, 10, 20, 30],
                              "retry_condition_fn": retry_transient_condition, "cache_policy": NO_CACHE}


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run; this module's plain logger outside one (a task's
    function called directly, e.g. from the CLI), where get_run_logger() raises MissingContextError."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@task(**DB_RETRIES)
def start_batch(batch_id: int, runner_id: str, allow_draft: bool = False) -> batches.Taken:
    """Take the batch for this orchestrator (see `batches.take`); raises NotFound / BatchIsDraft.

    Whatever a taken batch still has QUEUED was claimed by an earlier runner (this one has claimed
    nothing yet) that will never start it: it goes back to PENDING now instead of after the queue
    timeout. What it has IN_PROGRESS under a worker that is provably gone (the killed runner's own
    threads: its PID is dead) goes back too, instead of waiting out the lease. A late worker of that
    runner cannot double-work an item: starting and finishing are guarded by attempt.
    """
    settings = get_settings()
    with transaction() as conn:
        taken = batches.take(conn, batch_id, runner_id, flow_run_id=flow_run.get_id(),
                             stale_seconds=settings.batch_stale_seconds, allow_draft=allow_draft,
                             beat_seconds=settings.batch_heartbeat_seconds)
        if taken.taken:
            orphans = workitems.recover(conn, queue_timeout_seconds=0, batch_id=batch_id,
                                        queued_reason="handed back: claimed by an earlier orchestrator that "
                                                      "never started it",
                                        gone_workers=workitems.gone_workers(conn, batch_id=batch_id))
            billing.refund(conn, orphans.abandoned, note="attempt abandoned (worker gone)")
        return taken


@task(**DB_RETRIES)
def batch_summary(batch_id: int) -> dict[str, Any]:
    with transaction() as conn:
        return batches.summary(conn, batch_id).as_dict()


@task(**DB_RETRIES)
def recover_stale_items(batch_id: int | None = None) -> dict[str, int]:
    """Stale QUEUED/IN_PROGRESS items back to PENDING (or FAILED); abandoned reservations refunded."""
    result = _recover(batch_id)
    if any(result.values()):
        run_logger().warning("batch_id=%s recovered stale items: %s", batch_id, result)
    return result


def _recover(batch_id: int | None, claimed_since: datetime | None = None) -> dict[str, int]:
    with transaction() as conn:
        recovered = workitems.recover(conn, queue_timeout_seconds=get_settings().queue_timeout_seconds,
                                      batch_id=batch_id, claimed_since=claimed_since,
                                      gone_workers=workitems.gone_workers(conn, batch_id=batch_id))
        refunded = billing.refund(conn, recovered.abandoned, note="attempt abandoned (lease expired)")
    return {"requeued": len(recovered.requeued), "failed": len(recovered.failed), "refunded": refunded}


@task(**DB_RETRIES)
def dispatch_chunks(batch_id: int, batch_size: int, runner_id: str | None = None) -> dict[str, Any]:
    """Claim PENDING items chunk by chunk as the executor has room, and run them.

    One task run per dispatch round, not per lead (a task run costs ~14 ms here); each chunk
    is logged. Once every chunk has returned, whatever this round claimed and is still QUEUED or
    IN_PROGRESS (a chunk raised, or could not write its outcome) is handed back at once instead of
    waiting out its lease. Claims stop (BatchTakenOver) if another orchestrator took the batch.
    """
    logger = run_logger()
    executor = get_executor()
    totals: dict[str, Any] = {"chunks": 0, "chunk_errors": 0, "done": 0, "failed": 0, "retried": 0,
                              "fenced": 0, "skipped": {}}
    round_started = retrying(_db_now, what=f"batch_id={batch_id} dispatch start")
    try:
        _run_chunks(executor, batch_id, batch_size, runner_id, totals)
    finally:
        handed_back = retrying(lambda: _recover(batch_id, claimed_since=round_started),
                               what=f"batch_id={batch_id} hand back")
        if any(handed_back.values()):
            logger.warning("batch_id=%s after the round, handed back items left unfinished or past their lease: %s",
                           batch_id, handed_back)
    logger.info("batch_id=%s dispatched %d chunks via %s executor: %s", batch_id, totals["chunks"],
                executor.name, totals)
    return totals


def _db_now() -> datetime:
    with transaction() as conn:
        return batches.db_now(conn)


def _run_chunks(executor: Any, batch_id: int, batch_size: int, runner_id: str | None,
                totals: dict[str, Any]) -> None:
    logger = run_logger()
    for result in executor.run(batches.chunks(get_engine(), batch_id, batch_size, runner_id)):
        totals["chunks"] += 1
        if isinstance(result, BaseException):
            totals["chunk_errors"] += 1
            logger.error("batch_id=%s chunk failed (items will be recovered): %r", batch_id, result)
            continue
        for key in ("done", "failed", "retried", "fenced"):
            totals[key] += result[key]
        for reason, n in result["skipped"].items():
            totals["skipped"][reason] = totals["skipped"].get(reason, 0) + n
        logger.debug("batch_id=%s chunk: %s", batch_id, result)


# PENDING items wait this long for more to join them (leases expiring a few seconds apart) before
# the flow starts another dispatch round for them.
GATHER_SECONDS = 15.0


@task(**DB_RETRIES)
def wait_for_batch(batch_id: int, *, poll_seconds: float = 2.0, timeout_seconds: float = 6 * 3600,
                   gather_seconds: float | None = None) -> dict[str, int]:
    """Watch Postgres until every item is terminal, or until PENDING items are worth a dispatch round.

    PENDING items are returned for dispatch once nothing else is in flight, or once they have waited
    `gather_seconds`: items whose leases expire at staggered times gather into one round instead of
    one round each. Each poll recovers stale items and survives a dropped connection.
    """
    gather_seconds = GATHER_SECONDS if gather_seconds is None else gather_seconds
    deadline = time.monotonic() + timeout_seconds
    pending_since: float | None = None
    while True:
        counts = retrying(lambda: _counts(batch_id), what=f"batch_id={batch_id} poll")
        if all(status in TERMINAL for status in counts):
            return counts
        if counts.get(ItemStatus.PENDING):
            pending_since = pending_since if pending_since is not None else time.monotonic()
            in_flight = counts.get(ItemStatus.QUEUED, 0) + counts.get(ItemStatus.IN_PROGRESS, 0)
            if not in_flight or time.monotonic() - pending_since >= gather_seconds:
                return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} still has unfinished items after {timeout_seconds:.0f}s: {counts}")
        retrying(lambda: _recover(batch_id), what=f"batch_id={batch_id} recover")
        time.sleep(poll_seconds)


def _counts(batch_id: int) -> dict[str, int]:
    with transaction() as conn:
        return workitems.counts(conn, batch_id)


@task(**DB_RETRIES)
def finalize_batch(batch_id: int) -> dict[str, Any]:
    with transaction() as conn:
        summary = batches.finalize(conn, batch_id)
    create_markdown_artifact(key=f"batch-{batch_id}-summary", markdown=summary_markdown(summary.as_dict()),
                             description=f"Batch {batch_id}: counts by status, skip reasons, credits spent")
    run_logger().info("batch_id=%s finished %s: %s", batch_id, summary.status, summary.as_dict())
    return summary.as_dict()


def summary_markdown(s: dict[str, Any]) -> str:
    lines = [f"# Batch {s['batch_id']}: {s['status']}", "", f"**{s['total']} items**, "
             f"**{s['credits_spent']} credits spent**", "", "| status | items |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(s["counts"].items())]
    if s["skip_reasons"]:
        lines += ["", "| skip reason | items |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in s["skip_reasons"].items()]
    if s["provider_calls"]:
        lines += ["", "| provider | outcome | calls |", "|---|---|---|"]
        lines += [f"| {p} | {o} | {n} |" for p, outcomes in s["provider_calls"].items() for o, n in outcomes.items()]
    return "\n".join(lines)
