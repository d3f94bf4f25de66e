"""The console's batch pages: the list, one batch's live progress and its items, the create form's choices.

Run inside `shared.db.transaction(role=who)`: a viewer's transaction sees only its client's rows
(row-level security), so a batch id of another client reads as "not found", exactly like an id
that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from shared.engines.batches import batches
from shared.engines.clients.clients import visible as visible_clients

ITEMS_SHOWN = 500  # rows of a batch's item table (the counts above it cover every item)


def clients(conn: Connection) -> list[dict[str, Any]]:
    """Clients the scope can see, with how many new leads each could batch now."""
    new = batches.new_leads_by_client(conn)
    return [c | {"new_leads": new.get(c["id"], 0)} for c in visible_clients(conn)]


def list_batches(conn: Connection, *, client_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first, with counts by status (one query; `client_id` narrows an operator's view)."""
    rows = conn.execute(text("""
        SELECT b.id, b.kind, b.status, b.created_at, b.launched_at, b.started_at, b.finished_at,
               c.id AS client_id, c.name AS client, cp.name AS campaign,
               count(w.id) AS total,
               count(w.id) FILTER (WHERE w.status IN ('DONE', 'FAILED', 'SKIPPED')) AS finished,
               count(w.id) FILTER (WHERE w.status = 'DONE') AS done,
               count(w.id) FILTER (WHERE w.status = 'FAILED') AS failed,
               count(w.id) FILTER (WHERE w.status = 'SKIPPED') AS skipped
        FROM batches b JOIN clients c ON c.id = b.client_id
        LEFT JOIN campaigns cp ON cp.id = b.campaign_id AND cp.client_id = b.client_id
        LEFT JOIN work_items w ON w.batch_id = b.id
        WHERE CAST(:client AS bigint) IS NULL OR b.client_id = :client
        GROUP BY b.id, c.id, cp.name ORDER BY b.id DESC LIMIT :limit
    """), {"client": client_id, "limit": limit})
    return [dict(r._mapping) for r in rows]


def progress(conn: Connection, batch_id: int) -> dict[str, Any] | None:
    """What the batch page shows live: status, counts, skip reasons, credits, provider calls. None: not visible."""
    row = conn.execute(text("""
        SELECT b.id, b.kind, b.status, b.client_id, c.name AS client, cp.name AS campaign, b.created_at,
               b.launched_at, b.started_at, b.finished_at, b.flow_run_id, b.runner_id, b.heartbeat_at
        FROM batches b JOIN clients c ON c.id = b.client_id
        LEFT JOIN campaigns cp ON cp.id = b.campaign_id AND cp.client_id = b.client_id
        WHERE b.id = :b
    """), {"b": batch_id}).first()
    if row is None:
        return None
    summary = batches.summary(conn, batch_id).as_dict()
    return dict(row._mapping) | {
        "counts": summary["counts"], "total": summary["total"], "skip_reasons": summary["skip_reasons"],
        "credits_spent": summary["credits_spent"], "provider_calls": summary["provider_calls"],
    }


def items(conn: Connection, batch_id: int, limit: int = ITEMS_SHOWN) -> list[dict[str, Any]]:
    rows = conn.execute(text("""
        SELECT w.id, w.status, w.skip_reason, w.attempts, w.max_attempts, w.last_error, w.updated_at,
               l.id AS lead_id, l.email, l.first_name, l.last_name, l.company_name, l.score
        FROM work_items w JOIN leads l ON l.id = w.lead_id AND l.client_id = w.client_id
        WHERE w.batch_id = :b ORDER BY w.id LIMIT :limit
    """), {"b": batch_id, "limit": limit})
    return [dict(r._mapping) for r in rows]


def visible_client(conn: Connection, client_id: int) -> bool:
    """Is this client in the scope? (A viewer's own client only; row-level security answers.)"""
    return conn.execute(text("SELECT 1 FROM clients WHERE id = :c"), {"c": client_id}).first() is not None
