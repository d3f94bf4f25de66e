"""The launch trigger's secret in Supabase Vault (migration 0014), on real Postgres with a Vault stand-in shaped like Supabase's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from shared import migrate
from tests import factories
from tests.integration.test_trigger_migration import FAKE_PG_NET, _relaunch_statement

pytestmark = pytest.mark.integration

MIGRATION = Path(__file__).resolve().parents[2] / "shared" / "migrations" / "versions" / "0014_launch_secret_in_vault.py"
BEFORE_0014 = next(line.split('"')[1] for line in MIGRATION.read_text().splitlines() if line.startswith("down_revision"))
URL = "https://proj.supabase.co/functions/v1/launch-batch"

# supabase_vault's public surface: vault.secrets (stored encrypted), vault.create_secret(new_secret,
# new_name, new_description, new_key_id) -> uuid, and the vault.decrypted_secrets view that adds
# `decrypted_secret`. The "encryption" here is a reversible encoding: the column never holds the
# plaintext, the view alone gives it back, as on Supabase.
FAKE_VAULT = """
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text UNIQUE,
  description text NOT NULL DEFAULT '',
  secret text NOT NULL,
  key_id uuid,
  nonce bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION vault.create_secret(new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '',
                                    new_key_id uuid DEFAULT NULL) RETURNS uuid LANGUAGE sql AS $$
  INSERT INTO vault.secrets (secret, name, description, key_id)
  VALUES (encode(convert_to(reverse(new_secret), 'UTF8'), 'base64'), new_name, new_description, new_key_id)
  RETURNING id
$$;
CREATE VIEW vault.decrypted_secrets AS
  SELECT id, name, description, secret, reverse(convert_from(decode(secret, 'base64'), 'UTF8')) AS decrypted_secret,
         key_id, nonce, created_at, updated_at
  FROM vault.secrets;
"""


@pytest.fixture
def supabase_like(engine: Engine, database_url: str) -> Iterator[Engine]:
    """pg_net and Vault stand-ins, as on a Supabase project."""
    with engine.begin() as conn:
        conn.execute(text(FAKE_PG_NET))
        conn.execute(text(FAKE_VAULT))
    try:
        yield engine
    finally:
        engine.dispose()
        migrate.upgrade("head", database_url)  # after a test that downgraded
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA net CASCADE"))
            conn.execute(text("DROP SCHEMA vault CASCADE"))
            conn.execute(text("DELETE FROM outbound_private.app_config"))


def _config(engine: Engine, **values: str) -> None:
    with engine.begin() as conn:
        for key, value in values.items():
            conn.execute(text("INSERT INTO outbound_private.app_config (key, value) VALUES (:k, :v)"),
                         {"k": key, "v": value})


def _launch_and_read_bearer(engine: Engine) -> list[str]:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM net.calls"))
        client_id = conn.execute(text("SELECT id FROM clients WHERE name = 'vault'")).scalar() or factories.client(conn, "vault")
        batch_id = factories.batch(conn, client_id, [], status="launched")
    with engine.connect() as conn:
        calls = conn.execute(text("SELECT url, body, headers FROM net.calls")).all()
    assert all(c.url == URL and c.body["batch_id"] == batch_id for c in calls)
    return [c.headers["Authorization"] for c in calls]


def _app_config(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT key, value FROM outbound_private.app_config")).all())


def test_upgrade_moves_a_plaintext_secret_into_vault_and_the_trigger_reads_it_there(supabase_like, database_url):
    engine = supabase_like
    engine.dispose()
    migrate.downgrade(BEFORE_0014, database_url)
    _config(engine, edge_function_url=URL, launch_shared_secret="s3cret")  # as a pre-0014 deploy left it
    engine.dispose()
    migrate.upgrade("head", database_url)

    assert _app_config(engine) == {"edge_function_url": URL}  # the plaintext row is gone
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT secret FROM vault.secrets WHERE name = 'launch_shared_secret'")).scalar_one()
    assert stored != "s3cret" and "s3cret" not in stored
    assert _launch_and_read_bearer(engine) == ["Bearer s3cret"]


def test_vault_wins_over_app_config_and_a_rotation_there_takes_effect(supabase_like):
    engine = supabase_like
    _config(engine, edge_function_url=URL, launch_shared_secret="old-plaintext")
    with engine.begin() as conn:
        conn.execute(text("SELECT vault.create_secret('from-vault', 'launch_shared_secret')"))
    assert _launch_and_read_bearer(engine) == ["Bearer from-vault"]
    with engine.begin() as conn:  # rotated in the Supabase dashboard: the next launch uses it
        conn.execute(text("UPDATE vault.secrets SET secret = encode(convert_to(reverse('rotated'), 'UTF8'), 'base64'), "
                          "updated_at = now() WHERE name = 'launch_shared_secret'"))
    assert _launch_and_read_bearer(engine) == ["Bearer rotated"]


def test_the_url_may_live_in_vault_too(supabase_like):
    engine = supabase_like
    with engine.begin() as conn:
        conn.execute(text("SELECT vault.create_secret(:u, 'edge_function_url')"), {"u": URL})
        conn.execute(text("SELECT vault.create_secret('v', 'launch_shared_secret')"))
    assert _app_config(engine) == {}
    assert _launch_and_read_bearer(engine) == ["Bearer v"]


def test_downgrade_puts_a_vault_only_secret_back_where_0004_reads_it(supabase_like, database_url):
    engine = supabase_like
    _config(engine, edge_function_url=URL)
    with engine.begin() as conn:
        conn.execute(text("SELECT vault.create_secret('kept', 'launch_shared_secret')"))
    engine.dispose()
    migrate.downgrade(BEFORE_0014, database_url)
    assert _app_config(engine) == {"edge_function_url": URL, "launch_shared_secret": "kept"}
    assert _launch_and_read_bearer(engine) == ["Bearer kept"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regprocedure('outbound_private.launch_config(text)')")).scalar() is None


def test_only_the_owner_reads_the_secret(supabase_like):
    engine = supabase_like
    with engine.begin() as conn:
        conn.execute(text("SELECT vault.create_secret('x', 'launch_shared_secret')"))
    for role in ("outbound_tenant", "outbound_operator"):
        with engine.connect() as conn, pytest.raises(Exception, match="permission denied for (function launch_config|schema outbound_private)"):
            conn.execute(text(f"SET ROLE {role}"))
            conn.execute(text("SELECT outbound_private.launch_config('launch_shared_secret')"))
    with engine.connect() as conn, pytest.raises(Exception, match="unknown key"):
        conn.execute(text("SELECT outbound_private.launch_config('anything_else')"))


def test_plain_postgres_keeps_the_secret_in_app_config(engine, database_url):
    """No vault schema: upgrade leaves the row alone and the trigger reads it as before (pg_net present)."""
    with engine.begin() as conn:
        conn.execute(text(FAKE_PG_NET))
    try:
        engine.dispose()
        migrate.downgrade(BEFORE_0014, database_url)
        _config(engine, edge_function_url=URL, launch_shared_secret="plain")
        engine.dispose()
        migrate.upgrade("head", database_url)
        assert _app_config(engine) == {"edge_function_url": URL, "launch_shared_secret": "plain"}
        assert _launch_and_read_bearer(engine) == ["Bearer plain"]
    finally:
        engine.dispose()
        migrate.upgrade("head", database_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA net CASCADE"))
            conn.execute(text("DELETE FROM outbound_private.app_config"))


def test_the_documented_relaunch_reads_the_secret_from_vault(supabase_like):
    engine = supabase_like
    with engine.begin() as conn:
        conn.execute(text("SELECT vault.create_secret(:u, 'edge_function_url')"), {"u": URL})
        conn.execute(text("SELECT vault.create_secret('relaunch', 'launch_shared_secret')"))
        lost = factories.batch(conn, factories.client(conn), [], status="launched")
        conn.execute(text("UPDATE batches SET launched_at = now() - interval '10 minutes' WHERE id = :b"), {"b": lost})
        conn.execute(text("DELETE FROM net.calls"))
        conn.execute(text(_relaunch_statement()))
    with engine.connect() as conn:
        [call] = conn.execute(text("SELECT url, body, headers FROM net.calls")).all()
    assert (call.url, call.body["batch_id"], call.headers["Authorization"]) == (URL, lost, "Bearer relaunch")
