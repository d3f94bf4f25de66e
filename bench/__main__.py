"""`make bench` / `python -m bench`: measure the engine and print figures with the machine they ran on.

Runs against a scratch database `outbound_bench` on the embedded Postgres (or BENCH_DATABASE_URL).
Nothing here is a pass/fail test; it prints numbers for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from sqlalchemy import create_engine, pool, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402

from devkit import seed  # noqa: E402
from shared import db, embedded, migrate, workitems  # noqa: E402
from shared.settings import environment, get_settings, reset_settings  # noqa: E402

BENCH_DATABASE = "outbound_bench"
MODES = ["throughput", "latency", "claim", "per-lead", "forecast"]


def machine() -> str:
    import psutil

    freq = psutil.cpu_freq()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with create_engine(db.database_url(), poolclass=pool.NullPool).connect() as conn:
        pg = conn.execute(text("SHOW server_version")).scalar()
    return (f"{cpu}, {os.cpu_count()} cores{f' @ {freq.max:.0f} MHz' if freq and freq.max else ''}, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, PostgreSQL {pg}")


def setup_database() -> str:
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        url = db.normalize_url(explicit)
    else:
        os.environ.pop("DATABASE_URL", None)
        reset_settings()
        base = embedded.start(get_settings().data_dir)
        admin = create_engine(base, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {BENCH_DATABASE}"))
        admin.dispose()
        url = make_url(base).set(database=BENCH_DATABASE).render_as_string(hide_password=False)
    os.environ["DATABASE_URL"] = url
    reset_settings()
    migrate.upgrade("head", url)
    return url


def make_batch(engine: Engine, n: int, *, finished: bool = False, credits: int = 10**9) -> int:
    """A new client with `n` leads on 997 companies and a draft batch over them (`finished`: every item DONE)."""
    with db.transaction(engine) as conn:
        client = seed.client(conn, f"bench-{time.time_ns()}", credits=credits)
        lead_ids = seed.leads(conn, client, n, companies=997)
        batch = seed.finished_batch(conn, client) if finished else seed.batch(conn, client, lead_ids)
        conn.execute(text("ANALYZE work_items"))
    return batch


def warm_up_prefect() -> float:
    """Start the ephemeral Prefect API once, outside any timed run (it takes seconds, once)."""
    from prefect import flow

    @flow(name="bench_warm_up")
    def nothing() -> None:
        return None

    t0 = time.perf_counter()
    nothing()
    return time.perf_counter() - t0


def run_flow(batch_id: int, batch_size: int) -> tuple[float, dict[str, Any]]:
    from orchestrator.flows.batch import orchestrator_main

    t0 = time.perf_counter()
    summary = orchestrator_main(batch_id=batch_id, batch_size=batch_size, allow_draft=True)
    return time.perf_counter() - t0, summary


def with_env(values: dict[str, str], fn: Callable[[], Any]) -> Any:
    with environment(**values):
        return fn()


# -- the four measurements -------------------------------------------------------------------------


def bench_throughput(engine: Engine, n: int, batch_size: int, workers: int) -> dict[str, Any]:
    """Full state machine (claim → start → JIT → noop provider → score → fenced finish), through the flow."""
    batch = make_batch(engine, n)
    seconds, summary = with_env({"PROVIDER_ORDER": "noop", "LOCAL_WORKERS": str(workers)},
                                lambda: run_flow(batch, batch_size))
    assert summary["counts"] == {"DONE": n}, summary
    return {"items": n, "batch_size": batch_size, "workers": workers, "seconds": seconds, "items_per_s": n / seconds}


@contextmanager
def sandbox_process(latency_ms: int) -> Iterator[str]:
    """The sandbox in its own process, as a real provider would be: it must not share our GIL."""
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "devkit.sandbox", "--port", str(port),
                             "--latency-ms", str(latency_ms), "--hit-rate", "1.0", "--seed", "11"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def bench_latency(engine: Engine, n: int, latency_ms: int, concurrency: int, workers: int | None,
                  lead_concurrency: int, batch_size: int) -> dict[str, Any]:
    """Concurrency is the cap on calls in flight (PROVIDER_CONCURRENCY); chunks outnumber it so it stays full.

    The calls run on the process's provider loop (async HTTP), so the cap, not a thread count, bounds
    them; `workers` chunk threads each keep up to `lead_concurrency` calls queued at the cap.
    """
    workers = workers or max(8, math.ceil(1.5 * concurrency / lead_concurrency))
    batch = make_batch(engine, n)
    with sandbox_process(latency_ms) as url:
        seconds, summary = with_env(
            {"PROVIDER_ORDER": "sandbox", "SANDBOX_URL": url, "LOCAL_WORKERS": str(workers),
             "PROVIDER_CONCURRENCY": str(concurrency),
             "LEAD_CONCURRENCY": str(lead_concurrency), "DB_POOL_SIZE": str(workers + 8)},
            lambda: run_flow(batch, batch_size))
    assert summary["counts"] == {"DONE": n}, summary
    ideal = n * latency_ms / 1000 / concurrency
    return {"items": n, "latency_ms": latency_ms, "concurrency": concurrency, "workers": workers,
            "seconds": seconds, "ideal_seconds": ideal, "ratio": seconds / ideal, "load": _load()}


def _load() -> str:
    """The 1/5/15-minute load averages: the machine is shared, and a figure means little without them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def bench_claim(engine: Engine, filler: int, pending: int = 10_000, claims: int = 200, size: int = 50) -> dict[str, Any]:
    if filler:
        make_batch(engine, filler, finished=True)
    batch = make_batch(engine, pending)
    timings = []
    with db.transaction(engine) as conn:
        total = conn.execute(text("SELECT count(*) FROM work_items")).scalar()
    for _ in range(claims):
        t0 = time.perf_counter()
        with db.transaction(engine) as conn:
            got = workitems.claim(conn, batch, size)
        timings.append((time.perf_counter() - t0) * 1000)
        assert len(got) == size
    timings.sort()
    return {"rows_in_table": total, "median_ms": statistics.median(timings),
            "p95_ms": timings[int(len(timings) * 0.95) - 1], "claim_size": size}


def bench_task_per_lead(engine: Engine, n: int) -> dict[str, Any]:
    """The anti-pattern for comparison: one Prefect task run per lead, same engine code."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from shared.engines.enrichment import enrich_chunk

    @task(cache_policy=NO_CACHE)
    def enrich_one(item_id: int) -> dict:
        return enrich_chunk([item_id]).as_dict()

    @flow(name="bench_task_per_lead")
    def per_lead(batch_id: int) -> None:
        ids = [c.id for c in _claim_all(engine, batch_id)]
        for f in [enrich_one.submit(i) for i in ids]:
            f.result()

    per_lead_batch = make_batch(engine, n)
    chunked_batch = make_batch(engine, n)
    chunked_s, _ = with_env({"PROVIDER_ORDER": "noop"}, lambda: run_flow(chunked_batch, 50))
    t0 = time.perf_counter()
    with_env({"PROVIDER_ORDER": "noop"}, lambda: per_lead(per_lead_batch))
    # Thousands of task runs leave the API a backlog of events that delays whatever runs next;
    # the run is not over until the next flow can start.
    warm_up_prefect()
    per_lead_s = time.perf_counter() - t0
    return {"items": n, "task_per_lead_seconds": per_lead_s, "chunked_seconds": chunked_s,
            "task_per_lead_ms_per_item": per_lead_s / n * 1000}


def _claim_all(engine: Engine, batch_id: int) -> list[workitems.Claimed]:
    with db.transaction(engine) as conn:
        return workitems.claim(conn, batch_id, 10**9)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="items for the no-op throughput run")
    parser.add_argument("--latency-items", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--claim-filler", type=int, default=1_000_000, help="DONE rows for the big claim run")
    parser.add_argument("--per-lead-items", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=4, help="local executor workers for the throughput run")
    parser.add_argument("--batch-size", type=int, default=500, help="chunk size for the throughput run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 100, 256],
                        help="provider calls in flight (PROVIDER_CONCURRENCY), one latency run each")
    parser.add_argument("--latency-workers", type=int, default=None,
                        help="local executor workers, latency run (default: enough chunks to keep the cap full)")
    parser.add_argument("--lead-concurrency", type=int, default=25, help="concurrent calls per chunk, latency run")
    parser.add_argument("--forecast-leads", type=int, default=3_000, help="leads not yet enrolled, small forecast")
    parser.add_argument("--forecast-enrolled", type=int, default=100_000, help="enrolled leads, large forecast")
    parser.add_argument("--no-reference", action="store_true", help="forecast: skip the per-lead reference")
    parser.add_argument("--only", choices=MODES, action="append")
    parser.add_argument("mode", nargs="*", help=f"the same as --only: {', '.join(MODES)}")
    args = parser.parse_args()
    if any(m not in MODES for m in args.mode):
        parser.error(f"a mode is one of {', '.join(MODES)}")
    only = set((args.only or []) + args.mode) or set(MODES)

    setup_database()
    engine = db.get_engine()
    print(f"machine: {machine()}")
    if only - {"forecast"}:
        print(f"Prefect ephemeral API start-up (once, not in the figures below): {warm_up_prefect():.1f} s")
    if "throughput" in only:
        r = bench_throughput(engine, args.items, batch_size=args.batch_size, workers=args.workers)
        print(f"throughput (noop provider, full state machine via orchestrator_main): {r['items']} items in "
              f"{r['seconds']:.1f} s = {r['items_per_s']:,.0f} items/s (batch_size {r['batch_size']}, "
              f"{r['workers']} workers)")
    if "latency" in only:
        for concurrency in args.concurrency:
            r = bench_latency(engine, args.latency_items, args.latency_ms, concurrency, workers=args.latency_workers,
                              lead_concurrency=args.lead_concurrency, batch_size=args.lead_concurrency)
            print(f"latency-bound (sandbox {r['latency_ms']} ms): {r['items']} items in {r['seconds']:.1f} s; ideal "
                  f"N×latency/concurrency = {r['ideal_seconds']:.1f} s at concurrency {r['concurrency']} "
                  f"({r['workers']} workers); ratio {r['ratio']:.2f}× (load average {r['load']})", flush=True)
    if "claim" in only:
        for filler in (0, args.claim_filler):
            r = bench_claim(engine, filler)
            print(f"claim {r['claim_size']} with {r['rows_in_table']:,} rows in work_items: median "
                  f"{r['median_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms")
    if "per-lead" in only:
        r = bench_task_per_lead(engine, args.per_lead_items)
        print(f"one Prefect task per lead: {r['items']} items in {r['task_per_lead_seconds']:.1f} s "
              f"({r['task_per_lead_ms_per_item']:.1f} ms/item) vs chunked orchestrator_main "
              f"{r['chunked_seconds']:.1f} s")
    if "forecast" in only:
        from bench import forecast

        for leads, enrolled, target in ((args.forecast_leads, False, forecast.TARGETS["small"]),
                                        (args.forecast_enrolled, True, forecast.TARGETS["large"])):
            r = forecast.bench_forecast(engine, leads, enrolled=enrolled, reference=not (enrolled or args.no_reference))
            print(forecast.report(r, target, _load()), flush=True)


if __name__ == "__main__":
    main()
