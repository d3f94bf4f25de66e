"""SQLAlchemy 2.0 models. Constraints live in the database; Python mirrors them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "cancelled")
CAMPAIGN_STATUSES = ("draft", "active", "paused", "completed")
LEAD_STATUSES = ("new", "enriched", "invalid", "unsubscribed", "bounced", "replied")
BATCH_STATUSES = ("draft", "launched", "running", "completed", "completed_with_errors", "cancelled")
ITEM_STATUSES = ("PENDING", "QUEUED", "IN_PROGRESS", "DONE", "FAILED", "SKIPPED")
LEDGER_KINDS = ("topup", "reserve", "refund", "adjust")

TS = TIMESTAMP(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(always=False), primary_key=True)


def _created() -> Mapped[datetime]:
    return mapped_column(TS, server_default=func.now(), nullable=False)


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (
        CheckConstraint(_in("subscription_status", SUBSCRIPTION_STATUSES), name="subscription_status"),
        CheckConstraint("credit_balance >= 0", name="credit_balance_not_negative"),
    )
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(Text, unique=True)
    subscription_status: Mapped[str] = mapped_column(Text, server_default="active")
    credit_balance: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = _created()


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("client_id", "name", name="uq_campaigns_client_name"),
        UniqueConstraint("id", "client_id", name="uq_campaigns_id_client"),  # target of tenant-carrying FKs
        CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="draft")
    icp: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("client_id", "email", name="uq_leads_client_email"),
        UniqueConstraint("id", "client_id", name="uq_leads_id_client"),
        # A lead's campaign belongs to the lead's own client; deleting it only clears campaign_id.
        ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                             name="fk_leads_campaign_client", ondelete="SET NULL (campaign_id)"),
        CheckConstraint(_in("status", LEAD_STATUSES), name="status"),
        CheckConstraint("email = lower(email)", name="email_normalized"),
        CheckConstraint("score IS NULL OR score BETWEEN 0 AND 100", name="score_range"),
        Index("ix_leads_campaign_id", "campaign_id"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    email: Mapped[str] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    company_name: Mapped[str | None] = mapped_column(Text)
    company_domain: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    linkedin_url: Mapped[str | None] = mapped_column(Text)
    country: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="new")
    enrichment: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    enrichment_provider: Mapped[str | None] = mapped_column(Text)
    enrichment_confidence: Mapped[float | None] = mapped_column(Float)
    enriched_at: Mapped[datetime | None] = mapped_column(TS)
    score: Mapped[int | None] = mapped_column(Integer)
    score_tier: Mapped[str | None] = mapped_column(Text)
    score_breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    scored_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
        UniqueConstraint("id", "client_id", name="uq_batches_id_client"),
        ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                             name="fk_batches_campaign_client", ondelete="SET NULL (campaign_id)"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(Text, server_default="draft")
    flow_run_id: Mapped[str | None] = mapped_column(Text)
    # Which orchestrator runs the batch, and when it last said so: a stale heartbeat means it died.
    runner_id: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(TS)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()
    launched_at: Mapped[datetime | None] = mapped_column(TS)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)


class WorkItem(Base):
    """One lead in one batch. `attempts` is the fencing token a finish must present."""

    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "lead_id", name="uq_work_items_batch_lead"),
        UniqueConstraint("id", "client_id", name="uq_work_items_id_client"),
        # The batch and the lead belong to the item's client: no item joins two tenants.
        ForeignKeyConstraint(["batch_id", "client_id"], ["batches.id", "batches.client_id"],
                             name="fk_work_items_batch_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                             name="fk_work_items_lead_client", ondelete="CASCADE"),
        CheckConstraint(_in("status", ITEM_STATUSES), name="status"),
        CheckConstraint("attempts >= 0 AND attempts <= max_attempts", name="attempts_bounded"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("(status = 'SKIPPED') = (skip_reason IS NOT NULL)", name="skip_reason_iff_skipped"),
        CheckConstraint("status <> 'FAILED' OR last_error IS NOT NULL", name="failed_has_error"),
        CheckConstraint("status <> 'IN_PROGRESS' OR lease_until IS NOT NULL", name="in_progress_has_lease"),
        # Claiming stays cheap however many rows are finished: only PENDING rows are indexed.
        Index("ix_work_items_pending", "batch_id", "id", postgresql_where=text("status = 'PENDING'")),
        Index("ix_work_items_queued", "queued_at", postgresql_where=text("status = 'QUEUED'")),
        Index("ix_work_items_leased", "lease_until", postgresql_where=text("status = 'IN_PROGRESS'")),
        Index("ix_work_items_batch_status", "batch_id", "status"),
        Index("ix_work_items_lead_id", "lead_id"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    lead_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(Text, server_default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="3")
    lease_until: Mapped[datetime | None] = mapped_column(TS)
    worker_id: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    queued_at: Mapped[datetime | None] = mapped_column(TS)
    started_at: Mapped[datetime | None] = mapped_column(TS)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
    updated_at: Mapped[datetime] = _created()


class StatusHistory(Base):
    """Append-only: a database trigger refuses UPDATE and DELETE."""

    __tablename__ = "status_history"
    __table_args__ = (
        Index("ix_status_history_work_item_id", "work_item_id"),
        Index("ix_status_history_client_id", "client_id"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(BigInteger)
    work_item_id: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(TS, server_default=func.clock_timestamp())


class CreditLedger(Base):
    """Every credit movement. The unique idempotency key makes each charge happen once."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        CheckConstraint(_in("kind", LEDGER_KINDS), name="kind"),
        CheckConstraint(
            "(kind = 'reserve' AND delta < 0) OR (kind IN ('topup', 'refund') AND delta > 0) OR kind = 'adjust'",
            name="delta_sign",
        ),
        Index("ix_credit_ledger_client_id", "client_id"),
        Index("ix_credit_ledger_work_item_id", "work_item_id"),
        # Idempotency keys are the client's own (a payment id): unique per client, never global.
        UniqueConstraint("client_id", "idempotency_key", name="uq_credit_ledger_client_key"),
        ForeignKeyConstraint(["work_item_id", "client_id"], ["work_items.id", "work_items.client_id"],
                             name="fk_credit_ledger_item_client", ondelete="SET NULL (work_item_id)"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    delta: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(Text)
    work_item_id: Mapped[int | None] = mapped_column(BigInteger)
    attempt: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class EnrichmentAttempt(Base):
    """One row per provider call (or cache use) for one work item attempt."""

    __tablename__ = "enrichment_attempts"
    __table_args__ = (
        CheckConstraint(_in("outcome", ("hit", "miss", "error", "cache_hit", "no_credits")), name="outcome"),
        Index("ix_enrichment_attempts_work_item_id", "work_item_id"),
        ForeignKeyConstraint(["work_item_id", "client_id"], ["work_items.id", "work_items.client_id"],
                             name="fk_enrichment_attempts_item_client", ondelete="CASCADE"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(BigInteger)
    work_item_id: Mapped[int] = mapped_column(BigInteger)
    lead_id: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    cost: Mapped[int] = mapped_column(Integer, server_default="0")
    latency_ms: Mapped[float] = mapped_column(Float, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class EnrichmentCache(Base):
    """Per client: one client's input and paid results never answer another client's lookup."""

    __tablename__ = "enrichment_cache"
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    lookup_key: Mapped[str] = mapped_column(Text, primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    confidence: Mapped[float] = mapped_column(Float)
    fetched_at: Mapped[datetime] = _created()
