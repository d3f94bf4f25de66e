"""Migrations go up and down cleanly on real Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, pool, text

from shared import migrate
from shared.models import Base
from shared.status import values
from tests.enum_columns import ENUM_COLUMNS, own_lists

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


def test_the_databases_checks_accept_exactly_each_enums_values(database_url, engine):
    """After `upgrade head`, each enum-backed column's CHECK (pg_constraint) lists the enum's values, no more."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT rel.relname, con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
            "JOIN pg_class rel ON rel.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = rel.relnamespace "
            "WHERE con.contype = 'c' AND ns.nspname = 'public'")).all()
    found = own_lists([tuple(row) for row in rows])
    assert set(found) == set(ENUM_COLUMNS)
    for key, enum in ENUM_COLUMNS.items():
        assert found[key] == frozenset(values(enum)), f"{key}: database {sorted(found[key])}, enum {values(enum)}"


def _columns(url, table):
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        return {c["name"] for c in inspect(eng).get_columns(table)}
    finally:
        eng.dispose()


def test_0016_step_variants_go_down_to_0015_and_back(database_url, engine):
    """0016 adds `step_variants` and `messages.variant`; its downgrade removes exactly those."""
    engine.dispose()
    assert "step_variants" in _tables(database_url) and "variant" in _columns(database_url, "messages")
    migrate.downgrade("0015", database_url)
    try:
        assert _tables(database_url) == set(Base.metadata.tables) - {"step_variants"}
        assert "variant" not in _columns(database_url, "messages")
    finally:
        migrate.upgrade("head", database_url)
    assert _tables(database_url) == set(Base.metadata.tables)
    assert {"variant", "subject_template", "body_template", "step", "campaign_id", "client_id"} <= \
        _columns(database_url, "step_variants")
