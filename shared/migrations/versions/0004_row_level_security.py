"""row-level security: the anon key reads and changes nothing; a per-client role sees one client; launches wait 15 s

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:30:00

Supabase serves every table in `public` over its REST API to whoever holds the anon key (it is
in every browser that loads the project), and its default privileges GRANT ALL on new tables to
`anon`, `authenticated` and `service_role`. Without row-level security anyone could read the
clients, leads and credit ledger, or run `UPDATE batches SET status = 'launched'` and start
Prefect runs. After this migration:

- The Supabase roles `anon`, `authenticated`, `service_role` exist (created NOLOGIN where they do
  not, so the same SQL runs on Supabase and on plain Postgres).
- Every table in `public`, `alembic_version` included (PostgREST would serve it like any other
  and nothing but the migrating owner has business reading or writing it), has row-level security
  enabled, and `anon`, `authenticated` and PUBLIC hold no privilege on it, on any sequence or on
  any function in `public`. Default privileges for tables, sequences and functions the migrating
  role creates later are revoked from them too, so a future table is not born readable by anon.
- TRUNCATE is not covered by row-level security: a statement trigger refuses it for any role
  that does not hold the table owner's privileges (in case someone re-grants ALL to anon).
- `service_role`: full access through policies (on Supabase it has BYPASSRLS anyway).
- `outbound_tenant` (NOLOGIN): SELECT on what a client may see (its own `clients` row, campaigns,
  leads, batches, work items, status history, enrichment attempts, credit ledger; never
  `enrichment_cache`, `alembic_version` or `outbound_private.app_config`), and every policy
  allows only rows whose client is `outbound_private.current_client_id()` (the transaction-local
  setting `outbound.client_id`), for reads and writes alike.
- `outbound_operator` (NOLOGIN): read and write every client's rows (staff console), nothing in
  `outbound_private`.
- Both are granted to the migrating role, so the application can, per transaction:
  `SET LOCAL ROLE outbound_tenant; SELECT set_config('outbound.client_id', '42', true);`.
- The workers keep connecting as the owner, which row-level security does not restrict (no FORCE):
  they must see every client's rows to work on them, and they never run a client's SQL.

`outbound_private.secure_table(table, tenant_column, tenant_visible)` does all of this for one
table; a later migration that adds a table calls it (tests/integration/test_row_level_security.py
walks every table in `public` and fails for one that is not secured).

It also re-creates the launch trigger's function (0002) with `timeout_milliseconds := 15000` on
`net.http_post`: pg_net's default 5 s is shorter than the Edge Function's own 12 s of tries on
Prefect, so a slow Prefect answer was recorded as a failed delivery while the run was created.

Downgrade drops the policies, triggers, functions and grants to the two outbound roles, disables
row-level security and restores 0002's trigger function. It leaves the roles (roles belong to the
whole cluster; other databases may use them) and does not re-grant anything to anon: re-opening
the tables to the anon key is never what a downgrade should do.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "outbound_private"
SUPABASE_ROLES = ("anon", "authenticated", "service_role")
TENANT_ROLE = "outbound_tenant"
OPERATOR_ROLE = "outbound_operator"
TENANT_SETTING = "outbound.client_id"
# pg_net's wait for the Edge Function; above the Edge Function's own 12 s of tries on Prefect.
LAUNCH_HTTP_TIMEOUT_MS = 15_000

# (table, column naming its client, visible to outbound_tenant). Order: no dependency.
TABLES = (
    ("clients", "id", True),
    ("campaigns", "client_id", True),
    ("leads", "client_id", True),
    ("batches", "client_id", True),
    ("work_items", "client_id", True),
    ("status_history", "client_id", True),
    ("enrichment_attempts", "client_id", True),
    ("credit_ledger", "client_id", True),
    ("enrichment_cache", "client_id", False),  # internal: provider output the client sees on its leads
    ("alembic_version", None, False),  # the migrating owner's only
)

CREATE_ROLES = "\n".join(
    f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
    CREATE ROLE {role} NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- created concurrently elsewhere in the cluster
END $$;"""
    for role in (*SUPABASE_ROLES, TENANT_ROLE, OPERATOR_ROLE)
)

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.current_client_id() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  -- NULL when unset: a policy comparing client_id to NULL matches no row.
  SELECT nullif(current_setting('{TENANT_SETTING}', true), '')::bigint
$$;
COMMENT ON FUNCTION {SCHEMA}.current_client_id() IS
  'The client outbound_tenant acts for in this transaction: set_config(''{TENANT_SETTING}'', <id>, true).';

CREATE OR REPLACE FUNCTION {SCHEMA}.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Row-level security does not apply to TRUNCATE: only roles holding the owner's rights may.
  IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
    RAISE EXCEPTION 'TRUNCATE %.% refused for role %: only the table owner may truncate',
      TG_TABLE_SCHEMA, TG_TABLE_NAME, current_user USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION {SCHEMA}.secure_table(tbl regclass, tenant_column text, tenant_visible boolean)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  EXECUTE format('REVOKE ALL ON %s FROM anon, authenticated, PUBLIC', tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS refuse_truncate ON %s', tbl);
  EXECUTE format('CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT '
                 'EXECUTE FUNCTION {SCHEMA}.refuse_truncate()', tbl);
  IF tenant_column IS NULL THEN
    RETURN;  -- owner only: no policy, so every other role sees and changes nothing
  END IF;
  EXECUTE format('DROP POLICY IF EXISTS service_role_all ON %s', tbl);
  EXECUTE format('CREATE POLICY service_role_all ON %s FOR ALL TO service_role USING (true) WITH CHECK (true)', tbl);
  EXECUTE format('DROP POLICY IF EXISTS operator_all ON %s', tbl);
  EXECUTE format('CREATE POLICY operator_all ON %s FOR ALL TO {OPERATOR_ROLE} USING (true) WITH CHECK (true)', tbl);
  EXECUTE format('DROP POLICY IF EXISTS tenant_own_rows ON %s', tbl);
  EXECUTE format('CREATE POLICY tenant_own_rows ON %s FOR ALL TO {TENANT_ROLE} '
                 'USING (%I = {SCHEMA}.current_client_id()) WITH CHECK (%I = {SCHEMA}.current_client_id())',
                 tbl, tenant_column, tenant_column);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO service_role, {OPERATOR_ROLE}', tbl);
  IF tenant_visible THEN
    EXECUTE format('GRANT SELECT ON %s TO {TENANT_ROLE}', tbl);
  END IF;
END $$;
COMMENT ON FUNCTION {SCHEMA}.secure_table(regclass, text, boolean) IS
  'Row-level security, revokes, truncate guard and policies for one public table (migration 0004). '
  'tenant_column: the column naming the client (NULL: owner only).';

CREATE OR REPLACE FUNCTION {SCHEMA}.unsecure_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('DROP POLICY IF EXISTS service_role_all ON %s', tbl);
  EXECUTE format('DROP POLICY IF EXISTS operator_all ON %s', tbl);
  EXECUTE format('DROP POLICY IF EXISTS tenant_own_rows ON %s', tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS refuse_truncate ON %s', tbl);
  EXECUTE format('REVOKE ALL ON %s FROM {TENANT_ROLE}, {OPERATOR_ROLE}', tbl);
  EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
END $$;
"""

PRIVILEGES = f"""
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM anon, authenticated, PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon, authenticated, PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM anon, authenticated, PUBLIC;
-- Supabase's own default privileges hand every new table to anon: not the ones we create.
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON FUNCTIONS FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {SCHEMA} FROM PUBLIC, anon, authenticated;
GRANT USAGE ON SCHEMA public TO service_role, {TENANT_ROLE}, {OPERATOR_ROLE};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO service_role, {OPERATOR_ROLE};
-- The tenant's policies call current_client_id(); nothing else in {SCHEMA} is granted (app_config stays private).
GRANT USAGE ON SCHEMA {SCHEMA} TO {TENANT_ROLE};
GRANT EXECUTE ON FUNCTION {SCHEMA}.current_client_id() TO {TENANT_ROLE};
-- The app's own connection switches to these per transaction (SET LOCAL ROLE).
GRANT {TENANT_ROLE} TO CURRENT_USER;
GRANT {OPERATOR_ROLE} TO CURRENT_USER;
"""

UNDO_PRIVILEGES = f"""
REVOKE {TENANT_ROLE} FROM CURRENT_USER;
REVOKE {OPERATOR_ROLE} FROM CURRENT_USER;
REVOKE ALL ON SCHEMA {SCHEMA} FROM {TENANT_ROLE};
REVOKE USAGE ON SCHEMA public FROM {TENANT_ROLE}, {OPERATOR_ROLE};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {OPERATOR_ROLE};
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
"""

# 0002's function with one change: pg_net waits LAUNCH_HTTP_TIMEOUT_MS for the Edge Function.
LAUNCH_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {SCHEMA}.batch_launched() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  payload jsonb;
  target_url text;
  shared_secret text;
BEGIN
  -- An UPDATE that leaves 'launched' as it was is not a new launch.
  IF NEW.status IS DISTINCT FROM 'launched'
     OR (TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM 'launched') THEN
    RETURN NULL;
  END IF;

  payload := jsonb_build_object(
    'batch_id', NEW.id,
    'idempotency_key', 'batch-' || NEW.id || '-launch-'
      || to_char(coalesce(NEW.launched_at, NEW.created_at) AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
  );

  IF EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'net' AND p.proname = 'http_post'
  ) THEN
    SELECT value INTO target_url FROM {SCHEMA}.app_config WHERE key = 'edge_function_url';
    SELECT value INTO shared_secret FROM {SCHEMA}.app_config WHERE key = 'launch_shared_secret';
    target_url := coalesce(nullif(target_url, ''), nullif(current_setting('app.edge_function_url', true), ''));
    shared_secret := coalesce(nullif(shared_secret, ''), nullif(current_setting('app.launch_shared_secret', true), ''));

    IF target_url IS NOT NULL AND shared_secret IS NOT NULL THEN
      -- Named arguments: pg_net's positional order has changed between versions. pg_net does not
      -- retry; a launch it loses is re-fired by the scheduled batch-sweep deployment.
      PERFORM net.http_post(
        url := target_url,
        body := payload,
        headers := jsonb_build_object(
          'Authorization', 'Bearer ' || shared_secret,
          'Content-Type', 'application/json'
        ),
        timeout_milliseconds := {LAUNCH_HTTP_TIMEOUT_MS}
      );
      RETURN NULL;
    END IF;
    RAISE WARNING 'batch % launched: pg_net is installed but edge_function_url / launch_shared_secret '
                  'are not configured ({SCHEMA}.app_config); sending pg_notify(''batch_launched'') instead', NEW.id;
  END IF;

  PERFORM pg_notify('batch_launched', payload::text);
  RETURN NULL;
END $$;
"""


def _existing(table: str) -> bool:
    return op.get_bind().exec_driver_sql(f"SELECT to_regclass('public.{table}') IS NOT NULL").scalar()


def _migration_0002():
    """0002's module (file names start with a digit, so not importable by name): its function text."""
    path = Path(__file__).with_name("0002_batch_launch_trigger.py")
    spec = importlib.util.spec_from_file_location("_outbound_migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def upgrade() -> None:
    op.execute(CREATE_ROLES)
    op.execute(FUNCTIONS)
    for table, tenant_column, visible in TABLES:
        if _existing(table):
            column = "NULL" if tenant_column is None else f"'{tenant_column}'"
            op.execute(f"SELECT {SCHEMA}.secure_table('public.{table}', {column}, {str(visible).lower()})")
    op.execute(PRIVILEGES)
    op.execute(LAUNCH_FUNCTION)


def downgrade() -> None:
    op.execute(_migration_0002().LAUNCH_FUNCTION)
    for table, _column, _visible in reversed(TABLES):
        if _existing(table):
            op.execute(f"SELECT {SCHEMA}.unsecure_table('public.{table}')")
    op.execute(UNDO_PRIVILEGES)
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.secure_table(regclass, text, boolean)")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.unsecure_table(regclass)")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.refuse_truncate()")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.current_client_id()")
