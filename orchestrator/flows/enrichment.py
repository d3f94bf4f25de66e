"""enrichment_daily: every day at 02:00, batch each billable client's new leads and run them.

A client's batches left stalled (`running` with a dead orchestrator, or `launched` and never
started) are resumed first: their leads count as in flight, so they are never batched twice.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from orchestrator.flows.batch import orchestrator_main
from orchestrator.secrets import ensure_runtime_secrets
from orchestrator.tasks import DB_RETRIES
from shared.db import transaction
from shared.engines.batches import batches
from shared.settings import get_settings


@task(**DB_RETRIES)
def billing_check() -> list[dict[str, Any]]:
    with transaction() as conn:
        return batches.billable_clients(conn)


@task(**DB_RETRIES)
def stalled_batches(client_id: int) -> list[int]:
    settings = get_settings()
    with transaction() as conn:
        return [s.batch_id for s in batches.stalled(conn, stale_seconds=settings.batch_stale_seconds,
                                                    launch_grace_seconds=settings.batch_launch_grace_seconds,
                                                    client=client_id,
                                                    beat_seconds=settings.batch_heartbeat_seconds)]


@task(**DB_RETRIES)
def batch_new_leads(client_id: int) -> int | None:
    with transaction() as conn:
        return batches.create_batch(conn, client=client_id)


@flow(name="enrichment_daily", description="Billing check per client, resume its stalled batches, batch its new leads.")
def enrichment_daily(batch_size: int = 50) -> dict[str, Any]:
    ensure_runtime_secrets()
    logger = get_run_logger()
    ran: dict[str, Any] = {}
    resumed: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for client in billing_check():
        if not client["ok"]:
            skipped[client["name"]] = client["reason"]
            logger.warning("client %s skipped by the billing check: %s", client["name"], client["reason"])
            continue
        for batch_id in stalled_batches(client["id"]):
            logger.info("client %s: resuming stalled batch_id=%s", client["name"], batch_id)
            resumed.setdefault(client["name"], []).append(orchestrator_main(batch_id=batch_id, batch_size=batch_size))
        batch_id = batch_new_leads(client["id"])
        if batch_id is None:
            logger.info("client %s has no new leads", client["name"])
            continue
        # Its own draft: created just now for this run.
        ran[client["name"]] = orchestrator_main(batch_id=batch_id, batch_size=batch_size, allow_draft=True)
    return {"ran": ran, "resumed": resumed, "skipped": skipped}
