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

TEST_DATABASE = "outbound_test"


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
