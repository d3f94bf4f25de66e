"""Issue 7: a batch finishes on its own through crashes, database trouble and stalls (real Postgres, real processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from orchestrator import tasks
from orchestrator.executor import LocalExecutor
from orchestrator.flows.batch import orchestrator_main
from orchestrator.flows.enrichment import enrichment_daily
from orchestrator.flows.sweep import batch_sweep
from shared import db, workitems
from shared.engines.batches import batches
from devkit import sandbox
from shared.errors import BatchIsDraft, BatchTakenOver, NotAnEnrichmentBatch, NotFound
from tests import factories

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox_url():
    with sandbox.serve(latency_ms=2, hit_rate=0.8, seed=5) as server:
        yield server.url


@pytest.fixture
def providers(env, sandbox_url):
    env(PROVIDER_ORDER="heuristics,sandbox", SANDBOX_URL=sandbox_url, PROVIDER_MAX_RETRIES="0")


def _batch(engine, n, *, status="launched", credits=10_000, name="acme"):
    with engine.begin() as conn:
        c = factories.client(conn, name, credits=credits)
        leads = factories.leads(conn, c, n, domain=f"{name}.example.com")
        return c, factories.batch(conn, c, leads, status=status)


def _row(engine, batch_id):
    with engine.begin() as conn:
        return conn.execute(text("SELECT status, runner_id, heartbeat_at, flow_run_id FROM batches WHERE id = :b"),
                            {"b": batch_id}).one()


# -- 1. the round cap counts rounds without progress ------------------------------------------------

def test_staggered_lease_expiries_never_exhaust_the_run(engine, prefect_harness, providers, monkeypatch):
    """16 groups of items whose leases expire at different times, each costing a round (gathering
    disabled, quick polls): more rounds than the old cap of 12, and the one run finishes the batch."""
    monkeypatch.setattr("orchestrator.flows.batch.wait_for_batch",
                        lambda batch_id: tasks.wait_for_batch.fn(batch_id, poll_seconds=0.1, gather_seconds=0))
    groups = 16
    _, b = _batch(engine, groups * 2)
    with engine.begin() as conn:  # an orchestrator that died after starting every item
        ids = factories.item_ids(conn, b)
        workitems.claim(conn, b, len(ids))
        for g in range(groups):
            workitems.start(conn, ids[2 * g: 2 * g + 2], worker_id="dead:1", lease_seconds=1 + 0.7 * g)
    rounds = []
    real_dispatch = tasks.dispatch_chunks.fn

    def counting(*args, **kwargs):
        rounds.append(1)
        return real_dispatch(*args, **kwargs)

    monkeypatch.setattr("orchestrator.flows.batch.dispatch_chunks", counting)
    summary = orchestrator_main(batch_id=b, batch_size=10)
    assert summary["status"] == "completed" and summary["total"] == groups * 2
    assert len(rounds) > 12  # the old cap would have raised


# -- 2. transient errors, and only those, are retried -------------------------------------------------

def test_is_transient_tells_connection_trouble_from_bad_input(engine, database_url):
    victim = db.get_engine(database_url).connect()
    victim_pid = victim.execute(text("SELECT pg_backend_pid()")).scalar()
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": victim_pid})
    with pytest.raises(OperationalError) as dropped:
        victim.execute(text("SELECT 1"))
    victim.close()
    assert db.is_transient(dropped.value)

    with pytest.raises(OperationalError) as timed_out, engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 50"))
        conn.execute(text("SELECT pg_sleep(2)"))
    assert db.is_transient(timed_out.value)

    with pytest.raises(IntegrityError) as bad, engine.begin() as conn:
        conn.execute(text("INSERT INTO clients (name, subscription_status) VALUES ('x', 'bogus')"))
    assert not db.is_transient(bad.value)
    assert not db.is_transient(NotFound("batch 9 does not exist"))
    assert not db.is_transient(ValueError("bad"))
    assert db.is_transient(psycopg2.DatabaseError("server closed the connection unexpectedly"))  # mid-query
    assert not db.is_transient(psycopg2.ProgrammingError("can't adapt type 'object'"))
    try:
        raise RuntimeError("wrapped") from psycopg2.OperationalError("server closed the connection unexpectedly")
    except RuntimeError as wrapped:
        assert db.is_transient(wrapped)


def test_a_black_holed_server_fails_the_connect_instead_of_hanging(monkeypatch):
    """A peer that accepts TCP and never answers: connect_timeout turns the hang into a transient error."""
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_SECONDS", 1)
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        url = f"postgresql+psycopg2://u:p@127.0.0.1:{hole.getsockname()[1]}/nothing"
        engine = db.get_engine(url)
        try:
            with pytest.raises(OperationalError) as caught:
                engine.connect()
        finally:
            engine.dispose()
            db._engines.pop(url, None)
    assert "timeout" in str(caught.value).lower() and db.is_transient(caught.value)


def test_connections_carry_timeouts_without_session_state(engine):
    args = db.connect_args()
    assert args["connect_timeout"] > 0 and args["keepalives"] == 1 and args["tcp_user_timeout"] > 0
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "2min"  # SET LOCAL, this transaction
        conn.commit()
        raw = conn.connection.dbapi_connection
        raw.autocommit = True
        with raw.cursor() as cur:  # outside a transaction the session default is untouched
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "0"
        raw.autocommit = False


def test_db_tasks_retry_only_transient_errors():
    from prefect.states import Failed

    assert tasks.DB_RETRIES["retry_condition_fn"] is db.retry_transient_condition
    dropped = psycopg2.OperationalError("could not connect to server: Connection refused")
    assert db.retry_transient_condition(None, None, Failed(data=dropped))
    assert not db.retry_transient_condition(None, None, Failed(data=NotFound("batch 1 does not exist")))
    for t in (tasks.start_batch, tasks.recover_stale_items, tasks.dispatch_chunks, tasks.wait_for_batch,
              tasks.finalize_batch):
        assert t.retries >= 3 and t.retry_condition_fn is db.retry_transient_condition, t.name


def test_items_a_failed_chunk_left_behind_are_handed_back_at_once(engine, prefect_harness, monkeypatch):
    """A chunk that started its items and died without finishing or releasing them (its database
    went away mid-write): the round hands them back as soon as it ends, not after the 5-minute lease."""
    _, b = _batch(engine, 12)

    def dies_after_starting(item_ids):
        with engine.begin() as conn:
            workitems.start(conn, item_ids, worker_id="doomed:1", lease_seconds=300)
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(tasks, "get_executor", lambda: LocalExecutor(2, dies_after_starting))
    from prefect import flow

    @flow
    def one_round():
        return tasks.dispatch_chunks(b, 5)

    totals = one_round()
    assert totals["chunk_errors"] == 3
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT status, attempts, last_error FROM work_items WHERE batch_id = :b"),
                            {"b": b}).all()
    assert {(r.status, r.attempts) for r in rows} == {("PENDING", 1)}
    assert all(r.last_error.startswith("handed back") for r in rows)


# -- 3. one orchestrator per batch, Postgres decides liveness ----------------------------------------

def test_take_is_exclusive_until_the_heartbeat_goes_stale(engine):
    _, b = _batch(engine, 3)
    with engine.begin() as conn:
        first = batches.take(conn, b, "A", flow_run_id="run-a", stale_seconds=60)
        again = batches.take(conn, b, "A", flow_run_id="run-a", stale_seconds=60)  # a retried statement
        second = batches.take(conn, b, "B", flow_run_id="run-b", stale_seconds=60)
    assert first.taken and again.taken and not second.taken and second.busy
    assert second.runner_id == "A" and "being run by A, heartbeat 0 s ago" in second.describe()
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET heartbeat_at = now() - interval '2 minutes' WHERE id = :b"), {"b": b})
        taken_over = batches.take(conn, b, "B", flow_run_id="run-b", stale_seconds=60)
        assert taken_over.taken
        assert not batches.heartbeat(conn, b, "A")  # A learns it lost the batch
        assert batches.heartbeat(conn, b, "B")
    claims = batches.chunks(engine, b, 2, runner_id="A")
    with pytest.raises(BatchTakenOver):
        next(claims)
    assert next(batches.chunks(engine, b, 2, runner_id="B"))


def test_a_draft_is_refused_unless_the_operator_asks(engine):
    _, b = _batch(engine, 2, status="draft")
    with engine.begin() as conn, pytest.raises(BatchIsDraft, match=f"outbound batch launch {b}"):
        batches.take(conn, b, "A", flow_run_id=None, stale_seconds=60)
    with engine.begin() as conn:
        assert batches.take(conn, b, "A", flow_run_id=None, stale_seconds=60, allow_draft=True).taken
    with engine.begin() as conn, pytest.raises(NotFound, match="batch 999999 does not exist"):
        batches.take(conn, 999999, "A", flow_run_id=None, stale_seconds=60)


def test_taking_over_a_dead_runners_batch_hands_back_what_it_claimed_and_never_started(engine):
    """Without this a resumed batch waited out the 10-minute queue timeout for items nobody would start."""
    _, b = _batch(engine, 4)
    with engine.begin() as conn:
        assert batches.take(conn, b, "dead", flow_run_id=None, stale_seconds=60).taken
        claimed = [c.id for c in workitems.claim(conn, b, 2)]  # claimed, then the runner was killed
        conn.execute(text("UPDATE batches SET heartbeat_at = now() - interval '5 minutes' WHERE id = :b"), {"b": b})
    taken = tasks.start_batch.fn(b, "resumer")
    assert taken.taken
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"PENDING": 4}
        details = {workitems.history(conn, i)[-1][3] for i in claimed}
    assert details == {"handed back: claimed by an earlier orchestrator that never started it"}


def test_send_batches_are_never_taken_or_swept_as_enrichment(engine):
    """outreach_run runs 'send' batches; the enrichment orchestrator and its sweep leave them alone."""
    _, b = _batch(engine, 2)
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET kind = 'send', status = 'running', "
                          "heartbeat_at = now() - interval '1 hour' WHERE id = :b"), {"b": b})
        assert b not in [s.batch_id for s in batches.stalled(conn, stale_seconds=60, launch_grace_seconds=60)]
    with engine.begin() as conn, pytest.raises(NotAnEnrichmentBatch, match="outreach_run"):
        batches.take(conn, b, "A", flow_run_id=None, stale_seconds=60, allow_draft=True)


def test_flow_on_a_missing_batch_fails_at_once(engine, prefect_harness, providers):
    calls = []
    original = batches.take

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batches, "take", counted)
        with pytest.raises(NotFound, match="batch 999999 does not exist"):
            orchestrator_main(batch_id=999999)
        with pytest.raises(BatchIsDraft):
            orchestrator_main(batch_id=_batch(engine, 1, status="draft")[1])
    assert len(calls) == 2  # one try each: a permanent error is not retried


def test_flow_on_a_finished_batch_returns_its_real_summary(engine, prefect_harness, providers):
    _, b = _batch(engine, 7)
    first = orchestrator_main(batch_id=b, batch_size=5)
    again = orchestrator_main(batch_id=b, batch_size=5)
    assert first["status"] == again["status"] == "completed" and again["total"] == 7
    assert again["counts"] == first["counts"] and again["note"] == "finished"
    assert again["message"] == f"batch {b} is already completed"


def test_flow_leaves_a_batch_with_a_fresh_heartbeat_alone(engine, prefect_harness, providers):
    _, b = _batch(engine, 5)
    with engine.begin() as conn:
        batches.take(conn, b, "flow run elsewhere", flow_run_id="x", stale_seconds=60)
    summary = orchestrator_main(batch_id=b)
    assert summary["note"] == "busy" and summary["message"].startswith(f"batch {b} is being run by flow run elsewhere")
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"PENDING": 5}  # nothing claimed
    assert _row(engine, b).runner_id == "flow run elsewhere"


def _cli_run(database_url, batch_id, *, extra_env=None):
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"DATABASE_URL": database_url, "PREFECT_API_URL": PREFECT_API_URL.value(),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                **(extra_env or {})})
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "batch", "run", str(batch_id),
                             "--batch-size", "10"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _wait(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def test_sweep_resumes_a_batch_whose_orchestrator_was_killed(engine, database_url, prefect_harness, env, sandbox_url):
    """`outbound batch run N` killed with SIGKILL mid-batch; the sweep finds its runner gone and finishes it."""
    fast = {"PROVIDER_ORDER": "heuristics,sandbox", "SANDBOX_URL": sandbox_url, "LEASE_SECONDS": "3",
            "BATCH_HEARTBEAT_SECONDS": "0.5", "BATCH_STALE_SECONDS": "2", "LOCAL_WORKERS": "2"}
    env(**fast)
    _, b = _batch(engine, 300)
    proc = _cli_run(database_url, b, extra_env=fast)
    try:
        _wait(lambda: sum(n for s, n in _counts(engine, b).items() if s in ("DONE", "SKIPPED")) >= 20,
              120, "the run to make progress")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert _row(engine, b).status == "running"
    # Far from stale (60 s), but its PID is dead on this host: once it has missed a couple of beats
    # (0.5 s each) the sweep takes it over without waiting for staleness.
    _wait(lambda: _heartbeat_age(engine, b) > 1.5, 60, "the killed run to miss two heartbeats")
    assert batch_sweep(stale_seconds=60, in_process=True)["stalled"] == [b]
    row = _row(engine, b)
    assert row.status == "completed" and "pid" in row.runner_id
    assert sum(_counts(engine, b).values()) == 300


def _heartbeat_age(engine, b) -> float:
    with engine.begin() as conn:
        return conn.execute(text("SELECT extract(epoch FROM now() - heartbeat_at) FROM batches WHERE id = :b"),
                            {"b": b}).scalar()


def _counts(engine, b):
    with engine.begin() as conn:
        return workitems.counts(conn, b)


def test_sweep_creates_one_flow_run_per_stall_through_the_deployment(engine, prefect_harness, env):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    deployment_id = orchestrator_main.to_deployment(name="orchestrator-main").apply()
    env(BATCH_LAUNCH_GRACE_SECONDS="0", BATCH_STALE_SECONDS="60")
    _, lost = _batch(engine, 2, status="launched")  # pg_net lost the launch
    _, dead = _batch(engine, 2, status="running", name="beta")  # orchestrator gone, no heartbeat since
    _, fine = _batch(engine, 2, status="running", name="gamma")
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET started_at = now() - interval '5 minutes' WHERE id = :b"), {"b": dead})
        batches.take(conn, fine, "alive", flow_run_id=None, stale_seconds=60)
    first = batch_sweep(stale_seconds=60, launch_grace_seconds=0)
    second = batch_sweep(stale_seconds=60, launch_grace_seconds=0)  # overlapping sweep: same runs back
    assert first["stalled"] == [lost, dead] and first["resumed"] == second["resumed"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["trigger:sweep"])))
    by_batch = {r.parameters["batch_id"]: r for r in runs if r.deployment_id == deployment_id}
    assert set(by_batch) == {lost, dead} and len(runs) == 2
    assert {str(r.id) for r in by_batch.values()} == set(first["resumed"].values())
    assert all(r.state.is_scheduled() for r in runs)


def test_sweep_never_refires_a_stall_whose_run_is_merely_queued(engine, prefect_harness, env, monkeypatch):
    """Runs waiting for a managed slot are not lost: a later sweep, even in a new window, adds none beside them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.deployments import run_deployment

    import orchestrator.flows.sweep as sweep

    with get_client(sync_client=True) as client:  # batch ids restart per test; earlier tests' runs carry their tags
        for run in client.read_flow_runs():
            client.delete_flow_run(run.id)
    deployment_id = orchestrator_main.to_deployment(name="orchestrator-main").apply()
    env(BATCH_LAUNCH_GRACE_SECONDS="0", BATCH_STALE_SECONDS="60")
    _, unrecorded = _batch(engine, 2, status="launched", name="queued-launch")  # launch run made, id never recorded
    _, dead = _batch(engine, 2, status="running", name="dead-runner")
    _, lost = _batch(engine, 2, status="launched", name="lost-launch")  # pg_net lost it: no run at all
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET started_at = now() - interval '5 minutes' WHERE id = :b"), {"b": dead})
    # The Edge Function's run for `unrecorded`, queued behind a busy slot (no worker takes it here).
    edge = run_deployment("orchestrator_main/orchestrator-main", parameters={"batch_id": unrecorded}, timeout=0,
                          as_subflow=False, tags=["trigger:edge-function", f"batch:{unrecorded}"])

    def runs_of(batch_id):
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"batch:{batch_id}"])))
        return [r for r in runs if r.deployment_id == deployment_id]

    first = sweep.batch_sweep(stale_seconds=60, launch_grace_seconds=0)
    assert first["stalled"] == [unrecorded, dead, lost]
    assert first["resumed"][unrecorded] == str(edge.id)  # the queued launch run, not a second one
    monkeypatch.setattr(sweep, "RESUME_WINDOW_SECONDS", 1)  # every later sweep is in a new resume window
    time.sleep(1.1)
    second = sweep.batch_sweep(stale_seconds=60, launch_grace_seconds=0)
    assert second["resumed"] == first["resumed"]
    assert [len(runs_of(b)) for b in (unrecorded, dead, lost)] == [1, 1, 1]
    assert all(r.state.is_scheduled() for b in (unrecorded, dead, lost) for r in runs_of(b))
    # Once the queued run has ended without taking the batch (cancelled, crashed), the next sweep fires again.
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runs_of(dead)[0].id, Cancelled(), force=True)
    time.sleep(1.1)
    third = sweep.batch_sweep(stale_seconds=60, launch_grace_seconds=0)
    assert third["resumed"][dead] != first["resumed"][dead] and len(runs_of(dead)) == 2


def test_daily_run_resumes_a_stalled_batch_instead_of_ignoring_it(engine, prefect_harness, providers, env):
    env(BATCH_STALE_SECONDS="60")
    with engine.begin() as conn:
        c = factories.client(conn, "paying", credits=500)
        stuck_leads = factories.leads(conn, c, 6, domain="stuck.example.com")
        stuck = factories.batch(conn, c, stuck_leads, status="running")
        conn.execute(text("UPDATE batches SET runner_id = 'dead', heartbeat_at = now() - interval '10 minutes' "
                          "WHERE id = :b"), {"b": stuck})
        factories.leads(conn, c, 4, domain="fresh.example.com")
    result = enrichment_daily(batch_size=5)
    [resumed] = result["resumed"]["paying"]
    assert resumed["batch_id"] == stuck and resumed["status"] == "completed" and resumed["total"] == 6
    assert result["ran"]["paying"]["total"] == 4  # the stuck batch's leads were not batched again


# -- 6. Prefect's temporary server dies with its parent ------------------------------------------------

EPHEMERAL_PARENT = """
import os, sys, time
import psutil
import orchestrator.flows  # installs the watchdog
from prefect import flow

@flow
def hello():
    return 1

hello()
kids = [p for p in psutil.Process().children(recursive=True) if "prefect.server.api.server:create_app" in " ".join(p.cmdline())]
print(" ".join(str(p.pid) for p in kids), flush=True)
time.sleep(600)
"""


def test_kill_9_of_the_parent_takes_the_temporary_prefect_server_with_it(tmp_path):
    import psutil

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "ERROR"})
    parent = subprocess.Popen([sys.executable, "-c", EPHEMERAL_PARENT], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = parent.stdout.readline()
        servers = [psutil.Process(int(pid)) for pid in line.split()]
        assert servers, "the flow ran without a temporary server"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(30)
        _wait(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in servers), 60,
              "the temporary server to exit after its parent was killed")
    finally:
        if parent.poll() is None:
            os.kill(parent.pid, signal.SIGKILL)
        parent.stdout.close()


def test_a_scheduled_deployment_reaches_prefect_with_its_limit_and_collision_strategy(prefect_harness):
    """`outbound deploy` (local target, the same specs as managed) registers prefect.yaml's limit on a real Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from orchestrator import deploy

    with get_client(sync_client=True) as client:
        deploy.deploy_local(client=client, specs=deploy.load_specs(only=["batch-sweep", "orchestrator-main"]))
        sweep = client.read_deployment_by_name("batch_sweep/batch-sweep")
        main = client.read_deployment_by_name("orchestrator_main/orchestrator-main")
    assert sweep.global_concurrency_limit is not None and sweep.global_concurrency_limit.limit == 1
    assert sweep.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    assert main.global_concurrency_limit is None  # one run per launched batch, many at once
