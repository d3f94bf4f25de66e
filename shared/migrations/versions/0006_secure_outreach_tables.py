"""secure the outreach tables: row-level security, no anon access, tenant and operator policies (as 0004)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 11:15:00

0005 (outreach) was written alongside 0004 (row-level security), so its tables were created
without `outbound_private.secure_table`. Every one of them carries client_id and is the client's
own business (its mailboxes hold the *name* of a password secret, never the password), so each is
visible to `outbound_tenant` for its own client, like campaigns and leads.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SCHEMA = "outbound_private"
# (table, column naming its client, visible to outbound_tenant)
TABLES = (
    ("mailboxes", "client_id", True),
    ("sequences", "client_id", True),
    ("sequence_steps", "client_id", True),
    ("enrollments", "client_id", True),
    ("messages", "client_id", True),
    ("suppressions", "client_id", True),
)


def upgrade() -> None:
    for table, column, visible in TABLES:
        op.execute(f"SELECT {SCHEMA}.secure_table('public.{table}', '{column}', {str(visible).lower()})")
    # New identity sequences and any function 0005 added in public: the same rules as 0004.
    op.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon, authenticated, PUBLIC")
    op.execute("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM anon, authenticated, PUBLIC")
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO service_role, outbound_operator")


def downgrade() -> None:
    for table, _column, _visible in reversed(TABLES):
        op.execute(f"SELECT {SCHEMA}.unsecure_table('public.{table}')")
