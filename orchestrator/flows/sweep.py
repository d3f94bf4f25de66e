"""batch_sweep: every few minutes, start a flow run for each batch that should be moving and is not.

Two kinds of stalled batch (`batches.stalled`, decided in Postgres):
- `running` whose orchestrator is gone by `shared.liveness.judge` (it died: kill -9, a lost
  container, an OOM): its database session is gone, or its PID on this host, or its heartbeat is
  older than `batch_stale_seconds`;
- `launched` with nothing started for it after `batch_launch_grace_seconds` (pg_net does not
  retry, so a launch the Edge Function never saw stays lost).

For each, it creates an `orchestrator-main` flow run through the Prefect API with an idempotency
key naming the stall and a retry window (`Stalled.resume_key`), so sweeps that overlap, or a sweep
that runs while an earlier resume is still queued, never start two runs for one stall; the runner
lock in `orchestrator_main` makes even a duplicate harmless.

Before creating one it asks Prefect for the batch's orchestrator runs (every trigger tags them
`batch:<id>`): a stall that already has a run merely queued (SCHEDULED, late, AwaitingConcurrencySlot
or PENDING: waiting for a managed slot or a worker) is left to it, whatever window it was created
in, so a queue on Prefect Managed's one-run free tier never grows extra runs. A launched batch
whose recorded flow run is still to come (queued or running) is left to it too.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from orchestrator.flows.batch import orchestrator_main
from orchestrator.secrets import ensure_runtime_secrets
from orchestrator.tasks import DB_RETRIES
from shared.db import transaction
from shared.engines.batches import batches
from shared.settings import get_settings

DEPLOYMENT_NAME = "orchestrator_main/orchestrator-main"
# A stall is retried with a new flow run at most once per window (a resume run that itself died
# before taking the batch leaves the stall unchanged; the next window tries again).
RESUME_WINDOW_SECONDS = 15 * 60
SWEEP_TAGS = ("trigger:sweep",)


@task(**DB_RETRIES)
def find_stalled(stale_seconds: float, launch_grace_seconds: float) -> list[batches.Stalled]:
    with transaction() as conn:
        return batches.stalled(conn, stale_seconds=stale_seconds, launch_grace_seconds=launch_grace_seconds,
                               beat_seconds=get_settings().batch_heartbeat_seconds)


def _queued_runs(batch_id: int, flow_name: str) -> list[str]:
    """Ids of the batch's `flow_name` runs that Prefect holds but has not started (SCHEDULED or PENDING types)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"batch:{batch_id}"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING]))),
            limit=5)
    return [str(r.id) for r in runs]


def _run_is_live(flow_run_id: str) -> bool:
    """Whether Prefect still has the batch's recorded flow run to come (scheduled, pending, running)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except (ObjectNotFound, ValueError):
            return False
    return run.state is not None and not run.state.is_final()


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def resume(stalled: batches.Stalled, deployment: str, batch_size: int) -> str | None:
    """The batch's orchestrator-main flow run: a queued one already there, else a new one; None when its launch run is still to come."""
    logger = get_run_logger()
    if stalled.status == "launched" and stalled.flow_run_id and _run_is_live(stalled.flow_run_id):
        logger.info("batch_id=%s: launch run %s is still to come; left to it", stalled.batch_id, stalled.flow_run_id)
        return None
    queued = _queued_runs(stalled.batch_id, deployment.split("/", 1)[0])
    if queued:
        logger.info("batch_id=%s: run %s is queued in Prefect, not started; left to it", stalled.batch_id, queued[0])
        return queued[0]
    from prefect.deployments import run_deployment

    key = stalled.resume_key(int(time.time() // RESUME_WINDOW_SECONDS))
    run = run_deployment(deployment, parameters={"batch_id": stalled.batch_id, "batch_size": batch_size},
                         timeout=0, idempotency_key=key, as_subflow=False,
                         tags=[*SWEEP_TAGS, f"batch:{stalled.batch_id}"])
    logger.info("batch_id=%s (%s since %s): flow run %s (%s)", stalled.batch_id, stalled.status,
                stalled.since.isoformat(), run.id, run.state.type.value if run.state else "?")
    return str(run.id)


@flow(name="batch_sweep", description="Resume batches left running by a dead orchestrator or launched and lost.")
def batch_sweep(deployment: str = DEPLOYMENT_NAME, batch_size: int = 50, in_process: bool = False,
                stale_seconds: float | None = None, launch_grace_seconds: float | None = None) -> dict[str, Any]:
    """`in_process`: run each stalled batch here as a subflow instead of through the deployment
    (a single-machine setup, the chaos suite). The thresholds default to the settings."""
    ensure_runtime_secrets()
    settings = get_settings()
    found = find_stalled(settings.batch_stale_seconds if stale_seconds is None else stale_seconds,
                         settings.batch_launch_grace_seconds if launch_grace_seconds is None else launch_grace_seconds)
    if found:
        get_run_logger().warning("sweep: %d stalled batch(es): %s", len(found),
                                 [(s.batch_id, s.status) for s in found])
    resumed: dict[int, Any] = {}
    for stalled in found:
        if in_process:
            resumed[stalled.batch_id] = orchestrator_main(batch_id=stalled.batch_id, batch_size=batch_size)
        else:
            resumed[stalled.batch_id] = resume(stalled, deployment, batch_size)
    return {"stalled": [s.batch_id for s in found], "resumed": resumed}
