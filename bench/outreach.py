"""`python -m bench.outreach`: outreach figures — sends per second through claim → JIT → render → SMTP →
commit against a local sink, and the scheduler's time to find due sends among 1,000,000 enrollments.

Prints figures with the machine; nothing is asserted (docs/benchmarks.md records them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bench.__main__ import machine, setup_database  # noqa: E402
from devkit import seed  # noqa: E402
from shared import db  # noqa: E402
from shared.engines.campaigns import campaigns, sequences  # noqa: E402
from shared.engines.outreach import scheduler, store  # noqa: E402
from devkit.smtp_sink import sink_process  # noqa: E402
from shared.settings import environment, get_settings  # noqa: E402

MONDAY_10_UTC = datetime(2026, 11, 23, 10, tzinfo=UTC)


def _campaign(engine: Engine, leads: int, mailboxes: int, smtp_port: int) -> tuple[int, int]:
    with db.transaction(engine) as conn:
        client = seed.client(conn, f"bench-outreach-{time.time_ns()}")
        campaign = seed.campaign(conn, client, "seq", status="draft")
        seed.leads(conn, client, leads, campaign_id=campaign, companies=997, country="GB")
        for i in range(mailboxes):
            seed.mailbox(conn, client, f"rep{i}@bench.test", smtp_port=smtp_port, daily_cap=10**6,
                         ramp_started_at=MONDAY_10_UTC - timedelta(days=1))
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
        sequences.set_step(conn, client, campaign, step=1, subject="Hi {{ first_name }}",
                           body="Hello {{ first_name }} at {{ company_name }}.")
        store.enroll(conn, client, campaign, now=MONDAY_10_UTC)
        assert campaigns.activate(conn, client, campaign) == []
    return client, campaign


def bench_sends(engine: Engine, leads: int, mailboxes: int, delay_ms: int, workers: int,
                chunk: int) -> dict[str, Any]:
    """Sends through the whole at-most-once path against the counting sink in its own process (a real
    server is not in the sender's interpreter); CPU is this process's (the engine) and Postgres's."""
    from orchestrator.flows.outreach import outreach_pass

    with sink_process(delay_seconds=delay_ms / 1000) as sink:
        _, campaign = _campaign(engine, leads, mailboxes, sink.port)
        with environment(OUTREACH_SECRET="bench", LOCAL_WORKERS=str(workers)):
            pg0 = _postgres_cpu()
            t0, cpu0 = time.perf_counter(), time.process_time()
            result = outreach_pass.fn(MONDAY_10_UTC, True, campaign, chunk)
            seconds, cpu, pg = time.perf_counter() - t0, time.process_time() - cpu0, _postgres_cpu() - pg0
    assert result["sent"] == leads == sink.accepted, (result, sink.accepted)
    in_flight = workers * min(chunk, mailboxes)
    return {"leads": leads, "mailboxes": mailboxes, "sink_delay_ms": delay_ms, "workers": workers, "chunk": chunk,
            "in_flight": in_flight, "seconds": round(seconds, 2), "sends_per_s": round(leads / seconds, 1),
            "ideal_per_s": round(in_flight * 1000 / delay_ms) if delay_ms else None,
            "engine_cpu_ms_per_send": round(cpu * 1000 / leads, 2),
            "postgres_cpu_ms_per_send": round(pg * 1000 / leads, 2) if pg is not None else None,
            "load": round(os.getloadavg()[0], 1)}


def _postgres_cpu() -> float | None:
    """CPU seconds used so far by the embedded Postgres server (its postmaster and live backends); None when
    it is not ours to see (BENCH_DATABASE_URL)."""
    import psutil

    if os.environ.get("BENCH_DATABASE_URL"):
        return None
    try:
        pid = int((get_settings().data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        server = psutil.Process(pid)
        procs = [server, *server.children(recursive=True)]
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _fill_enrollments(engine: Engine, total: int, active: int) -> int:
    """`total` enrollments of one campaign, `active` of them due now, the rest finished."""
    with db.transaction(engine) as conn:
        client = seed.client(conn, f"bench-sched-{time.time_ns()}")
        campaign = seed.campaign(conn, client, "s")
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17)
        for i in range(20):
            seed.mailbox(conn, client, f"s{i}@bench.test", smtp_host="h", daily_cap=10**6)
        seed.leads(conn, client, total, campaign_id=campaign, domain="x.test")
        seed.enrollments(conn, client, campaign, due=MONDAY_10_UTC, active=active)
        conn.execute(text("ANALYZE enrollments"))
    return campaign


def bench_scheduler(engine: Engine, total: int, active: int, limit: int, repeats: int = 5) -> dict[str, Any]:
    campaign = _fill_enrollments(engine, total, active)
    query, plan_s, planned = [], [], 0
    for _ in range(repeats):
        with db.transaction(engine) as conn:
            t0 = time.perf_counter()
            inputs = store.planning_inputs(conn, MONDAY_10_UTC, campaign_id=campaign, limit=limit)
            t1 = time.perf_counter()
        plan = scheduler.due_sends(MONDAY_10_UTC, inputs.candidates, inputs.windows, inputs.mailboxes)
        t2 = time.perf_counter()
        query.append(t1 - t0)
        plan_s.append(t2 - t1)
        planned = len(plan.sends)
    with db.transaction(engine) as conn:  # leave the database small for the next run
        conn.execute(text("DELETE FROM clients WHERE id = (SELECT client_id FROM campaigns WHERE id = :c)"),
                     {"c": campaign})
    return {"enrollments": total, "active_due": active, "limit": limit, "candidates_read": len(inputs.candidates),
            "planned": planned, "query_ms": round(statistics.median(query) * 1000, 1),
            "plan_ms": round(statistics.median(plan_s) * 1000, 1),
            "total_ms": round((statistics.median(query) + statistics.median(plan_s)) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outreach", description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--mailboxes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slow-workers", type=int, default=16, help="local workers for the 100 ms sink run")
    parser.add_argument("--chunk", type=int, default=20)
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["sends", "slow-sink", "scheduler"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["sends", "slow-sink", "scheduler"])
    setup_database()
    engine = db.get_engine()
    print(f"machine: {machine()}")
    if "sends" in only:
        print("sends, no caps:", bench_sends(engine, args.leads, args.mailboxes, 0, args.workers, args.chunk))
    if "slow-sink" in only:
        print("sends, 100 ms sink:", bench_sends(engine, args.leads // 2, args.mailboxes, 100, args.slow_workers,
                                                  args.chunk))
    if "scheduler" in only:
        # Flat in finished leads: 10,000 due among 10,000 and among 1,000,000; then all 1,000,000 due.
        for total, active in ((10_000, 10_000), (args.enrollments, 10_000), (args.enrollments, args.enrollments)):
            print("scheduler:", bench_scheduler(engine, total, active, limit=10_000))


if __name__ == "__main__":
    main()
