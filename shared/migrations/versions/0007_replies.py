"""replies: inbound messages stored before acting, IMAP cursors, soft-bounce counts, reply settings, shield state

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 11:00:00

- `inbound_messages`: every received message (webhook or IMAP) as a bounded raw copy, stored
  BEFORE anything is acted on. Unique per client on its dedupe key (Message-ID, else a content
  hash; NULLS NOT DISTINCT so unmatched webhook mail, which has no client yet, dedupes too) and
  per provider on the webhook id. It keeps what matching found (message, lead, campaign, by which
  key), the class with its evidence and status code, and when and how it was processed.
- `imap_cursors`: per (mailbox, folder) the UIDVALIDITY and last UID recovery has recorded.
- `enrollments.soft_bounces`: how often this lead's sends soft-bounced (retried up to N, then hard).
- `sequences.stop_company_on_reply`, `sequences.auto_reply_wait_days`: per-campaign reply policy.
- `campaigns.status_reason`, `campaigns.paused_at`: why and since when a campaign is paused
  (the bounce shield says so; mailboxes already carry both).

Both new tables get 0004's row-level security (`outbound_private.secure_table`): a tenant sees its
own inbound messages (unmatched webhook mail, client_id NULL, only the service and operator roles
see), never the IMAP cursors.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)
# Row-level security as in 0004: (table, visible to outbound_tenant). A client sees its replies and
# bounces with their class and evidence; recovery's cursors are internal.
SECURED = (("inbound_messages", True), ("imap_cursors", False))
KINDS = "('human_reply', 'auto_reply', 'unsubscribe_request', 'hard_bounce', 'soft_bounce', 'complaint')"


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("client_id", sa.BigInteger(), sa.ForeignKey("clients.id", ondelete="CASCADE",
                                                               name="fk_inbound_messages_client_id_clients")),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text()),
        sa.Column("webhook_id", sa.Text()),
        sa.Column("mailbox_id", sa.BigInteger()),
        sa.Column("folder", sa.Text()),
        sa.Column("imap_uid", sa.BigInteger()),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("raw", postgresql.BYTEA(), nullable=False),
        sa.Column("raw_bytes", sa.Integer(), nullable=False),
        sa.Column("from_address", sa.Text()),
        sa.Column("subject", sa.Text()),
        sa.Column("message_pk", sa.BigInteger()),
        sa.Column("lead_id", sa.BigInteger()),
        sa.Column("campaign_id", sa.BigInteger()),
        sa.Column("match_kind", sa.Text()),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Text()),
        sa.Column("received_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("processed_at", TS),
        sa.Column("outcome", sa.Text()),
        sa.UniqueConstraint("client_id", "dedupe_key", name="uq_inbound_messages_client_dedupe",
                            postgresql_nulls_not_distinct=True),
        sa.ForeignKeyConstraint(["message_pk", "client_id"], ["messages.id", "messages.client_id"],
                                name="fk_inbound_messages_message_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                                name="fk_inbound_messages_lead_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                                name="fk_inbound_messages_campaign_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                                name="fk_inbound_messages_mailbox_client", ondelete="CASCADE"),
        sa.CheckConstraint("source IN ('webhook', 'imap')", name=op.f("ck_inbound_messages_source")),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f("ck_inbound_messages_kind")),
        sa.CheckConstraint("match_kind IS NULL OR match_kind IN ('message_id', 'verp', 'sender_subject')",
                           name=op.f("ck_inbound_messages_match_kind")),
        sa.CheckConstraint("(message_pk IS NULL) = (match_kind IS NULL) AND (message_pk IS NULL OR (lead_id IS NOT "
                           "NULL AND campaign_id IS NOT NULL AND client_id IS NOT NULL))",
                           name=op.f("ck_inbound_messages_match_complete")),
        sa.CheckConstraint("source <> 'imap' OR (client_id IS NOT NULL AND mailbox_id IS NOT NULL AND folder IS NOT "
                           "NULL AND imap_uid IS NOT NULL)", name=op.f("ck_inbound_messages_imap_has_place")),
        sa.CheckConstraint("source <> 'webhook' OR (provider IS NOT NULL AND webhook_id IS NOT NULL)",
                           name=op.f("ck_inbound_messages_webhook_has_id")),
        sa.CheckConstraint("(processed_at IS NULL) = (outcome IS NULL)", name=op.f("ck_inbound_messages_processed_has_outcome")),
        sa.CheckConstraint("octet_length(raw) <= raw_bytes AND dedupe_key <> ''", name=op.f("ck_inbound_messages_raw_bounded")),
    )
    op.create_index("uq_inbound_messages_webhook", "inbound_messages", ["provider", "webhook_id"], unique=True,
                    postgresql_where=sa.text("webhook_id IS NOT NULL"))
    op.create_index("ix_inbound_messages_message_pk", "inbound_messages", ["message_pk"])
    op.create_index("ix_inbound_messages_unprocessed", "inbound_messages", ["received_at"],
                    postgresql_where=sa.text("processed_at IS NULL"))
    op.create_table(
        "imap_cursors",
        sa.Column("mailbox_id", sa.BigInteger(), primary_key=True),
        sa.Column("folder", sa.Text(), primary_key=True),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                                name="fk_imap_cursors_mailbox_client", ondelete="CASCADE"),
        sa.CheckConstraint("uidvalidity > 0 AND last_uid >= 0", name=op.f("ck_imap_cursors_uids_valid")),
    )
    op.add_column("enrollments", sa.Column("soft_bounces", sa.Integer(), server_default="0", nullable=False))
    op.create_check_constraint("soft_bounces_not_negative", "enrollments", "soft_bounces >= 0")
    op.add_column("sequences", sa.Column("stop_company_on_reply", sa.Boolean(), server_default=sa.false(),
                                         nullable=False))
    op.add_column("sequences", sa.Column("auto_reply_wait_days", sa.Integer(), server_default="3", nullable=False))
    op.create_check_constraint("auto_reply_wait_days_range", "sequences", "auto_reply_wait_days BETWEEN 0 AND 60")
    op.add_column("campaigns", sa.Column("status_reason", sa.Text()))
    op.add_column("campaigns", sa.Column("paused_at", TS))

    for table, visible in SECURED:
        op.execute(f"SELECT outbound_private.secure_table('public.{table}', 'client_id', {str(visible).lower()})")
    op.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon, authenticated, PUBLIC")
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO service_role, outbound_operator")

def downgrade() -> None:
    for table, _visible in SECURED:
        op.execute(f"SELECT outbound_private.unsecure_table('public.{table}')")
    op.drop_column("campaigns", "paused_at")
    op.drop_column("campaigns", "status_reason")
    op.drop_constraint(op.f("ck_sequences_auto_reply_wait_days_range"), "sequences", type_="check")
    op.drop_column("sequences", "auto_reply_wait_days")
    op.drop_column("sequences", "stop_company_on_reply")
    op.drop_constraint(op.f("ck_enrollments_soft_bounces_not_negative"), "enrollments", type_="check")
    op.drop_column("enrollments", "soft_bounces")
    op.drop_table("imap_cursors")
    op.drop_table("inbound_messages")
