"""One console transaction in the signed-in user's database role: the tenant boundary Postgres enforces.

A viewer's transaction runs as `outbound_tenant` with `outbound.client_id` set to the viewer's
client (both transaction-local: `SET LOCAL ROLE` and `set_config(..., true)`, so they end with the
transaction and are safe behind a transaction pooler); 0004's policies then hide every other
client's rows and its grants refuse every write. An operator's runs as `outbound_operator`, which
sees and may change every client's rows of the secured tables and nothing else (not the
enrichment cache, not the launch secret, not console users' password hashes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

from shared.engines.users.users import Principal

TENANT_ROLE = "outbound_tenant"
OPERATOR_ROLE = "outbound_operator"


def enter(conn: Connection, who: Principal) -> None:
    """Switch the current transaction to `who`'s role (and client)."""
    if who.is_operator:
        conn.execute(text(f"SET LOCAL ROLE {OPERATOR_ROLE}"))
        return
    if who.client_id is None:  # the table's CHECK makes this impossible; refuse rather than see nothing silently
        raise PermissionError(f"viewer {who.email} has no client")
    conn.execute(text(f"SET LOCAL ROLE {TENANT_ROLE}"))
    conn.execute(text("SELECT set_config('outbound.client_id', :c, true)"), {"c": str(who.client_id)})


@contextmanager
def scoped(engine: Engine, who: Principal) -> Iterator[Connection]:
    """A transaction in `who`'s role: committed when the block ends, rolled back when it raises."""
    with engine.begin() as conn:
        enter(conn, who)
        yield conn
