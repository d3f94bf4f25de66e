"""tenancy: the database refuses cross-tenant rows; per-client cache and idempotency keys; batch heartbeats

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00

Clients are tenants. Until now only the application kept their rows apart: a work item in B's
batch could point at A's lead, A's lead could sit in B's campaign, and the enrichment cache and
the credit ledger's idempotency keys were global, so one client's paid results and top-ups leaked
into another's. After this migration Postgres itself refuses those rows:

- `campaigns`, `leads`, `batches`, `work_items` get UNIQUE (id, client_id), the target of
  composite foreign keys that carry client_id: a lead's campaign, a batch's campaign, a work
  item's batch and lead must all belong to the work item's own client. Deleting a campaign still
  only clears `campaign_id` (`ON DELETE SET NULL (campaign_id)`, Postgres 15+).
- `work_items`, `status_history`, `enrichment_attempts` get `client_id` (backfilled), so every
  row says whose it is and row-level security can filter on it without joins.
- `enrichment_cache` is keyed (client_id, provider, lookup_key): one client's input and paid
  results never reach another client (a shared cache would have to hold provider output only and
  still charge each client; we chose isolation). Existing cache rows are dropped (a cache).
- `credit_ledger` idempotency keys are unique per client, so client A's `pay-123` can never
  swallow client B's top-up.
- `batches.runner_id` and `batches.heartbeat_at`: which orchestrator runs a batch and when it
  last said so, so a batch whose orchestrator died can be found and resumed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (table, constraint, local columns, referred table, referred columns, on delete)
COMPOSITE_FKS = (
    ("leads", "fk_leads_campaign_client", ["campaign_id", "client_id"], "campaigns", ["id", "client_id"],
     "SET NULL (campaign_id)"),
    ("batches", "fk_batches_campaign_client", ["campaign_id", "client_id"], "campaigns", ["id", "client_id"],
     "SET NULL (campaign_id)"),
    ("work_items", "fk_work_items_batch_client", ["batch_id", "client_id"], "batches", ["id", "client_id"],
     "CASCADE"),
    ("work_items", "fk_work_items_lead_client", ["lead_id", "client_id"], "leads", ["id", "client_id"], "CASCADE"),
    ("enrichment_attempts", "fk_enrichment_attempts_item_client", ["work_item_id", "client_id"], "work_items",
     ["id", "client_id"], "CASCADE"),
    ("credit_ledger", "fk_credit_ledger_item_client", ["work_item_id", "client_id"], "work_items",
     ["id", "client_id"], "SET NULL (work_item_id)"),
)
# The single-column foreign keys the composite ones replace (0001's names).
REPLACED_FKS = (
    ("leads", "fk_leads_campaign_id_campaigns", ["campaign_id"], "campaigns", "SET NULL"),
    ("batches", "fk_batches_campaign_id_campaigns", ["campaign_id"], "campaigns", "SET NULL"),
    ("work_items", "fk_work_items_batch_id_batches", ["batch_id"], "batches", "CASCADE"),
    ("work_items", "fk_work_items_lead_id_leads", ["lead_id"], "leads", "CASCADE"),
)
TENANT_KEYS = ("campaigns", "leads", "batches", "work_items")


def upgrade() -> None:
    for table in TENANT_KEYS[:3]:
        op.create_unique_constraint(f"uq_{table}_id_client", table, ["id", "client_id"])

    op.add_column("work_items", sa.Column("client_id", sa.BigInteger(), nullable=True))
    op.execute("UPDATE work_items w SET client_id = b.client_id FROM batches b WHERE b.id = w.batch_id")
    op.alter_column("work_items", "client_id", nullable=False)
    op.create_unique_constraint("uq_work_items_id_client", "work_items", ["id", "client_id"])

    # status_history is append-only (a trigger refuses UPDATE): lift it for the backfill only.
    op.add_column("status_history", sa.Column("client_id", sa.BigInteger(), nullable=True))
    op.execute("ALTER TABLE status_history DISABLE TRIGGER status_history_append_only")
    op.execute("UPDATE status_history h SET client_id = w.client_id FROM work_items w WHERE w.id = h.work_item_id")
    op.execute("DELETE FROM status_history WHERE client_id IS NULL")  # history of items deleted since
    op.execute("ALTER TABLE status_history ENABLE TRIGGER status_history_append_only")
    op.alter_column("status_history", "client_id", nullable=False)
    op.create_index("ix_status_history_client_id", "status_history", ["client_id"])

    op.add_column("enrichment_attempts", sa.Column("client_id", sa.BigInteger(), nullable=True))
    op.execute("UPDATE enrichment_attempts a SET client_id = w.client_id FROM work_items w WHERE w.id = a.work_item_id")
    op.execute("DELETE FROM enrichment_attempts WHERE client_id IS NULL")
    op.alter_column("enrichment_attempts", "client_id", nullable=False)

    op.execute("DELETE FROM credit_ledger l WHERE l.work_item_id IS NOT NULL AND NOT EXISTS "
               "(SELECT 1 FROM work_items w WHERE w.id = l.work_item_id AND w.client_id = l.client_id)")
    op.drop_constraint("uq_credit_ledger_idempotency_key", "credit_ledger", type_="unique")
    op.create_unique_constraint("uq_credit_ledger_client_key", "credit_ledger", ["client_id", "idempotency_key"])

    for table, name, _cols, _ref, _ondelete in REPLACED_FKS:
        op.drop_constraint(name, table, type_="foreignkey")
    for table, name, cols, ref, ref_cols, ondelete in COMPOSITE_FKS:
        op.create_foreign_key(name, table, ref, cols, ref_cols, ondelete=ondelete)

    op.execute("TRUNCATE enrichment_cache")
    op.add_column("enrichment_cache", sa.Column("client_id", sa.BigInteger(), nullable=False))
    op.drop_constraint("pk_enrichment_cache", "enrichment_cache", type_="primary")
    op.create_primary_key("pk_enrichment_cache", "enrichment_cache", ["client_id", "provider", "lookup_key"])
    op.create_foreign_key("fk_enrichment_cache_client_id_clients", "enrichment_cache", "clients", ["client_id"],
                          ["id"], ondelete="CASCADE")

    op.add_column("batches", sa.Column("runner_id", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("heartbeat_at", sa.TIMESTAMP(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("batches", "heartbeat_at")
    op.drop_column("batches", "runner_id")

    op.execute("TRUNCATE enrichment_cache")
    op.drop_constraint("fk_enrichment_cache_client_id_clients", "enrichment_cache", type_="foreignkey")
    op.drop_constraint("pk_enrichment_cache", "enrichment_cache", type_="primary")
    op.drop_column("enrichment_cache", "client_id")
    op.create_primary_key("pk_enrichment_cache", "enrichment_cache", ["provider", "lookup_key"])

    for table, name, *_ in reversed(COMPOSITE_FKS):
        op.drop_constraint(name, table, type_="foreignkey")
    for table, name, cols, ref, ondelete in REPLACED_FKS:
        op.create_foreign_key(name, table, ref, cols, ["id"], ondelete=ondelete)

    # Keys were unique per client; globally they may repeat: qualify the later ones, lose no row.
    op.execute("UPDATE credit_ledger a SET idempotency_key = a.idempotency_key || '/client-' || a.client_id "
               "FROM credit_ledger b WHERE a.idempotency_key = b.idempotency_key AND a.id > b.id")
    op.drop_constraint("uq_credit_ledger_client_key", "credit_ledger", type_="unique")
    op.create_unique_constraint("uq_credit_ledger_idempotency_key", "credit_ledger", ["idempotency_key"])

    op.drop_column("enrichment_attempts", "client_id")
    op.drop_index("ix_status_history_client_id", table_name="status_history")
    op.drop_column("status_history", "client_id")
    op.drop_constraint("uq_work_items_id_client", "work_items", type_="unique")
    op.drop_column("work_items", "client_id")
    for table in reversed(TENANT_KEYS[:3]):
        op.drop_constraint(f"uq_{table}_id_client", table, type_="unique")
