"""The LISTEN/NOTIFY bridge on real Postgres, against a local HTTP peer standing in for Prefect's API.

The real Prefect server path is in test_trigger_path.py; here the peer lets us make Prefect fail
and look at exactly what the bridge sent.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.errors
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import text
from werkzeug import Request, Response

from orchestrator.bridge import Bridge, Launcher, idempotency_key, libpq_dsn, parse_batch_id, resolve_deployment_id
from tests import factories

pytestmark = pytest.mark.integration

DEPLOYMENT = "5b0c1c5e-1111-4222-8333-944455556666"
PATH = f"/api/deployments/{DEPLOYMENT}/create_flow_run"


class FakePrefect:
    """Answers create_flow_run like Prefect: 201 for a new key, 200 with the same run for a known one."""

    def __init__(self, httpserver: HTTPServer, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.runs: dict[str, str] = {}
        self.fail_first = fail_first
        httpserver.expect_request(PATH, method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.bodies.append(body)
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response('{"detail": "database is locked"}', status=500, content_type="application/json")
        key = body["idempotency_key"]
        created = key not in self.runs
        run_id = self.runs.setdefault(key, f"00000000-0000-4000-8000-{len(self.runs) + 1:012d}")
        return Response(json.dumps({"id": run_id, "state": {"type": "SCHEDULED"}}),
                        status=201 if created else 200, content_type="application/json")


def _bridge(database_url: str, httpserver: HTTPServer, **kwargs) -> Bridge:
    launcher = Launcher(httpserver.url_for("/api"), DEPLOYMENT, api_key="pnu_test")
    return Bridge(database_url, launcher, poll_seconds=0.1, **kwargs)


def _flow_run_id(engine, batch_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT flow_run_id FROM batches WHERE id = :b"), {"b": batch_id}).scalar()


def _launch_key(engine, batch_id: int) -> str:
    """The idempotency key of the batch's current launch, from its launch time in the table."""
    with engine.connect() as conn:
        launched = conn.execute(text("SELECT coalesce(launched_at, created_at) FROM batches WHERE id = :b"),
                                {"b": batch_id}).scalar_one()
    return idempotency_key(batch_id, launched)


def test_once_launches_what_is_launched_and_unclaimed(engine, database_url, httpserver):
    prefect = FakePrefect(httpserver)
    with engine.begin() as conn:
        client_id = factories.client(conn)
        launched = factories.batch(conn, client_id, [], status="launched")
        factories.batch(conn, client_id, [], status="draft")
        already = factories.batch(conn, client_id, [], status="launched")
        conn.execute(text("UPDATE batches SET flow_run_id = 'earlier-run' WHERE id = :b"), {"b": already})

    bridge = _bridge(database_url, httpserver)
    assert bridge.run(once=True) == 1
    bridge.launcher.close()

    assert prefect.bodies == [{
        "parameters": {"batch_id": launched},
        "idempotency_key": _launch_key(engine, launched),
        "tags": ["trigger:bridge", f"batch:{launched}"],
    }]
    assert _flow_run_id(engine, launched) == "00000000-0000-4000-8000-000000000001"
    assert _flow_run_id(engine, already) == "earlier-run"
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == "Bearer pnu_test"


def test_a_busy_prefect_is_retried_within_the_launch(engine, database_url, httpserver, monkeypatch):
    monkeypatch.setattr("orchestrator.bridge.RETRY_PAUSES", (0.01, 0.01, 0.01))
    prefect = FakePrefect(httpserver, fail_first=2)
    with engine.begin() as conn:
        batch_id = factories.batch(conn, factories.client(conn), [], status="launched")

    bridge = _bridge(database_url, httpserver)
    assert bridge.run(once=True) == 1
    bridge.launcher.close()
    assert _flow_run_id(engine, batch_id) is not None
    assert [b["idempotency_key"] for b in prefect.bodies] == [_launch_key(engine, batch_id)] * 3


def test_a_refused_launch_is_retried_by_the_next_sweep(engine, database_url, httpserver, monkeypatch):
    monkeypatch.setattr("orchestrator.bridge.RETRY_PAUSES", (0.01, 0.01, 0.01))
    prefect = FakePrefect(httpserver, fail_first=4)  # outlasts the in-call retries
    with engine.begin() as conn:
        batch_id = factories.batch(conn, factories.client(conn), [], status="launched")

    bridge = _bridge(database_url, httpserver)
    assert bridge.run(once=True) == 0
    assert _flow_run_id(engine, batch_id) is None  # still waiting: nothing lost

    assert bridge.run(once=True) == 1
    bridge.launcher.close()
    assert _flow_run_id(engine, batch_id) is not None
    assert [b["idempotency_key"] for b in prefect.bodies] == [_launch_key(engine, batch_id)] * 5


def test_listens_for_the_trigger_and_survives_junk(engine, database_url, httpserver):
    prefect = FakePrefect(httpserver)
    bridge = _bridge(database_url, httpserver)
    thread = threading.Thread(target=bridge.run, kwargs={"timeout": 30}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while bridge._conn is None and time.monotonic() < deadline:  # listening before we notify
            time.sleep(0.05)
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify('batch_launched', 'not json')"))
            conn.execute(text("SELECT pg_notify('batch_launched', '{\"no_batch\": 1}')"))
            client_id = factories.client(conn)
            batch_id = factories.batch(conn, client_id, [], status="draft")
        with engine.begin() as conn:
            conn.execute(text("UPDATE batches SET status = 'launched' WHERE id = :b"), {"b": batch_id})

        deadline = time.monotonic() + 10
        while _flow_run_id(engine, batch_id) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _flow_run_id(engine, batch_id) is not None

        # The same launch again: the batch already has its run recorded, so Prefect is not even asked.
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify('batch_launched', :p)"),
                         {"p": json.dumps({"batch_id": batch_id, "idempotency_key": _launch_key(engine, batch_id)})})
        # A key in the payload is ignored: with the run record gone, the table's key is used.
        with engine.begin() as conn:
            conn.execute(text("UPDATE batches SET flow_run_id = NULL WHERE id = :b"), {"b": batch_id})
            conn.execute(text("SELECT pg_notify('batch_launched', :p)"),
                         {"p": json.dumps({"batch_id": batch_id, "idempotency_key": "forged-key"})})
        deadline = time.monotonic() + 10
        while bridge.launches < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bridge.launches == 2
        assert len(prefect.runs) == 1
        assert [b["idempotency_key"] for b in prefect.bodies] == [_launch_key(engine, batch_id)] * 2
    finally:
        bridge.stop.set()
        thread.join(10)
        bridge.launcher.close()
    assert not thread.is_alive()


def test_a_relaunch_gets_a_new_key_and_a_repeated_delivery_the_same(engine, database_url, httpserver):
    """The key names one launch event: delivering the same launch again (a re-sent notification, a
    sweep that finds it unrecorded) reuses the key, so Prefect answers with the same run; launching
    the batch again after a cancel is a new launch with a new key, so it gets a run of its own
    instead of the cancelled one."""
    prefect = FakePrefect(httpserver)
    with engine.begin() as conn:
        batch_id = factories.batch(conn, factories.client(conn), [], status="draft")

    def wait_for(check, what: str):
        deadline = time.monotonic() + 10
        while not (result := check()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert result, f"timed out waiting for {what}"
        return result

    bridge = _bridge(database_url, httpserver)
    thread = threading.Thread(target=bridge.run, kwargs={"timeout": 30}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: bridge._conn is not None, "the bridge to listen")

        # Launch 1: the trigger notifies, the bridge creates the run.
        with engine.begin() as conn:
            conn.execute(text("UPDATE batches SET status = 'launched', launched_at = now() WHERE id = :b"),
                         {"b": batch_id})
        first_run = wait_for(lambda: _flow_run_id(engine, batch_id), "the first launch's flow run")
        first_key = prefect.bodies[0]["idempotency_key"]
        assert re.fullmatch(rf"batch-{batch_id}-launch-\d{{20}}", first_key)
        assert first_key == _launch_key(engine, batch_id)  # the trigger (SQL) and Python agree

        # The same launch delivered again: a re-sent notification finds the run recorded and asks nothing...
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_notify('batch_launched', :p)"),
                         {"p": json.dumps({"batch_id": batch_id, "idempotency_key": first_key})})
        time.sleep(0.5)
        assert bridge.launches == 1
        # ...and a sweep that finds the launch unrecorded (as if recording the run had failed).
        with engine.begin() as conn:
            conn.execute(text("UPDATE batches SET flow_run_id = NULL WHERE id = :b"), {"b": batch_id})
        sweeper = _bridge(database_url, httpserver)
        assert sweeper.run(once=True) == 1
        sweeper.launcher.close()
        assert _flow_run_id(engine, batch_id) == first_run

        # Cancelled, then launched again: a new launch event.
        with engine.begin() as conn:
            conn.execute(text("UPDATE batches SET status = 'cancelled' WHERE id = :b"), {"b": batch_id})
        with engine.begin() as conn:
            conn.execute(text("UPDATE batches SET status = 'launched', launched_at = now(), flow_run_id = NULL "
                              "WHERE id = :b"), {"b": batch_id})
        second_run = wait_for(lambda: _flow_run_id(engine, batch_id), "the second launch's flow run")
    finally:
        bridge.stop.set()
        thread.join(10)
        bridge.launcher.close()
    assert not thread.is_alive()

    keys = [body["idempotency_key"] for body in prefect.bodies]
    second_key = keys[-1]
    assert keys == [first_key, first_key, second_key]
    assert second_key != first_key
    assert second_key == _launch_key(engine, batch_id)
    assert second_run != first_run
    assert len(prefect.runs) == 2


def test_idempotency_key_format():
    launched = datetime(2026, 11, 22, 10, 30, 15, 1234, tzinfo=timezone(timedelta(hours=2)))
    assert idempotency_key(7, launched) == "batch-7-launch-20261122083015001234"
    with pytest.raises(ValueError):
        idempotency_key(7, datetime(2026, 11, 22, 10, 30, 15))


def test_stop_ends_the_loop_promptly(engine, database_url, httpserver):
    FakePrefect(httpserver)
    bridge = _bridge(database_url, httpserver)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    bridge.stop.set()
    thread.join(5)
    bridge.launcher.close()
    assert not thread.is_alive()
    assert time.monotonic() - started < 2


def test_resolve_deployment_id_by_name(httpserver):
    httpserver.expect_request("/api/deployments/name/orchestrator_main/orchestrator-main").respond_with_json(
        {"id": DEPLOYMENT, "name": "orchestrator-main"})
    assert resolve_deployment_id(httpserver.url_for("/api")) == DEPLOYMENT


def test_reconnects_after_losing_the_database_and_catches_up(engine, database_url, httpserver):
    FakePrefect(httpserver)
    bridge = _bridge(database_url, httpserver, reconnect_seconds=0.2)
    thread = threading.Thread(target=bridge.run, kwargs={"timeout": 30}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while bridge._conn is None and time.monotonic() < deadline:
            time.sleep(0.05)
        backend = bridge._conn.get_backend_pid()
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend})
            # Launched while the bridge is disconnected: its NOTIFY reaches nobody.
            batch_id = factories.batch(conn, factories.client(conn), [], status="launched")
        deadline = time.monotonic() + 15
        while _flow_run_id(engine, batch_id) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _flow_run_id(engine, batch_id) is not None  # found by the sweep after reconnecting
    finally:
        bridge.stop.set()
        thread.join(10)
        bridge.launcher.close()


# -- issue 11.2: a NOTIFY is only a hint ---------------------------------------------------------------

HOSTILE_PAYLOADS = ('{"batch_id": 1.9}', '{"batch_id": true}', '{"batch_id": 1e400}', '{"batch_id": "1"}',
                    '{"batch_id": -1}', '{"batch_id": 99999999999999999999999}', '{"batch_id": NaN}',
                    '[1]', '{"batch_id": null}', "{" * 5000)


@pytest.mark.parametrize("payload", HOSTILE_PAYLOADS)
def test_only_a_positive_integer_batch_id_is_accepted(payload):
    with pytest.raises(ValueError):
        parse_batch_id(payload)


def test_parse_batch_id_takes_the_id_and_nothing_else():
    assert parse_batch_id('{"batch_id": 42, "idempotency_key": "whatever"}') == 42


@pytest.fixture
def notifier(engine, database_url):
    """A role that can log in and nothing else (no table grants): what any leaked login can do."""
    from sqlalchemy.engine import make_url

    role = f"notifier_{os.getpid()}"
    with engine.begin() as conn:
        conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"))
    url = make_url(database_url).set(username=role, password=None)
    conn = psycopg2.connect(libpq_dsn(url.render_as_string(hide_password=False)))
    conn.autocommit = True
    yield conn
    conn.close()
    with engine.begin() as admin:
        admin.execute(text(f"DROP ROLE IF EXISTS {role}"))


def test_notify_from_a_low_privilege_role_starts_nothing(engine, database_url, httpserver, notifier):
    prefect = FakePrefect(httpserver)
    with engine.begin() as conn:
        client_id = factories.client(conn)
        draft = factories.batch(conn, client_id, [], status="draft")
        done = factories.batch(conn, client_id, [], status="completed")
        before = conn.execute(text("SELECT id, status, flow_run_id FROM batches ORDER BY id")).all()
    with notifier.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("SELECT count(*) FROM batches")  # it really cannot read the tables

    bridge = _bridge(database_url, httpserver)
    thread = threading.Thread(target=bridge.run, kwargs={"timeout": 30}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while bridge._conn is None and time.monotonic() < deadline:
            time.sleep(0.05)
        payloads = [json.dumps({"batch_id": draft}), json.dumps({"batch_id": done, "idempotency_key": "k"}),
                    *HOSTILE_PAYLOADS, json.dumps({"batch_id": 123456789})]
        with notifier.cursor() as cur:
            for payload in payloads:
                cur.execute("SELECT pg_notify('batch_launched', %s)", (payload,))
            cur.execute("SELECT pg_notify('batch_launched', %s)", (json.dumps({"batch_id": draft}),))
        time.sleep(1.5)  # every notification delivered and handled (the bridge polls every 0.1 s)
        assert thread.is_alive()
        # Still alive and still working: a real launch afterwards goes through.
        with engine.begin() as conn:
            launched = factories.batch(conn, client_id, [], status="launched")
        deadline = time.monotonic() + 10
        while _flow_run_id(engine, launched) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        bridge.stop.set()
        thread.join(10)
        bridge.launcher.close()
    assert [b["parameters"]["batch_id"] for b in prefect.bodies] == [launched]  # nothing else reached Prefect
    with engine.begin() as conn:
        after = conn.execute(text("SELECT id, status, flow_run_id FROM batches WHERE id <> :l ORDER BY id"),
                             {"l": launched}).all()
    assert after == before  # nothing written


def test_a_prefect_answer_without_an_id_is_logged_and_skipped(engine, database_url, httpserver, caplog):
    httpserver.expect_request(PATH, method="POST").respond_with_json({"state": {"type": "SCHEDULED"}}, status=201)
    httpserver.expect_request("/api/deployments/name/orchestrator_main/orchestrator-main").respond_with_json(
        {"name": "orchestrator-main"})
    with engine.begin() as conn:
        batch_id = factories.batch(conn, factories.client(conn), [], status="launched")
    bridge = _bridge(database_url, httpserver)
    with caplog.at_level(logging.ERROR, logger="orchestrator.bridge"):
        assert bridge.run(once=True) == 0
        lazy = Bridge(database_url, Launcher(httpserver.url_for("/api")), poll_seconds=0.1)  # no id: looked up
        assert lazy.run(once=True) == 0
    bridge.launcher.close()
    lazy.launcher.close()
    assert _flow_run_id(engine, batch_id) is None  # left for the next sweep
    assert "without an id" in caplog.text and "deployment 'orchestrator_main/orchestrator-main'" in caplog.text
