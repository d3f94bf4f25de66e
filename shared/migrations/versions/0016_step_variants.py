"""A/B variants: a sequence step's other subjects and bodies, and the variant each message carried (issue 19)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 03:10:00

- `step_variants`: per (campaign, step), more subject/body templates under a short label ('B',
  'C', ...). The step's own subject and body are variant 'A', implicitly; a step without rows
  here sends as it always did. The row follows its step (composite FK to sequence_steps ON UPDATE
  and ON DELETE CASCADE: the sequence editor renumbers and deletes steps) and carries the client
  (composite FK to campaigns, as every tenant table).
- `messages.variant`: the label of the variant a send rendered; NULL when its step had none.
- Row-level security as in 0004/0006/0015: `outbound_tenant` reads its own client's variants and
  writes none; `outbound_operator` reads and writes every client's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

LABEL = "variant ~ '^[A-Z][A-Z0-9]{0,7}$'"


def upgrade() -> None:
    op.create_table(
        "step_variants",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("subject_template", sa.Text(), nullable=False),
        sa.Column("body_template", sa.Text(), nullable=False),
        sa.Column("created_at", sa.TIMESTAMP(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("campaign_id", "step", "variant", name="uq_step_variants_campaign_step_variant"),
        sa.ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                                name="fk_step_variants_campaign_client", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id", "step"], ["sequence_steps.campaign_id", "sequence_steps.step"],
                                name="fk_step_variants_step", ondelete="CASCADE", onupdate="CASCADE"),
        sa.CheckConstraint(f"{LABEL} AND variant <> 'A'", name=op.f("ck_step_variants_label")),
    )
    op.add_column("messages", sa.Column("variant", sa.Text()))
    op.create_check_constraint("variant_label", "messages", f"variant IS NULL OR {LABEL}")
    op.execute("SELECT outbound_private.secure_table('public.step_variants', 'client_id', true)")
    op.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM anon, authenticated, PUBLIC")
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO service_role, outbound_operator")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_messages_variant_label"), "messages", type_="check")
    op.drop_column("messages", "variant")
    op.execute("SELECT outbound_private.unsecure_table('public.step_variants')")
    op.drop_table("step_variants")
