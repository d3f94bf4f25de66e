"""activate_campaign: validate a campaign, activate it, and enrich its leads in one batch."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from orchestrator.flows.batch import orchestrator_main
from orchestrator.secrets import ensure_runtime_secrets
from shared.db import transaction
from shared.engines.campaigns import campaigns
from shared.engines.batches import batches

__all__ = ["activate", "activate_campaign"]


@task(cache_policy=NO_CACHE)
def activate(campaign_id: int) -> dict[str, Any]:
    """Check the ICP and the client's subscription, then draft/paused → active, and batch its new leads."""
    with transaction() as conn:
        client_id = campaigns.activate_campaign(conn, campaign_id)
        # Created as a draft: this flow runs it itself, so the launch trigger must not start a second run.
        batch_id = batches.create_batch(conn, client=client_id, campaign=campaign_id)
    return {"campaign_id": campaign_id, "batch_id": batch_id}


@flow(name="activate_campaign", description="Validate, activate, enqueue and enrich a campaign's leads.")
def activate_campaign(campaign_id: int, batch_size: int = 50) -> dict[str, Any]:
    ensure_runtime_secrets()
    result = activate(campaign_id)
    if result["batch_id"] is None:
        get_run_logger().info("campaign %s activated; it has no new leads to enrich", campaign_id)
        return result
    # Its own draft: this flow created it and runs it now.
    summary = orchestrator_main(batch_id=result["batch_id"], batch_size=batch_size, allow_draft=True)
    return result | {"summary": summary}
