"""launch secret in Supabase Vault: the batch-launch trigger reads its URL and bearer secret from Vault when the database has one

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 11:40:00

- `outbound_private.launch_config(key)` (SECURITY DEFINER, executable by the owner only): the
  value of `edge_function_url` / `launch_shared_secret` from, in order, Supabase Vault
  (`vault.decrypted_secrets`, when that view exists), `outbound_private.app_config` (plain
  Postgres, as before), the `app.<key>` setting. The trigger (0002/0004's `batch_launched()`) and
  the pg_cron relaunch in docs/deploy.md call it, so the secret is read in one place.
- On a database with Vault (`vault.create_secret` exists, as on every Supabase project), upgrade
  moves a `launch_shared_secret` found in plaintext in `app_config` into Vault (unless Vault
  already has one by that name) and deletes the plaintext row. Plain Postgres is left as it was.
- Downgrade copies a Vault-only `launch_shared_secret` back into `app_config` (0004's trigger
  reads only that table), restores 0004's trigger function and drops `launch_config`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SCHEMA = "outbound_private"
LAUNCH_KEYS = ("edge_function_url", "launch_shared_secret")
SECRET_KEY = "launch_shared_secret"


def _migration_0004():
    """0004's module (file names start with a digit): its trigger function text and timeout."""
    path = Path(__file__).with_name("0004_row_level_security.py")
    spec = importlib.util.spec_from_file_location("_outbound_migration_0004", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


LAUNCH_CONFIG = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.launch_config(config_key text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  found_value text;
BEGIN
  IF config_key NOT IN {LAUNCH_KEYS!r} THEN
    RAISE EXCEPTION 'launch_config: unknown key % (expected one of {", ".join(LAUNCH_KEYS)})', config_key;
  END IF;
  -- Supabase Vault: decrypted only here, never stored in plaintext. Dynamic SQL: plain Postgres has no vault schema.
  IF to_regclass('vault.decrypted_secrets') IS NOT NULL THEN
    EXECUTE 'SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1 ORDER BY updated_at DESC NULLS LAST LIMIT 1'
      INTO found_value USING config_key;
  END IF;
  IF nullif(found_value, '') IS NULL THEN
    SELECT value INTO found_value FROM {SCHEMA}.app_config WHERE key = config_key;
  END IF;
  RETURN coalesce(nullif(found_value, ''), nullif(current_setting('app.' || config_key, true), ''));
END $$;
REVOKE ALL ON FUNCTION {SCHEMA}.launch_config(text) FROM PUBLIC;
"""

MOVE_TO_VAULT = f"""
DO $$
DECLARE
  plain text;
  in_vault boolean;
BEGIN
  IF to_regprocedure('vault.create_secret(text, text, text, uuid)') IS NULL THEN
    RETURN;  -- plain Postgres: app_config stays where the secret lives
  END IF;
  SELECT value INTO plain FROM {SCHEMA}.app_config WHERE key = '{SECRET_KEY}';
  IF nullif(plain, '') IS NULL THEN
    RETURN;
  END IF;
  EXECUTE 'SELECT EXISTS (SELECT 1 FROM vault.secrets WHERE name = $1)' INTO in_vault USING '{SECRET_KEY}';
  IF NOT in_vault THEN
    EXECUTE 'SELECT vault.create_secret($1, $2, $3)'
      USING plain, '{SECRET_KEY}', 'Bearer secret of the batch-launch trigger (outbound migration 0014)';
  END IF;
  DELETE FROM {SCHEMA}.app_config WHERE key = '{SECRET_KEY}';
END $$;
"""

BACK_FROM_VAULT = f"""
DO $$
DECLARE
  kept text;
BEGIN
  IF to_regclass('vault.decrypted_secrets') IS NULL
     OR EXISTS (SELECT 1 FROM {SCHEMA}.app_config WHERE key = '{SECRET_KEY}') THEN
    RETURN;
  END IF;
  EXECUTE 'SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1 ORDER BY updated_at DESC NULLS LAST LIMIT 1'
    INTO kept USING '{SECRET_KEY}';
  IF nullif(kept, '') IS NOT NULL THEN
    INSERT INTO {SCHEMA}.app_config (key, value) VALUES ('{SECRET_KEY}', kept);
  END IF;
END $$;
"""


def launch_function() -> str:
    """0004's trigger function, reading its two settings through launch_config()."""
    text = _migration_0004().LAUNCH_FUNCTION
    reads = (
        f"    SELECT value INTO target_url FROM {SCHEMA}.app_config WHERE key = 'edge_function_url';\n"
        f"    SELECT value INTO shared_secret FROM {SCHEMA}.app_config WHERE key = 'launch_shared_secret';\n"
        f"    target_url := coalesce(nullif(target_url, ''), nullif(current_setting('app.edge_function_url', true), ''));\n"
        f"    shared_secret := coalesce(nullif(shared_secret, ''), nullif(current_setting('app.launch_shared_secret', true), ''));\n"
    )
    assert reads in text, "0004's trigger function changed: update 0014's rewrite of its reads"
    text = text.replace(reads, (
        "    -- Vault first (Supabase), then app_config (plain Postgres), then app.* settings: launch_config().\n"
        f"    target_url := {SCHEMA}.launch_config('edge_function_url');\n"
        f"    shared_secret := {SCHEMA}.launch_config('launch_shared_secret');\n"
    ))
    return text.replace("are not configured ({SCHEMA}.app_config)".replace("{SCHEMA}", SCHEMA),
                        f"are not configured (Vault or {SCHEMA}.app_config)")


def upgrade() -> None:
    op.execute(LAUNCH_CONFIG)
    op.execute(launch_function())
    op.execute(MOVE_TO_VAULT)


def downgrade() -> None:
    op.execute(BACK_FROM_VAULT)
    op.execute(_migration_0004().LAUNCH_FUNCTION)
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.launch_config(text)")
