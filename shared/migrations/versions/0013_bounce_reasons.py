"""bounce reasons: what the classifier read, kept beside the class (issue 18)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:00:00

- `inbound_messages.reason`: for bounces a name of `shared.engines.replies.reasons.REASONS`
  (user_unknown, mailbox_full, host_unknown, blocked, spam, policy, expired, ..., unknown); for
  complaints the feedback type. NULL for other classes and for rows stored before this revision.
- `inbound_messages.rule`: which reader decided (rfc3464, rfc5965, jmrp, provider:ses,
  provider:sendgrid, mta:<name>, forwarded:..., sender).
- `inbound_messages.diagnostic`: the server's own words (Diagnostic-Code or the SMTP line), cut to
  1000 characters like `evidence`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbound_messages", sa.Column("reason", sa.Text()))
    op.add_column("inbound_messages", sa.Column("rule", sa.Text()))
    op.add_column("inbound_messages", sa.Column("diagnostic", sa.Text()))


def downgrade() -> None:
    op.drop_column("inbound_messages", "diagnostic")
    op.drop_column("inbound_messages", "rule")
    op.drop_column("inbound_messages", "reason")
