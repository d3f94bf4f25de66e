"""Row-level security (migration 0004) attacked on real Postgres: the anon key, a tenant reaching for another client.

A second database is set up the way Supabase sets one up (the roles anon, authenticated,
service_role; default privileges that GRANT ALL on every new table to them; and a blanket
`GRANT ALL ON ALL TABLES` again after migrating, as a careless dashboard click would), then every
table in `public` is read and written as anon. The walk over `public` also runs against the
ordinary test database, so a future migration that adds a table without securing it fails here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

from shared import migrate

pytestmark = pytest.mark.integration

ATTACKERS = ("anon", "authenticated")
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
# Tables with no client column of their own; every other table must carry client_id.
NOT_CLIENT_KEYED = {"alembic_version": "migrations bookkeeping, owner only", "clients": "its own id is the tenant"}

# What Supabase does to a new project's database before we ever connect (roles, default grants).
SUPABASE_DEFAULTS = """
DO $$ BEGIN
  CREATE ROLE anon NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE service_role NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
"""
REGRANT_EVERYTHING = """
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated;
"""


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def _connect(url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(_dsn(url))
    try:
        yield conn
    finally:
        conn.close()


def seed(conn: psycopg2.extensions.connection) -> dict[str, int]:
    """Two clients, each with a row in every client table; returns {'A': id, 'B': id}. Commits."""
    ids: dict[str, int] = {}
    with conn.cursor() as cur:
        for name in ("A", "B"):
            cur.execute("INSERT INTO clients (name, credit_balance) VALUES (%s, 100) RETURNING id", (f"client-{name}",))
            client = cur.fetchone()[0]
            ids[name] = client
            cur.execute("INSERT INTO campaigns (client_id, name) VALUES (%s, 'q4') RETURNING id", (client,))
            campaign = cur.fetchone()[0]
            cur.execute("INSERT INTO leads (client_id, campaign_id, email) VALUES (%s, %s, %s) RETURNING id",
                        (client, campaign, f"ceo@{name.lower()}.example"))
            lead = cur.fetchone()[0]
            cur.execute("INSERT INTO batches (client_id, campaign_id) VALUES (%s, %s) RETURNING id", (client, campaign))
            batch = cur.fetchone()[0]
            cur.execute("INSERT INTO work_items (batch_id, lead_id, client_id) VALUES (%s, %s, %s) RETURNING id",
                        (batch, lead, client))
            item = cur.fetchone()[0]
            cur.execute("INSERT INTO status_history (work_item_id, batch_id, client_id, to_status, attempt) "
                        "VALUES (%s, %s, %s, 'PENDING', 0)", (item, batch, client))
            cur.execute("INSERT INTO enrichment_attempts (work_item_id, lead_id, client_id, attempt, provider, outcome) "
                        "VALUES (%s, %s, %s, 1, 'apollo', 'hit')", (item, lead, client))
            cur.execute("INSERT INTO enrichment_cache (client_id, provider, lookup_key, result, confidence) "
                        "VALUES (%s, 'apollo', %s, %s, 0.9)", (client, f"ceo@{name.lower()}.example",
                                                              json.dumps({"title": f"CEO of {name}"})))
            cur.execute("INSERT INTO credit_ledger (client_id, delta, kind, idempotency_key) "
                        "VALUES (%s, 100, 'topup', 'pay-1')", (client,))
            # Outreach (0005): a mailbox, a one-step sequence, an enrollment, a message, a suppression.
            cur.execute("INSERT INTO mailboxes (client_id, from_address, smtp_host, smtp_port) "
                        "VALUES (%s, %s, 'smtp.example', 587) RETURNING id", (client, f"rep@{name.lower()}.example"))
            mailbox = cur.fetchone()[0]
            cur.execute("INSERT INTO sequences (campaign_id, client_id) VALUES (%s, %s)", (campaign, client))
            cur.execute("INSERT INTO sequence_steps (client_id, campaign_id, step, subject_template, body_template) "
                        "VALUES (%s, %s, 1, 'Hi', 'Hello')", (client, campaign))
            cur.execute("INSERT INTO enrollments (client_id, campaign_id, lead_id, mailbox_id, next_due_at, timezone, "
                        "timezone_source) VALUES (%s, %s, %s, %s, now(), 'UTC', 'fallback')",
                        (client, campaign, lead, mailbox))
            cur.execute("INSERT INTO messages (client_id, campaign_id, lead_id, step, mailbox_id, message_id, subject, "
                        "reserved_at) VALUES (%s, %s, %s, 1, %s, %s, 'Hi', now())",
                        (client, campaign, lead, mailbox, f"<m-{name}@example>"))
            cur.execute("INSERT INTO suppressions (client_id, kind, value, reason, source) "
                        "VALUES (%s, 'domain', %s, 'asked', 'manual')", (client, f"{name.lower()}.example"))
            # Replies (0007): a matched inbound reply and an IMAP cursor.
            cur.execute("SELECT id FROM messages WHERE client_id = %s", (client,))
            message = cur.fetchone()[0]
            cur.execute("INSERT INTO inbound_messages (client_id, source, mailbox_id, folder, imap_uid, dedupe_key, raw, "
                        "raw_bytes, message_pk, lead_id, campaign_id, match_kind, kind, evidence) VALUES "
                        "(%s, 'imap', %s, 'INBOX', 1, %s, 'From: x', 7, %s, %s, %s, 'message_id', 'human_reply', 'x')",
                        (client, mailbox, f"<r-{name}@example>", message, lead, campaign))
            cur.execute("INSERT INTO imap_cursors (mailbox_id, folder, client_id, uidvalidity, last_uid) "
                        "VALUES (%s, 'INBOX', %s, 1, 1)", (mailbox, client))
            # A/B variants (0016): a second subject and body for step 1.
            cur.execute("INSERT INTO step_variants (client_id, campaign_id, step, variant, subject_template, "
                        "body_template) SELECT %s, %s, step, 'B', 'Hey', 'B body' FROM sequence_steps "
                        "WHERE campaign_id = %s AND step = 1", (client, campaign, campaign))
            # The inbox (0015): an operator's verdict on the lead, decided on that reply.
            cur.execute("INSERT INTO lead_verdicts (client_id, lead_id, inbound_message_id, verdict, decided_by) "
                        "SELECT %s, %s, id, 'interested', 'ops@agency.test' FROM inbound_messages WHERE client_id = %s",
                        (client, lead, client))
            cur.execute("INSERT INTO console_users (email, password_hash, role, client_id) "
                        "VALUES (%s, '$argon2id$x', 'viewer', %s)", (f"viewer@{name.lower()}.test", client))
    conn.commit()
    return ids


# Tables no role but the migrating owner may touch (secure_table with no tenant column: no policy at all).
OWNER_ONLY = {"alembic_version", "console_users"}


def public_tables(conn: psycopg2.extensions.connection) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        return [r[0] for r in cur.fetchall()]


def snapshot(conn: psycopg2.extensions.connection) -> dict[str, list[str]]:
    """Every row of every public table, as the owner sees it."""
    out: dict[str, list[str]] = {}
    with conn.cursor() as cur:
        for table in public_tables(conn):
            cur.execute(f"SELECT row_to_json(t)::text FROM public.{table} t")
            out[table] = sorted(r[0] for r in cur.fetchall())
    conn.commit()
    return out


def _attempt(cur, sql: str, params: tuple = ()) -> str | int:
    """Run one statement in a savepoint: its row count, or the error message it failed with."""
    cur.execute("SAVEPOINT attempt")
    try:
        cur.execute(sql, params)
        return cur.rowcount
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT attempt")
        return str(exc).splitlines()[0]


def attack_every_table(conn: psycopg2.extensions.connection, role: str) -> dict[str, dict[str, str | int]]:
    """Read, insert (a copy of a real row), update, delete and truncate every public table as `role`."""
    rows: dict[str, str | None] = {}
    with conn.cursor() as cur:
        for table in public_tables(conn):
            cur.execute(f"SELECT row_to_json(t)::text FROM public.{table} t LIMIT 1")
            found = cur.fetchone()
            rows[table] = found[0] if found else None
    conn.commit()
    results: dict[str, dict[str, str | int]] = {}
    with conn.cursor() as cur:
        cur.execute(f"SET LOCAL ROLE {role}")
        for table, row in rows.items():
            assert row is not None, f"seed left {table} empty: the attack would prove nothing"
            cur.execute(f"SELECT attname FROM pg_attribute WHERE attrelid = 'public.{table}'::regclass "
                        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum LIMIT 1")
            first_column = cur.fetchone()[0]
            got: dict[str, str | int] = {}
            read = _attempt(cur, f"SELECT * FROM public.{table}")
            got["select"] = len(cur.fetchall()) if isinstance(read, int) else read
            got["insert"] = _attempt(cur, f"INSERT INTO public.{table} SELECT * FROM json_populate_record(NULL::public.{table}, %s)",
                                     (row,))
            got["update"] = _attempt(cur, f"UPDATE public.{table} SET {first_column} = {first_column}")
            got["delete"] = _attempt(cur, f"DELETE FROM public.{table}")
            got["truncate"] = _attempt(cur, f"TRUNCATE public.{table} CASCADE")
            results[table] = got
        got = {"launch": _attempt(cur, "UPDATE public.batches SET status = 'launched'")}
        results["batches: UPDATE batches SET status='launched'"] = got
    conn.commit()  # whatever got through stays, so the snapshot below would show it
    return results


@pytest.fixture
def supabase_like_url(database_url: str) -> Iterator[str]:
    """A fresh database prepared like a Supabase project's, then migrated to head."""
    name = f"outbound_rls_{os.getpid()}"
    admin = create_engine(make_url(database_url).set(database="postgres"), poolclass=pool.NullPool,
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    with _connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute(SUPABASE_DEFAULTS)
        conn.commit()
    migrate.upgrade("head", url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _denied(outcome: str | int) -> bool:
    return isinstance(outcome, str) and "permission denied" in outcome


@pytest.mark.parametrize("role", ATTACKERS)
def test_anon_reads_nothing_and_changes_nothing_on_a_supabase_like_database(supabase_like_url, role):
    with _connect(supabase_like_url) as conn:
        seed(conn)
        before = snapshot(conn)
        assert set(before) >= {"clients", "leads", "batches", "credit_ledger", "alembic_version"}

        # As migrated: Supabase's default grants were revoked, so every statement is refused outright.
        for table, outcome in attack_every_table(conn, role).items():
            assert all(_denied(v) for v in outcome.values()), f"{role} on {table}: {outcome}"
        assert snapshot(conn) == before

        # Someone re-grants ALL on every table: row-level security still shows and changes nothing,
        # and TRUNCATE (which RLS does not cover) is refused by the guard trigger.
        with conn.cursor() as cur:
            cur.execute(REGRANT_EVERYTHING)
        conn.commit()
        for table, outcome in attack_every_table(conn, role).items():
            for action, result in outcome.items():
                if action in ("select", "update", "delete", "launch"):
                    assert result == 0, f"{role} {action} on {table}: {result}"
                elif action == "insert":
                    assert isinstance(result, str) and "row-level security" in result, f"{role} insert {table}: {result}"
                else:
                    assert isinstance(result, str) and "only the table owner may truncate" in result, (
                        f"{role} truncate {table}: {result}")
        assert snapshot(conn) == before


def test_new_tables_are_not_born_readable_by_anon(supabase_like_url):
    """Supabase's default privileges would grant a future table to anon; the migration revoked them."""
    with _connect(supabase_like_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE public.added_later (id bigint, client_id bigint)")
        cur.execute("CREATE SEQUENCE public.added_later_seq")
        cur.execute("CREATE FUNCTION public.added_later_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        for role in ATTACKERS:
            for privilege in PRIVILEGES:
                cur.execute("SELECT has_table_privilege(%s, 'public.added_later', %s)", (role, privilege))
                assert cur.fetchone()[0] is False, f"{role} has {privilege} on a new table"
            cur.execute("SELECT has_sequence_privilege(%s, 'public.added_later_seq', 'USAGE')", (role,))
            assert cur.fetchone()[0] is False
            cur.execute("SELECT has_function_privilege(%s, 'public.added_later_fn()', 'EXECUTE')", (role,))
            assert cur.fetchone()[0] is False, f"{role} may execute a new function in public"
        conn.rollback()


# -- the walk: every table in public, on the ordinary test database ------------------------------

def _secured_problems(conn: psycopg2.extensions.connection, *, end_transaction: bool = True) -> list[str]:
    problems: list[str] = []
    with conn.cursor() as cur:
        for table in public_tables(conn):
            cur.execute("SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", (f"public.{table}",))
            if not cur.fetchone()[0]:
                problems.append(f"{table}: row-level security is off")
            for role in ATTACKERS:
                for privilege in PRIVILEGES:
                    cur.execute("SELECT has_table_privilege(%s, %s, %s)", (role, f"public.{table}", privilege))
                    if cur.fetchone()[0]:
                        problems.append(f"{table}: {role} has {privilege}")
            cur.execute("SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
                        "WHERE c.oid = %s::regclass AND a.grantee = 0", (f"public.{table}",))
            if cur.fetchone()[0]:
                problems.append(f"{table}: PUBLIC holds a privilege")
            cur.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = 'refuse_truncate'",
                        (f"public.{table}",))
            if not cur.fetchone()[0]:
                problems.append(f"{table}: no refuse_truncate trigger")
            cur.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'client_id' "
                        "AND NOT attisdropped", (f"public.{table}",))
            keyed = bool(cur.fetchone()[0])
            if not keyed and table not in NOT_CLIENT_KEYED:
                problems.append(f"{table}: no client_id column; decide who may see it")
            if table not in OWNER_ONLY:
                cur.execute("SELECT array_agg(policyname ORDER BY policyname) FROM pg_policies "
                            "WHERE schemaname = 'public' AND tablename = %s", (table,))
                policies = cur.fetchone()[0] or []
                if policies != ["operator_all", "service_role_all", "tenant_own_rows"]:
                    problems.append(f"{table}: policies {policies}")
        cur.execute("SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = 'public'")
        for (function,) in cur.fetchall():
            for role in ATTACKERS:
                cur.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function))
                if cur.fetchone()[0]:
                    problems.append(f"function {function}: {role} may execute it")
    if end_transaction:
        conn.rollback()
    return problems


def test_every_public_table_is_secured(database_url, engine):
    """Fails for a table a future migration adds without `SELECT outbound_private.secure_table(...)`."""
    with _connect(database_url) as conn:
        assert _secured_problems(conn) == []


def test_the_walk_catches_an_unsecured_table_and_secure_table_fixes_it(database_url, engine):
    with _connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE public.added_later (id bigint, client_id bigint NOT NULL)")
        cur.execute("GRANT SELECT ON public.added_later TO anon")
        problems = [p for p in _secured_problems(conn, end_transaction=False) if p.startswith("added_later")]
        assert "added_later: row-level security is off" in problems
        assert "added_later: anon has SELECT" in problems
        cur.execute("SELECT outbound_private.secure_table('public.added_later', 'client_id', true)")
        assert [p for p in _secured_problems(conn, end_transaction=False) if p.startswith("added_later")] == []
        conn.rollback()


# -- outbound_tenant: one client's rows, nothing else ---------------------------------------------

@contextmanager
def _as_tenant(conn: psycopg2.extensions.connection, client_id: int | None) -> Iterator:
    with conn.cursor() as cur:
        cur.execute("SET LOCAL ROLE outbound_tenant")
        if client_id is not None:
            cur.execute("SELECT set_config('outbound.client_id', %s, true)", (str(client_id),))
        yield cur
    conn.rollback()


def test_tenant_sees_only_its_own_rows_in_every_table(database_url, engine):
    with _connect(database_url) as conn:
        ids = seed(conn)
        a, b = ids["A"], ids["B"]
        tables = public_tables(conn)
        visible = []
        with _as_tenant(conn, a) as cur:
            for table in tables:
                outcome = _attempt(cur, f"SELECT * FROM public.{table}")
                if isinstance(outcome, str):
                    assert "permission denied" in outcome, f"{table}: {outcome}"
                    continue
                column = [d.name for d in cur.description].index("id" if table == "clients" else "client_id")
                assert {r[column] for r in cur.fetchall()} == {a}, f"tenant A sees other clients in {table}"
                visible.append(table)
            assert _denied(_attempt(cur, "SELECT * FROM outbound_private.app_config"))
            # A tenant may not write at all; in particular not a row for another client.
            assert _denied(_attempt(cur, "INSERT INTO leads (client_id, email) VALUES (%s, 'x@b.example')", (b,)))
            assert _denied(_attempt(cur, "UPDATE batches SET status = 'launched'"))
        assert set(visible) == {"clients", "campaigns", "leads", "batches", "work_items", "status_history",
                                "enrichment_attempts", "credit_ledger", "mailboxes", "sequences", "sequence_steps",
                                "enrollments", "messages", "suppressions", "inbound_messages", "lead_verdicts",
                                "step_variants"}

        with _as_tenant(conn, None) as cur:  # no client set: nothing at all
            cur.execute("SELECT count(*) FROM leads")
            assert cur.fetchone()[0] == 0


def test_tenant_policies_refuse_another_clients_row_even_with_write_grants(database_url, engine):
    """The policy itself, not only the missing grant: were INSERT/UPDATE granted, B's rows stay out of reach."""
    with _connect(database_url) as conn:
        ids = seed(conn)
        a, b = ids["A"], ids["B"]
        with conn.cursor() as cur:
            cur.execute("GRANT INSERT, UPDATE ON leads TO outbound_tenant")  # rolled back below
            cur.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO outbound_tenant")
        with _as_tenant(conn, a) as cur:
            refused = _attempt(cur, "INSERT INTO leads (client_id, email) VALUES (%s, 'x@b.example')", (b,))
            assert "row-level security" in str(refused)
            assert _attempt(cur, "INSERT INTO leads (client_id, email) VALUES (%s, 'x@a.example')", (a,)) == 1
            moved = _attempt(cur, "UPDATE leads SET client_id = %s WHERE client_id = %s", (b, a))
            assert "row-level security" in str(moved)
            assert _attempt(cur, "UPDATE leads SET title = 'hijacked' WHERE client_id = %s", (b,)) == 0
        with conn.cursor() as cur:
            cur.execute("SELECT has_table_privilege('outbound_tenant', 'leads', 'INSERT')")
            assert cur.fetchone()[0] is False  # the grant above was rolled back


def test_operator_sees_every_client_but_not_the_private_config(database_url, engine):
    with _connect(database_url) as conn:
        seed(conn)
        with conn.cursor() as cur:
            cur.execute("SET LOCAL ROLE outbound_operator")
            cur.execute("SELECT count(DISTINCT client_id) FROM leads")
            assert cur.fetchone()[0] == 2
            assert _denied(_attempt(cur, "SELECT * FROM outbound_private.app_config"))
            assert _denied(_attempt(cur, "SELECT * FROM alembic_version"))
        conn.rollback()
