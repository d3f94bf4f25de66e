"""The chaos suite's parts: real orchestrator processes, a database restart, a misbehaving provider, SQL invariants.

Everything here acts on real things: `outbound batch run N` in its own process (killed with
SIGKILL), the embedded Postgres restarted with `pg_ctl restart -m immediate`, the sandbox
provider behind a proxy that hangs and answers garbage. What a scenario found is read back from
Postgres afterwards (`invariants`), never from the processes' own reports.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, text

from devkit import seed
from devkit.net import wait_until
from shared import db

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- the stage: what every scenario runs against -----------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """Where the processes run: a migrated database, a Prefect API, a provider URL, knobs in env form."""

    database_url: str
    prefect_api_url: str
    provider_url: str
    logs: Path
    pg_data: Path | None = None  # the embedded server's data dir, for restarts (None: cannot restart)
    settings: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DATABASE_URL"))}
        return {
            **base,
            "DATABASE_URL": self.database_url,
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PROVIDER_ORDER": "heuristics,sandbox",
            "SANDBOX_URL": self.provider_url,
            **self.settings,
            **extra,
        }

    def engine(self) -> Engine:
        return db.get_engine(self.database_url)


def fast_settings(lease_seconds: int = 4) -> dict[str, str]:
    """Short leases and heartbeats so that crashes are noticed in seconds, not minutes."""
    return {
        "LEASE_SECONDS": str(lease_seconds),
        "QUEUE_TIMEOUT_SECONDS": str(lease_seconds * 2),
        "BATCH_HEARTBEAT_SECONDS": "0.5",
        "BATCH_STALE_SECONDS": "3",
        "BATCH_LAUNCH_GRACE_SECONDS": "3",
        "PROVIDER_TIMEOUT_SECONDS": "1",
        "PROVIDER_MAX_RETRIES": "1",
        "LOCAL_WORKERS": "3",
    }


# -- processes -----------------------------------------------------------------------------------------

@dataclass
class Orchestrator:
    """`outbound batch run N` in its own process (own session, so a kill reaches nothing else)."""

    stage: Stage
    batch_id: int
    batch_size: int
    name: str
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.stage.logs / f"{self.name}.log"

    def start(self) -> Orchestrator:
        self.stage.logs.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        argv = [sys.executable, "-m", "orchestrator.cli", "batch", "run", str(self.batch_id),
                "--batch-size", str(self.batch_size)]
        self.popen = subprocess.Popen(argv, env=self.stage.env(), cwd=REPO_ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would: no cleanup of any kind runs."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.wait(30)

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        finally:
            if self._log is not None and self.popen.poll() is not None:
                self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def restart_postgres(pg_data: Path) -> None:
    """`pg_ctl restart -m immediate`: every backend dies at once, the server recovers from WAL."""
    from pgserver._commands import POSTGRES_BIN_PATH

    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pg_data), "-m", "immediate", "-w", "-t", "60",
           "-l", str(pg_data / "restart.log"), "restart"]  # a log the server's own user may write
    if os.geteuid() == 0:  # pgserver runs the server as user pgserver when started by root
        cmd = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(cmd)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl restart failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")


# -- a provider that misbehaves ------------------------------------------------------------------------

@dataclass
class FlakyProxy:
    """In front of the sandbox: some requests hang past the client's timeout, some get garbage back.

    5xx and 429-with-Retry-After come from the sandbox itself (`error_rate`, `rate_limit_rate`).
    """

    upstream: str
    hang_rate: float = 0.0
    garbage_rate: float = 0.0
    hang_seconds: float = 5.0
    seed: int = 7
    url: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {"forwarded": 0, "hung": 0, "garbage": 0})

    @contextmanager
    def serve(self) -> Iterator[FlakyProxy]:
        from aiohttp import ClientSession, web

        import logging

        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # clients hanging up on hangs is the point
        rng = random.Random(self.seed)
        garbage = (b"<html>502 Bad Gateway</html>", b'{"person": ', b"\x00\xff\xfe", b'["not", "an", "object"]',
                   b'{"person": {"email": 12345, "title": ["x"]}, "company": "none"}')
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        state: dict[str, Any] = {}

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await misbehave(request)
            except (ConnectionError, asyncio.CancelledError):  # the client gave up on a hang: expected
                return web.Response(status=499)

        async def misbehave(request: web.Request) -> web.StreamResponse:
            roll = rng.random()
            if roll < self.hang_rate:
                self.counts["hung"] += 1
                await asyncio.sleep(self.hang_seconds)
            elif roll < self.hang_rate + self.garbage_rate:
                self.counts["garbage"] += 1
                return web.Response(body=rng.choice(garbage), status=200, content_type="application/json")
            self.counts["forwarded"] += 1
            body = await request.read()
            async with state["session"].request(request.method, self.upstream.rstrip("/") + request.path_qs,
                                                data=body, headers={k: v for k, v in request.headers.items()
                                                                    if k.lower() not in ("host", "content-length")}) as up:
                return web.Response(body=await up.read(), status=up.status,
                                    headers={k: v for k, v in up.headers.items()
                                             if k.lower() in ("content-type", "retry-after")})

        async def start() -> None:
            state["session"] = ClientSession()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            state["runner"] = runner
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            loop.run_forever()

        thread = threading.Thread(target=run, name="flaky-proxy", daemon=True)
        thread.start()
        ready.wait(30)
        try:
            yield self
        finally:
            async def stop() -> None:
                await state["session"].close()
                await state["runner"].cleanup()

            asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


# -- rows ---------------------------------------------------------------------------------------------

def _slug(tag: str) -> str:
    """A tag fit for an email domain (pytest ids carry underscores, which no domain may)."""
    return "".join(c if c.isalnum() else "-" for c in tag.lower()).strip("-")


def new_client(engine: Engine, name: str, credits: int) -> int:
    """A client whose balance comes from a ledger top-up, so balance = ledger sum from the start."""
    with db.transaction(engine) as conn:
        return seed.client(conn, name, credits=credits)


def new_batch(engine: Engine, client: int, n: int, *, tag: str, launch: bool = True) -> int:
    """`n` new leads for the client and a batch over them (launched by default, as the trigger path leaves it)."""
    tag = _slug(tag)
    with db.transaction(engine) as conn:
        campaign = seed.campaign(conn, client, f"chaos-{tag}", icp={"seniorities": ["vp", "c_level"]})
        leads = seed.leads(conn, client, n, campaign_id=campaign, domain=f"{tag}-co.example")
        return seed.batch(conn, client, leads, campaign_id=campaign, status="launched" if launch else "draft")


def progress(engine: Engine, batch_id: int) -> dict[str, int]:
    def read() -> dict[str, int]:
        with db.transaction(engine) as conn:
            return {r.status: r.n for r in conn.execute(
                text("SELECT status, count(*) AS n FROM work_items WHERE batch_id = :b GROUP BY 1"), {"b": batch_id})}
    return db.retrying(read, what="chaos progress")


def terminal(engine: Engine, batch_id: int) -> int:
    counts = progress(engine, batch_id)
    return sum(counts.get(s, 0) for s in ("DONE", "FAILED", "SKIPPED"))


def batch_row(engine: Engine, batch_id: int) -> Any:
    with db.transaction(engine) as conn:
        return conn.execute(text("SELECT status, runner_id, heartbeat_at, extract(epoch FROM now() - heartbeat_at) "
                                 "AS age FROM batches WHERE id = :b"), {"b": batch_id}).one()


def wait_stale(engine: Engine, batch_id: int, stale_seconds: float, timeout: float = 60) -> None:
    """Until the batch's heartbeat is older than the stale threshold (its runner is dead to the others)."""
    wait_until(lambda: (r := batch_row(engine, batch_id)).age is None or r.age > stale_seconds, timeout,
               f"batch {batch_id}'s heartbeat to go stale")


# -- invariants ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


_INVARIANTS: dict[str, str] = {
    "every item terminal": """
        SELECT count(*) FROM work_items WHERE batch_id = ANY(:b) AND status NOT IN ('DONE', 'FAILED', 'SKIPPED')""",
    "none DONE twice": """
        SELECT count(*) FROM (SELECT work_item_id FROM status_history WHERE batch_id = ANY(:b) AND to_status = 'DONE'
                              GROUP BY 1 HAVING count(*) > 1) x""",
    "history chain unbroken": """
        WITH h AS (
            SELECT work_item_id, from_status, to_status,
                   lag(to_status) OVER (PARTITION BY work_item_id ORDER BY id) AS prev,
                   row_number() OVER (PARTITION BY work_item_id ORDER BY id DESC) AS from_end
            FROM status_history WHERE batch_id = ANY(:b))
        SELECT (SELECT count(*) FROM h WHERE from_status IS DISTINCT FROM coalesce(prev, 'PENDING'))
             + (SELECT count(*) FROM h JOIN work_items w ON w.id = h.work_item_id
                WHERE h.from_end = 1 AND h.to_status <> w.status)
             + (SELECT count(*) FROM work_items w WHERE w.batch_id = ANY(:b)
                AND NOT EXISTS (SELECT 1 FROM status_history s WHERE s.work_item_id = w.id))""",
    "charges kept only by finishing attempts": """
        SELECT count(*) FROM (
            SELECT l.work_item_id, l.attempt, sum(l.delta) AS net FROM credit_ledger l
            JOIN work_items w ON w.id = l.work_item_id
            WHERE w.batch_id = ANY(:b) AND l.kind IN ('reserve', 'refund') GROUP BY 1, 2) x
        JOIN work_items w ON w.id = x.work_item_id
        WHERE x.net <> 0 AND NOT (w.status = 'DONE' AND w.attempts = x.attempt)""",
    "kept charges = paid hits of finishing attempts": """
        SELECT abs(
            (SELECT coalesce(-sum(l.delta), 0) FROM credit_ledger l JOIN work_items w ON w.id = l.work_item_id
             WHERE w.batch_id = ANY(:b) AND l.kind IN ('reserve', 'refund'))
          - (SELECT coalesce(sum(a.cost), 0) FROM enrichment_attempts a JOIN work_items w ON w.id = a.work_item_id
             WHERE w.batch_id = ANY(:b) AND w.status = 'DONE' AND a.attempt = w.attempts AND a.outcome = 'hit'))""",
    "balance = ledger sum >= 0": """
        SELECT count(*) FROM clients c
        WHERE c.id IN (SELECT client_id FROM batches WHERE id = ANY(:b))
          AND (c.credit_balance < 0 OR c.credit_balance <> (SELECT coalesce(sum(delta), 0) FROM credit_ledger l
                                                          WHERE l.client_id = c.id))""",
}


def invariants(engine: Engine, batch_ids: list[int]) -> list[Check]:
    """Every invariant over the given batches, each a count of violations that must be 0."""
    checks = []
    with db.transaction(engine) as conn:
        for name, sql in _INVARIANTS.items():
            bad = int(conn.execute(text(sql), {"b": batch_ids}).scalar_one())
            checks.append(Check(name, bad == 0, f"{bad} violation(s)" if bad else ""))
    return checks


# -- results ------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    scenario: str
    did: str
    found: str
    checks: list[Check]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


def table(outcomes: list[Outcome]) -> str:
    """A markdown table: scenario, what it did, what it found, invariants."""
    lines = ["| scenario | what it did | what it found | invariants | s |", "|---|---|---|---|---|"]
    for o in outcomes:
        verdict = f"all {len(o.checks)} hold" if o.ok else "FAILED: " + "; ".join(o.failures())
        lines.append(f"| {o.scenario} | {o.did} | {o.found} | {verdict} | {o.seconds:.0f} |")
    return "\n".join(lines)
