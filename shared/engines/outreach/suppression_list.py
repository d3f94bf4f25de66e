"""The console's suppression list page: search with paging, the client choices, one client's name.

Run inside `shared.db.transaction(role=who)`: a viewer's transaction sees only its client's entries
(row-level security), so nothing here filters by client for isolation; `client_id` only narrows an
operator's view. Adding, importing and exporting are the engine's own functions
(`shared.engines.outreach.suppression`): the console has no second copy of them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

PAGE_SIZE = 100  # entries per page
MAX_QUERY_CHARS = 200  # a search text longer than any value, reason or source worth finding

# Case-insensitive substring on value, reason and source. strpos, not LIKE: a `%` or `_` typed
# into the search box is a character to find, not a wildcard.
_MATCHES = """
    (CAST(:client AS bigint) IS NULL OR s.client_id = :client)
    AND (CAST(:q AS text) IS NULL
         OR strpos(s.value, lower(:q)) > 0
         OR strpos(lower(s.reason), lower(:q)) > 0
         OR strpos(lower(s.source), lower(:q)) > 0)
"""


def clean_query(q: str | None) -> str:
    """The search text as searched: trimmed, bounded, without NUL (Postgres text cannot hold one)."""
    return (q or "").replace("\x00", "").strip()[:MAX_QUERY_CHARS]


def _params(client_id: int | None, q: str | None) -> dict[str, Any]:
    return {"client": client_id, "q": clean_query(q) or None}


def search(conn: Connection, *, client_id: int | None = None, q: str | None = None, page: int = 1,
           per_page: int = PAGE_SIZE) -> list[dict[str, Any]]:
    """One page of entries, newest first: kind, value, reason, source, created_at, client."""
    rows = conn.execute(text(f"""
        SELECT s.id, s.kind, s.value, s.reason, s.source, s.created_at, s.client_id, c.name AS client
        FROM suppressions s JOIN clients c ON c.id = s.client_id
        WHERE {_MATCHES}
        ORDER BY s.created_at DESC, s.id DESC
        LIMIT :limit OFFSET :offset
    """), _params(client_id, q) | {"limit": per_page, "offset": (max(page, 1) - 1) * per_page})
    return [dict(r._mapping) for r in rows]


def count(conn: Connection, *, client_id: int | None = None, q: str | None = None) -> int:
    """How many entries `search` pages through."""
    return conn.execute(text(f"SELECT count(*) FROM suppressions s WHERE {_MATCHES}"),
                        _params(client_id, q)).scalar_one()


def client_name(conn: Connection, client_id: int) -> str | None:
    """The client's name, or None when it does not exist or is not in the scope (row-level security)."""
    return conn.execute(text("SELECT name FROM clients WHERE id = :c"), {"c": client_id}).scalar()
