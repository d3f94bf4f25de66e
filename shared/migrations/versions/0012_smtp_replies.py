"""smtp replies: a deferred message waits and is retried; a failing mailbox backs off, then pauses

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:30:00

- `messages.status` gains `deferred`: the server answered 4xx (RFC 5321: a definite "not now"),
  nothing was delivered; the step is tried again at `retry_at` under the same row and Message-ID.
  `deferrals` counts those answers; after the last backoff step the message is `failed` with the
  server's words. A deferred row holds no capacity slot (only what may have been delivered counts).
- `mailboxes.smtp_failures` / `smtp_last_error` / `smtp_retry_at`: consecutive failures of the
  mailbox's server itself (connection, TLS, AUTH, 421, 5xx to MAIL FROM), the last one's words, and
  when the mailbox may be tried again. A success resets them; a permanent failure repeated pauses
  the mailbox with the server's words as the reason.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('sending', 'sent', 'failed', 'in_doubt', 'unknown')"
NEW_STATUSES = "status IN ('sending', 'sent', 'failed', 'in_doubt', 'unknown', 'deferred')"


def upgrade() -> None:
    op.add_column("messages", sa.Column("deferrals", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("messages", sa.Column("retry_at", sa.TIMESTAMP(timezone=True)))
    op.drop_constraint(op.f("ck_messages_status"), "messages", type_="check")
    op.create_check_constraint(op.f("ck_messages_status"), "messages", NEW_STATUSES)
    op.create_check_constraint(op.f("ck_messages_deferred_has_retry"), "messages",
                               "status <> 'deferred' OR (retry_at IS NOT NULL AND error IS NOT NULL)")
    op.create_check_constraint(op.f("ck_messages_deferrals_not_negative"), "messages", "deferrals >= 0")
    op.add_column("mailboxes", sa.Column("smtp_failures", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("mailboxes", sa.Column("smtp_last_error", sa.Text()))
    op.add_column("mailboxes", sa.Column("smtp_retry_at", sa.TIMESTAMP(timezone=True)))
    op.create_check_constraint(op.f("ck_mailboxes_smtp_failures_not_negative"), "mailboxes", "smtp_failures >= 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_mailboxes_smtp_failures_not_negative"), "mailboxes", type_="check")
    op.drop_column("mailboxes", "smtp_retry_at")
    op.drop_column("mailboxes", "smtp_last_error")
    op.drop_column("mailboxes", "smtp_failures")
    op.drop_constraint(op.f("ck_messages_deferrals_not_negative"), "messages", type_="check")
    op.drop_constraint(op.f("ck_messages_deferred_has_retry"), "messages", type_="check")
    op.execute("UPDATE messages SET status = 'failed' WHERE status = 'deferred'")
    op.drop_constraint(op.f("ck_messages_status"), "messages", type_="check")
    op.create_check_constraint(op.f("ck_messages_status"), "messages", OLD_STATUSES)
    op.drop_column("messages", "retry_at")
    op.drop_column("messages", "deferrals")
