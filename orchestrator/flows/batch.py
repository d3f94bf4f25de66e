"""orchestrator_main: take one batch from PENDING to terminal, with Postgres as the truth."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from orchestrator.secrets import ensure_runtime_secrets
from orchestrator.tasks import dispatch_chunks, finalize_batch, recover_stale_items, start_batch, wait_for_batch
from shared.settings import get_settings
from shared.status import TERMINAL, BatchStatus

# Items released for a retry (every provider down, say) wait this long per round before the next try.
RETRY_PAUSE_SECONDS = 5.0


@flow(name="orchestrator_main", description="Recover, claim in chunks, dispatch, wait on Postgres, summarize.")
def orchestrator_main(batch_id: int, batch_size: int = 50) -> dict[str, Any]:
    ensure_runtime_secrets()
    logger = get_run_logger()
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    status = start_batch(batch_id)
    counts: dict[str, int] = {}
    if status != BatchStatus.RUNNING:
        logger.warning("batch_id=%s is %s; nothing to run", batch_id, status)
        return {"batch_id": batch_id, "status": status}
    # Retries are bounded by max_attempts; chunks that keep crashing before they start are not,
    # so rounds are capped too.
    max_rounds = 3 * get_settings().max_attempts + 3
    round_no = 0
    while True:
        round_no += 1
        if round_no > max_rounds:
            raise RuntimeError(f"batch {batch_id} made no final progress after {max_rounds} rounds: {counts}")
        recover_stale_items(batch_id)
        dispatched = dispatch_chunks(batch_id, batch_size)
        counts = wait_for_batch(batch_id)
        if all(s in TERMINAL for s in counts):
            break
        logger.info("batch_id=%s round %d left items to retry: %s", batch_id, round_no, counts)
        if dispatched["retried"]:
            time.sleep(RETRY_PAUSE_SECONDS * round_no)
    return finalize_batch(batch_id)
