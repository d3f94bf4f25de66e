"""Prefect tasks: thin wrappers over engine calls. Policy lives in the decorators."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from orchestrator.executor import get_executor
from shared import workitems
from shared.db import get_engine, transaction
from shared.engines import batches, billing
from shared.settings import get_settings
from shared.status import TERMINAL, ItemStatus

DB_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "cache_policy": NO_CACHE}


@task(**DB_RETRIES)
def start_batch(batch_id: int) -> str:
    with transaction() as conn:
        return batches.mark_running(conn, batch_id, flow_run.get_id())


@task(**DB_RETRIES)
def recover_stale_items(batch_id: int | None = None) -> dict[str, int]:
    """Stale QUEUED/IN_PROGRESS items back to PENDING (or FAILED); abandoned reservations refunded."""
    with transaction() as conn:
        recovered = workitems.recover(conn, queue_timeout_seconds=get_settings().queue_timeout_seconds,
                                      batch_id=batch_id)
        refunded = billing.refund(conn, recovered.abandoned, note="attempt abandoned (lease expired)")
    result = {"requeued": len(recovered.requeued), "failed": len(recovered.failed), "refunded": refunded}
    if any(result.values()):
        get_run_logger().warning("batch_id=%s recovered stale items: %s", batch_id, result)
    return result


@task(cache_policy=NO_CACHE)
def dispatch_chunks(batch_id: int, batch_size: int) -> dict[str, Any]:
    """Claim PENDING items chunk by chunk as the executor has room, and run them.

    One task run per dispatch round, not per lead (a task run costs ~14 ms here); each chunk
    is logged. A chunk that raises is left to the lease/queue timeouts and recovery.
    """
    logger = get_run_logger()
    executor = get_executor()
    totals: dict[str, Any] = {"chunks": 0, "chunk_errors": 0, "done": 0, "failed": 0, "retried": 0,
                              "fenced": 0, "skipped": {}}
    for result in executor.run(batches.chunks(get_engine(), batch_id, batch_size)):
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
    logger.info("batch_id=%s dispatched %d chunks via %s executor: %s", batch_id, totals["chunks"],
                executor.name, totals)
    return totals


@task(cache_policy=NO_CACHE)
def wait_for_batch(batch_id: int, *, poll_seconds: float = 2.0, timeout_seconds: float = 6 * 3600) -> dict[str, int]:
    """Watch Postgres until every item is terminal, or until some item is PENDING again (to dispatch)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        with transaction() as conn:
            counts = workitems.counts(conn, batch_id)
        if all(status in TERMINAL for status in counts) or counts.get(ItemStatus.PENDING):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} still has unfinished items after {timeout_seconds:.0f}s: {counts}")
        recover_stale_items.fn(batch_id)
        time.sleep(poll_seconds)


@task(**DB_RETRIES)
def finalize_batch(batch_id: int) -> dict[str, Any]:
    with transaction() as conn:
        summary = batches.finalize(conn, batch_id)
    create_markdown_artifact(key=f"batch-{batch_id}-summary", markdown=summary_markdown(summary.as_dict()),
                             description=f"Batch {batch_id}: counts by status, skip reasons, credits spent")
    get_run_logger().info("batch_id=%s finished %s: %s", batch_id, summary.status, summary.as_dict())
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
