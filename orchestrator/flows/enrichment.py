"""enrichment_daily: every day at 02:00, batch each billable client's new leads and run them."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from orchestrator.flows.batch import orchestrator_main
from orchestrator.secrets import ensure_runtime_secrets
from shared.db import transaction
from shared.engines import batches


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[5, 30, 60])
def billing_check() -> list[dict[str, Any]]:
    with transaction() as conn:
        return batches.billable_clients(conn)


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[5, 30, 60])
def batch_new_leads(client_id: int) -> int | None:
    with transaction() as conn:
        return batches.create_batch(conn, client=client_id)


@flow(name="enrichment_daily", description="Billing check per client, then one batch of its new leads each.")
def enrichment_daily(batch_size: int = 50) -> dict[str, Any]:
    ensure_runtime_secrets()
    logger = get_run_logger()
    ran: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for client in billing_check():
        if not client["ok"]:
            skipped[client["name"]] = client["reason"]
            logger.warning("client %s skipped by the billing check: %s", client["name"], client["reason"])
            continue
        batch_id = batch_new_leads(client["id"])
        if batch_id is None:
            logger.info("client %s has no new leads", client["name"])
            continue
        ran[client["name"]] = orchestrator_main(batch_id=batch_id, batch_size=batch_size)
    return {"ran": ran, "skipped": skipped}
