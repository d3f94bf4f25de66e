"""The work-item state machine as pure rules: statuses, legal moves, skip reasons.

The database enforces the same rules (CHECK constraints, guarded UPDATEs in `shared.workitems`);
this module is what Python consults before it asks.
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import IllegalTransition


class ItemStatus(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


# Subscriptions that may spend credits and be worked on.
ACTIVE_SUBSCRIPTIONS = ("active", "trialing")

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
    DRAFT = "draft"
    LAUNCHED = "launched"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    CANCELLED = "cancelled"


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
