"""`outbound clients ...`: the agencies' customers, their subscription and credits."""

from __future__ import annotations

import typer
from rich.table import Table

from orchestrator.cli.common import console, or_fail
from shared import db

clients_app = typer.Typer(help="Clients (the agencies' customers): subscription and credits.", no_args_is_help=True)


@clients_app.command("add")
def clients_add(name: str, credits: int = typer.Option(0, help="Starting credits."),
                subscription: str = typer.Option("active", help="trialing, active, past_due or cancelled.")) -> None:
    """Create a client (or update its subscription), optionally with starting credits."""
    from sqlalchemy import text

    from shared.engines import billing

    with db.transaction() as conn:
        client_id = conn.execute(
            text("INSERT INTO clients (name, subscription_status) VALUES (:n, :s) "
                 "ON CONFLICT (name) DO UPDATE SET subscription_status = EXCLUDED.subscription_status RETURNING id"),
            {"n": name, "s": subscription},
        ).scalar_one()
        if credits:
            billing.add_credits(conn, client_id, credits, key=f"cli:add:{client_id}:{credits}:{name}")
        balance = billing.balance(conn, client_id)
    typer.echo(f"client {name} (id {client_id}): subscription {subscription}, {balance} credits")


@clients_app.command("topup")
def clients_topup(name: str, credits: int,
                  key: str = typer.Option(..., help="Idempotency key (e.g. the payment id): applied once.")) -> None:
    """Add credits once per idempotency key."""
    from shared.engines import batches, billing

    with db.transaction() as conn:
        client_id = or_fail(lambda: batches.client_id(conn, name))
        applied = billing.add_credits(conn, client_id, credits, key=key)
        balance = billing.balance(conn, client_id)
    typer.echo(f"{'added' if applied else 'already applied:'} {credits} credits; balance {balance}")


@clients_app.command("list")
def clients_list() -> None:
    """Clients with subscription and credits."""
    from shared.engines import batches

    with db.transaction() as conn:
        rows = batches.billable_clients(conn)
    table = Table("id", "name", "credits", "billing check")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], str(r["credits"]), "ok" if r["ok"] else r["reason"])
    console.print(table)
