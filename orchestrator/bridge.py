"""The local stand-in for Supabase's trigger→Edge Function hop: LISTEN batch_launched, create the Prefect flow run.

Migration 0002's trigger sends `pg_notify('batch_launched', {"batch_id", "idempotency_key"})`
wherever pg_net is absent. This bridge listens on that channel and makes the same request the
Edge Function makes (`POST {PREFECT_API_URL}/deployments/{id}/create_flow_run` with the same
idempotency key), then records the run in `batches.flow_run_id`.

A notification is only a hint. Postgres checks no rights on NOTIFY, so any role that can log in
can send one: the bridge takes an integer `batch_id` from it and nothing else, then re-checks in
the database that the batch is 'launched' with no flow run yet, and builds the idempotency key
from the batch's launch time in the table (a `idempotency_key` in the payload is ignored).

Notifications are fire-and-forget: one sent while the bridge was down is lost. So on start,
after reconnecting, and every `sweep_seconds`, the bridge also launches every batch that is
'launched' with no flow_run_id. The idempotency key (`batch-<id>-launch-<launch time>`, see
`idempotency_key`) makes a repeated delivery of one launch return the run that already exists
instead of starting a second one, while a later launch of the same batch (or a reused batch id
after a database reset) gets a run of its own.
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import psycopg2
import psycopg2.extensions
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from shared import db
from shared.engines.batches import batches
from shared.errors import LaunchError

log = logging.getLogger(__name__)

CHANNEL = "batch_launched"
MAX_BATCH_ID = 2**63 - 1  # batches.id is a bigint
DEFAULT_DEPLOYMENT_NAME = "orchestrator_main/orchestrator-main"
BRIDGE_TAGS = ("trigger:bridge",)
RETRY_PAUSES = (0.5, 1.0, 2.0)  # seconds between tries of one create_flow_run


def idempotency_key(batch_id: int, launched: datetime) -> str:
    """The key the trigger, the Edge Function and the bridge all use: one launch, one flow run.

    `launched` is the launch time, `coalesce(batches.launched_at, batches.created_at)`; the key is
    `batch-<id>-launch-<UTC YYYYMMDDHHMMSS + microseconds>`, exactly what migration 0002's trigger
    builds with `to_char(... AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')`. The batch id alone is
    not enough: ids restart after a database reset and a cancelled batch can be launched again,
    and Prefect would answer either with the flow run of the earlier launch.
    """
    if launched.tzinfo is None or launched.utcoffset() is None:
        raise ValueError(f"launch time must be timezone-aware, got {launched!r}")
    return f"batch-{batch_id}-launch-{launched.astimezone(timezone.utc).strftime('%Y%m%d%H%M%S%f')}"


@dataclass(frozen=True)
class FlowRunRef:
    id: str
    state: str | None
    created: bool  # False: Prefect returned the run an earlier launch with this key created


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def resolve_deployment_id(api_url: str, name: str = DEFAULT_DEPLOYMENT_NAME, api_key: str | None = None,
                          timeout: float = 10.0) -> str:
    """The id of deployment `flow_name/deployment_name`, asked of the Prefect API."""
    flow_name, _, deployment_name = name.partition("/")
    if not deployment_name:
        raise ValueError(f"deployment name must look like flow_name/deployment_name, got {name!r}")
    url = f"{api_url.rstrip('/')}/deployments/name/{flow_name}/{deployment_name}"
    try:
        response = httpx.get(url, headers=_headers(api_key), timeout=timeout)
    except httpx.HTTPError as exc:
        raise LaunchError(f"cannot look up deployment {name!r} at {api_url}: {exc}") from exc
    if response.status_code == 404:
        raise LaunchError(f"no deployment {name!r} at {api_url} (run `outbound deploy` first)")
    if response.status_code != 200:
        raise LaunchError(f"looking up deployment {name!r}: Prefect answered {response.status_code}: "
                          f"{response.text[:200]}")
    return _id_from(response, f"deployment {name!r}")


def _id_from(response: httpx.Response, what: str) -> str:
    """The `id` of a Prefect answer; LaunchError (logged by the caller, never a crash) when it has none."""
    try:
        body = response.json()
    except ValueError as exc:
        raise LaunchError(f"{what}: Prefect answered {response.status_code} with a body that is not JSON") from exc
    found = body.get("id") if isinstance(body, dict) else None
    if not isinstance(found, str) or not found:
        raise LaunchError(f"{what}: Prefect answered {response.status_code} without an id: {response.text[:200]}")
    return found


@dataclass
class Launcher:
    """Creates flow runs of one deployment, exactly as supabase/functions/launch-batch does.

    Without a `deployment_id`, the id of `deployment_name` is looked up on first use (and again
    after a failed look-up), so a Prefect that is down or answers oddly at start-up is logged and
    retried by the next sweep instead of ending the bridge.
    """

    api_url: str
    deployment_id: str | None = None
    api_key: str | None = None
    deployment_name: str = DEFAULT_DEPLOYMENT_NAME
    tags: tuple[str, ...] = BRIDGE_TAGS
    timeout: float = 10.0
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(timeout=self.timeout, headers=_headers(self.api_key))

    def create_flow_run(self, batch_id: int, key: str) -> FlowRunRef:
        """`key`: the launch's idempotency key (`idempotency_key(batch_id, launch time)`)."""
        if self.deployment_id is None:
            self.deployment_id = resolve_deployment_id(self.api_url, self.deployment_name, self.api_key, self.timeout)
        url = f"{self.api_url.rstrip('/')}/deployments/{self.deployment_id}/create_flow_run"
        body = {
            "parameters": {"batch_id": batch_id},
            "idempotency_key": key,
            "tags": [*self.tags, f"batch:{batch_id}"],
        }
        # The idempotency key makes a retry safe: a busy server (503, 429) or a dropped connection
        # is tried again a few times before the launch is left to the next sweep.
        for attempt, pause in enumerate((*RETRY_PAUSES, None)):
            try:
                response = self._client.post(url, json=body)
            except httpx.HTTPError as exc:
                if pause is None:
                    raise LaunchError(f"Prefect API unreachable at {url}: {exc}") from exc
                log.warning("batch %s: Prefect unreachable (%s), retry %d in %.1fs", batch_id, exc, attempt + 1, pause)
            else:
                if response.status_code in (200, 201):
                    break
                if pause is None or not (response.status_code == 429 or response.status_code >= 500):
                    raise LaunchError(f"Prefect answered {response.status_code}: {response.text[:500]}")
                log.warning("batch %s: Prefect answered %s, retry %d in %.1fs", batch_id, response.status_code,
                            attempt + 1, pause)
            time.sleep(pause)
        run_id = _id_from(response, f"batch {batch_id}: create_flow_run")
        state = response.json().get("state")
        return FlowRunRef(id=run_id, state=state.get("type") if isinstance(state, dict) else None,
                          created=response.status_code == 201)

    def close(self) -> None:
        self._client.close()


@dataclass
class LocalLauncher:
    """Runs each launched batch's orchestrator_main in this process (a thread per batch) instead of
    asking a Prefect server: `outbound serve --run-launches` (and `make console`), so a batch
    launched from the console runs on a laptop with nothing else started. Same flow, same engine
    code; the flow takes the batch with a guarded UPDATE, so a second launcher or a sweep that
    also starts it changes nothing (the loser sees it is busy and returns).
    """

    batch_size: int = 50
    _runs: dict[int, tuple[str, threading.Thread]] = field(default_factory=dict, init=False, repr=False)

    def create_flow_run(self, batch_id: int, key: str) -> FlowRunRef:
        running = self._runs.get(batch_id)
        if running is not None and running[1].is_alive():
            return FlowRunRef(id=running[0], state="RUNNING", created=False)
        run_id = f"local-{key}"
        thread = threading.Thread(target=self._run, args=(batch_id,), name=f"batch-{batch_id}", daemon=True)
        self._runs[batch_id] = (run_id, thread)
        thread.start()
        return FlowRunRef(id=run_id, state="RUNNING", created=True)

    def _run(self, batch_id: int) -> None:
        from orchestrator.flows.batch import orchestrator_main

        try:
            summary = orchestrator_main(batch_id=batch_id, batch_size=self.batch_size)
            log.info("batch %s: local run ended %s", batch_id, summary.get("status"))
        except Exception:  # noqa: BLE001 - the sweep (or the next launch) resumes it; the log says why
            log.exception("batch %s: local run failed", batch_id)

    def close(self) -> None:
        """Running batches keep their threads (daemons); an interrupted batch is resumed by the next start."""


def libpq_dsn(database_url: str) -> str:
    """A libpq URI from our SQLAlchemy URL (psycopg2 does not take the +psycopg2 driver name)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _refuse_json_constant(token: str) -> Any:
    raise ValueError(f"non-finite number {token}")


def _refuse_float(token: str) -> Any:
    raise ValueError(f"not an integer: {token}")


def _bounded_int(token: str) -> int:
    if len(token.lstrip("-")) > 19:  # beyond a bigint; also keeps int() away from huge digit strings
        raise ValueError(f"integer out of range: {token[:30]}")
    return int(token)


def parse_batch_id(payload: str) -> int:
    """The batch id a `batch_launched` payload names; ValueError for anything but a positive bigint.

    Floats (1.9, 1e400), booleans, strings and out-of-range numbers are refused: json.loads would
    otherwise turn 1.9 and true into batch 1 and 1e400 into an OverflowError.
    """
    message = json.loads(payload, parse_float=_refuse_float, parse_int=_bounded_int,
                         parse_constant=_refuse_json_constant)
    if not isinstance(message, dict) or "batch_id" not in message:
        raise ValueError("no batch_id")
    batch_id = message["batch_id"]
    if type(batch_id) is not int or not 0 < batch_id <= MAX_BATCH_ID:
        raise ValueError(f"batch_id must be a positive integer, got {batch_id!r}"[:120])
    return batch_id


@dataclass
class Bridge:
    """One LISTEN connection, one loop. `stop` (a threading.Event) ends it from a signal handler."""

    database_url: str
    launcher: Launcher
    poll_seconds: float = 1.0
    sweep_seconds: float = 30.0
    reconnect_seconds: float = 2.0
    stop: threading.Event = field(default_factory=threading.Event)
    launched: dict[int, str] = field(default_factory=dict)  # batch id -> flow run id, this process
    launches: int = 0  # successful create_flow_run calls (a repeat with the same key counts too)
    _conn: Any = field(default=None, init=False, repr=False)

    # -- database --------------------------------------------------------------------------------
    def _connect(self) -> None:
        self._close()
        from shared.db import connect_args

        conn = psycopg2.connect(libpq_dsn(self.database_url), **connect_args())
        # LISTEN only delivers outside a transaction block; autocommit also makes each UPDATE stick.
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
        self._conn = conn
        log.info("listening on channel %r", CHANNEL)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _pending(self) -> list[tuple[int, datetime]]:
        """(batch id, launch time) of every batch that is 'launched' with no flow run yet."""
        with db.transaction(self._engine()) as conn:
            return batches.awaiting_flow_run(conn)

    def _launch_key(self, batch_id: int) -> str | None:
        """The key of the batch's current launch, or None unless it is 'launched' with no flow run."""
        with db.transaction(self._engine()) as conn:
            launched = batches.awaiting_launch_time(conn, batch_id)
        return None if launched is None else idempotency_key(batch_id, launched)

    def _engine(self) -> Any:
        """Queries go through the project's engine (pooled, with its timeouts); the psycopg2
        connection above only LISTENs."""
        from shared.db import get_engine

        return get_engine(self.database_url)

    # -- work ------------------------------------------------------------------------------------
    def launch(self, batch_id: int) -> FlowRunRef | None:
        """Create (or find) the batch's flow run and record it; None when there is nothing to do or Prefect said no.

        Whoever asks (a notification, the sweep), the database decides: only a batch that is
        'launched' with no flow run yet is started, under the key of its launch in the table.
        """
        key = self._launch_key(batch_id)
        if key is None:
            log.warning("batch %s: not a launched batch waiting for a flow run; nothing to launch", batch_id)
            return None
        try:
            run = self.launcher.create_flow_run(batch_id, key)
        except LaunchError as exc:
            # Left 'launched' with no flow_run_id: the next sweep tries again with the same key.
            log.error("batch %s: launch failed: %s", batch_id, exc)
            return None
        with db.transaction(self._engine()) as conn:
            batches.record_flow_run(conn, batch_id, run.id)
        self.launched[batch_id] = run.id
        self.launches += 1
        log.info("batch %s: flow run %s %s (%s)", batch_id, run.id,
                 "created" if run.created else "already existed", run.state)
        return run

    def sweep(self) -> int:
        """Launch every batch left 'launched' without a flow run (missed notifications, failed launches)."""
        pending = self._pending()
        if pending:
            log.info("sweep: %d launched batch(es) without a flow run: %s", len(pending),
                     [batch_id for batch_id, _ in pending])
        return sum(self.launch(batch_id) is not None for batch_id, _ in pending)

    def _handle(self, payload: str) -> None:
        try:
            batch_id = parse_batch_id(payload)
        except (ValueError, TypeError, RecursionError) as exc:
            log.warning("ignoring malformed %s payload %r: %s", CHANNEL, payload[:200], exc)
            return
        self.launch(batch_id)

    def _drain(self, wait: float) -> None:
        if select.select([self._conn], [], [], wait) == ([], [], []):
            return
        self._conn.poll()
        while self._conn.notifies:
            self._handle(self._conn.notifies.pop(0).payload)

    def run(self, *, once: bool = False, timeout: float | None = None) -> int:
        """Listen until `stop` is set, `timeout` seconds pass, or (once) the backlog is done.

        Returns how many launches succeeded in this call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        before = self.launches
        needs_sweep = True
        last_sweep = 0.0
        try:
            while not self.stop.is_set():
                try:
                    if self._conn is None:
                        self._connect()
                        needs_sweep = True  # anything notified while we were away is only in the table
                    if needs_sweep or time.monotonic() - last_sweep >= self.sweep_seconds:
                        self.sweep()
                        needs_sweep, last_sweep = False, time.monotonic()
                    if once:
                        self._drain(0)
                        break
                    wait = self.poll_seconds
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    self._drain(wait)
                except (psycopg2.OperationalError, psycopg2.InterfaceError, sqlalchemy.exc.OperationalError,
                        sqlalchemy.exc.InterfaceError) as exc:
                    log.error("database connection lost (%s); reconnecting in %.0fs", exc, self.reconnect_seconds)
                    self._close()
                    if once or self.stop.wait(self.reconnect_seconds):
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            self._close()
        return self.launches - before
