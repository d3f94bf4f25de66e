"""orchestrator_main: take one batch from PENDING to terminal, with Postgres as the truth.

One orchestrator per batch: the flow takes the batch with a guarded UPDATE (`batches.take`) and
heartbeats it from a background thread while it runs. A second orchestrator on a batch whose
runner is alive returns at once, saying who runs it; one whose runner is provably gone
(`shared.liveness.judge`: its PID is dead on this host, its database session is gone, or its
heartbeat is stale) takes it over, with the items that runner's workers held. The sweep flow
(orchestrator/flows/sweep.py) resumes such batches.

Return value: the batch's summary dict (`BatchSummary.as_dict()`: batch_id, status, total,
counts, skip_reasons, credits_spent, provider_calls). When this run did not run the batch, the
summary of the batch as it stands plus `"note"`: `"busy"` (another orchestrator holds it) or
`"finished"` (it was already over), `"message"`, one line saying which, and `"runner_state"`:
`shared.liveness`'s verdict on the holder ("alive", or "silent": missed heartbeats, not stale yet).

Exceptions: `errors.NotFound` (no such batch), `errors.BatchIsDraft` (nothing launched it),
`errors.NotAnEnrichmentBatch` (an outreach send batch: outreach_run works those),
`ValueError` (bad batch_size), `errors.BatchTakenOver` (this run lost the batch to another
orchestrator mid-run), `NoProgress` (rounds stopped moving items to terminal). None is retried:
only transient database errors are, inside the tasks.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from orchestrator.executor import get_executor
from orchestrator.secrets import ensure_runtime_secrets
from orchestrator.tasks import (
    batch_summary,
    dispatch_chunks,
    finalize_batch,
    recover_stale_items,
    start_batch,
    wait_for_batch,
)
from shared.db import transaction
from shared import liveness
from shared.engines.batches import batches
from shared.settings import get_settings
from shared.status import TERMINAL, BatchStatus
from shared.errors import BatchTakenOver, NoProgress

log = logging.getLogger(__name__)

# Items released for a retry (every provider down, say) wait this long per round without
# progress before the next try, up to the maximum.
RETRY_PAUSE_SECONDS = 5.0
MAX_RETRY_PAUSE_SECONDS = 60.0


def no_progress_cap(max_attempts: int) -> int:
    """Rounds in a row without one more terminal item before the run gives up.

    Retries are bounded by max_attempts (a released item moves to FAILED at its last attempt), so
    a round that makes no progress is either waiting for those or stuck (chunks that crash before
    they start). A run that keeps finishing items never gives up, however many rounds it takes.
    """
    return 2 * max_attempts + 3


def runner_id() -> str:
    """Who this orchestrator is, as stored in `batches.runner_id` and shown to operators; the bracketed
    `shared.liveness` token lets the next orchestrator prove this one gone (its PID, its session)."""
    with transaction() as conn:
        token = liveness.me(conn).token()
    return f"flow run {flow_run.get_id() or 'local'} on {socket.gethostname()} pid {os.getpid()} [{token}]"


class Heartbeat:
    """A daemon thread that heartbeats the batch every `interval` seconds while the flow runs.

    A beat that meets a database error is skipped (the next one tries again: staleness takes many
    missed beats); a beat that finds the batch no longer ours sets `lost`.
    """

    def __init__(self, batch_id: int, runner: str, interval: float) -> None:
        self.batch_id, self.runner, self.interval = batch_id, runner, interval
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{batch_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with transaction() as conn:
                    ours = batches.heartbeat(conn, self.batch_id, self.runner)
            except Exception as exc:  # noqa: BLE001 - a missed beat is not fatal; many in a row are staleness
                log.warning("batch_id=%s heartbeat failed: %s", self.batch_id, str(exc).splitlines()[0])
                continue
            if not ours:
                self.lost.set()
                return

    def check(self) -> None:
        if self.lost.is_set():
            raise BatchTakenOver(f"batch {self.batch_id} is no longer run by {self.runner}")


@flow(name="orchestrator_main", description="Take the batch, recover, claim in chunks, dispatch, wait, summarize.")
def orchestrator_main(batch_id: int, batch_size: int = 50, allow_draft: bool = False) -> dict[str, Any]:
    """Run one batch to the end. `allow_draft`: start a draft too (the operator's `outbound batch run N`)."""
    ensure_runtime_secrets()
    logger = get_run_logger()
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    settings = get_settings()
    me = runner_id()
    taken = start_batch(batch_id, me, allow_draft)
    if not taken.taken:
        message = taken.describe()
        logger.warning("batch_id=%s %s; this run leaves it alone", batch_id, message)
        return batch_summary(batch_id) | {"note": "busy" if taken.busy else "finished", "message": message,
                                          "runner_state": taken.verdict.state if taken.verdict else None}
    logger.info("batch_id=%s taken by %s", batch_id, me)
    try:
        # After taking the batch, before any claim: a misconfigured worker environment (a missing
        # API key, an undeployed Modal App) fails the run now, naming the setting, with every item
        # still PENDING, instead of failing chunk by chunk until the queue timeout.
        get_executor(settings).preflight()
        with Heartbeat(batch_id, me, settings.batch_heartbeat_seconds) as heartbeat:
            _run_rounds(batch_id, batch_size, me, heartbeat, no_progress_cap(settings.max_attempts))
    except BatchTakenOver:
        with transaction() as conn:
            cancelled = batches.status(conn, batch_id) == BatchStatus.CANCELLED
        if not cancelled:
            raise
        # Cancelled (the console or `outbound batch cancel`): a clean end, not a failed run.
        logger.info("batch_id=%s was cancelled; %s stopped claiming", batch_id, me)
        return finalize_batch(batch_id) | {"note": "cancelled"}
    except BaseException:
        # Stopped early (an error, Ctrl-C): let the next orchestrator take over without waiting.
        try:
            with transaction() as conn:
                batches.let_go(conn, batch_id, me)
        except Exception:  # noqa: BLE001 - the heartbeat goes stale on its own
            logger.warning("batch_id=%s could not let go of the batch; it goes stale on its own", batch_id)
        raise
    return finalize_batch(batch_id)


def _run_rounds(batch_id: int, batch_size: int, me: str, heartbeat: Heartbeat, cap: int) -> None:
    logger = get_run_logger()
    round_no, stuck, last_terminal = 0, 0, -1
    while True:
        round_no += 1
        heartbeat.check()
        recover_stale_items(batch_id)
        dispatched = dispatch_chunks(batch_id, batch_size, me)
        counts = wait_for_batch(batch_id)
        terminal = sum(n for s, n in counts.items() if s in TERMINAL)
        if terminal == sum(counts.values()):
            return
        stuck = 0 if terminal > last_terminal else stuck + 1
        last_terminal = terminal
        if stuck >= cap:
            raise NoProgress(f"batch {batch_id} made no progress in {stuck} rounds in a row: {counts}")
        logger.info("batch_id=%s round %d left items to retry: %s", batch_id, round_no, counts)
        if dispatched["retried"]:
            time.sleep(min(RETRY_PAUSE_SECONDS * (stuck + 1), MAX_RETRY_PAUSE_SECONDS))
