"""The trigger path for real: Postgres trigger → bridge or Edge Function (Deno) → Prefect server → process worker → orchestrator_main.

One Prefect server, one `outbound worker`, deployments made by `outbound deploy --target local`;
batches are launched the two ways production and local development launch them, and must end
with every item DONE. Sending the same launch twice must start one flow run.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from shared import db
from shared.engines.batches import batches
from orchestrator.bridge import idempotency_key
from tests import factories
from devkit.net import free_port, wait_until
from tests.e2e.conftest import REPO_ROOT, PrefectServer, Proc, deno_path, outbound_argv

pytestmark = pytest.mark.e2e

LEADS_PER_BATCH = 12
FLOW_TIMEOUT = 180.0
EDGE_SECRET = "e2e-launch-secret"
TERMINAL_BATCH = ("completed", "completed_with_errors", "cancelled")
TERMINAL_RUN = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass(frozen=True)
class Deployment:
    main_id: str
    output: str


@pytest.fixture(scope="module")
def e2e_engine(database_url: str) -> Engine:
    """The test database emptied once: the bridge launches every 'launched' batch it finds.

    Batch ids start again at 1; the idempotency keys still differ from any earlier run's because
    they carry each launch's time (`batch-<id>-launch-<launched_at>`)."""
    engine = db.get_engine(database_url)
    with engine.begin() as conn:
        tables = conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )).scalars().all()
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture(scope="module")
def deployment(prefect_server: PrefectServer, database_url: str) -> Deployment:
    result = subprocess.run([*outbound_argv(), "deploy", "--target", "local"], cwd=REPO_ROOT,
                            env={**prefect_server.env, "DATABASE_URL": database_url},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"outbound deploy failed:\n{result.stdout}\n{result.stderr}"
    match = re.search(r"^PREFECT_DEPLOYMENT_ID=([0-9a-f-]{36})$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return Deployment(match.group(1), result.stdout)


@pytest.fixture(scope="module")
def worker(prefect_server: PrefectServer, deployment: Deployment, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    env = {
        **prefect_server.env,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "DATABASE_URL": database_url,
        "PROVIDER_ORDER": "heuristics",  # offline: no provider leaves this machine
        "EXECUTOR": "local",
    }
    proc = Proc("worker", [*outbound_argv(), "worker", "--pool", "local-process"], env,
                tmp_path_factory.mktemp("worker") / "worker.log").start()

    def online() -> bool:
        assert proc.alive(), f"worker exited:\n{proc.output()[-3000:]}"
        workers = prefect_server.post("/work_pools/local-process/workers/filter", {})
        return any(w.get("status") == "ONLINE" for w in workers)

    try:
        wait_until(online, 60, "the process worker to come online")
        yield proc
    finally:
        proc.stop(signal.SIGINT)  # Ctrl-C: what the worker's docs use; it then stops at once


# -- helpers ---------------------------------------------------------------------------------------

def _new_batch(engine: Engine, name: str, *, launch: bool) -> int:
    with engine.begin() as conn:
        client_id = factories.client(conn, name)
        lead_ids = factories.leads(conn, client_id, LEADS_PER_BATCH, domain=f"{name}.example.com")
        batch_id = batches.create_batch(conn, client=client_id, lead_ids=lead_ids, launch=launch)
    assert batch_id is not None
    return batch_id


def _launch_key(engine: Engine, batch_id: int) -> str:
    """The idempotency key of the batch's current launch, as the trigger builds it."""
    with engine.connect() as conn:
        launched = conn.execute(text("SELECT coalesce(launched_at, created_at) FROM batches WHERE id = :b"),
                                {"b": batch_id}).scalar_one()
    return idempotency_key(batch_id, launched)


def _batch(engine: Engine, batch_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT status, flow_run_id FROM batches WHERE id = :b"), {"b": batch_id}).one()


def _item_statuses(engine: Engine, batch_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM work_items WHERE batch_id = :b GROUP BY status"),
                            {"b": batch_id}).all()
    return {status: n for status, n in rows}


def _wait_for_run(server: PrefectServer, worker: Proc, flow_run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = server.get(f"/flow_runs/{flow_run_id}")
        return run if run["state"]["type"] in TERMINAL_RUN else None

    run = wait_until(finished, FLOW_TIMEOUT, f"flow run {flow_run_id} to finish", interval=0.5)
    assert run["state"]["type"] == "COMPLETED", (
        f"flow run ended {run['state']['type']}: {run['state'].get('message')}\n"
        f"worker log:\n{worker.output()[-5000:]}")
    return run


def _runs_for_batch(server: PrefectServer, deployment_id: str, batch_id: int) -> list[dict[str, Any]]:
    """Flow runs of the deployment whose parameters name this batch."""
    runs = server.post("/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 200})
    return [r for r in runs if r["parameters"].get("batch_id") == batch_id]


def _assert_batch_done(engine: Engine, batch_id: int) -> None:
    assert _batch(engine, batch_id).status == "completed"
    assert _item_statuses(engine, batch_id) == {"DONE": LEADS_PER_BATCH}


# -- the tests -------------------------------------------------------------------------------------

def test_deploy_registered_the_prefect_yaml_deployments(prefect_server, deployment):
    deployments = prefect_server.post("/deployments/filter", {})
    by_name = {d["name"]: d for d in deployments}
    assert {"orchestrator-main", "enrichment-daily", "campaign-activation", "batch-sweep"} <= set(by_name)
    main = by_name["orchestrator-main"]
    assert main["id"] == deployment.main_id
    assert main["work_pool_name"] == "local-process"
    assert main["parameters"] == {"batch_size": 50}
    assert main["entrypoint"] == "orchestrator/flows/batch.py:orchestrator_main"
    [schedule] = by_name["enrichment-daily"]["schedules"]
    assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == ("0 2 * * *", "UTC")


def test_bridge_launches_batches_from_the_trigger(prefect_server, deployment, worker, e2e_engine, database_url,
                                                  tmp_path):
    # Launched while no bridge listens: only the start-up sweep can find it.
    missed = _new_batch(e2e_engine, "missed", launch=True)

    bridge = Proc("bridge", [*outbound_argv(), "bridge", "--sweep-seconds", "60"],
                  {**prefect_server.env, "DATABASE_URL": database_url, "PREFECT_DEPLOYMENT_ID": deployment.main_id},
                  tmp_path / "bridge.log").start()
    try:
        wait_until(lambda: _batch(e2e_engine, missed).flow_run_id, 30, "the bridge to launch the missed batch")
        wait_until(lambda: "listening" in bridge.output() or not bridge.alive(), 30, "the bridge to listen")

        # The ordinary path: draft → launched fires the trigger → NOTIFY → bridge → create_flow_run.
        notified = _new_batch(e2e_engine, "notified", launch=False)
        with e2e_engine.begin() as conn:
            assert batches.launch(conn, notified)

        for batch_id in (missed, notified):
            flow_run_id = wait_until(lambda b=batch_id: _batch(e2e_engine, b).flow_run_id, 30,
                                     f"batch {batch_id} to get a flow run")
            run = _wait_for_run(prefect_server, worker, flow_run_id)
            assert run["parameters"] == {"batch_id": batch_id, "batch_size": 50}
            assert run["idempotency_key"] == _launch_key(e2e_engine, batch_id)
            _assert_batch_done(e2e_engine, batch_id)

        # The same launch again (a re-sent notification): the database says the batch already has its
        # run (it is even finished), so the bridge asks Prefect for nothing.
        resent = {"batch_id": notified, "idempotency_key": _launch_key(e2e_engine, notified)}
        with e2e_engine.begin() as conn:
            conn.execute(text("SELECT pg_notify('batch_launched', :p)"), {"p": json.dumps(resent)})
        wait_until(lambda: f"batch {notified}: not a launched batch" in bridge.output(), 30,
                   "the bridge to refuse the repeat")
        assert len(_runs_for_batch(prefect_server, deployment.main_id, notified)) == 1
        assert len(_runs_for_batch(prefect_server, deployment.main_id, missed)) == 1
    finally:
        code = bridge.stop(signal.SIGTERM)
    assert code == 0, bridge.output()[-3000:]
    assert "bridge stopped after" in bridge.output()


def test_edge_function_launches_a_batch_on_the_real_server(prefect_server, deployment, worker, e2e_engine,
                                                           tmp_path):
    deno = deno_path()
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DENO_DIR": str(tmp_path / "deno-cache"),
        "DENO_NO_UPDATE_CHECK": "1",
        "PORT": str(port),
        "LAUNCH_SHARED_SECRET": EDGE_SECRET,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_DEPLOYMENT_ID": deployment.main_id,
    }
    edge = Proc("edge-function", [str(deno), "run", "--allow-net", "--allow-env",
                                  "supabase/functions/launch-batch/index.ts"], env, tmp_path / "deno.log").start()
    url = f"http://127.0.0.1:{port}/launch-batch"

    def up() -> bool:
        assert edge.alive(), f"deno exited:\n{edge.output()}"
        try:
            return httpx.post(url, timeout=2).status_code == 401
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 60, "the Edge Function under deno to listen")
        # Launched with nobody listening for NOTIFY: only the Edge Function call starts it.
        batch_id = _new_batch(e2e_engine, "edge", launch=True)
        auth = {"Authorization": f"Bearer {EDGE_SECRET}"}

        refused = httpx.post(url, json={"batch_id": batch_id}, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert refused.status_code == 401
        bad = httpx.post(url, json={"batch_id": "one"}, headers=auth, timeout=10)
        assert bad.status_code == 400 and "batch_id" in bad.json()["error"]
        # Only the database knows the launch time the key is made of: no key, no launch.
        keyless = httpx.post(url, json={"batch_id": batch_id}, headers=auth, timeout=10)
        assert keyless.status_code == 400 and "idempotency_key" in keyless.json()["error"]

        launch = {"batch_id": batch_id, "idempotency_key": _launch_key(e2e_engine, batch_id)}  # as the trigger sends
        # Another batch's id under this launch's key: refused before Prefect is asked.
        mismatch = httpx.post(url, json={**launch, "batch_id": batch_id + 1000}, headers=auth, timeout=10)
        assert mismatch.status_code == 400
        assert mismatch.json()["error"] == f"idempotency_key names batch {batch_id} but batch_id is {batch_id + 1000}"
        first = httpx.post(url, json=launch, headers=auth, timeout=30)
        assert first.status_code == 201, first.text
        assert first.json()["idempotency_key"] == launch["idempotency_key"]
        flow_run_id = first.json()["flow_run_id"]
        again = httpx.post(url, json=launch, headers=auth, timeout=30)  # the same launch, sent twice
        assert again.status_code == 200, again.text
        assert again.json()["flow_run_id"] == flow_run_id and again.json()["created"] is False

        run = _wait_for_run(prefect_server, worker, flow_run_id)
        assert "trigger:edge-function" in run["tags"]
        _assert_batch_done(e2e_engine, batch_id)
        assert _batch(e2e_engine, batch_id).flow_run_id == flow_run_id  # the flow records its own run
        assert len(_runs_for_batch(prefect_server, deployment.main_id, batch_id)) == 1

        later = httpx.post(url, json=launch, headers=auth, timeout=30)
        assert later.status_code == 200  # still one run after it finished
        assert later.json()["flow_run_id"] == flow_run_id
    finally:
        edge.stop()


def test_edge_function_passes_on_a_prefect_refusal(prefect_server, tmp_path):
    deno = deno_path()
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DENO_DIR": str(tmp_path / "deno-cache"),
        "DENO_NO_UPDATE_CHECK": "1", "PORT": str(port), "LAUNCH_SHARED_SECRET": EDGE_SECRET,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_DEPLOYMENT_ID": "00000000-0000-4000-8000-000000000000",  # no such deployment
    }
    edge = Proc("edge-function", [str(deno), "run", "--allow-net", "--allow-env",
                                  "supabase/functions/launch-batch/index.ts"], env, tmp_path / "deno.log").start()
    url = f"http://127.0.0.1:{port}/"
    try:
        def answer() -> httpx.Response | None:
            assert edge.alive(), edge.output()
            try:
                return httpx.post(url, json={"batch_id": 1, "idempotency_key": "batch-1-launch-20261122083015001234"},
                                  headers={"Authorization": f"Bearer {EDGE_SECRET}"}, timeout=10)
            except httpx.HTTPError:
                return None

        response = wait_until(answer, 60, "the Edge Function to answer")
        assert response.status_code == 502
        assert response.json()["prefect_status"] == 404
        assert "Deployment not found" in response.json()["prefect_body"]
    finally:
        edge.stop()


def test_secret_block_carries_the_database_url(prefect_server, tmp_path):
    """`outbound secret push` stores DATABASE_URL unprinted; ensure_database_url() reads it back."""
    url = "postgresql://app:hunter2@db.internal:5432/outbound"
    pushed = subprocess.run([*outbound_argv(), "secret", "push"], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**prefect_server.env, "DATABASE_URL": url}, timeout=120)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "postgres-connection-string" in pushed.stdout
    assert "hunter2" not in pushed.stdout + pushed.stderr

    script = ("import os; from orchestrator.secrets import ensure_database_url; "
              "print(ensure_database_url(), os.environ['DATABASE_URL'])")
    env = {k: v for k, v in prefect_server.env.items() if k != "DATABASE_URL"}
    # Run from a directory without a .env, so only the block can supply the URL.
    loaded = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**env, "PYTHONPATH": str(REPO_ROOT)}, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["True", url]
