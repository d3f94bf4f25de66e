"""Migrations go up and down cleanly on real Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, pool, text

from shared import migrate
from shared.models import Base

pytestmark = pytest.mark.integration


def _tables(url):
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        return set(inspect(eng).get_table_names()) - {"alembic_version"}
    finally:
        eng.dispose()


def test_downgrade_to_base_and_back(database_url, engine):
    engine.dispose()
    assert _tables(database_url) == set(Base.metadata.tables)
    migrate.downgrade("base", database_url)
    assert _tables(database_url) == set()
    assert migrate.current(database_url) is None
    migrate.upgrade("head", database_url)
    assert _tables(database_url) == set(Base.metadata.tables)


def test_models_match_the_migrations(database_url, engine):
    """Autogenerate finds nothing to do: the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_head_is_applied(database_url, engine):
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == migrate.current(database_url)
