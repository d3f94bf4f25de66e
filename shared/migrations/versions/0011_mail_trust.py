"""mail trust: whether a received message was verified before it could act; per-mailbox DKIM and VERP

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-02 19:00:00

- `inbound_messages.verified` / `trust`: a matched message acts only when it is verified (a bounce
  that came back to our signed VERP address or quotes a keyed Message-ID only we can produce; a
  reply whose From domain passed SPF/DKIM/DMARC at a trusted receiver, or that quotes such an id).
  An unverified one is stored, shown to the operator and changes nothing. `trust` says why, for
  people. NULL for rows that never could act (unmatched mail, our own mail seen again) and for rows
  stored before this revision.
- `mailboxes.keeps_verp`: false when the mailbox's relay rewrites the envelope sender (Gmail and
  Microsoft 365 do for MAIL FROM they do not own): such a mailbox sends with its own address as
  MAIL FROM and its bounces are identified by the keyed Message-ID they quote (reply recovery reads
  them from its inbox).
- `mailboxes.dkim_selector` / `dkim_secret_name`: optional DKIM signing by us, the private key's
  *name* only (like `secret_name` for the SMTP password); both or neither.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbound_messages", sa.Column("verified", sa.Boolean()))
    op.add_column("inbound_messages", sa.Column("trust", sa.Text()))
    op.add_column("mailboxes", sa.Column("keeps_verp", sa.Boolean(), nullable=False, server_default=sa.text("true")))
    op.add_column("mailboxes", sa.Column("dkim_selector", sa.Text()))
    op.add_column("mailboxes", sa.Column("dkim_secret_name", sa.Text()))
    op.create_check_constraint(op.f("ck_mailboxes_dkim_both_or_neither"), "mailboxes",
                               "(dkim_selector IS NULL) = (dkim_secret_name IS NULL)")
    op.create_check_constraint(op.f("ck_mailboxes_dkim_selector_label"), "mailboxes",
                               "dkim_selector IS NULL OR dkim_selector ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?"
                               "(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_mailboxes_dkim_selector_label"), "mailboxes", type_="check")
    op.drop_constraint(op.f("ck_mailboxes_dkim_both_or_neither"), "mailboxes", type_="check")
    op.drop_column("mailboxes", "dkim_secret_name")
    op.drop_column("mailboxes", "dkim_selector")
    op.drop_column("mailboxes", "keeps_verp")
    op.drop_column("inbound_messages", "trust")
    op.drop_column("inbound_messages", "verified")
