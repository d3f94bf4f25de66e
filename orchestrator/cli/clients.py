"""`outbound clients ...`: the agencies' customers, their subscription and credits.

`add` only creates (an existing name is an error, nothing about it changes); `update` changes
only the fields given and says what changed; `topup` applies a payment once per (client, key).
"""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from orchestrator.cli.common import database_ready, or_fail
from orchestrator.terminal import console, literal, shown
from shared import db
from shared.status import Subscription

clients_app = typer.Typer(help="Clients (the agencies' customers): subscription and credits.", no_args_is_help=True)


@clients_app.command("add")
def clients_add(name: str,
                credits: int = typer.Option(0, min=0, help="Starting credits."),
                subscription: Subscription = typer.Option(Subscription.ACTIVE, help="Subscription status.")) -> None:
    """Create a new client, optionally with starting credits (an existing name is refused: use `update`)."""
    from shared.engines.clients import clients
    from shared.engines.clients import billing

    database_ready()
    with db.transaction() as conn:
        client_id = clients.create_client(conn, name, subscription=subscription, credits=credits)
        balance = billing.balance(conn, client_id)
    typer.echo(f"client {shown(name)} (id {client_id}): subscription {subscription.value}, {balance} credits")


@clients_app.command("update")
def clients_update(name: str,
                   subscription: Optional[Subscription] = typer.Option(None, help="New subscription status.")) -> None:
    """Change only the fields given, and say what changed (credits change with `topup`)."""
    from shared.engines.clients import clients

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, name))
        changes = clients.update_client(conn, client_id, subscription=subscription)
    if not changes:
        typer.echo(f"client {shown(name)}: nothing changed")
    for field, (old, new) in changes.items():
        typer.echo(f"client {shown(name)}: {field} {shown(old)} -> {shown(new)}")


@clients_app.command("topup")
def clients_topup(name: str, credits: int = typer.Argument(..., min=1, help="Credits to add."),
                  key: str = typer.Option(..., help="Idempotency key (e.g. the payment id): applied once per client.")) -> None:
    """Add credits once per (client, key): repeating a key adds nothing and says so."""
    from shared.engines.clients import clients

    database_ready()
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, name))
        result = clients.top_up(conn, client_id, credits, key=key)
    if result.applied:
        typer.echo(f"client {shown(name)}: added {result.amount} credits (key {shown(key)}); balance {result.balance}")
    else:
        typer.echo(f"client {shown(name)}: key {shown(key)} already applied ({result.amount} credits), "
                   f"nothing added; balance {result.balance}")


@clients_app.command("list")
def clients_list(as_json: bool = typer.Option(False, "--json", help="One JSON array, for scripts.")) -> None:
    """Clients with subscription, credits and whether the daily run may bill them."""
    from shared.engines.batches import batches

    database_ready()
    with db.transaction() as conn:
        rows = batches.billable_clients(conn)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("id", "name", "credits", "billing check")
    for r in rows:
        table.add_row(str(r["id"]), literal(r["name"]), str(r["credits"]), literal("ok" if r["ok"] else r["reason"]))
    console().print(table)
