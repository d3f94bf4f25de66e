"""SQLAlchemy 2.0 models. Constraints live in the database; Python mirrors them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    TIMESTAMP,
    Column,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.status import (
    BatchKind,
    BatchStatus,
    CampaignStatus,
    DelayUnit,
    EnrollmentStatus,
    InboundKind,
    InboundSource,
    ItemStatus,
    LeadStatus,
    LedgerKind,
    MailboxStatus,
    MatchKind,
    MessageStatus,
    ProviderOutcome,
    Role,
    Subscription,
    SuppressionKind,
    TlsMode,
    Verdict,
    values,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def quoted(enum: type[StrEnum]) -> str:
    """The enum's values as SQL string literals, comma-separated, for an `IN (…)`."""
    return ", ".join("'" + value.replace("'", "''") + "'" for value in values(enum))


def _in(column: str, enum: type[StrEnum]) -> str:
    """The CHECK that `column` holds one of the enum's values (`shared.status` is the one list)."""
    return f"{column} IN ({quoted(enum)})"



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
        CheckConstraint(_in("subscription_status", Subscription), name="subscription_status"),
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
        CheckConstraint(_in("status", CampaignStatus), name="status"),
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
        CheckConstraint(_in("status", LeadStatus), name="status"),
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
        CheckConstraint(_in("status", BatchStatus), name="status"),
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
        CheckConstraint(_in("status", ItemStatus), name="status"),
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
        CheckConstraint(_in("kind", LedgerKind), name="kind"),
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
        CheckConstraint(_in("outcome", ProviderOutcome), name="outcome"),
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


# -- outreach (migration 0005) -------------------------------------------------------------------


# Outreach columns on existing tables (additive): which machine a batch runs, which step an item sends.
Batch.__table__.append_column(
    Column("kind", Text, nullable=False, server_default="enrich"))
Batch.__table__.append_constraint(CheckConstraint(_in("kind", BatchKind), name="kind"))
WorkItem.__table__.append_column(Column("step", Integer, nullable=True))
WorkItem.__table__.append_column(Column("mailbox_id", BigInteger, nullable=True))
WorkItem.__table__.append_constraint(
    CheckConstraint("(step IS NULL) = (mailbox_id IS NULL)", name="send_item_has_step_and_mailbox"))
WorkItem.__table__.append_constraint(
    ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                         name="fk_work_items_mailbox_client", ondelete="CASCADE"))
# One step per lead in flight, whatever run created it: the database refuses a second.
Index("uq_work_items_send_in_flight", WorkItem.__table__.c.lead_id, unique=True,
      postgresql_where=text("step IS NOT NULL AND status IN ('PENDING', 'QUEUED', 'IN_PROGRESS')"))
Lead.__table__.append_column(Column("timezone", Text, nullable=True))


class Mailbox(Base):
    """A sending account. The password is never here: `secret_name` names where it lives."""

    __tablename__ = "mailboxes"
    __table_args__ = (
        UniqueConstraint("client_id", "from_address", name="uq_mailboxes_client_address"),
        UniqueConstraint("id", "client_id", name="uq_mailboxes_id_client"),
        CheckConstraint(_in("tls_mode", TlsMode), name="tls_mode"),
        CheckConstraint(_in("imap_tls_mode", TlsMode), name="imap_tls_mode"),
        CheckConstraint(_in("status", MailboxStatus), name="status"),
        CheckConstraint("(status = 'paused') = (status_reason IS NOT NULL)", name="paused_has_reason"),
        CheckConstraint("smtp_port BETWEEN 1 AND 65535", name="port_range"),
        CheckConstraint("daily_cap >= 0 AND ramp_step >= 0 AND min_gap_seconds >= 0 AND jitter_seconds >= 0",
                        name="limits_not_negative"),
        CheckConstraint("ramp_start IS NULL OR ramp_start >= 0", name="ramp_start_not_negative"),
        CheckConstraint("from_address = lower(from_address)", name="address_normalized"),
        CheckConstraint("(dkim_selector IS NULL) = (dkim_secret_name IS NULL)", name="dkim_both_or_neither"),
        CheckConstraint("dkim_selector IS NULL OR dkim_selector ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?"
                        "(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'", name="dkim_selector_label"),
        CheckConstraint("smtp_failures >= 0", name="smtp_failures_not_negative"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    from_address: Mapped[str] = mapped_column(Text)
    from_name: Mapped[str | None] = mapped_column(Text)
    smtp_host: Mapped[str] = mapped_column(Text)
    smtp_port: Mapped[int] = mapped_column(Integer)
    tls_mode: Mapped[str] = mapped_column(Text, server_default="starttls")
    username: Mapped[str | None] = mapped_column(Text)
    secret_name: Mapped[str | None] = mapped_column(Text)
    # IMAP for the Sent-folder reconciler (same login and secret); NULL host: not checked.
    imap_host: Mapped[str | None] = mapped_column(Text)
    imap_port: Mapped[int | None] = mapped_column(Integer)
    imap_tls_mode: Mapped[str] = mapped_column(Text, server_default="tls")
    sent_folder: Mapped[str | None] = mapped_column(Text)  # NULL: the folder flagged \\Sent
    daily_cap: Mapped[int] = mapped_column(Integer, server_default="50")
    ramp_start: Mapped[int | None] = mapped_column(Integer)  # NULL: no ramp, the cap applies from day one
    ramp_step: Mapped[int] = mapped_column(Integer, server_default="0")
    ramp_ceiling: Mapped[int | None] = mapped_column(Integer)
    ramp_started_at: Mapped[datetime] = _created()
    min_gap_seconds: Mapped[int] = mapped_column(Integer, server_default="600")
    jitter_seconds: Mapped[int] = mapped_column(Integer, server_default="120")
    status: Mapped[str] = mapped_column(Text, server_default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(TS)
    # Capacity: the guarded UPDATE moves these; the rolling 24 h count comes from `messages`.
    last_sent_at: Mapped[datetime | None] = mapped_column(TS)
    next_send_at: Mapped[datetime | None] = mapped_column(TS)
    # The mailbox's own server failing (connection, TLS, AUTH, 421, 5xx to MAIL FROM): consecutive
    # failures, the last one's words, and when it may be tried again (a success resets all three).
    smtp_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    smtp_last_error: Mapped[str | None] = mapped_column(Text)
    smtp_retry_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = _created()
    # False: the relay rewrites MAIL FROM (Gmail, Microsoft 365), so we send with from_address as the
    # envelope sender and bounces are known by the keyed Message-ID they quote (read from the inbox).
    keeps_verp: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Optional DKIM signing by us: the selector and the *name* of the secret holding the private key.
    dkim_selector: Mapped[str | None] = mapped_column(Text)
    dkim_secret_name: Mapped[str | None] = mapped_column(Text)


class Sequence_(Base):
    """A campaign's sending schedule (one per campaign); its steps hang off it."""

    __tablename__ = "sequences"
    __table_args__ = (
        UniqueConstraint("campaign_id", "client_id", name="uq_sequences_campaign_client"),
        ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                             name="fk_sequences_campaign_client", ondelete="CASCADE"),
        CheckConstraint("start_hour BETWEEN 0 AND 23 AND end_hour BETWEEN 1 AND 24 AND start_hour < end_hour",
                        name="hours"),
        CheckConstraint("cardinality(weekdays) BETWEEN 1 AND 7 AND weekdays <@ ARRAY[1,2,3,4,5,6,7]::smallint[]",
                        name="weekdays_iso"),
    )
    campaign_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    weekdays: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger),
                                                server_default=text("'{1,2,3,4,5}'"))
    start_hour: Mapped[int] = mapped_column(Integer, server_default="9")
    end_hour: Mapped[int] = mapped_column(Integer, server_default="17")
    fallback_timezone: Mapped[str] = mapped_column(Text, server_default="UTC")
    created_at: Mapped[datetime] = _created()


class SequenceStep(Base):
    __tablename__ = "sequence_steps"
    __table_args__ = (
        UniqueConstraint("campaign_id", "step", name="uq_sequence_steps_campaign_step"),
        ForeignKeyConstraint(["campaign_id", "client_id"], ["sequences.campaign_id", "sequences.client_id"],
                             name="fk_sequence_steps_sequence_client", ondelete="CASCADE"),
        CheckConstraint("step >= 1", name="step_positive"),
        CheckConstraint("delay_amount >= 0", name="delay_not_negative"),
        CheckConstraint(_in("delay_unit", DelayUnit), name="delay_unit"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(BigInteger)
    campaign_id: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(Integer)
    delay_amount: Mapped[int] = mapped_column(Integer, server_default="0")
    delay_unit: Mapped[str] = mapped_column(Text, server_default="business_days")
    subject_template: Mapped[str] = mapped_column(Text)
    body_template: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


VARIANT_LABEL = "variant ~ '^[A-Z][A-Z0-9]{0,7}$'"  # 'A' is the step's own subject and body


class StepVariant(Base):
    """Another subject and body for a sequence step (A/B testing): each lead gets one variant, by a stable hash."""

    __tablename__ = "step_variants"
    __table_args__ = (
        UniqueConstraint("campaign_id", "step", "variant", name="uq_step_variants_campaign_step_variant"),
        ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                             name="fk_step_variants_campaign_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["campaign_id", "step"], ["sequence_steps.campaign_id", "sequence_steps.step"],
                             name="fk_step_variants_step", ondelete="CASCADE", onupdate="CASCADE"),
        CheckConstraint(f"{VARIANT_LABEL} AND variant <> 'A'", name="label"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(BigInteger)
    campaign_id: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(Text)
    subject_template: Mapped[str] = mapped_column(Text)
    body_template: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class Enrollment(Base):
    """A lead in a campaign's sequence: its next step, when it is due, its resolved timezone."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "lead_id", name="uq_enrollments_campaign_lead"),
        ForeignKeyConstraint(["campaign_id", "client_id"], ["sequences.campaign_id", "sequences.client_id"],
                             name="fk_enrollments_sequence_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                             name="fk_enrollments_lead_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                             name="fk_enrollments_mailbox_client", ondelete="SET NULL (mailbox_id)"),
        CheckConstraint(_in("status", EnrollmentStatus), name="status"),
        CheckConstraint("next_step >= 1", name="next_step_positive"),
        CheckConstraint("status <> 'stopped' OR stop_reason IS NOT NULL", name="stopped_has_reason"),
        # The scheduler reads only active rows that are due: flat in finished leads.
        Index("ix_enrollments_due", "next_due_at", postgresql_where=text("status = 'active'")),
        Index("ix_enrollments_lead_id", "lead_id"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(BigInteger)
    campaign_id: Mapped[int] = mapped_column(BigInteger)
    lead_id: Mapped[int] = mapped_column(BigInteger)
    mailbox_id: Mapped[int | None] = mapped_column(BigInteger)  # step 1's mailbox; follow-ups use it
    next_step: Mapped[int] = mapped_column(Integer, server_default="1")
    next_due_at: Mapped[datetime] = mapped_column(TS)
    last_sent_at: Mapped[datetime | None] = mapped_column(TS)
    timezone: Mapped[str] = mapped_column(Text)
    timezone_source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="active")
    stop_reason: Mapped[str | None] = mapped_column(Text)
    enrolled_at: Mapped[datetime] = _created()


class Message(Base):
    """One send of one step to one lead: the idempotency key of outreach. Never two rows per step."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("campaign_id", "lead_id", "step", name="uq_messages_campaign_lead_step"),
        UniqueConstraint("message_id", name="uq_messages_message_id"),
        UniqueConstraint("id", "client_id", name="uq_messages_id_client"),
        ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                             name="fk_messages_campaign_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                             name="fk_messages_lead_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                             name="fk_messages_mailbox_client", ondelete="CASCADE"),
        CheckConstraint(_in("status", MessageStatus), name="status"),
        CheckConstraint("status <> 'sent' OR (sent_at IS NOT NULL AND smtp_reply IS NOT NULL)", name="sent_has_reply"),
        CheckConstraint("status <> 'failed' OR error IS NOT NULL", name="failed_has_error"),
        CheckConstraint("status <> 'deferred' OR (retry_at IS NOT NULL AND error IS NOT NULL)",
                        name="deferred_has_retry"),
        CheckConstraint("deferrals >= 0", name="deferrals_not_negative"),
        CheckConstraint(f"variant IS NULL OR {VARIANT_LABEL}", name="variant_label"),
        Index("ix_messages_mailbox_reserved", "mailbox_id", "reserved_at"),
        Index("ix_messages_in_doubt", "mailbox_id", postgresql_where=text("status IN ('sending', 'in_doubt')")),
        Index("ix_messages_lead_id", "lead_id"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(BigInteger)
    campaign_id: Mapped[int] = mapped_column(BigInteger)
    lead_id: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(Integer)
    mailbox_id: Mapped[int] = mapped_column(BigInteger)
    work_item_id: Mapped[int | None] = mapped_column(BigInteger)
    attempt: Mapped[int | None] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(Text)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(Text, server_default="sending")
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    reserved_at: Mapped[datetime] = mapped_column(TS)  # the capacity slot's time (the scheduler's `now`)
    sent_at: Mapped[datetime | None] = mapped_column(TS)
    # 4xx answers so far and, while 'deferred', when the step is tried again (same row, same Message-ID).
    deferrals: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    retry_at: Mapped[datetime | None] = mapped_column(TS)
    updated_at: Mapped[datetime] = _created()
    variant: Mapped[str | None] = mapped_column(Text)  # the step variant sent ('A', 'B', ...); NULL: the step had none


class Suppression(Base):
    """Per client: never send to this address, or to anyone at this domain."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("client_id", "kind", "value", name="uq_suppressions_client_kind_value"),
        CheckConstraint(_in("kind", SuppressionKind), name="kind"),
        CheckConstraint("value = lower(value) AND value <> ''", name="value_normalized"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


# -- replies (0006) ------------------------------------------------------------------------------


Enrollment.__table__.append_column(Column("soft_bounces", Integer, nullable=False, server_default="0"))
Enrollment.__table__.append_constraint(CheckConstraint("soft_bounces >= 0", name="soft_bounces_not_negative"))
Sequence_.__table__.append_column(
    Column("stop_company_on_reply", Boolean, nullable=False, server_default=text("false")))
Sequence_.__table__.append_column(Column("auto_reply_wait_days", Integer, nullable=False, server_default="3"))
Sequence_.__table__.append_constraint(
    CheckConstraint("auto_reply_wait_days BETWEEN 0 AND 60", name="auto_reply_wait_days_range"))
Campaign.__table__.append_column(Column("status_reason", Text, nullable=True))
Campaign.__table__.append_column(Column("paused_at", TS, nullable=True))


class InboundMessage(Base):
    """A received message (webhook or IMAP), stored before anything is acted on; one row per client and dedupe key."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("client_id", "dedupe_key", name="uq_inbound_messages_client_dedupe",
                         postgresql_nulls_not_distinct=True),
        ForeignKeyConstraint(["message_pk", "client_id"], ["messages.id", "messages.client_id"],
                             name="fk_inbound_messages_message_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                             name="fk_inbound_messages_lead_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["campaign_id", "client_id"], ["campaigns.id", "campaigns.client_id"],
                             name="fk_inbound_messages_campaign_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                             name="fk_inbound_messages_mailbox_client", ondelete="CASCADE"),
        CheckConstraint(_in("source", InboundSource), name="source"),
        CheckConstraint(_in("kind", InboundKind), name="kind"),
        CheckConstraint("match_kind IS NULL OR " + _in("match_kind", MatchKind), name="match_kind"),
        CheckConstraint("(message_pk IS NULL) = (match_kind IS NULL) AND (message_pk IS NULL OR (lead_id IS NOT "
                        "NULL AND campaign_id IS NOT NULL AND client_id IS NOT NULL))", name="match_complete"),
        CheckConstraint("source <> 'imap' OR (client_id IS NOT NULL AND mailbox_id IS NOT NULL AND folder IS NOT "
                        "NULL AND imap_uid IS NOT NULL)", name="imap_has_place"),
        CheckConstraint("source <> 'webhook' OR (provider IS NOT NULL AND webhook_id IS NOT NULL)",
                        name="webhook_has_id"),
        CheckConstraint("(processed_at IS NULL) = (outcome IS NULL)", name="processed_has_outcome"),
        CheckConstraint("octet_length(raw) <= raw_bytes AND dedupe_key <> ''", name="raw_bounded"),
        Index("uq_inbound_messages_webhook", "provider", "webhook_id", unique=True,
              postgresql_where=text("webhook_id IS NOT NULL")),
        Index("ix_inbound_messages_message_pk", "message_pk"),
        Index("ix_inbound_messages_unprocessed", "received_at", postgresql_where=text("processed_at IS NULL")),
    )
    id: Mapped[int] = _id()
    # NULL only for webhook mail no send of ours matched: stored and reported, never acted on.
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(Text)  # standard_webhooks | mailgun
    webhook_id: Mapped[str | None] = mapped_column(Text)
    mailbox_id: Mapped[int | None] = mapped_column(BigInteger)
    folder: Mapped[str | None] = mapped_column(Text)
    imap_uid: Mapped[int | None] = mapped_column(BigInteger)
    dedupe_key: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)  # the first `inbound_raw_max_bytes` bytes
    raw_bytes: Mapped[int] = mapped_column(Integer)  # the full message's size
    from_address: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    message_pk: Mapped[int | None] = mapped_column(BigInteger)
    lead_id: Mapped[int | None] = mapped_column(BigInteger)
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    match_kind: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)
    status_code: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = _created()
    processed_at: Mapped[datetime | None] = mapped_column(TS)
    outcome: Mapped[str | None] = mapped_column(Text)
    # Whether a matched message could act (False: stored and shown as unverified, changed nothing); why.
    verified: Mapped[bool | None] = mapped_column(Boolean)
    trust: Mapped[str | None] = mapped_column(Text)
    # What the classifier read (issue 18): a `replies.reasons.REASONS` name (complaints: the
    # feedback type), which reader decided, and the server's own diagnostic.
    reason: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(Text)
    diagnostic: Mapped[str | None] = mapped_column(Text)


class ImapCursor(Base):
    """Where reply recovery stopped in one folder of one mailbox."""

    __tablename__ = "imap_cursors"
    __table_args__ = (
        ForeignKeyConstraint(["mailbox_id", "client_id"], ["mailboxes.id", "mailboxes.client_id"],
                             name="fk_imap_cursors_mailbox_client", ondelete="CASCADE"),
        CheckConstraint("uidvalidity > 0 AND last_uid >= 0", name="uids_valid"),
    )
    mailbox_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    folder: Mapped[str] = mapped_column(Text, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigInteger)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _created()


class ConsoleUser(Base):
    """Who may sign in to the operator console: an operator (every client) or a client's viewer."""

    __tablename__ = "console_users"
    __table_args__ = (
        CheckConstraint(_in("role", Role), name="role"),
        CheckConstraint("(role = 'operator') = (client_id IS NULL)", name="role_client"),
        CheckConstraint("email = lower(btrim(email)) AND email <> ''", name="email_normal"),
        Index("uq_console_users_email", "email", unique=True),
    )
    id: Mapped[int] = _id()
    email: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, PHC string
    role: Mapped[str] = mapped_column(Text)
    client_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("clients.id", ondelete="CASCADE"))
    session_epoch: Mapped[int] = mapped_column(Integer, server_default="1")
    failed_logins: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(TS)
    disabled_at: Mapped[datetime | None] = mapped_column(TS)
    last_login_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = _created()


# -- the inbox (0015) ----------------------------------------------------------------------------

# An operator's reclassification (display and analytics only): who, when, and what the classifier said.
InboundMessage.__table__.append_column(Column("classified_kind", Text, nullable=True))
InboundMessage.__table__.append_column(Column("reclassified_by", Text, nullable=True))
InboundMessage.__table__.append_column(Column("reclassified_at", TS, nullable=True))
InboundMessage.__table__.append_constraint(CheckConstraint(
    "(reclassified_by IS NULL) = (reclassified_at IS NULL) AND (reclassified_by IS NULL) = (classified_kind IS NULL) "
    "AND (classified_kind IS NULL OR " + _in("classified_kind", InboundKind) + ")", name="reclassified_complete"))
InboundMessage.__table__.append_constraint(
    UniqueConstraint("id", "client_id", name="uq_inbound_messages_id_client"))  # target of lead_verdicts' FK
# The inbox pages newest first by (received_at, id).
Index("ix_inbound_messages_inbox", InboundMessage.__table__.c.received_at, InboundMessage.__table__.c.id)


class LeadVerdict(Base):
    """An operator's verdict on a lead (interested, not interested, wrong person); the newest one stands, none is erased."""

    __tablename__ = "lead_verdicts"
    __table_args__ = (
        ForeignKeyConstraint(["lead_id", "client_id"], ["leads.id", "leads.client_id"],
                             name="fk_lead_verdicts_lead_client", ondelete="CASCADE"),
        ForeignKeyConstraint(["inbound_message_id", "client_id"], ["inbound_messages.id", "inbound_messages.client_id"],
                             name="fk_lead_verdicts_inbound_client", ondelete="SET NULL (inbound_message_id)"),
        CheckConstraint(_in("verdict", Verdict), name="verdict"),
        CheckConstraint("decided_by <> ''", name="decided_by_named"),
        CheckConstraint("note IS NULL OR char_length(note) <= 1000", name="note_bounded"),
        Index("ix_lead_verdicts_lead_decided", "lead_id", "decided_at"),
        Index("ix_lead_verdicts_inbound_message_id", "inbound_message_id"),
    )
    id: Mapped[int] = _id()
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    lead_id: Mapped[int] = mapped_column(BigInteger)
    inbound_message_id: Mapped[int | None] = mapped_column(BigInteger)  # the reply it was decided on, if any
    verdict: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(Text)  # the console user's email, or 'cli'
    decided_at: Mapped[datetime] = _created()
    note: Mapped[str | None] = mapped_column(Text)
