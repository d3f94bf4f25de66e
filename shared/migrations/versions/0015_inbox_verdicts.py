"""the inbox: operators' verdicts on leads, reclassified replies, paging newest first (issue 19)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 02:30:00

- `lead_verdicts`: an operator's verdict on a lead after reading its reply (`interested`,
  `not_interested`, `wrong_person`), who decided (a console user's email, or `cli`), when, an
  optional note and the received message it was decided on. Rows are only added: the newest one
  is the lead's current verdict, the older ones are its story. The lead and the message carry the
  client (composite FKs, as every tenant table), so a verdict never joins two clients; deleting
  the message keeps the verdict (its `inbound_message_id` becomes NULL).
- Row-level security as in 0004/0006: `outbound_tenant` reads its own client's verdicts and
  writes none; `outbound_operator` reads and writes every client's.
- `inbound_messages.classified_kind`, `reclassified_by`, `reclassified_at`: an operator changed
  the stored class; `classified_kind` keeps what the classifier said (all three set together).
- `inbound_messages` gets UNIQUE (id, client_id) (the verdicts' FK target) and an index on
  (received_at, id), the inbox's keyset order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)
VERDICTS = "('interested', 'not_interested', 'wrong_person')"
KINDS = "('human_reply', 'auto_reply', 'unsubscribe_request', 'hard_bounce', 'soft_bounce', 'complaint')"


def upgrade() -> None:
    op.add_column("inbound_messages", sa.Column("classified_kind", sa.Text()))
    op.add_column("inbound_messages", sa.Column("reclassified_by", sa.Text()))
    op.add_column("inbound_messages", sa.Column("reclassified_at", TS))
    op.create_check_constraint(
        "reclassified_complete", "inbound_messages",
        "(reclassified_by IS NULL) = (reclassified_at IS NULL) AND (reclassified_by IS NULL) = (classified_kind IS NULL) "
        f"AND (classified_kind IS NULL OR classified_kind IN {KINDS})")
    op.create_unique_constraint("uq_inbound_messages_id_client", "inbound_messages", ["id", "client_id"])
    op.create_index("ix_inbound_messages_inbox", "inbound_messages", ["received_at", "id"])
    op.create_table(
        "lead_verdicts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("client_id", sa.BigInteger(), sa.ForeignKey("clients.id", ondelete="CASCADE",
                                                               name="fk_lead_verdicts_client_id_clients"),
                  nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("inbound_message_id", sa.BigInteger()),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=False),
        sa.Column("decided_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                                name="fk_lead_verdicts_lead_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["inbound_message_id", "client_id"], ["inbound_messages.id", "inbound_messages.client_id"],
                                name="fk_lead_verdicts_inbound_client", ondelete="SET NULL (inbound_message_id)"),
        sa.CheckConstraint(f"verdict IN {VERDICTS}", name=op.f("ck_lead_verdicts_verdict")),
        sa.CheckConstraint("decided_by <> ''", name=op.f("ck_lead_verdicts_decided_by_named")),
        sa.CheckConstraint("note IS NULL OR char_length(note) <= 1000", name=op.f("ck_lead_verdicts_note_bounded")),
    )
    op.create_index("ix_lead_verdicts_lead_decided", "lead_verdicts", ["lead_id", "decided_at"])
    op.create_index("ix_lead_verdicts_inbound_message_id", "lead_verdicts", ["inbound_message_id"])
    op.execute("SELECT outbound_private.secure_table('public.lead_verdicts', 'client_id', true)")
    op.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon, authenticated, PUBLIC")
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO service_role, outbound_operator")


def downgrade() -> None:
    op.execute("SELECT outbound_private.unsecure_table('public.lead_verdicts')")
    op.drop_table("lead_verdicts")
    op.drop_index("ix_inbound_messages_inbox", table_name="inbound_messages")
    op.drop_constraint("uq_inbound_messages_id_client", "inbound_messages", type_="unique")
    op.drop_constraint(op.f("ck_inbound_messages_reclassified_complete"), "inbound_messages", type_="check")
    op.drop_column("inbound_messages", "reclassified_at")
    op.drop_column("inbound_messages", "reclassified_by")
    op.drop_column("inbound_messages", "classified_kind")
