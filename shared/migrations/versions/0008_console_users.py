"""console users: operators (every client) and client viewers (one client), argon2 hashes, session epochs

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 13:00:00

- `console_users`: who may sign in to the operator console. An operator has no client and sees
  every client (the console switches to `outbound_operator` per transaction); a viewer belongs to
  exactly one client and the console switches to `outbound_tenant` with that client set, so
  Postgres's row-level security, not a WHERE clause, decides what a viewer sees. The CHECK makes
  the two shapes the only ones: an operator with a client, or a viewer without one, is refused.
- `password_hash` is argon2id (PHC string); the plain password is never stored or logged.
- `session_epoch`: every session cookie carries it; signing out, a password change or disabling
  the user bumps it, which ends every session of that user at once (cookies are otherwise valid
  until they expire).
- `failed_logins` / `locked_until`: repeated wrong passwords lock the account for a while.

Row-level security as in 0004, owner only (like `alembic_version`): neither `outbound_tenant` nor
`outbound_operator` can read a password hash, even from inside a console transaction. Sign-in and
session checks read it with the application's own role, before any role switch.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("client_id", sa.BigInteger(), sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=True),
        sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("disabled_at", TS, nullable=True),
        sa.Column("last_login_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("role IN ('operator', 'viewer')", name="ck_console_users_role"),
        sa.CheckConstraint("(role = 'operator') = (client_id IS NULL)", name="ck_console_users_role_client"),
        sa.CheckConstraint("email = lower(btrim(email)) AND email <> ''", name="ck_console_users_email_normal"),
    )
    op.create_index("uq_console_users_email", "console_users", ["email"], unique=True)
    op.execute("SELECT outbound_private.secure_table('public.console_users', NULL, false)")
    op.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon, authenticated, PUBLIC")


def downgrade() -> None:
    op.execute("SELECT outbound_private.unsecure_table('public.console_users')")
    op.drop_table("console_users")
