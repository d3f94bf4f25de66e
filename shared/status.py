"""Every status and kind a row can have, and the work-item state machine as pure rules.

Each enum here is the one list of a column's values: `shared.models` builds the column's CHECK
constraint from it, so the database enforces the same rules (with the guarded UPDATEs in
`shared.workitems`); this module is what Python consults before it asks.
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import IllegalTransition


class ItemStatus(StrEnum):
    """work_items.status."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


TERMINAL = frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.SKIPPED})

TRANSITIONS: dict[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.PENDING: frozenset({ItemStatus.QUEUED}),
    ItemStatus.QUEUED: frozenset({ItemStatus.IN_PROGRESS, ItemStatus.PENDING, ItemStatus.FAILED}),
    ItemStatus.IN_PROGRESS: frozenset(
        {ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.SKIPPED, ItemStatus.PENDING}
    ),
    ItemStatus.DONE: frozenset(),
    ItemStatus.FAILED: frozenset(),
    ItemStatus.SKIPPED: frozenset(),
}


class SkipReason(StrEnum):
    """work_items.skip_reason: why a SKIPPED item was not worked."""

    LEAD_MISSING = "lead_missing"
    UNSUBSCRIBED = "unsubscribed"
    INVALID_LEAD = "invalid_lead"
    CAMPAIGN_PAUSED = "campaign_paused"
    CAMPAIGN_COMPLETED = "campaign_completed"
    SUBSCRIPTION_INACTIVE = "subscription_inactive"
    NO_CREDITS = "no_credits"
    DUPLICATE = "duplicate"
    NO_PROVIDER_HIT = "no_provider_hit"


class BatchStatus(StrEnum):
    """batches.status."""

    DRAFT = "draft"
    LAUNCHED = "launched"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    CANCELLED = "cancelled"


# A batch in one of these is over: nothing claims its items again.
FINISHED_BATCH = frozenset({BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS, BatchStatus.CANCELLED})


class BatchKind(StrEnum):
    """batches.kind: an enrichment batch (orchestrator_main) or an outreach send batch (outreach_run)."""

    ENRICH = "enrich"
    SEND = "send"


class Subscription(StrEnum):
    """A client's subscription (clients.subscription_status)."""

    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELLED = "cancelled"


# Subscriptions that may spend credits and be worked on.
ACTIVE_SUBSCRIPTIONS = (Subscription.ACTIVE.value, Subscription.TRIALING.value)


class CampaignStatus(StrEnum):
    """A campaign's status (campaigns.status)."""

    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"


class LeadStatus(StrEnum):
    """leads.status."""

    NEW = "new"
    ENRICHED = "enriched"
    INVALID = "invalid"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    REPLIED = "replied"


class LedgerKind(StrEnum):
    """credit_ledger.kind."""

    TOPUP = "topup"
    RESERVE = "reserve"
    REFUND = "refund"
    ADJUST = "adjust"


class ProviderOutcome(StrEnum):
    """enrichment_attempts.outcome: what one provider call gave."""

    HIT = "hit"
    MISS = "miss"
    ERROR = "error"
    CACHE_HIT = "cache_hit"
    NO_CREDITS = "no_credits"


class TlsMode(StrEnum):
    """How a mail connection is secured (mailboxes.tls_mode, imap_tls_mode): implicit TLS, STARTTLS, or none
    (local test server only)."""

    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


class MailboxStatus(StrEnum):
    """mailboxes.status."""

    ACTIVE = "active"
    PAUSED = "paused"


class DelayUnit(StrEnum):
    """sequence_steps.delay_unit."""

    BUSINESS_DAYS = "business_days"
    DAYS = "days"


class EnrollmentStatus(StrEnum):
    """enrollments.status."""

    ACTIVE = "active"
    HELD = "held"
    FINISHED = "finished"
    STOPPED = "stopped"


class MessageStatus(StrEnum):
    """messages.status."""

    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    UNKNOWN = "unknown"
    DEFERRED = "deferred"


class SuppressionKind(StrEnum):
    """suppressions.kind: one address, or a whole domain."""

    EMAIL = "email"
    DOMAIN = "domain"


class InboundSource(StrEnum):
    """inbound_messages.source: how the message reached us."""

    WEBHOOK = "webhook"
    IMAP = "imap"


class InboundKind(StrEnum):
    """inbound_messages.kind: what the classifier says the message is."""

    HUMAN_REPLY = "human_reply"
    AUTO_REPLY = "auto_reply"
    UNSUBSCRIBE_REQUEST = "unsubscribe_request"
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"


class MatchKind(StrEnum):
    """inbound_messages.match_kind: how the message was tied to the one we sent."""

    MESSAGE_ID = "message_id"
    VERP = "verp"
    SENDER_SUBJECT = "sender_subject"


class Role(StrEnum):
    """console_users.role: operators see every client, viewers one (read-only)."""

    OPERATOR = "operator"
    VIEWER = "viewer"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The enum's values as plain strings, in definition order."""
    return tuple(member.value for member in enum)


def can_move(source: ItemStatus, target: ItemStatus) -> bool:
    return target in TRANSITIONS[source]


def check_outcome(status: ItemStatus, *, error: str | None, skip_reason: str | None) -> None:
    """A finish must be terminal; SKIPPED carries a reason, FAILED carries an error."""
    if status not in TERMINAL:
        raise IllegalTransition(f"finish needs a terminal status, got {status}")
    if status is ItemStatus.SKIPPED and not skip_reason:
        raise IllegalTransition("SKIPPED needs a skip reason")
    if status is ItemStatus.FAILED and not error:
        raise IllegalTransition("FAILED needs the last error")
    if status is ItemStatus.DONE and (error or skip_reason):
        raise IllegalTransition("DONE carries neither an error nor a skip reason")


def recovery_target(attempts: int, max_attempts: int) -> ItemStatus:
    """Where a stale item goes: back to PENDING while it has attempts left, else FAILED."""
    return ItemStatus.FAILED if attempts >= max_attempts else ItemStatus.PENDING


def batch_outcome(counts: dict[str, int]) -> BatchStatus | None:
    """The batch status its items imply, or None while any item is still moving."""
    if any(counts.get(s, 0) for s in ItemStatus if s not in TERMINAL):
        return None
    return BatchStatus.COMPLETED_WITH_ERRORS if counts.get(ItemStatus.FAILED, 0) else BatchStatus.COMPLETED


class Verdict(StrEnum):
    """An operator's verdict on a lead after reading its reply (`lead_verdicts.verdict`, migration 0015)."""

    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    WRONG_PERSON = "wrong_person"
