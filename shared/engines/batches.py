"""Batches: create them from leads, launch them, claim their chunks, summarize and export them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from shared import csvsafe, workitems
from shared.engines import billing
from shared.files import atomic_write
from shared.settings import get_settings
from shared.status import ACTIVE_SUBSCRIPTIONS, BatchStatus, batch_outcome


class NotFound(LookupError):
    """The named client, campaign or batch does not exist."""


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


def client_id(conn: Connection, name: str) -> int:
    found = conn.execute(text("SELECT id FROM clients WHERE name = :n"), {"n": name}).scalar()
    if found is None:
        raise NotFound(f"client {name!r} does not exist (create it with `outbound clients add {name}`)")
    return int(found)


def campaign_id(conn: Connection, client: int, name: str) -> int:
    found = conn.execute(text("SELECT id FROM campaigns WHERE client_id = :c AND name = :n"),
                         {"c": client, "n": name}).scalar()
    if found is None:
        raise NotFound(f"campaign {name!r} does not exist for this client")
    return int(found)


_NEW_LEADS = """
    SELECT l.id FROM leads l
    WHERE l.client_id = :client AND l.status = 'new' AND l.enriched_at IS NULL
      AND (CAST(:campaign AS bigint) IS NULL OR l.campaign_id = :campaign)
      AND NOT EXISTS (
          SELECT 1 FROM work_items w WHERE w.lead_id = l.id AND w.status IN ('PENDING', 'QUEUED', 'IN_PROGRESS'))
"""


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
             "ON CONFLICT (batch_id, lead_id) DO NOTHING"),
        {"b": batch, "ids": ids, "m": max_attempts or get_settings().max_attempts, "c": client},
    )
    return int(batch)


def launch(conn: Connection, batch_id: int) -> bool:
    """draft → launched (fires the trigger); False when it was not a draft."""
    return conn.execute(
        text("UPDATE batches SET status = 'launched', launched_at = now() WHERE id = :b AND status = 'draft' "
             "RETURNING id"), {"b": batch_id}).first() is not None


def mark_running(conn: Connection, batch_id: int, flow_run_id: str | None) -> str:
    row = conn.execute(
        text("UPDATE batches SET status = 'running', started_at = coalesce(started_at, now()), "
             "flow_run_id = coalesce(CAST(:f AS text), flow_run_id) "
             "WHERE id = :b AND status IN ('draft', 'launched', 'running') RETURNING status"),
        {"b": batch_id, "f": flow_run_id},
    ).first()
    if row is None:
        status = conn.execute(text("SELECT status FROM batches WHERE id = :b"), {"b": batch_id}).scalar()
        if status is None:
            raise NotFound(f"batch {batch_id} does not exist")
        return str(status)
    return str(row.status)


def chunks(engine: Engine, batch_id: int, size: int) -> Iterator[list[int]]:
    """Claim PENDING items in chunks of `size`, one claim per pull (lazy: claim just before work)."""
    while True:
        with engine.begin() as conn:
            claimed = workitems.claim(conn, batch_id, size)
        if not claimed:
            return
        yield [c.id for c in claimed]


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
