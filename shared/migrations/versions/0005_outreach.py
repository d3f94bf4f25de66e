"""outreach: mailboxes, sequences and steps, enrollments, messages, suppressions; send items

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:40:00

Outreach reuses the work-item state machine: a batch gets a `kind` ('enrich' | 'send'), a send
item carries the `step` it sends and the `mailbox_id` chosen for it, and a partial UNIQUE index
keeps one step per lead in flight whatever run created it. The new tables carry `client_id`
with composite foreign keys to their parents (as in 0003), so Postgres refuses cross-tenant rows:
a message's campaign, lead and mailbox all belong to the message's client.

- `mailboxes`: SMTP account (the password's *name*, never the password), caps, ramp, gaps,
  status with a reason; `last_sent_at`/`next_send_at` are moved by the capacity guarded UPDATE.
- `sequences` (one per campaign: weekdays, hours, fallback timezone) and `sequence_steps`.
- `enrollments`: a lead's next step, when it is due, its timezone resolved once with its source.
- `messages`: one row per (campaign, lead, step), UNIQUE, with the deterministic Message-ID;
  inserted as 'sending' before SMTP DATA, so a send happens at most once.
- `suppressions`: per client, an email or a whole domain.
- `leads.timezone`: an explicit IANA timezone, when the import has one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"  # re-pointed at merge: 0004 (row-level security) and 0005 were written in parallel
branch_labels = None
depends_on = None

TS = sa.TIMESTAMP(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True)


def _created(name: str = "created_at") -> sa.Column:
    return sa.Column(name, TS, server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "mailboxes",
        _id(),
        sa.Column("client_id", sa.BigInteger(), sa.ForeignKey("clients.id", ondelete="CASCADE",
                                                               name="fk_mailboxes_client_id_clients"), nullable=False),
        sa.Column("from_address", sa.Text(), nullable=False),
        sa.Column("from_name", sa.Text()),
        sa.Column("smtp_host", sa.Text(), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("tls_mode", sa.Text(), server_default="starttls", nullable=False),
        sa.Column("username", sa.Text()),
        sa.Column("secret_name", sa.Text()),
        sa.Column("imap_host", sa.Text()),
        sa.Column("imap_port", sa.Integer()),
        sa.Column("imap_tls_mode", sa.Text(), server_default="tls", nullable=False),
        sa.Column("sent_folder", sa.Text()),
        sa.Column("daily_cap", sa.Integer(), server_default="50", nullable=False),
        sa.Column("ramp_start", sa.Integer()),
        sa.Column("ramp_step", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ramp_ceiling", sa.Integer()),
        _created("ramp_started_at"),
        sa.Column("min_gap_seconds", sa.Integer(), server_default="600", nullable=False),
        sa.Column("jitter_seconds", sa.Integer(), server_default="120", nullable=False),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("status_reason", sa.Text()),
        sa.Column("paused_at", TS),
        sa.Column("last_sent_at", TS),
        sa.Column("next_send_at", TS),
        _created(),
        sa.UniqueConstraint("client_id", "from_address", name="uq_mailboxes_client_address"),
        sa.UniqueConstraint("id", "client_id", name="uq_mailboxes_id_client"),
        sa.CheckConstraint("tls_mode IN ('starttls', 'tls', 'none')", name=op.f("ck_mailboxes_tls_mode")),
        sa.CheckConstraint("imap_tls_mode IN ('starttls', 'tls', 'none')", name=op.f("ck_mailboxes_imap_tls_mode")),
        sa.CheckConstraint("status IN ('active', 'paused')", name=op.f("ck_mailboxes_status")),
        sa.CheckConstraint("(status = 'paused') = (status_reason IS NOT NULL)", name=op.f("ck_mailboxes_paused_has_reason")),
        sa.CheckConstraint("smtp_port BETWEEN 1 AND 65535", name=op.f("ck_mailboxes_port_range")),
        sa.CheckConstraint("daily_cap >= 0 AND ramp_step >= 0 AND min_gap_seconds >= 0 AND jitter_seconds >= 0",
                           name=op.f("ck_mailboxes_limits_not_negative")),
        sa.CheckConstraint("ramp_start IS NULL OR ramp_start >= 0", name=op.f("ck_mailboxes_ramp_start_not_negative")),
        sa.CheckConstraint("from_address = lower(from_address)", name=op.f("ck_mailboxes_address_normalized")),
    )

    op.add_column("batches", sa.Column("kind", sa.Text(), server_default="enrich", nullable=False))
    op.create_check_constraint("kind", "batches", "kind IN ('enrich', 'send')")
    op.add_column("work_items", sa.Column("step", sa.Integer()))
    op.add_column("work_items", sa.Column("mailbox_id", sa.BigInteger()))
    op.create_check_constraint("send_item_has_step_and_mailbox", "work_items", "(step IS NULL) = (mailbox_id IS NULL)")
    op.create_foreign_key("fk_work_items_mailbox_client", "work_items", "mailboxes", ["mailbox_id", "client_id"],
                          ["id", "client_id"], ondelete="CASCADE")
    op.create_index("uq_work_items_send_in_flight", "work_items", ["lead_id"], unique=True,
                    postgresql_where=sa.text("step IS NOT NULL AND status IN ('PENDING', 'QUEUED', 'IN_PROGRESS')"))
    op.add_column("leads", sa.Column("timezone", sa.Text()))

    op.create_table(
        "sequences",
        sa.Column("campaign_id", sa.BigInteger(), primary_key=True),
        sa.Column("client_id", sa.BigInteger(), sa.ForeignKey("clients.id", ondelete="CASCADE",
                                                               name="fk_sequences_client_id_clients"), nullable=False),
        sa.Column("weekdays", postgresql.ARRAY(sa.SmallInteger()), server_default=sa.text("'{1,2,3,4,5}'"),
                  nullable=False),
        sa.Column("start_hour", sa.Integer(), server_default="9", nullable=False),
        sa.Column("end_hour", sa.Integer(), server_default="17", nullable=False),
        sa.Column("fallback_timezone", sa.Text(), server_default="UTC", nullable=False),
        _created(),
        sa.UniqueConstraint("campaign_id", "client_id", name="uq_sequences_campaign_client"),
        sa.ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                                name="fk_sequences_campaign_client", ondelete="CASCADE"),
        sa.CheckConstraint("start_hour BETWEEN 0 AND 23 AND end_hour BETWEEN 1 AND 24 AND start_hour < end_hour",
                           name=op.f("ck_sequences_hours")),
        sa.CheckConstraint("cardinality(weekdays) BETWEEN 1 AND 7 AND weekdays <@ ARRAY[1,2,3,4,5,6,7]::smallint[]",
                           name=op.f("ck_sequences_weekdays_iso")),
    )
    op.create_table(
        "sequence_steps",
        _id(),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("delay_amount", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delay_unit", sa.Text(), server_default="business_days", nullable=False),
        sa.Column("subject_template", sa.Text(), nullable=False),
        sa.Column("body_template", sa.Text(), nullable=False),
        _created(),
        sa.UniqueConstraint("campaign_id", "step", name="uq_sequence_steps_campaign_step"),
        sa.ForeignKeyConstraint(["campaign_id", "client_id"], ["sequences.campaign_id", "sequences.client_id"],
                                name="fk_sequence_steps_sequence_client", ondelete="CASCADE"),
        sa.CheckConstraint("step >= 1", name=op.f("ck_sequence_steps_step_positive")),
        sa.CheckConstraint("delay_amount >= 0", name=op.f("ck_sequence_steps_delay_not_negative")),
        sa.CheckConstraint("delay_unit IN ('business_days', 'days')", name=op.f("ck_sequence_steps_delay_unit")),
    )
    op.create_table(
        "enrollments",
        _id(),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("mailbox_id", sa.BigInteger()),
        sa.Column("next_step", sa.Integer(), server_default="1", nullable=False),
        sa.Column("next_due_at", TS, nullable=False),
        sa.Column("last_sent_at", TS),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("timezone_source", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("stop_reason", sa.Text()),
        _created("enrolled_at"),
        sa.UniqueConstraint("campaign_id", "lead_id", name="uq_enrollments_campaign_lead"),
        sa.ForeignKeyConstraint(["campaign_id", "client_id"], ["sequences.campaign_id", "sequences.client_id"],
                                name="fk_enrollments_sequence_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                                name="fk_enrollments_lead_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                                name="fk_enrollments_mailbox_client", ondelete="SET NULL (mailbox_id)"),
        sa.CheckConstraint("status IN ('active', 'held', 'finished', 'stopped')", name=op.f("ck_enrollments_status")),
        sa.CheckConstraint("next_step >= 1", name=op.f("ck_enrollments_next_step_positive")),
        sa.CheckConstraint("status <> 'stopped' OR stop_reason IS NOT NULL", name=op.f("ck_enrollments_stopped_has_reason")),
    )
    op.create_index("ix_enrollments_due", "enrollments", ["next_due_at"], postgresql_where=sa.text("status = 'active'"))
    op.create_index("ix_enrollments_lead_id", "enrollments", ["lead_id"])
    op.create_table(
        "messages",
        _id(),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.BigInteger(), nullable=False),
        sa.Column("work_item_id", sa.BigInteger()),
        sa.Column("attempt", sa.Integer()),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("in_reply_to", sa.Text()),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("status", sa.Text(), server_default="sending", nullable=False),
        sa.Column("smtp_reply", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("reserved_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        _created("updated_at"),
        sa.UniqueConstraint("campaign_id", "lead_id", "step", name="uq_messages_campaign_lead_step"),
        sa.UniqueConstraint("message_id", name="uq_messages_message_id"),
        sa.UniqueConstraint("id", "client_id", name="uq_messages_id_client"),
        sa.ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                                name="fk_messages_campaign_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                                name="fk_messages_lead_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                                name="fk_messages_mailbox_client", ondelete="CASCADE"),
        sa.CheckConstraint("status IN ('sending', 'sent', 'failed', 'in_doubt', 'unknown')", name=op.f("ck_messages_status")),
        sa.CheckConstraint("status <> 'sent' OR (sent_at IS NOT NULL AND smtp_reply IS NOT NULL)",
                           name=op.f("ck_messages_sent_has_reply")),
        sa.CheckConstraint("status <> 'failed' OR error IS NOT NULL", name=op.f("ck_messages_failed_has_error")),
    )
    op.create_index("ix_messages_mailbox_reserved", "messages", ["mailbox_id", "reserved_at"])
    op.create_index("ix_messages_in_doubt", "messages", ["mailbox_id"],
                    postgresql_where=sa.text("status IN ('sending', 'in_doubt')"))
    op.create_index("ix_messages_lead_id", "messages", ["lead_id"])
    op.create_table(
        "suppressions",
        _id(),
        sa.Column("client_id", sa.BigInteger(), sa.ForeignKey("clients.id", ondelete="CASCADE",
                                                               name="fk_suppressions_client_id_clients"),
                  nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        _created(),
        sa.UniqueConstraint("client_id", "kind", "value", name="uq_suppressions_client_kind_value"),
        sa.CheckConstraint("kind IN ('email', 'domain')", name=op.f("ck_suppressions_kind")),
        sa.CheckConstraint("value = lower(value) AND value <> ''", name=op.f("ck_suppressions_value_normalized")),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("messages")
    op.drop_table("enrollments")
    op.drop_table("sequence_steps")
    op.drop_table("sequences")
    op.drop_column("leads", "timezone")
    op.drop_index("uq_work_items_send_in_flight", table_name="work_items")
    op.drop_constraint("fk_work_items_mailbox_client", "work_items", type_="foreignkey")
    op.drop_constraint(op.f("ck_work_items_send_item_has_step_and_mailbox"), "work_items", type_="check")
    op.drop_column("work_items", "mailbox_id")
    op.drop_column("work_items", "step")
    op.drop_constraint(op.f("ck_batches_kind"), "batches", type_="check")
    op.drop_column("batches", "kind")
    op.drop_table("mailboxes")
