"""The work-item state machine in Postgres: every transition is one guarded UPDATE.

Each function takes a Connection and never commits: the caller owns the transaction. A
transition that finds a row moved by someone else leaves it alone and reports it; it never
overwrites. Every move appends to `status_history` in the same statement. Statements that move
many items a worker also renews from another connection (`finish`, `extend_lease`) lock them in id
order first, so the two never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, text

from shared import liveness
from shared.status import ItemStatus, check_outcome


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    lead_id: int


@dataclass(frozen=True, slots=True)
class Started:
    id: int
    lead_id: int
    batch_id: int
    attempt: int
    client_id: int
    mailbox_id: int | None = None  # a send item's mailbox (None for enrichment items)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker reports for one item: a terminal status for the attempt it holds."""

    item_id: int
    attempt: int
    status: ItemStatus
    error: str | None = None
    skip_reason: str | None = None

    def __post_init__(self) -> None:
        check_outcome(self.status, error=self.error, skip_reason=self.skip_reason)


@dataclass(slots=True)
class Moved:
    """Which items a transition moved, and which it found already moved by someone else."""

    moved: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # release only: moved, but out of attempts


@dataclass(slots=True)
class Recovered:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # (item, attempt it was on): an abandoned attempt's credit reservations are released by the caller.
    abandoned: list[tuple[int, int]] = field(default_factory=list)


_CLAIM = text(
    """
    WITH picked AS (
        SELECT id FROM work_items
        WHERE batch_id = :batch_id AND status = 'PENDING'
        ORDER BY id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE work_items w
        SET status = 'QUEUED', queued_at = now(), updated_at = now(), worker_id = CAST(:claimer AS text)
        FROM picked WHERE w.id = picked.id AND w.status = 'PENDING'
        RETURNING w.id, w.lead_id, w.batch_id, w.attempts, w.client_id
    ), logged AS (
        INSERT INTO status_history (work_item_id, batch_id, client_id, from_status, to_status, attempt)
        SELECT id, batch_id, client_id, 'PENDING', 'QUEUED', attempts FROM moved
    )
    SELECT id, lead_id FROM moved ORDER BY id
    """
)


def claim(conn: Connection, batch_id: int, limit: int, *, claimer: str | None = None) -> list[Claimed]:
    """PENDING → QUEUED for up to `limit` items; concurrent claimers never get the same item.

    `claimer` (a `shared.liveness` token) is kept in `worker_id` until a worker starts the item, so
    items a dead claimer took and never handed on go back at once (`gone_workers`)."""
    rows = conn.execute(_CLAIM, {"batch_id": batch_id, "limit": limit, "claimer": claimer})
    return [Claimed(r.id, r.lead_id) for r in rows]


_START = text(
    """
    WITH moved AS (
        UPDATE work_items
        SET status = 'IN_PROGRESS', attempts = attempts + 1, started_at = now(), updated_at = now(),
            lease_until = now() + make_interval(secs => :lease_seconds), worker_id = :worker_id
        WHERE id = ANY(:ids) AND status = 'QUEUED' AND attempts < max_attempts
        RETURNING id, lead_id, batch_id, attempts, client_id, mailbox_id
    ), logged AS (
        INSERT INTO status_history (work_item_id, batch_id, client_id, from_status, to_status, attempt, detail)
        SELECT id, batch_id, client_id, 'QUEUED', 'IN_PROGRESS', attempts, :worker_id FROM moved
    )
    SELECT id, lead_id, batch_id, attempts, client_id, mailbox_id FROM moved ORDER BY id
    """
)


def start(
    conn: Connection, item_ids: Sequence[int], *, worker_id: str, lease_seconds: float
) -> tuple[list[Started], list[int]]:
    """QUEUED → IN_PROGRESS with attempts+1 and a lease. Returns (started, not startable)."""
    rows = conn.execute(
        _START, {"ids": list(item_ids), "worker_id": worker_id, "lease_seconds": lease_seconds}
    ).all()
    started = [Started(r.id, r.lead_id, r.batch_id, r.attempts, r.client_id, r.mailbox_id) for r in rows]
    got = {s.id for s in started}
    return started, [i for i in item_ids if i not in got]


_FINISH = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), CAST(:statuses AS text[]),
                             CAST(:errors AS text[]), CAST(:reasons AS text[]))
            AS v(id, attempt, status, error, reason)
    ), locked AS MATERIALIZED (
        SELECT w.id FROM work_items w WHERE w.id = ANY(CAST(:ids AS bigint[])) ORDER BY w.id FOR UPDATE
    ), moved AS (
        UPDATE work_items w
        SET status = v.status, last_error = v.error, skip_reason = v.reason,
            finished_at = now(), updated_at = now(), lease_until = NULL
        FROM v JOIN locked ON locked.id = v.id
        WHERE w.id = v.id AND w.status = 'IN_PROGRESS' AND w.attempts = v.attempt
        RETURNING w.id, w.batch_id, w.client_id, w.attempts, v.status, coalesce(v.reason, v.error) AS detail
    ), logged AS (
        INSERT INTO status_history (work_item_id, batch_id, client_id, from_status, to_status, attempt, detail)
        SELECT id, batch_id, client_id, 'IN_PROGRESS', status, attempts, detail FROM moved
    )
    SELECT id FROM moved
    """
)


def finish(conn: Connection, outcomes: Sequence[Outcome]) -> Moved:
    """IN_PROGRESS → DONE/FAILED/SKIPPED, fenced by attempt: a stale worker's finish is refused."""
    if not outcomes:
        return Moved()
    params = {
        "ids": [o.item_id for o in outcomes],
        "attempts": [o.attempt for o in outcomes],
        "statuses": [str(o.status) for o in outcomes],
        "errors": [o.error for o in outcomes],
        "reasons": [o.skip_reason for o in outcomes],
    }
    done = {r.id for r in conn.execute(_FINISH, params)}
    result = Moved()
    for o in outcomes:
        (result.moved if o.item_id in done else result.lost).append(o.item_id)
    return result


_RELEASE = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS v(id, attempt)
    ), moved AS (
        UPDATE work_items w
        SET status = CASE WHEN w.attempts >= w.max_attempts THEN 'FAILED' ELSE 'PENDING' END,
            last_error = :error, lease_until = NULL, worker_id = NULL, updated_at = now(),
            finished_at = CASE WHEN w.attempts >= w.max_attempts THEN now() END
        FROM v WHERE w.id = v.id AND w.status = 'IN_PROGRESS' AND w.attempts = v.attempt
        RETURNING w.id, w.batch_id, w.client_id, w.attempts, w.status
    ), logged AS (
        INSERT INTO status_history (work_item_id, batch_id, client_id, from_status, to_status, attempt, detail)
        SELECT id, batch_id, client_id, 'IN_PROGRESS', status, attempts, :error FROM moved
    )
    SELECT id, status FROM moved
    """
)


def release(conn: Connection, held: Sequence[tuple[int, int]], *, error: str) -> Moved:
    """IN_PROGRESS → PENDING to be tried again (FAILED once out of attempts), fenced like finish.

    For transient trouble (every provider timed out, say): the item is not finished, it is retried.
    """
    if not held:
        return Moved()
    rows = conn.execute(_RELEASE, {"ids": [i for i, _ in held], "attempts": [a for _, a in held], "error": error})
    got = {r.id: r.status for r in rows}
    result = Moved()
    for item_id, _ in held:
        (result.moved if item_id in got else result.lost).append(item_id)
        if got.get(item_id) == ItemStatus.FAILED:
            result.failed.append(item_id)
    return result


_RECOVER = text(
    """
    WITH stale AS (
        SELECT wi.id, wi.status AS old_status, g.why FROM work_items wi
        LEFT JOIN unnest(CAST(:gone AS text[]), CAST(:why AS text[])) AS g(worker, why)
            ON g.worker = wi.worker_id AND wi.status IN ('QUEUED', 'IN_PROGRESS')
        WHERE ((wi.status = 'QUEUED' AND wi.queued_at < now() - make_interval(secs => :queue_timeout))
            OR (wi.status = 'IN_PROGRESS' AND wi.lease_until < now())
            OR (wi.status IN ('QUEUED', 'IN_PROGRESS') AND wi.queued_at >= CAST(:claimed_since AS timestamptz))
            OR g.worker IS NOT NULL)
          AND (CAST(:batch_id AS bigint) IS NULL OR wi.batch_id = :batch_id)
        FOR UPDATE OF wi SKIP LOCKED
    ), moved AS (
        UPDATE work_items w
        SET status = CASE WHEN w.attempts >= w.max_attempts THEN 'FAILED' ELSE 'PENDING' END,
            last_error = CASE
                WHEN stale.why IS NOT NULL
                    THEN 'handed back: its worker is gone (' || stale.why || ') on attempt ' || w.attempts
                WHEN w.queued_at >= CAST(:claimed_since AS timestamptz)
                    THEN 'handed back: its chunk ended without finishing it (attempt ' || w.attempts || ')'
                WHEN stale.old_status = 'QUEUED' THEN CAST(:queued_reason AS text)
                ELSE 'lease expired (worker lost) on attempt ' || w.attempts END,
            lease_until = NULL, worker_id = NULL, updated_at = now(),
            finished_at = CASE WHEN w.attempts >= w.max_attempts THEN now() END
        FROM stale WHERE w.id = stale.id
        RETURNING w.id, w.batch_id, w.client_id, w.attempts, w.status, stale.old_status, w.last_error
    ), logged AS (
        INSERT INTO status_history (work_item_id, batch_id, client_id, from_status, to_status, attempt, detail)
        SELECT id, batch_id, client_id, old_status, status, attempts, last_error FROM moved
    )
    SELECT id, status, attempts, old_status FROM moved ORDER BY id
    """
)


QUEUE_TIMEOUT_REASON = "not started within the queue timeout"


def recover(conn: Connection, *, queue_timeout_seconds: float, batch_id: int | None = None,
            claimed_since: datetime | None = None, queued_reason: str = QUEUE_TIMEOUT_REASON,
            gone_workers: Mapping[str, str] | None = None) -> Recovered:
    """QUEUED past the queue timeout, IN_PROGRESS past its lease → PENDING, or FAILED at max attempts.

    `claimed_since`: also every item still QUEUED or IN_PROGRESS that was claimed at or after this
    time. An orchestrator passes the start of a dispatch round once every chunk of the round has
    returned: whatever those chunks still hold (a chunk that raised, a finish that met a dropped
    connection) has no worker left, and need not wait out its lease.

    `gone_workers` (worker id → why, from `gone_workers()`): also every item QUEUED or IN_PROGRESS
    under one of these workers, which are provably gone: no need to wait out their leases.
    """
    gone = dict(gone_workers or {})
    rows = conn.execute(_RECOVER, {"queue_timeout": queue_timeout_seconds, "batch_id": batch_id,
                                   "claimed_since": claimed_since, "queued_reason": queued_reason,
                                   "gone": list(gone), "why": list(gone.values())})
    result = Recovered()
    for r in rows:
        (result.failed if r.status == ItemStatus.FAILED else result.requeued).append(r.id)
        if r.old_status == ItemStatus.IN_PROGRESS:
            result.abandoned.append((r.id, r.attempts))
    return result


_WORKERS = text(
    """
    SELECT worker_id, extract(epoch FROM clock_timestamp() - max(updated_at)) AS age FROM work_items
    WHERE status IN ('QUEUED', 'IN_PROGRESS') AND worker_id IS NOT NULL
      AND (CAST(:batch_id AS bigint) IS NULL OR batch_id = :batch_id)
    GROUP BY worker_id
    """
)


def gone_workers(conn: Connection, *, batch_id: int | None = None) -> dict[str, str]:
    """Workers holding QUEUED/IN_PROGRESS items that are provably gone (`shared.liveness.judge`, proofs
    only: their PID is dead on this host, or their database session is gone), with the reason.

    A worker merely silent is not here: its lease runs out on its own (`recover`)."""
    gone = {}
    for r in conn.execute(_WORKERS, {"batch_id": batch_id}):
        verdict = liveness.judge_here(conn, r.worker_id, float(r.age), beat_seconds=None, stale_seconds=None)
        if verdict.gone:
            gone[r.worker_id] = verdict.reason
    return gone


_EXTEND = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT w.id FROM work_items w WHERE w.id = ANY(CAST(:ids AS bigint[])) ORDER BY w.id FOR UPDATE
    )
    UPDATE work_items w SET lease_until = now() + make_interval(secs => :lease_seconds), updated_at = now()
    FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[])) AS v(id, attempt) JOIN locked ON locked.id = v.id
    WHERE w.id = v.id AND w.status = 'IN_PROGRESS' AND w.attempts = v.attempt
    RETURNING w.id
    """
)


def extend_lease(conn: Connection, held: Sequence[tuple[int, int]], *, lease_seconds: float) -> Moved:
    """Keep long-running attempts' leases alive; `lost` are items no longer held by that attempt."""
    if not held:
        return Moved()
    got = {r.id for r in conn.execute(_EXTEND, {"ids": [i for i, _ in held], "attempts": [a for _, a in held],
                                                 "lease_seconds": lease_seconds})}
    result = Moved()
    for item_id, _ in held:
        (result.moved if item_id in got else result.lost).append(item_id)
    return result


def counts(conn: Connection, batch_id: int) -> dict[str, int]:
    rows = conn.execute(
        text("SELECT status, count(*) AS n FROM work_items WHERE batch_id = :b GROUP BY status"),
        {"b": batch_id},
    )
    return {r.status: r.n for r in rows}


def skip_reasons(conn: Connection, batch_id: int) -> dict[str, int]:
    rows = conn.execute(
        text(
            "SELECT skip_reason, count(*) AS n FROM work_items WHERE batch_id = :b AND status = 'SKIPPED' "
            "GROUP BY skip_reason ORDER BY n DESC"
        ),
        {"b": batch_id},
    )
    return {r.skip_reason: r.n for r in rows}


def history(conn: Connection, item_id: int) -> list[tuple[str | None, str, int, str | None]]:
    rows = conn.execute(
        text(
            "SELECT from_status, to_status, attempt, detail FROM status_history "
            "WHERE work_item_id = :i ORDER BY id"
        ),
        {"i": item_id},
    )
    return [(r.from_status, r.to_status, r.attempt, r.detail) for r in rows]
