"""The chaos scenarios. Each acts on real processes and returns what it did, what it found and the invariants.

`Scale` sets the sizes: `FULL` for `make chaos`, `FAST` for the subset in `make test`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text

from chaos.harness import (
    Check,
    FlakyProxy,
    Orchestrator,
    Outcome,
    Stage,
    batch_row,
    invariants,
    new_batch,
    new_client,
    progress,
    restart_postgres,
    terminal,
    wait_stale,
)
from devkit.net import wait_until
from shared import db

RUN_TIMEOUT = 600.0  # seconds a plain orchestrator run may take before the scenario gives up on it


@dataclass(frozen=True)
class Scale:
    kill_items: int
    kills: int
    two_items: int
    restart_items: int
    restarts: int
    credit_items: int
    credits: int
    flaky_items: int
    batch_size: int
    stale_seconds: float = 3.0


FULL = Scale(kill_items=3000, kills=13, two_items=1000, restart_items=2000, restarts=2, credit_items=1000,
             credits=137, flaky_items=1000, batch_size=50)
FAST = Scale(kill_items=240, kills=3, two_items=300, restart_items=300, restarts=2, credit_items=150,
             credits=37, flaky_items=120, batch_size=20)


def _finish(stage: Stage, batch_id: int, name: str, scale: Scale) -> tuple[int, str]:
    """One plain run to the end; (exit code, final batch status)."""
    run = Orchestrator(stage, batch_id, scale.batch_size, name).start()
    code = run.wait(RUN_TIMEOUT)
    return code, batch_row(stage.engine(), batch_id).status


def _timed(fn: Callable[[Stage, Scale, str], Outcome]) -> Callable[[Stage, Scale, str], Outcome]:
    def run(stage: Stage, scale: Scale, tag: str) -> Outcome:
        t0 = time.monotonic()
        outcome = fn(stage, scale, tag)
        outcome.seconds = time.monotonic() - t0
        return outcome
    run.__name__ = fn.__name__
    return run


# A rerun after a kill -9 must not lean on timeouts: leases, queue timeout and staleness are set far
# beyond the scenario's length, so only the proofs of `shared.liveness` (the dead PID) can free the batch.
NO_TIMEOUTS = {"BATCH_STALE_SECONDS": "600", "LEASE_SECONDS": "600", "QUEUE_TIMEOUT_SECONDS": "1200"}
TAKEOVER_SECONDS = 30.0  # a rerun takes the batch over within this long of starting (process start included)


def _runner_pid(engine: Engine, batch_id: int) -> int | None:
    from shared import liveness

    holder = liveness.parse(batch_row(engine, batch_id).runner_id)
    return None if holder is None else holder.pid


@_timed
def repeated_kills(stage: Stage, scale: Scale, tag: str) -> Outcome:
    """SIGKILL the orchestrator mid-batch `kills` times, each rerun started at once; one plain run finishes.

    No waiting for staleness between runs, and no timeout short enough to help (NO_TIMEOUTS): each
    rerun must take the batch over from the dead runner at once (its PID is gone) with the items
    that runner held, and make progress before it is killed in turn."""
    from dataclasses import replace

    stage = replace(stage, settings={**stage.settings, **NO_TIMEOUTS})
    engine = stage.engine()
    client = new_client(engine, f"kills-{tag}", 100_000)
    batch_id = new_batch(engine, client, scale.kill_items, tag=f"kills-{tag}")
    # Each run is killed after a slice; the slices add up to half the batch, so a takeover that now
    # works the rest in about a second still leaves every one of the kills mid-batch.
    step = max(1, scale.kill_items // (2 * scale.kills))
    killed_with_work, took_over, slowest = 0, 0, 0.0
    for k in range(scale.kills):
        before = terminal(engine, batch_id)
        t0 = time.monotonic()
        run = Orchestrator(stage, batch_id, scale.batch_size, f"kills-{tag}-{k}").start()
        took = wait_until(lambda: _runner_pid(engine, batch_id) == run.pid or not run.alive(), RUN_TIMEOUT,
                          f"run {k} to take the batch")
        if run.alive() and took:
            took_over += 1
            slowest = max(slowest, time.monotonic() - t0)
        # Kill it once it has done a slice of the work, with chunks in flight.
        wait_until(lambda: terminal(engine, batch_id) >= before + step or not run.alive(), RUN_TIMEOUT,
                   f"kill run {k} to make progress", interval=0.02)
        in_flight = progress(engine, batch_id)
        killed_with_work += bool(in_flight.get("IN_PROGRESS") or in_flight.get("QUEUED"))
        run.kill()
    t0 = time.monotonic()
    code, status = _finish(stage, batch_id, f"kills-{tag}-final", scale)
    final_seconds = time.monotonic() - t0
    counts = progress(engine, batch_id)
    checks = invariants(engine, [batch_id])
    checks.append(Check("every rerun took over from the killed one at once",
                        took_over == scale.kills and slowest <= TAKEOVER_SECONDS,
                        f"{took_over} of {scale.kills} took over, slowest after {slowest:.1f} s"))
    checks.append(Check("final plain run finished the batch", code == 0 and status.startswith("completed"),
                        f"exit {code}, batch {status}"))
    return Outcome("repeated SIGKILL", f"{scale.kill_items} items; kill -9 of `batch run` {scale.kills}x mid-batch "
                   f"({killed_with_work} with items in flight), each rerun started at once, then one plain run "
                   "(no lease, queue timeout or staleness short enough to help)",
                   f"{took_over} reruns took over (slowest {slowest:.1f} s after start); final run exit {code} "
                   f"in {final_seconds:.0f} s, batch {status}, {counts}", checks)


@_timed
def two_orchestrators(stage: Stage, scale: Scale, tag: str) -> Outcome:
    """Two `batch run N` at once: exactly one dispatches; the other says who runs it and exits 3."""
    engine = stage.engine()
    client = new_client(engine, f"two-{tag}", 100_000)
    batch_id = new_batch(engine, client, scale.two_items, tag=f"two-{tag}")
    runs = [Orchestrator(stage, batch_id, scale.batch_size, f"two-{tag}-{i}").start() for i in range(2)]
    codes = [r.wait(RUN_TIMEOUT) for r in runs]
    with db.transaction(engine) as conn:
        # The engine records its worker (host:pid) when it starts an item: who actually worked the batch.
        workers = conn.execute(text("SELECT DISTINCT split_part(detail, ':', 2) FROM status_history "
                                    "WHERE batch_id = :b AND to_status = 'IN_PROGRESS'"), {"b": batch_id}).scalars().all()
    pids = {str(r.pid) for r in runs}
    checks = invariants(engine, [batch_id])
    checks.append(Check("exactly one orchestrator dispatched", len(workers) == 1 and set(workers) <= pids,
                        f"workers {workers}"))
    busy = [r for r, c in zip(runs, codes) if c == 3]
    named = bool(busy) and all(re.search(rf"pid {other.pid}\b", " ".join(busy[0].output().split()))
                               for other in runs if other is not busy[0])
    # On a loaded machine one process may start only after the other finished the whole batch: it
    # must then say so and exit 0, never work an item (checked above) nor claim success silently.
    late = sorted(codes) == [0, 0] and any(re.search(r"batch \d+ is already completed", r.output())
                                           for r in runs)
    checks.append(Check("one finished, the other exited 3 naming the runner (or came after the end and said so)",
                        (sorted(codes) == [0, 3] and named) or late,
                        f"exit codes {codes}" + ("; the second run started after the batch finished" if late else
                                                 "" if named else "; the busy run did not name the other's pid")))
    status = batch_row(engine, batch_id).status
    checks.append(Check("batch finished", status.startswith("completed"), status))
    return Outcome("two orchestrators", f"{scale.two_items} items; two `batch run` started together",
                   f"exit codes {codes}; items worked by pid {', '.join(workers)} only; batch {status}", checks)


@_timed
def postgres_restarts(stage: Stage, scale: Scale, tag: str) -> Outcome:
    """`pg_ctl restart -m immediate` twice while a run works: the run survives and finishes."""
    assert stage.pg_data is not None, "needs the embedded Postgres"
    engine = stage.engine()
    client = new_client(engine, f"restart-{tag}", 100_000)
    batch_id = new_batch(engine, client, scale.restart_items, tag=f"restart-{tag}")
    run = Orchestrator(stage, batch_id, scale.batch_size, f"restart-{tag}").start()
    restarted = 0
    for i in range(scale.restarts):
        target = (i + 1) * scale.restart_items // (scale.restarts + 2)
        wait_until(lambda: terminal(engine, batch_id) >= target or not run.alive(), RUN_TIMEOUT,
                   f"progress before restart {i + 1}")
        if not run.alive():
            break
        restart_postgres(stage.pg_data)
        restarted += 1
    code = run.wait(RUN_TIMEOUT)
    status = batch_row(engine, batch_id).status
    checks = invariants(engine, [batch_id])
    checks.append(Check(f"run survived {scale.restarts} restarts", restarted == scale.restarts and code == 0
                        and status.startswith("completed"), f"{restarted} restarts, exit {code}, batch {status}"))
    return Outcome("Postgres restarts", f"{scale.restart_items} items; `pg_ctl restart -m immediate` x{restarted} "
                   "mid-run", f"same run exit {code}, batch {status}, {progress(engine, batch_id)}", checks)


@_timed
def exact_credits(stage: Stage, scale: Scale, tag: str) -> Outcome:
    """A client with few credits, two batches run at once by two processes: no credit twice, none below 0."""
    engine = stage.engine()
    client = new_client(engine, f"credits-{tag}", scale.credits)
    half = scale.credit_items // 2
    ids = [new_batch(engine, client, half, tag=f"credits-{tag}-{i}") for i in range(2)]
    runs = [Orchestrator(stage, b, scale.batch_size, f"credits-{tag}-{b}").start() for b in ids]
    codes = [r.wait(RUN_TIMEOUT) for r in runs]
    with db.transaction(engine) as conn:
        balance = conn.execute(text("SELECT credit_balance FROM clients WHERE id = :c"), {"c": client}).scalar_one()
        kept = conn.execute(text("SELECT coalesce(-sum(delta), 0) FROM credit_ledger WHERE client_id = :c "
                                 "AND kind IN ('reserve', 'refund')"), {"c": client}).scalar_one()
        no_credit = conn.execute(text("SELECT count(*) FROM work_items WHERE batch_id = ANY(:b) "
                                      "AND skip_reason = 'no_credits'"), {"b": ids}).scalar_one()
    checks = invariants(engine, ids)
    checks.append(Check("kept + balance = credits given", kept + balance == scale.credits,
                        f"kept {kept} + balance {balance} vs {scale.credits}"))
    checks.append(Check("both runs exited cleanly", codes == [0, 0], f"exit codes {codes}"))
    return Outcome("exact credits", f"{scale.credit_items} leads in 2 batches run at once, {scale.credits} credits",
                   f"kept {kept}, balance left {balance}, {no_credit} skipped no_credits"
                   + (f" (with {balance} credit(s) unused: issue 7.5)" if balance and no_credit else ""), checks)


@_timed
def misbehaving_provider(stage: Stage, scale: Scale, tag: str) -> Outcome:
    """The paid provider answers 5xx, 429 + Retry-After, hangs and garbage: the batch still ends, correctly."""
    from dataclasses import replace

    from devkit import sandbox

    engine = stage.engine()
    client = new_client(engine, f"flaky-{tag}", 100_000)
    batch_id = new_batch(engine, client, scale.flaky_items, tag=f"flaky-{tag}")
    with sandbox.serve(latency_ms=10, hit_rate=0.8, error_rate=0.3, rate_limit_rate=0.1, retry_after_seconds=1,
                       seed=11) as upstream, FlakyProxy(upstream.url, hang_rate=0.05, garbage_rate=0.05).serve() as proxy:
        code, status = _finish(replace(stage, provider_url=proxy.url), batch_id, f"flaky-{tag}", scale)
    counts = progress(engine, batch_id)
    checks = invariants(engine, [batch_id])
    checks.append(Check("batch finished", code == 0 and status.startswith("completed"), f"exit {code}, {status}"))
    return Outcome("misbehaving provider", f"{scale.flaky_items} items; provider 30% 503, 10% 429 Retry-After 1 s, "
                   f"5% hangs, 5% garbage ({proxy.counts['hung']} hung, {proxy.counts['garbage']} garbage)",
                   f"exit {code}, batch {status}, {counts}", checks)


@_timed
def killed_then_swept(stage: Stage, scale: Scale, tag: str) -> Outcome:
    """kill -9 of the only orchestrator, nobody types anything: the scheduled sweep finds the stale
    heartbeat and finishes the batch (run here as `batch_sweep(in_process=True)` in its own process).

    A slow provider (100 ms a call, 2 leads at a time per chunk) makes sure the kill lands mid-batch.
    """
    import subprocess
    import sys
    from dataclasses import replace

    from chaos.harness import REPO_ROOT
    from devkit import sandbox

    engine = stage.engine()
    client = new_client(engine, f"swept-{tag}", 100_000)
    batch_id = new_batch(engine, client, scale.two_items, tag=f"swept-{tag}")
    with sandbox.serve(latency_ms=100, hit_rate=0.7, seed=3) as slow:
        slow_stage = replace(stage, provider_url=slow.url,
                             settings={**stage.settings, "LEAD_CONCURRENCY": "2", "LOCAL_WORKERS": "2"})
        run = Orchestrator(slow_stage, batch_id, scale.batch_size, f"swept-{tag}").start()
        wait_until(lambda: terminal(engine, batch_id) >= scale.two_items // 10 or not run.alive(), RUN_TIMEOUT,
                   "the run to make progress")
        run.kill()
        left = batch_row(engine, batch_id).status
        wait_stale(engine, batch_id, scale.stale_seconds)
        sweep = subprocess.run([sys.executable, "-c", "from orchestrator.flows.sweep import batch_sweep; "
                                "print(batch_sweep(in_process=True)['stalled'])"],
                               env=slow_stage.env(), cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
    status = batch_row(engine, batch_id).status
    checks = invariants(engine, [batch_id])
    checks.append(Check("killed mid-batch", left == "running", f"batch was {left} when killed"))
    checks.append(Check("the sweep found and finished it", sweep.returncode == 0 and f"{batch_id}" in sweep.stdout
                        and status.startswith("completed"), f"sweep exit {sweep.returncode}, batch {status}"))
    return Outcome("killed, then swept", f"{scale.two_items} items; kill -9 of the only `batch run` mid-batch "
                   f"(batch left {left}), then the sweep", f"sweep exit {sweep.returncode}, batch {status}, "
                   f"{progress(engine, batch_id)}", checks)


ALL = (repeated_kills, two_orchestrators, postgres_restarts, exact_credits, misbehaving_provider, killed_then_swept)
