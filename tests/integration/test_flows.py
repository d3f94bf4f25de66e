"""The Prefect flows against real Postgres and a temporary Prefect server, with the local and Modal executors."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import modal
import pytest
from sqlalchemy import text

from orchestrator.executor import LocalExecutor, ModalExecutor
from orchestrator.flows.batch import orchestrator_main
from orchestrator.flows.campaign import activate_campaign
from orchestrator.flows.enrichment import enrichment_daily
from shared import workitems
from shared.engines.clients import billing
from devkit import sandbox
from tests import factories
from tests.modal_function import ModalFunction

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox_url():
    with sandbox.serve(latency_ms=5, hit_rate=0.8, seed=3) as server:
        yield server.url


@pytest.fixture
def providers(env, sandbox_url):
    env(PROVIDER_ORDER="heuristics,sandbox", SANDBOX_URL=sandbox_url, PROVIDER_MAX_RETRIES="0")


def _batch(engine, n, credits=10_000):
    with engine.begin() as conn:
        c = factories.client(conn, credits=credits)
        camp = factories.campaign(conn, c, icp={"seniorities": ["vp"]})
        leads = factories.leads(conn, c, n, campaign_id=camp)
        return c, factories.batch(conn, c, leads, campaign_id=camp)


def test_orchestrator_main_runs_a_batch_to_completion(engine, prefect_harness, providers):
    client, b = _batch(engine, 600)
    summary = orchestrator_main(batch_id=b, batch_size=50, allow_draft=True)
    assert summary["status"] == "completed"
    assert set(summary["counts"]) <= {"DONE", "SKIPPED"} and sum(summary["counts"].values()) == 600
    assert set(summary["skip_reasons"]) <= {"no_provider_hit"}
    with engine.begin() as conn:
        row = conn.execute(text("SELECT status, flow_run_id, summary, finished_at FROM batches WHERE id = :b"),
                           {"b": b}).one()
        assert row.status == "completed" and row.flow_run_id and row.finished_at and row.summary["total"] == 600
        # pay on hit: one credit per sandbox hit, misses refunded
        assert summary["credits_spent"] == billing.spent(conn, batch_id=b) == summary["provider_calls"]["sandbox"]["hit"]
        assert 0 < summary["provider_calls"]["sandbox"]["hit"] < 600
        # every item went PENDING → QUEUED → IN_PROGRESS → terminal, and history shows it
        assert conn.execute(text("SELECT count(*) FROM status_history WHERE batch_id = :b"), {"b": b}).scalar() == 1800


def test_artifact_is_published(engine, prefect_harness, providers):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    _, b = _batch(engine, 20)
    orchestrator_main(batch_id=b, batch_size=7, allow_draft=True)
    with engine.begin() as conn:
        run_id = conn.execute(text("SELECT flow_run_id FROM batches WHERE id = :b"), {"b": b}).scalar()

    import asyncio

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"batch-{b}-summary"]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))

    [artifact] = asyncio.run(read())
    assert f"Batch {b}: completed" in artifact.data and "credits spent" in artifact.data


def test_flow_recovers_items_a_lost_worker_left_behind(engine, prefect_harness, providers):
    _, b = _batch(engine, 30)
    with engine.begin() as conn:  # a previous run died after claiming and starting some items
        ids = [c.id for c in workitems.claim(conn, b, 10)]
        workitems.start(conn, ids, worker_id="dead", lease_seconds=60)
        factories.expire(conn, ids)
    summary = orchestrator_main(batch_id=b, batch_size=8, allow_draft=True)
    assert summary["total"] == 30 and set(summary["counts"]) <= {"DONE", "SKIPPED"}
    with engine.begin() as conn:
        assert conn.execute(text("SELECT max(attempts) FROM work_items WHERE id = ANY(:ids)"), {"ids": ids}).scalar() == 2


def FakeModalFunction(fn):  # noqa: N802 - the stand-in's class, with four containers
    return ModalFunction(fn, containers=4)


def test_modal_function_runs_the_engine_locally(engine, providers):
    from modal_apps.enrichment import enrich_chunk

    _, b = _batch(engine, 12)
    with engine.begin() as conn:
        ids = [c.id for c in workitems.claim(conn, b, 12)]
    report = enrich_chunk.local(ids)
    assert report["started"] == 12 and report["done"] + sum(report["skipped"].values()) == 12


def test_flow_through_the_modal_executor(engine, prefect_harness, providers, env, monkeypatch):
    from modal_apps.enrichment import check_config, enrich_chunk

    fake = FakeModalFunction(enrich_chunk.local)
    checks = []
    # The preflight's `check_config.remote()` runs the deployed function's real body here.
    check = type("Check", (), {"remote": staticmethod(lambda: checks.append(check_config.local()))})()
    looked_up = []
    functions = {"enrich_chunk": fake, "check_config": check}
    monkeypatch.setattr(modal.Function, "from_name",
                        lambda app, name, **kw: looked_up.append((app, name)) or functions[name])
    env(EXECUTOR="modal", MODAL_TOKEN_ID="ak-test", MODAL_TOKEN_SECRET="as-test")
    _, b = _batch(engine, 120)
    summary = orchestrator_main(batch_id=b, batch_size=25, allow_draft=True)
    assert summary["status"] == "completed" and summary["total"] == 120
    assert set(looked_up) == {("outbound-enrichment", "enrich_chunk"), ("outbound-enrichment", "check_config")}
    assert len(checks) == 1  # the preflight ran once, before any chunk
    assert fake.calls == [] and fake.pulled == 5  # .remote per chunk, never .map (it buffers 1,000 ahead)


def test_modal_spawn_map_then_wait_on_postgres(engine, providers, monkeypatch):
    from modal_apps.enrichment import enrich_chunk
    from shared.db import get_engine
    from shared.engines.batches.batches import chunks
    from orchestrator.tasks import wait_for_batch

    fake = FakeModalFunction(enrich_chunk.local)
    _, b = _batch(engine, 40)
    ModalExecutor("outbound-enrichment", "enrich_chunk", function=fake).spawn(chunks(get_engine(), b, 10))
    for _ in range(300):  # spawn returned at once; the background window finishes the batch
        counts = wait_for_batch.fn(b, poll_seconds=0.1, timeout_seconds=60, gather_seconds=0)
        if not counts.get("PENDING"):
            break
        time.sleep(0.2)
    assert sum(counts.values()) == 40 and set(counts) <= {"DONE", "SKIPPED"}
    assert fake.calls == [] and fake.pulled == 4  # a bounded window in the background, not .spawn_map


def test_modal_chunk_exceptions_are_reported_not_raised():
    def boom(chunk):
        raise RuntimeError(f"chunk {chunk} exploded")

    results = list(ModalExecutor("a", "f", function=FakeModalFunction(boom)).run([[1], [2]]))
    assert all(isinstance(r, RuntimeError) for r in results)
    assert [type(r) for r in LocalExecutor(2, boom).run([[1], [2], [3]])] == [RuntimeError] * 3


def test_local_executor_bounds_in_flight_chunks():
    running, peak = 0, 0
    lock = threading.Lock()
    pulled = []

    def work(chunk):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.01)
        with lock:
            running -= 1
        return {"n": len(chunk)}

    def source():
        for i in range(20):
            pulled.append(i)
            yield [i]

    results = list(LocalExecutor(3, work).run(source()))
    assert len(results) == 20 and peak <= 3 and len(pulled) == 20


def test_daily_enrichment_skips_clients_that_fail_the_billing_check(engine, prefect_harness, providers):
    with engine.begin() as conn:
        ok = factories.client(conn, "paying", credits=500)
        broke = factories.client(conn, "broke", credits=0)
        gone = factories.client(conn, "gone", credits=500, status="cancelled")
        for c in (ok, broke, gone):
            factories.leads(conn, c, 15, domain=f"c{c}.example.com")
    result = enrichment_daily(batch_size=10)
    assert result["skipped"] == {"broke": "no credits left", "gone": "subscription cancelled"}
    assert list(result["ran"]) == ["paying"] and result["ran"]["paying"]["total"] == 15
    assert enrichment_daily(batch_size=10)["ran"] == {}  # nothing new the second time


def test_campaign_activation_validates_then_enriches(engine, prefect_harness, providers):
    with engine.begin() as conn:
        c = factories.client(conn, credits=100)
        camp = factories.campaign(conn, c, status="draft")
        factories.leads(conn, c, 10, campaign_id=camp)
        bad = factories.campaign(conn, c, "bad", status="draft", icp={"seniorites": ["vp"]})
    result = activate_campaign(campaign_id=camp)
    assert result["summary"]["total"] == 10
    with pytest.raises(ValueError, match="seniorites"):
        activate_campaign(campaign_id=bad)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT status FROM campaigns WHERE id = :i"), {"i": camp}).scalar() == "active"
        assert conn.execute(text("SELECT status FROM campaigns WHERE id = :i"), {"i": bad}).scalar() == "draft"


def test_runtime_secrets_come_from_prefect_secret_blocks(prefect_harness, env, monkeypatch):
    """A managed run has no DATABASE_URL or Modal token in its environment: the blocks supply them."""
    from prefect import flow

    from orchestrator.secrets import ensure_runtime_secrets, push_secret

    push_secret("postgres-connection-string", "postgresql://u:p@db.example:5432/prod")
    push_secret("modal-token-id", "ak-123")
    push_secret("modal-token-secret", "as-456")
    env(EXECUTOR="modal")
    for name in ("DATABASE_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.setenv(name, "")  # recorded, so the test's changes are undone afterwards
        monkeypatch.delenv(name)
    import os

    @flow
    def managed_run() -> tuple[str | None, ...]:
        ensure_runtime_secrets()
        return tuple(os.environ.get(k) for k in ("DATABASE_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"))

    assert managed_run() == ("postgresql://u:p@db.example:5432/prod", "ak-123", "as-456")


def test_a_cancelled_batch_stops_claiming_and_the_run_ends_cleanly(engine, prefect_harness, env):
    """Cancel mid-run (the console's button, `outbound batch cancel`): nothing is claimed after it,
    work in flight finishes, the rest stays PENDING and its leads can be batched again."""
    from shared.engines.batches import batches

    with sandbox.serve(latency_ms=150, hit_rate=0.8, seed=3) as slow:
        env(PROVIDER_ORDER="heuristics,sandbox", SANDBOX_URL=slow.url, PROVIDER_MAX_RETRIES="0", LOCAL_WORKERS="1",
            LEAD_CONCURRENCY="2")
        client, b = _batch(engine, 120)
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.update(orchestrator_main(batch_id=b, batch_size=4)))
        with engine.begin() as conn:
            batches.launch(conn, b)
        thread.start()

        def terminal() -> int:
            with engine.begin() as conn:
                return sum(n for s, n in workitems.counts(conn, b).items() if s in ("DONE", "SKIPPED"))

        import time

        deadline = time.monotonic() + 120
        while terminal() < 8:
            assert time.monotonic() < deadline and thread.is_alive(), "the batch never got going"
            time.sleep(0.1)
        with engine.begin() as conn:
            assert batches.cancel(conn, b)
            cancelled_at = conn.execute(text("SELECT finished_at FROM batches WHERE id = :b"), {"b": b}).scalar()
        thread.join(120)
        assert not thread.is_alive()
    assert outcome["note"] == "cancelled" and outcome["status"] == "cancelled"
    with engine.begin() as conn:
        counts = workitems.counts(conn, b)
        claimed_after = conn.execute(text(
            "SELECT count(*) FROM status_history WHERE batch_id = :b AND to_status = 'QUEUED' AND at > :t"),
            {"b": b, "t": cancelled_at}).scalar()
        assert batches.status(conn, b) == "cancelled"
        assert counts.get("PENDING", 0) > 0 and not counts.get("QUEUED") and not counts.get("IN_PROGRESS")
        assert claimed_after == 0
        assert batches.new_leads_count(conn, client) == counts["PENDING"]  # their leads are new again
        assert not batches.launch(conn, b) and not batches.cancel(conn, b)  # over is over


def test_modal_executor_claims_no_further_ahead_than_the_containers_take(engine, providers, env, monkeypatch):
    """A batch 50x the window: no chunk waits QUEUED past the queue timeout, claimed-not-started never exceeds the window.

    The fake buffers inputs as Modal's client does (`.map` pulls up to 1,000 ahead) and runs two
    containers of one input each, the real enrich_chunk in each, with 50 ms of container overhead
    per input; the executor is the one the flow gets from the settings.
    """
    from modal_apps.enrichment import enrich_chunk
    from orchestrator.executor import get_executor
    from shared.db import get_engine
    from shared.engines.batches.batches import chunks
    from shared.settings import get_settings

    env(EXECUTOR="modal", MODAL_MAX_CONTAINERS="2", MODAL_INPUTS_PER_CONTAINER="1", QUEUE_TIMEOUT_SECONDS="2")
    window = 2
    _, b = _batch(engine, 50 * window)
    queued_at_start = []

    def count_queued(_chunk):  # claimed and not started: QUEUED rows, this chunk's included
        with engine.connect() as conn:
            queued_at_start.append(conn.execute(text(
                "SELECT count(*) FROM work_items WHERE batch_id = :b AND status = 'QUEUED'"), {"b": b}).scalar())

    fake = ModalFunction(enrich_chunk.local, containers=2, inputs_per_container=1, overhead_seconds=0.05,
                         on_start=count_queued)
    monkeypatch.setattr(modal.Function, "from_name", lambda app, name, **kw: fake)
    results = list(get_executor().run(chunks(get_engine(), b, 1)))
    assert len(results) == 50 * window and not [r for r in results if isinstance(r, BaseException)]
    assert max(queued_at_start) <= window, max(queued_at_start)
    with engine.connect() as conn:
        longest = conn.execute(text("SELECT extract(epoch FROM max(started_at - queued_at)) FROM work_items "
                                    "WHERE batch_id = :b"), {"b": b}).scalar()
    assert longest < get_settings().queue_timeout_seconds, f"a chunk waited {longest:.1f} s QUEUED"
