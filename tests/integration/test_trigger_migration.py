"""The batch-launch trigger (migration 0002) on real Postgres: notify locally, pg_net on Supabase."""

from __future__ import annotations

import json
import re
import select
import time
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy import Engine, create_engine, pool, text
from sqlalchemy.engine import make_url

from orchestrator.bridge import idempotency_key
from shared import migrate
from tests import factories

pytestmark = pytest.mark.integration

CHANNEL = "batch_launched"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _edge_function_prefect_budget_ms() -> int:
    """PREFECT_BUDGET_MS (all its tries on Prefect) as the Edge Function declares it, so the two
    timeouts cannot drift apart."""
    source = (REPO_ROOT / "supabase" / "functions" / "launch-batch" / "index.ts").read_text()
    return int(re.search(r"const PREFECT_BUDGET_MS = ([\d_]+);", source).group(1).replace("_", ""))


EDGE_FUNCTION_PREFECT_BUDGET_MS = _edge_function_prefect_budget_ms()
PG_NET_TIMEOUT_MS = 15_000  # migration 0004

# A stand-in for Supabase's pg_net with the same signature as pg_net >= 0.6, recording each call
# in a table instead of sending it: enough to prove what the trigger would POST.
FAKE_PG_NET = """
CREATE SCHEMA net;
CREATE TABLE net.calls (id bigserial PRIMARY KEY, url text, body jsonb, headers jsonb, timeout_milliseconds int);
CREATE FUNCTION net.http_post(
    url text,
    body jsonb DEFAULT '{}'::jsonb,
    params jsonb DEFAULT '{}'::jsonb,
    headers jsonb DEFAULT '{"Content-Type": "application/json"}'::jsonb,
    timeout_milliseconds int DEFAULT 5000
) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO net.calls (url, body, headers, timeout_milliseconds)
    VALUES (url, body, headers, timeout_milliseconds) RETURNING id
$$;
"""


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(_dsn(database_url))
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {CHANNEL}")
    yield conn
    conn.close()


def _drain(conn: psycopg2.extensions.connection, wait: float = 1.0) -> list[dict]:
    """Every notification that arrives within `wait` seconds."""
    got: list[dict] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        if select.select([conn], [], [], left) == ([], [], []):
            break
        conn.poll()
        while conn.notifies:
            got.append(json.loads(conn.notifies.pop(0).payload))
    return got


def _client(engine: Engine) -> int:
    with engine.begin() as conn:
        return factories.client(conn)


def _launch(engine: Engine, batch_id: int) -> dict:
    """What the trigger should send for the batch's current launch: the key carries its launch time."""
    with engine.connect() as conn:
        launched = conn.execute(text("SELECT coalesce(launched_at, created_at) FROM batches WHERE id = :b"),
                                {"b": batch_id}).scalar_one()
    return {"batch_id": batch_id, "idempotency_key": idempotency_key(batch_id, launched)}


def test_insert_and_update_to_launched_notify_once(engine, listener):
    client_id = _client(engine)
    with engine.begin() as conn:
        launched_on_insert = factories.batch(conn, client_id, [], status="launched")
        draft = factories.batch(conn, client_id, [])
    [notified] = _drain(listener)
    assert notified == _launch(engine, launched_on_insert)
    # No launched_at: the key falls back to created_at, rendered in UTC to the microsecond.
    with engine.connect() as conn:
        created = conn.execute(text("SELECT created_at FROM batches WHERE id = :b"),
                               {"b": launched_on_insert}).scalar_one()
    assert notified["idempotency_key"] == (
        f"batch-{launched_on_insert}-launch-{created.astimezone(timezone.utc).strftime('%Y%m%d%H%M%S%f')}")

    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET status = 'launched' WHERE id = :b"), {"b": draft})
    assert _drain(listener) == [_launch(engine, draft)]

    # Staying launched, moving on to running, or touching other columns is not a new launch.
    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET status = 'launched' WHERE id = :b"), {"b": draft})
        conn.execute(text("UPDATE batches SET summary = '{}'::jsonb WHERE id = :b"), {"b": draft})
        conn.execute(text("UPDATE batches SET status = 'running' WHERE id = :b"), {"b": draft})
    assert _drain(listener, 0.5) == []


def test_the_key_names_the_launch_in_utc_and_a_relaunch_gets_a_new_one(engine, listener):
    client_id = _client(engine)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'America/New_York'"))  # the session's zone must not matter
        batch_id = factories.batch(conn, client_id, [])
        conn.execute(text("UPDATE batches SET status = 'launched', launched_at = '2026-11-22 10:30:15.001234+02' "
                          "WHERE id = :b"), {"b": batch_id})
    first = {"batch_id": batch_id, "idempotency_key": f"batch-{batch_id}-launch-20261122083015001234"}
    assert _drain(listener) == [first]
    assert _launch(engine, batch_id) == first

    with engine.begin() as conn:
        conn.execute(text("UPDATE batches SET status = 'cancelled' WHERE id = :b"), {"b": batch_id})
        conn.execute(text("UPDATE batches SET status = 'launched', launched_at = '2026-11-22 08:30:15.001235+00' "
                          "WHERE id = :b"), {"b": batch_id})
    assert _drain(listener) == [
        {"batch_id": batch_id, "idempotency_key": f"batch-{batch_id}-launch-20261122083015001235"}
    ]


def test_rolled_back_launch_sends_nothing(engine, listener):
    client_id = _client(engine)
    with engine.connect() as conn:
        with conn.begin() as tx:
            factories.batch(conn, client_id, [], status="launched")
            tx.rollback()
    assert _drain(listener, 0.5) == []


@pytest.fixture
def fake_pg_net(engine: Engine) -> Iterator[Engine]:
    with engine.begin() as conn:
        conn.execute(text(FAKE_PG_NET))
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA net CASCADE"))
            conn.execute(text("DELETE FROM outbound_private.app_config"))


def test_with_pg_net_posts_to_the_edge_function(fake_pg_net, listener):
    engine = fake_pg_net
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO outbound_private.app_config (key, value) VALUES "
            "('edge_function_url', 'https://proj.supabase.co/functions/v1/launch-batch'), "
            "('launch_shared_secret', 's3cret')"
        ))
    client_id = _client(engine)
    with engine.begin() as conn:
        batch_id = factories.batch(conn, client_id, [], status="launched")
    with engine.connect() as conn:
        calls = conn.execute(text("SELECT url, body, headers, timeout_milliseconds FROM net.calls")).all()
    assert [tuple(c) for c in calls] == [(
        "https://proj.supabase.co/functions/v1/launch-batch",
        _launch(engine, batch_id),
        {"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
        PG_NET_TIMEOUT_MS,
    )]
    # Longer than all the Edge Function's tries on Prefect (pg_net's default of 5 s was shorter).
    assert PG_NET_TIMEOUT_MS > EDGE_FUNCTION_PREFECT_BUDGET_MS
    assert _drain(listener, 0.5) == []  # delivered by HTTP, not by notify


def test_with_pg_net_but_no_config_falls_back_to_notify(fake_pg_net, listener):
    engine = fake_pg_net
    client_id = _client(engine)
    with engine.begin() as conn:
        batch_id = factories.batch(conn, client_id, [], status="launched")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM net.calls")).scalar() == 0
    assert _drain(listener) == [_launch(engine, batch_id)]


def test_with_pg_net_config_from_settings(fake_pg_net, database_url):
    """Hosts that allow custom GUCs can configure with ALTER DATABASE/ROLE ... SET app.*."""
    engine = fake_pg_net
    client_id = _client(engine)
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('app.edge_function_url', 'http://127.0.0.1:9/fn', true)"))
        conn.execute(text("SELECT set_config('app.launch_shared_secret', 'guc-secret', true)"))
        batch_id = factories.batch(conn, client_id, [], status="launched")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT url, body, headers FROM net.calls")).one()
    assert row.url == "http://127.0.0.1:9/fn"
    assert row.body["batch_id"] == batch_id
    assert row.headers["Authorization"] == "Bearer guc-secret"


def _trigger_objects(url: str) -> dict[str, bool]:
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            return {
                "schema": conn.execute(text(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'outbound_private')")).scalar(),
                "function": conn.execute(text(
                    "SELECT to_regprocedure('outbound_private.batch_launched()') IS NOT NULL")).scalar(),
                "trigger": conn.execute(text(
                    "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'batches_launched')")).scalar(),
            }
    finally:
        eng.dispose()


def test_downgrade_removes_everything_and_upgrade_restores(database_url, engine):
    engine.dispose()
    assert _trigger_objects(database_url) == {"schema": True, "function": True, "trigger": True}
    migrate.downgrade("0001", database_url)
    try:
        assert migrate.current(database_url) == "0001"
        assert _trigger_objects(database_url) == {"schema": False, "function": False, "trigger": False}
    finally:
        migrate.upgrade("head", database_url)
    assert _trigger_objects(database_url) == {"schema": True, "function": True, "trigger": True}


def test_downgrade_to_0003_restores_0002s_call_without_a_timeout(fake_pg_net, database_url):
    """0004 only adds timeout_milliseconds; its downgrade puts 0002's function back as it was."""
    engine = fake_pg_net
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO outbound_private.app_config (key, value) VALUES "
            "('edge_function_url', 'https://proj.supabase.co/functions/v1/launch-batch'), "
            "('launch_shared_secret', 's3cret')"
        ))
    engine.dispose()
    migrate.downgrade("0003", database_url)
    try:
        client_id = _client(engine)
        with engine.begin() as conn:
            batch_id = factories.batch(conn, client_id, [], status="launched")
        with engine.connect() as conn:
            row = conn.execute(text("SELECT body, timeout_milliseconds FROM net.calls")).one()
        assert row.body == _launch(engine, batch_id)
        assert row.timeout_milliseconds == 5000  # pg_net's own default: 0002 passed none
    finally:
        engine.dispose()
        migrate.upgrade("head", database_url)


def _relaunch_statement() -> str:
    """The statement docs/deploy.md schedules with pg_cron (the part between the $cron$ quotes)."""
    doc = (REPO_ROOT / "docs" / "deploy.md").read_text()
    block = doc.split("<!-- relaunch-sql:", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    return block.split("$cron$", 2)[1]


def test_the_documented_pg_cron_relaunch_resends_only_lost_launches_with_their_own_keys(fake_pg_net):
    engine = fake_pg_net
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO outbound_private.app_config (key, value) VALUES "
            "('edge_function_url', 'https://proj.supabase.co/functions/v1/launch-batch'), "
            "('launch_shared_secret', 's3cret')"
        ))
    client_id = _client(engine)
    with engine.begin() as conn:
        lost = factories.batch(conn, client_id, [], status="launched")
        recent = factories.batch(conn, client_id, [], status="launched")
        started = factories.batch(conn, client_id, [], status="launched")
        draft = factories.batch(conn, client_id, [])
        conn.execute(text("UPDATE batches SET launched_at = now() - interval '10 minutes' WHERE id IN (:a, :b, :d)"),
                     {"a": lost, "b": started, "d": draft})
        conn.execute(text("UPDATE batches SET flow_run_id = 'f1e2d3c4' WHERE id = :b"), {"b": started})
        conn.execute(text("DELETE FROM net.calls"))
    with engine.begin() as conn:
        conn.execute(text(_relaunch_statement()))
    with engine.connect() as conn:
        calls = conn.execute(text("SELECT url, body, headers, timeout_milliseconds FROM net.calls")).all()
    assert [tuple(c) for c in calls] == [(
        "https://proj.supabase.co/functions/v1/launch-batch",
        _launch(engine, lost),  # the same key as the original launch: Prefect dedupes one that got through
        {"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
        15_000,
    )]
    assert recent and draft  # launched too recently / never launched: left alone
