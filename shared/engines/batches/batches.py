"""Batches: create them from leads, launch them, claim their chunks, summarize and export them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from shared import csvsafe, db, liveness, workitems
from shared.engines.clients import billing
from shared.errors import BatchCancelled, BatchIsDraft, BatchTakenOver, NotAnEnrichmentBatch, NotFound
from shared.files import atomic_write
from shared.settings import get_settings
from shared.status import ACTIVE_SUBSCRIPTIONS, BatchStatus, batch_outcome


@dataclass(slots=True)
class BatchSummary:
    batch_id: int
    status: str
    total: int
    counts: dict[str, int]
    skip_reasons: dict[str, int]
    credits_spent: int
    provider_calls: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "status": self.status, "total": self.total, "counts": self.counts,
            "skip_reasons": self.skip_reasons, "credits_spent": self.credits_spent,
            "provider_calls": self.provider_calls,
        }


_NEW_LEADS = """
    SELECT l.id, l.client_id FROM leads l
    WHERE (CAST(:client AS bigint) IS NULL OR l.client_id = :client) AND l.status = 'new' AND l.enriched_at IS NULL
      AND (CAST(:campaign AS bigint) IS NULL OR l.campaign_id = :campaign)
      AND NOT EXISTS (  -- a cancelled batch's PENDING items will never run: their leads are new again
          SELECT 1 FROM work_items w JOIN batches b ON b.id = w.batch_id
          WHERE w.lead_id = l.id AND w.status IN ('PENDING', 'QUEUED', 'IN_PROGRESS') AND b.status <> 'cancelled')
"""


def new_leads_count(conn: Connection, client: int, campaign: int | None = None) -> int:
    """How many leads `create_batch` would take now."""
    return new_leads_by_client(conn, client=client, campaign=campaign).get(client, 0)


def new_leads_by_client(conn: Connection, *, client: int | None = None, campaign: int | None = None) -> dict[int, int]:
    """client id → how many leads `create_batch` would take now, for every client in one query."""
    rows = conn.execute(text(f"SELECT client_id, count(*) AS n FROM ({_NEW_LEADS}) n GROUP BY client_id"),
                        {"client": client, "campaign": campaign})
    return {r.client_id: r.n for r in rows}


def create_batch(conn: Connection, *, client: int, campaign: int | None = None,
                 lead_ids: Sequence[int] | None = None, launch: bool = False,
                 max_attempts: int | None = None) -> int | None:
    """A batch over the given leads, or over the client's new leads not already in flight.

    Returns None when there is nothing to do. With `launch`, the batch is created 'launched',
    which is what fires the launch trigger.
    """
    status = BatchStatus.LAUNCHED if launch else BatchStatus.DRAFT
    if lead_ids is None:
        ids = conn.execute(text(_NEW_LEADS + " ORDER BY l.id"), {"client": client, "campaign": campaign}).scalars().all()
    else:
        ids = list(lead_ids)
    if not ids:
        return None
    batch = conn.execute(
        text("INSERT INTO batches (client_id, campaign_id, status, launched_at) "
             "VALUES (:c, :camp, :s, CASE WHEN :s = 'launched' THEN now() END) RETURNING id"),
        {"c": client, "camp": campaign, "s": str(status)},
    ).scalar_one()
    conn.execute(
        text("INSERT INTO work_items (batch_id, lead_id, client_id, max_attempts) "
             "SELECT :b, l.id, l.client_id, :m FROM leads l WHERE l.id = ANY(:ids) AND l.client_id = :c "
             "ORDER BY l.id ON CONFLICT (batch_id, lead_id) DO NOTHING"),  # items in lead order: runs are repeatable
        {"b": batch, "ids": ids, "m": max_attempts or get_settings().max_attempts, "c": client},
    )
    return int(batch)


def launch(conn: Connection, batch_id: int) -> bool:
    """draft → launched (fires the trigger); False when it was not a draft."""
    return conn.execute(
        text("UPDATE batches SET status = 'launched', launched_at = now() WHERE id = :b AND status = 'draft' "
             "RETURNING id"), {"b": batch_id}).first() is not None


def cancel(conn: Connection, batch_id: int) -> bool:
    """draft/launched/running → cancelled; False when it was already finished (or is a send batch).

    Its orchestrator stops claiming at its next claim or heartbeat (both re-read the row; a claim
    holds a share lock on it, so no claim slips in after this commits); items already being worked
    finish, PENDING items stay PENDING for the record and their leads count as new again.
    """
    return conn.execute(
        text("UPDATE batches SET status = 'cancelled', finished_at = now() "
             "WHERE id = :b AND kind = 'enrich' AND status IN ('draft', 'launched', 'running') RETURNING id"),
        {"b": batch_id}).first() is not None


# The launch time goes into the launch's idempotency key; migration 0002's trigger uses the same expression.
_AWAITING_RUN = """
    SELECT id, coalesce(launched_at, created_at) AS launched FROM batches
    WHERE status = 'launched' AND flow_run_id IS NULL AND (CAST(:b AS bigint) IS NULL OR id = :b) ORDER BY id
"""


def awaiting_flow_run(conn: Connection) -> list[tuple[int, datetime]]:
    """(id, launch time) of every batch that is 'launched' with no flow run yet: what the trigger hands on."""
    return [(r.id, r.launched) for r in conn.execute(text(_AWAITING_RUN), {"b": None})]


def awaiting_launch_time(conn: Connection, batch_id: int) -> datetime | None:
    """The launch time of this batch if it is 'launched' with no flow run yet, else None (the re-check
    before every launch: a notification or a sweep only names a batch, the table decides)."""
    row = conn.execute(text(_AWAITING_RUN), {"b": batch_id}).first()
    return None if row is None else row.launched


def record_flow_run(conn: Connection, batch_id: int, flow_run_id: str) -> bool:
    """Note the flow run a launch created; False when the batch no longer awaits one."""
    return conn.execute(
        text("UPDATE batches SET flow_run_id = :run WHERE id = :b AND status = 'launched' AND flow_run_id IS NULL "
             "RETURNING id"), {"run": flow_run_id, "b": batch_id}).first() is not None


def status(conn: Connection, batch_id: int) -> str | None:
    return conn.execute(text("SELECT status FROM batches WHERE id = :b"), {"b": batch_id}).scalar()


@dataclass(frozen=True, slots=True)
class Taken:
    """What `take` found: the batch is ours now, or whose it is, or that it is already over.

    `verdict` is `shared.liveness.judge`'s word on the previous holder (None when there was none
    to judge): why it was taken over, or why it was left alone ('alive' or 'silent').
    """

    batch_id: int
    status: str
    taken: bool
    runner_id: str | None = None
    heartbeat_age_seconds: float | None = None
    verdict: liveness.Verdict | None = None
    previous_runner: str | None = None

    @property
    def busy(self) -> bool:
        """Someone else runs it (its runner is not provably gone)."""
        return (not self.taken and self.status in (BatchStatus.LAUNCHED, BatchStatus.RUNNING)
                and self.runner_id is not None and not (self.verdict is not None and self.verdict.gone))

    @property
    def silent(self) -> bool:
        """Busy, but its runner missed its heartbeats: judge again after `verdict.wait_seconds`."""
        return self.busy and self.verdict is not None and self.verdict.state == "silent"

    def describe(self) -> str:
        if self.taken:
            took = (f" (taken over from {liveness.shown(self.previous_runner)}: {self.verdict.reason})"
                    if self.previous_runner and self.verdict is not None else "")
            return f"batch {self.batch_id} is now run by {liveness.shown(self.runner_id)}{took}"
        if self.busy:
            age = "no heartbeat yet" if self.heartbeat_age_seconds is None else \
                f"heartbeat {self.heartbeat_age_seconds:.0f} s ago"
            text_ = f"batch {self.batch_id} is being run by {liveness.shown(self.runner_id)}, {age}"
            return text_ + (f" ({self.verdict.reason})" if self.silent and self.verdict is not None else "")
        return f"batch {self.batch_id} is already {self.status}"


_HOLDER = """
    SELECT status, kind, runner_id, extract(epoch FROM clock_timestamp() - heartbeat_at) AS age
    FROM batches WHERE id = :b
"""


def holder(conn: Connection, batch_id: int, *, stale_seconds: float, beat_seconds: float | None = None) -> Taken:
    """Who runs the batch now and `shared.liveness.judge`'s verdict on them; changes nothing.

    `taken` is False; `busy` means a runner that is not provably gone holds it (`silent`: one that
    missed its heartbeats, judged again after `verdict.wait_seconds`). Raises NotFound."""
    found = conn.execute(text(_HOLDER), {"b": batch_id}).first()
    if found is None:
        raise NotFound(f"batch {batch_id} does not exist")
    age = None if found.age is None else float(found.age)
    verdict = None
    if found.runner_id is not None and found.status in (BatchStatus.LAUNCHED, BatchStatus.RUNNING):
        verdict = liveness.judge_here(conn, found.runner_id, age, beat_seconds=beat_seconds,
                                      stale_seconds=stale_seconds)
        if not verdict.gone:
            return Taken(batch_id, str(found.status), False, found.runner_id, age, verdict)
    return Taken(batch_id, str(found.status), False, found.runner_id, age, verdict)

_TAKE = text("""
    UPDATE batches
    SET status = 'running', started_at = coalesce(started_at, now()),
        flow_run_id = coalesce(CAST(:flow_run AS text), flow_run_id), runner_id = :runner, heartbeat_at = now()
    WHERE id = :b
    RETURNING status
""")


def take(conn: Connection, batch_id: int, runner_id: str, *, flow_run_id: str | None, stale_seconds: float,
         allow_draft: bool = False, beat_seconds: float | None = None) -> Taken:
    """Become the batch's one orchestrator: launched/running → running with our runner id and a heartbeat.

    The batch row is locked (FOR UPDATE) while its holder is judged, so of two orchestrators
    racing for a batch exactly one wins (the second reads the winner's fresh row). A batch whose
    runner is provably gone (`shared.liveness.judge`: its PID is dead on this host, its database
    session is gone, or its heartbeat is older than `stale_seconds`) is taken over; `beat_seconds`
    (the heartbeat interval) lets a vanished session count and a silent runner be told apart.
    Taking a batch we already hold succeeds again (a retried statement). A draft is refused unless
    `allow_draft` (the operator's explicit `outbound batch run N`): a NOTIFY or a stray flow run
    must not start what nobody launched. Raises NotFound or BatchIsDraft; a finished or busy
    batch comes back with `taken=False`.
    """
    found = conn.execute(text(_HOLDER + " FOR UPDATE"), {"b": batch_id}).first()
    if found is None:
        raise NotFound(f"batch {batch_id} does not exist")
    if found.kind != "enrich":
        raise NotAnEnrichmentBatch(f"batch {batch_id} is an outreach send batch: outreach_run works it")
    age = None if found.age is None else float(found.age)
    if found.status == BatchStatus.DRAFT and not allow_draft:
        raise BatchIsDraft(f"batch {batch_id} is a draft: launch it with `outbound batch launch {batch_id}` "
                           f"(or run it here with `outbound batch run {batch_id}`)")
    if found.status not in (BatchStatus.LAUNCHED, BatchStatus.RUNNING, BatchStatus.DRAFT):
        return Taken(batch_id, str(found.status), False, found.runner_id, age)
    verdict = None
    if found.runner_id is not None and found.runner_id != runner_id:
        verdict = liveness.judge_here(conn, found.runner_id, age, beat_seconds=beat_seconds,
                                      stale_seconds=stale_seconds)
        if not verdict.gone:
            return Taken(batch_id, str(found.status), False, found.runner_id, age, verdict)
    row = conn.execute(_TAKE, {"b": batch_id, "runner": runner_id, "flow_run": flow_run_id}).one()
    previous = found.runner_id if found.runner_id != runner_id else None
    return Taken(batch_id, str(row.status), True, runner_id, 0.0, verdict, previous)


def heartbeat(conn: Connection, batch_id: int, runner_id: str) -> bool:
    """Say we are alive; False when the batch is no longer ours (taken over, or finished)."""
    return conn.execute(
        text("UPDATE batches SET heartbeat_at = now() WHERE id = :b AND runner_id = :r AND status = 'running' "
             "RETURNING id"), {"b": batch_id, "r": runner_id}).first() is not None


def let_go(conn: Connection, batch_id: int, runner_id: str) -> bool:
    """Give the batch up (the run stopped early): the next orchestrator or sweep need not wait for staleness."""
    return conn.execute(
        text("UPDATE batches SET runner_id = NULL, heartbeat_at = NULL WHERE id = :b AND runner_id = :r "
             "RETURNING id"), {"b": batch_id, "r": runner_id}).first() is not None


@dataclass(frozen=True, slots=True)
class Stalled:
    """A batch that should be moving and is not: launched but never started, or running with a dead runner."""

    batch_id: int
    client_id: int
    status: str
    flow_run_id: str | None
    since: datetime  # the last sign of life: heartbeat, start, launch or creation

    def resume_key(self, bucket: int) -> str:
        """Idempotency key for resuming it: one flow run per stall (`since`) per retry window (`bucket`)."""
        return f"batch-{self.batch_id}-resume-{self.since.astimezone(timezone.utc):%Y%m%d%H%M%S%f}-{bucket}"


_STALLED = text("""
    SELECT id, client_id, status, flow_run_id, runner_id,
           coalesce(heartbeat_at, started_at, launched_at, created_at) AS since,
           extract(epoch FROM clock_timestamp() - coalesce(heartbeat_at, started_at, launched_at, created_at)) AS age
    FROM batches
    WHERE kind = 'enrich'  -- send batches belong to outreach_run, which recovers its own
      AND (CAST(:client AS bigint) IS NULL OR client_id = :client)
      AND ((status = 'running'
            AND coalesce(heartbeat_at, started_at, launched_at, created_at) < now() - make_interval(secs => :maybe))
        OR (status = 'launched'
            AND coalesce(heartbeat_at, launched_at, created_at) < now() - make_interval(secs => :grace)))
    ORDER BY id
""")


def stalled(conn: Connection, *, stale_seconds: float, launch_grace_seconds: float,
            client: int | None = None, beat_seconds: float | None = None) -> list[Stalled]:
    """Batches left `running` by a dead orchestrator, or `launched` with nothing started for them.

    A running batch is stalled when `shared.liveness.judge` finds its runner gone: its heartbeat
    is older than `stale_seconds`, or (with `beat_seconds`, after a couple of missed beats) its
    PID is dead on this host or its database session is gone.
    """
    maybe = min(stale_seconds, liveness.MISSED_BEATS_FOR_SESSION_PROOF * beat_seconds) if beat_seconds else stale_seconds
    rows = conn.execute(_STALLED, {"stale": stale_seconds, "grace": launch_grace_seconds, "client": client,
                                   "maybe": maybe})
    found = []
    for r in rows:
        if r.status == BatchStatus.RUNNING and r.runner_id is not None and not liveness.judge_here(
                conn, r.runner_id, float(r.age), beat_seconds=beat_seconds, stale_seconds=stale_seconds).gone:
            continue
        found.append(Stalled(r.id, r.client_id, r.status, r.flow_run_id, r.since))
    return found


def db_now(conn: Connection) -> datetime:
    """The database's clock (claim times are stamped with it, so comparisons must use it too)."""
    return conn.execute(text("SELECT clock_timestamp()")).scalar_one()


_RUNNER_CHECK = text("SELECT runner_id, status FROM batches WHERE id = :b FOR SHARE")


def chunks(engine: Engine, batch_id: int, size: int, runner_id: str | None = None) -> Iterator[list[int]]:
    """Claim PENDING items in chunks of `size`, one claim per pull (lazy: claim just before work).

    With `runner_id`, each claim first checks (under a share lock on the batch row, which a
    take-over's UPDATE must wait for) that the batch is still ours, and raises BatchTakenOver
    when it is not: two orchestrators never both claim. A claim that meets a dropped connection is
    tried again; one committed whose answer was lost leaves QUEUED items that the caller hands
    back after the round (`workitems.recover(claimed_since=...)`).
    """

    def claim_one() -> list[int]:
        with db.transaction(engine) as conn:
            if runner_id is not None:
                holder, state = conn.execute(_RUNNER_CHECK, {"b": batch_id}).one()
                if state == BatchStatus.CANCELLED:
                    raise BatchCancelled(f"batch {batch_id} was cancelled; {runner_id} stops claiming")
                if holder != runner_id:
                    raise BatchTakenOver(f"batch {batch_id} was taken over by {holder}; {runner_id} stops claiming")
            return [c.id for c in workitems.claim(conn, batch_id, size, claimer=liveness.me(conn).token())]

    while True:
        claimed = db.retrying(claim_one, what=f"batch_id={batch_id} claim")
        if not claimed:
            return
        yield claimed


def summary(conn: Connection, batch_id: int) -> BatchSummary:
    status = conn.execute(text("SELECT status FROM batches WHERE id = :b"), {"b": batch_id}).scalar()
    if status is None:
        raise NotFound(f"batch {batch_id} does not exist")
    counts = workitems.counts(conn, batch_id)
    calls: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        text("SELECT a.provider, a.outcome, count(*) AS n FROM enrichment_attempts a "
             "JOIN work_items w ON w.id = a.work_item_id WHERE w.batch_id = :b GROUP BY 1, 2 ORDER BY 1, 2"),
        {"b": batch_id},
    ):
        calls.setdefault(r.provider, {})[r.outcome] = r.n
    return BatchSummary(batch_id, str(status), sum(counts.values()), counts,
                        workitems.skip_reasons(conn, batch_id), billing.spent(conn, batch_id=batch_id), calls)


def finalize(conn: Connection, batch_id: int) -> BatchSummary:
    """Set the batch's status from its items once they are all terminal, and store the summary."""
    result = summary(conn, batch_id)
    outcome = batch_outcome(result.counts)
    if outcome is not None and result.status not in (BatchStatus.CANCELLED,):
        conn.execute(
            text("UPDATE batches SET status = :s, finished_at = now(), summary = CAST(:j AS jsonb) WHERE id = :b"),
            {"s": str(outcome), "b": batch_id, "j": _json(result.as_dict() | {"status": str(outcome)})},
        )
        result.status = str(outcome)
    return result


def top_leads(conn: Connection, batch_id: int, limit: int = 10) -> list[dict[str, Any]]:
    rows = conn.execute(
        text("SELECT l.id, l.email, l.first_name, l.last_name, l.title, l.company_name, l.score, l.score_tier "
             "FROM work_items w JOIN leads l ON l.id = w.lead_id "
             "WHERE w.batch_id = :b AND w.status = 'DONE' AND l.score IS NOT NULL "
             "ORDER BY l.score DESC, l.id LIMIT :n"),
        {"b": batch_id, "n": limit},
    ).mappings()
    return [dict(r) for r in rows]


EXPORT_COLUMNS = ("item_id", "item_status", "attempts", "skip_reason", "last_error", "lead_id", "email",
                  "first_name", "last_name", "title", "company_name", "company_domain", "country", "lead_status",
                  "enrichment_provider", "enrichment_confidence", "seniority", "department", "industry",
                  "company_size", "score", "score_tier")


def export(conn: Connection, batch_id: int, path: Path, *, overwrite: bool = False) -> int:
    """Write the batch's items and their leads to CSV; returns rows written.

    Cells are spreadsheet-safe and quoted (`shared.csvsafe.writer`); the file is created new
    (an existing one is refused unless `overwrite`) and appears whole or not at all
    (`shared.files.atomic_write`, which raises OutputFileError naming the path and the cause).
    """
    summary(conn, batch_id)  # raises NotFound
    rows = conn.execution_options(stream_results=True, max_row_buffer=5000).execute(
        text(
            "SELECT w.id AS item_id, w.status AS item_status, w.attempts, w.skip_reason, w.last_error, "
            "l.id AS lead_id, l.email, l.first_name, l.last_name, l.title, l.company_name, l.company_domain, "
            "l.country, l.status AS lead_status, l.enrichment_provider, l.enrichment_confidence, "
            "l.enrichment ->> 'seniority' AS seniority, l.enrichment ->> 'department' AS department, "
            "l.enrichment ->> 'industry' AS industry, l.enrichment ->> 'company_size' AS company_size, "
            "l.score, l.score_tier "
            "FROM work_items w JOIN leads l ON l.id = w.lead_id WHERE w.batch_id = :b ORDER BY w.id"
        ),
        {"b": batch_id},
    )
    n = 0
    with atomic_write(Path(path), overwrite=overwrite) as fh:
        writer = csvsafe.writer(fh)
        writer.writerow(EXPORT_COLUMNS)
        for r in rows:
            writer.writerow([r._mapping[c] for c in EXPORT_COLUMNS])
            n += 1
    return n


def billable_clients(conn: Connection) -> list[dict[str, Any]]:
    """Every client with its billing check result: (ok, reason) for the daily enrichment run."""
    out = []
    for r in conn.execute(text("SELECT id, name, subscription_status, credit_balance FROM clients ORDER BY id")):
        if r.subscription_status not in ACTIVE_SUBSCRIPTIONS:
            reason = f"subscription {r.subscription_status}"
        elif r.credit_balance <= 0:
            reason = "no credits left"
        else:
            reason = None
        out.append({"id": r.id, "name": r.name, "ok": reason is None, "reason": reason,
                    "credits": r.credit_balance})
    return out


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
