"""`outbound batch run N` after a crash and beside a live runner: real processes, real kill -9, real Postgres sessions.

Production timings (heartbeat 3 s, stale 20 s, 5-minute leases, 10-minute queue timeout) unless a
test says otherwise: a rerun must take over because the dead runner is provably gone, not because
a timeout ran out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from shared import liveness, workitems
from devkit import sandbox
from tests import factories

pytestmark = pytest.mark.integration

PRODUCTION = {"BATCH_HEARTBEAT_SECONDS": "3", "BATCH_STALE_SECONDS": "20", "LEASE_SECONDS": "300",
              "QUEUE_TIMEOUT_SECONDS": "600"}


@pytest.fixture(scope="module")
def slow_sandbox():
    """100 ms a call: with 2 workers × 2 leads at a time a batch of 300 takes several seconds."""
    with sandbox.serve(latency_ms=100, hit_rate=0.8, seed=9) as server:
        yield server.url


def _env(database_url: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"DATABASE_URL": database_url, "PREFECT_API_URL": PREFECT_API_URL.value(),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                "PROVIDER_ORDER": "heuristics,sandbox", "SANDBOX_URL": sandbox_url, "PROVIDER_MAX_RETRIES": "0",
                "LOCAL_WORKERS": "2", "LEAD_CONCURRENCY": "2", "COLUMNS": "200", **PRODUCTION, **extra})
    return env


def _run(env: dict[str, str], batch_id: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "batch", "run", str(batch_id),
                             "--batch-size", "10", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _batch(engine, n: int) -> int:
    with engine.begin() as conn:
        c = factories.client(conn, "acme", credits=10_000)
        return factories.batch(conn, c, factories.leads(conn, c, n, domain="acme.example.com"), status="launched")


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.1)
    return result


def _terminal(engine, b: int) -> int:
    with engine.begin() as conn:
        return sum(n for s, n in workitems.counts(conn, b).items() if s in ("DONE", "FAILED", "SKIPPED"))


def _runner(engine, b: int):
    with engine.begin() as conn:
        return conn.execute(text("SELECT status, runner_id FROM batches WHERE id = :b"), {"b": b}).one()


def _runner_pid(engine, b: int) -> int | None:
    holder = liveness.parse(_runner(engine, b).runner_id)
    return None if holder is None else holder.pid


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


def test_a_rerun_right_after_kill_9_takes_over_at_once_and_finishes(engine, database_url, prefect_harness, slow_sandbox):
    """The rerun used to say "heartbeat 7 s ago; this run leaves it alone" and exit 0 with nothing done."""
    env = _env(database_url, slow_sandbox)
    b = _batch(engine, 300)
    first = _run(env, b)
    try:
        _wait(lambda: _terminal(engine, b) >= 30, 120, "the first run to make progress")
    finally:
        _kill(first)
    with engine.begin() as conn:
        counts = workitems.counts(conn, b)
    assert counts.get("IN_PROGRESS", 0) + counts.get("QUEUED", 0) > 0  # killed with items in its hands
    started = time.monotonic()
    rerun = _run(env, b)
    _wait(lambda: _runner_pid(engine, b) == rerun.pid, 30, "the rerun to take the batch over")
    took = time.monotonic() - started
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    assert took < 15, f"took {took:.1f} s to take over"  # process start included; never the 20 s staleness
    assert "taking over from flow run" in out and f"pid {first.pid} on" in out and "no longer runs" in out
    assert _runner(engine, b).status == "completed" and _terminal(engine, b) == 300
    with engine.begin() as conn:
        handed_back = conn.execute(text("SELECT count(*) FROM status_history WHERE batch_id = :b "
                                        "AND detail LIKE 'handed back: its worker is gone%'"), {"b": b}).scalar()
    assert handed_back > 0  # the killed run's IN_PROGRESS items came back without their 5-minute lease


def test_a_live_runner_is_named_with_exit_code_3_and_follow_shows_it_to_the_end(engine, database_url, prefect_harness,
                                                                                  slow_sandbox):
    env = _env(database_url, slow_sandbox)
    b = _batch(engine, 400)
    owner = _run(env, b)
    try:
        _wait(lambda: _runner_pid(engine, b) == owner.pid, 60, "the first run to take the batch")
        second = _run(env, b)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 3, out[-3000:]
        line = " ".join(out.split())
        assert re.search(rf"batch {b} is being run by flow run \S+ on \S+ pid {owner.pid}, heartbeat \d+ s ago", line)
        assert f"outbound batch run {b} --follow" in line
        follower = _run(env, b, "--follow")
        out, _ = follower.communicate(timeout=300)
        assert follower.returncode == 0, out[-3000:]
        assert owner.wait(60) == 0
    finally:
        if owner.poll() is None:
            _kill(owner)
    assert f"following batch {b}, run by flow run" in out and "completed" in out
    status, runner = _runner(engine, b)
    assert status == "completed" and liveness.parse(runner).pid == owner.pid  # the follower never took it
    with engine.begin() as conn:
        workers = conn.execute(text("SELECT DISTINCT split_part(detail, ':', 2) FROM status_history "
                                    "WHERE batch_id = :b AND to_status = 'IN_PROGRESS'"), {"b": b}).scalars().all()
    assert workers == [str(owner.pid)]


def test_a_silent_runner_elsewhere_is_waited_for_with_a_progress_line_then_taken_over(engine, database_url,
                                                                                        prefect_harness, slow_sandbox):
    """A runner on another machine (no PID to check, no session to look for) that stopped beating."""
    env = _env(database_url, slow_sandbox, BATCH_HEARTBEAT_SECONDS="0.5", BATCH_STALE_SECONDS="6")
    b = _batch(engine, 20)
    elsewhere = liveness.Holder("another-host", 4242, 77, "feedface", False)
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET status = 'running', runner_id = :r, heartbeat_at = now() - interval '2 s' "
                          "WHERE id = :b"), {"r": f"flow run gone on another-host pid 4242 [{elsewhere.token()}]", "b": b})
    started = time.monotonic()
    rerun = _run(env, b)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    line = " ".join(out.split())
    assert "waiting for flow run gone on another-host pid 4242" in line and "missed its heartbeats" in line
    assert "taking over from flow run gone on another-host pid 4242: its heartbeat is stale" in line
    assert time.monotonic() - started >= 3.5  # it waited for staleness (6 s from 2 s old) instead of exiting
    assert _runner(engine, b).status == "completed"


SESSION_HOLDER = """
import sys, time
from shared import db
engine = db.get_engine()
with engine.connect() as conn:
    print(conn.exec_driver_sql("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").scalar(),
          flush=True)
    time.sleep(120)
"""


def test_a_holder_whose_database_session_vanished_is_gone_before_its_heartbeat_is_stale(engine, database_url):
    """The proof for a runner on another machine: its named session in pg_stat_activity is gone."""
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = subprocess.Popen([sys.executable, "-c", SESSION_HOLDER], env=env, stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        here = liveness.me()
        assert name == liveness.session_name(here.host, proc.pid, liveness._proc_start(proc.pid))
        # The same process seen as if it ran elsewhere (so its PID proves nothing), with its session visible.
        remote = liveness.Holder(here.host, proc.pid, liveness._proc_start(proc.pid), "e15e0000", True)
        with engine.begin() as conn:
            assert liveness.own_session_visible(conn)
            alive = liveness.judge_here(conn, remote.token(), 10.0, beat_seconds=3, stale_seconds=20)
        assert alive.state == "silent"  # missed beats but its session is there: not proof
    finally:
        proc.kill()
        proc.wait()
    def verdict():
        with engine.begin() as conn:
            return liveness.judge_here(conn, remote.token(), 10.0, beat_seconds=3, stale_seconds=20)
    gone = _wait(lambda: (v := verdict()).gone and v, 10, "Postgres to notice the closed session")
    assert "no database session left" in gone.reason
