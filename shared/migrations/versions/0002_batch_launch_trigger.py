"""batch launch trigger: a batch that becomes 'launched' asks for a flow run

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 23:30:00

When `batches.status` becomes 'launched' (on INSERT, or on an UPDATE from any other status):

- on Supabase, where the pg_net extension gives us `net.http_post`, the trigger POSTs
  `{"batch_id": N, "idempotency_key": "batch-N-launch-<launch time>"}` to the `launch-batch` Edge
  Function with `Authorization: Bearer <shared secret>`; the Edge Function creates the Prefect
  flow run;
- everywhere else (local Postgres, the embedded server, tests) it sends
  `pg_notify('batch_launched', <same JSON>)`, which `outbound bridge` listens for.

Where the URL and the secret live: the table `outbound_private.app_config` (keys
`edge_function_url`, `launch_shared_secret`) in a schema of its own, so Supabase's REST API (which
exposes `public`) never serves the secret; when a key is missing there the trigger reads the GUC
`app.edge_function_url` / `app.launch_shared_secret` (`ALTER DATABASE ... SET ...`), for hosts
that allow custom settings. If pg_net is installed but either value is missing the trigger falls
back to pg_notify with a WARNING rather than dropping the launch.

The idempotency key names one launch event, not just the batch: `<launch time>` is
`coalesce(launched_at, created_at)` in UTC as `YYYYMMDDHH24MISSUS` (microseconds), e.g.
`batch-7-launch-20261122093015123456`. The same launch delivered again (pg_net retry, the bridge's
sweep) carries the same key, so Prefect returns the run it already made; a batch launched again
(after 'cancelled', with a new launched_at) or a batch id reused after a database reset gets a new
key, so Prefect does not hand back a run from an earlier launch. `orchestrator.bridge.idempotency_key`
builds the same string in Python.

The trigger never raises: a launch that cannot be delivered must not roll back the user's UPDATE.
pg_net itself only sends after COMMIT, and pg_notify is delivered on COMMIT, so a rolled-back
launch never starts a run.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "outbound_private"
CHANNEL = "batch_launched"

CREATE_SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
-- Only the owner (the migrating role) and SECURITY DEFINER functions read it: it holds a secret.
REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;
CREATE TABLE {SCHEMA}.app_config (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON {SCHEMA}.app_config FROM PUBLIC;
COMMENT ON TABLE {SCHEMA}.app_config IS
  'Settings for database-side integrations. Keys: edge_function_url, launch_shared_secret (see migration 0002).';
"""

# One function so that the three delivery decisions (pg_net? configured? else notify) live together.
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
      -- Named arguments: pg_net's positional order has changed between versions.
      PERFORM net.http_post(
        url := target_url,
        body := payload,
        headers := jsonb_build_object(
          'Authorization', 'Bearer ' || shared_secret,
          'Content-Type', 'application/json'
        )
      );
      RETURN NULL;
    END IF;
    RAISE WARNING 'batch % launched: pg_net is installed but edge_function_url / launch_shared_secret '
                  'are not configured ({SCHEMA}.app_config); sending pg_notify(''{CHANNEL}'') instead', NEW.id;
  END IF;

  PERFORM pg_notify('{CHANNEL}', payload::text);
  RETURN NULL;
END $$;
"""

CREATE_TRIGGER = f"""
CREATE TRIGGER batches_launched
AFTER INSERT OR UPDATE OF status ON public.batches
FOR EACH ROW WHEN (NEW.status = 'launched')
EXECUTE FUNCTION {SCHEMA}.batch_launched();
"""


def upgrade() -> None:
    op.execute(CREATE_SCHEMA)
    op.execute(LAUNCH_FUNCTION)
    op.execute(CREATE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS batches_launched ON public.batches")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.batch_launched()")
    op.execute(f"DROP TABLE IF EXISTS {SCHEMA}.app_config")
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA}")
