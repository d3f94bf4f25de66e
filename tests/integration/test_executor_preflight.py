"""Executors fail before anything is claimed when the workers could not run, and local engine logs reach Prefect."""

from __future__ import annotations

import logging
import uuid

import pytest
from modal.exception import NotFoundError

from modal_apps import enrichment
from orchestrator.executor import LocalExecutor, ModalExecutor
from shared.errors import ExecutorUnavailable, ProviderConfigError
from shared.integrations import providers
from tests.modal_function import RemoteCall

pytestmark = pytest.mark.integration


def test_modal_preflight_raises_what_the_containers_would(env):
    env(PROVIDER_ORDER="apollo", APOLLO_API_KEY="")
    check = RemoteCall(enrichment.check_config.local)
    executor = ModalExecutor("outbound-enrichment", "enrich_chunk", function=object(), check=check)
    with pytest.raises(ValueError, match="APOLLO_API_KEY"):
        executor.preflight()
    assert check.calls == 1


def test_modal_preflight_passes_when_the_workers_are_configured(env):
    env(PROVIDER_ORDER="heuristics")
    executor = ModalExecutor("outbound-enrichment", "enrich_chunk", function=object(),
                             check=RemoteCall(enrichment.check_config.local))
    executor.preflight()


def test_modal_preflight_says_to_deploy_when_the_app_is_missing():
    def missing():
        raise NotFoundError("Lookup failed for Function 'check_config' from the 'outbound-enrichment' app")

    executor = ModalExecutor("outbound-enrichment", "enrich_chunk", function=object(), check=RemoteCall(missing))
    with pytest.raises(ExecutorUnavailable, match=r"modal deploy -m modal_apps\.enrichment"):
        executor.preflight()


@pytest.mark.skipif(not hasattr(providers, "preflight"), reason="needs the engine branch's providers.preflight()")
def test_local_preflight_names_the_missing_setting(env):
    env(PROVIDER_ORDER="apollo", APOLLO_API_KEY="")
    with pytest.raises(ValueError, match="APOLLO_API_KEY"):
        LocalExecutor(2).preflight()
    env(PROVIDER_ORDER="heuristics")
    LocalExecutor(2).preflight()


def test_engine_info_lines_from_worker_threads_reach_the_prefect_ui(prefect_harness):
    """What PREFECT_LOGGING_EXTRA_LOGGERS=shared does at a flow run's start (Prefect's API handler on
    the `shared` logger), then an INFO line logged from the executor's thread pool, as the engine does."""
    from prefect import flow, get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.context import FlowRunContext
    from prefect.logging.handlers import APILogHandler, APILogWorker

    shared_logger = logging.getLogger("shared")
    api_handlers = [h for h in logging.getLogger("prefect.extra").handlers if isinstance(h, APILogHandler)]
    assert api_handlers, "Prefect's logging config no longer has an API handler on prefect.extra"
    marker = f"lead_id=7 item_id={uuid.uuid4().int % 10**6} batch_id=3 enriched by apollo"

    def work(chunk: list[int]) -> dict:
        logging.getLogger("shared.engines.enrichment").info(marker)
        return {"started": len(chunk)}

    @flow
    def runs_chunks() -> uuid.UUID:
        list(LocalExecutor(2, work).run([[1], [2]]))
        return FlowRunContext.get().flow_run.id

    level_before = shared_logger.level
    for handler in api_handlers:
        shared_logger.addHandler(handler)
    try:
        run_id = runs_chunks()
        APILogWorker.drain_all()
    finally:
        for handler in api_handlers:
            shared_logger.removeHandler(handler)
    assert shared_logger.level == level_before  # restored after the run

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    engine_lines = [log for log in logs if log.name == "shared.engines.enrichment"]
    assert [log.message for log in engine_lines] == [marker, marker]
    assert {log.level for log in engine_lines} == {logging.INFO}


def test_orchestrator_main_fails_before_claiming_anything_and_lets_go(engine, prefect_harness, env):
    """Issue 10.1: a misconfigured run names the setting at once; every item stays PENDING for the next run."""
    from sqlalchemy import text

    from orchestrator.flows.batch import orchestrator_main
    from shared import workitems
    from tests import factories

    env(PROVIDER_ORDER="heuristics,apollo", APOLLO_API_KEY="")
    with engine.begin() as conn:
        client = factories.client(conn, credits=10)
        batch = factories.batch(conn, client, factories.leads(conn, client, 5), status="launched")
    with pytest.raises(ProviderConfigError, match="APOLLO_API_KEY"):
        orchestrator_main(batch_id=batch)
    with engine.begin() as conn:
        assert workitems.counts(conn, batch) == {"PENDING": 5}
        assert conn.execute(text("SELECT count(*) FROM status_history")).scalar() == 0
        runner = conn.execute(text("SELECT runner_id FROM batches WHERE id = :b"), {"b": batch}).scalar()
    assert runner is None  # let go: a fixed configuration is picked up by the next run or the sweep
