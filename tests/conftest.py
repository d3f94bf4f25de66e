"""Test fixtures: a real Postgres (embedded unless TEST_DATABASE_URL says otherwise), migrated once."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from shared import db, embedded, migrate
from shared.settings import get_settings, reset_settings

# One database per pytest process, so parallel runs (or a crashed one) never trip over each other.
TEST_DATABASE = f"outbound_test_{os.getpid()}"


def _drop_orphans(conn) -> None:
    import psutil

    for name in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE 'outbound\\_test\\_%'")).scalars():
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _test_url() -> str:
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return db.normalize_url(explicit)
    # Never run tests against the user's DATABASE_URL: they wipe tables.
    os.environ.pop("DATABASE_URL", None)
    reset_settings()
    base = embedded.start(get_settings().data_dir)
    admin = create_engine(base, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        _drop_orphans(conn)
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEST_DATABASE}"))
    admin.dispose()
    return make_url(base).set(database=TEST_DATABASE).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url() -> str:
    url = _test_url()
    os.environ["DATABASE_URL"] = url
    reset_settings()
    migrate.upgrade("head", url)
    yield url
    db.dispose_engines()
    if not os.environ.get("TEST_DATABASE_URL"):
        admin = create_engine(db.database_url().replace(TEST_DATABASE, "postgres"), poolclass=pool.NullPool,
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def engine(database_url):
    """A clean database for each test (TRUNCATE, since concurrency tests need committed rows)."""
    eng = db.get_engine(database_url)
    with eng.begin() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalars().all()
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    return eng


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server for flow tests (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def env(monkeypatch):
    """Set environment variables for one test and make settings see them."""
    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        reset_settings()

    yield set_env
    monkeypatch.undo()
    reset_settings()
