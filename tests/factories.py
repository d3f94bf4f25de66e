"""Test helpers on real rows: the rows come from devkit.seed (named here as tests call them), plus lease tweaks."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from devkit.seed import batch, campaign, client, leads

__all__ = ["batch", "campaign", "client", "leads", "item_ids", "expire"]


def item_ids(conn: Connection, batch_id: int) -> list[int]:
    return conn.execute(text("SELECT id FROM work_items WHERE batch_id = :b ORDER BY id"), {"b": batch_id}).scalars().all()


def expire(conn: Connection, item_ids: Sequence[int]) -> None:
    """Make leases (and queue times) lie in the past, as if the worker vanished long ago."""
    conn.execute(
        text(
            "UPDATE work_items SET lease_until = now() - interval '1 second', queued_at = now() - interval '1 day' "
            "WHERE id = ANY(:ids)"
        ),
        {"ids": list(item_ids)},
    )
