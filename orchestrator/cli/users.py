"""`outbound users …`: who may sign in to the operator console (operators see every client, viewers one)."""

from __future__ import annotations

import json
import sys

import typer

from orchestrator.cli.common import database_ready, or_fail
from orchestrator.terminal import console, literal
from shared import db
from shared.status import Role

users_app = typer.Typer(help="Console sign-in accounts: operators (every client) and client viewers.",
                        no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(email: str,
              role: Role = typer.Option(..., help="operator (every client) or viewer (one client, read-only)."),
              client: str = typer.Option(None, help="The viewer's client (name)."),
              password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin.")) -> None:
    """Create a console account; the password is asked for (or read from stdin), never an argument."""
    from shared.engines.users import users
    from shared.engines.clients import clients

    database_ready()
    password = _password(password_stdin)
    with db.transaction() as conn:
        client_id = or_fail(lambda: clients.client_id(conn, client)) if client else None
        or_fail(lambda: users.create_user(conn, email, password, role=role.value, client_id=client_id))  # type: ignore[arg-type]
    typer.echo(f"console user {users.normalize_email(email)} added ({role.value}{f' of {client}' if client else ''})")


@users_app.command("password")
def users_password(email: str,
                   password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin.")) -> None:
    """Set a new password; every session of the user ends and a lockout is lifted."""
    from shared.engines.users import users

    database_ready()
    password = _password(password_stdin)
    with db.transaction() as conn:
        or_fail(lambda: users.set_password(conn, email, password))
    typer.echo(f"password of {users.normalize_email(email)} changed; their sessions have ended")


@users_app.command("disable")
def users_disable(email: str) -> None:
    """Refuse sign-in and end every session of the user."""
    from shared.engines.users import users

    database_ready()
    with db.transaction() as conn:
        or_fail(lambda: users.set_disabled(conn, email, True))
    typer.echo(f"{users.normalize_email(email)} disabled")


@users_app.command("enable")
def users_enable(email: str) -> None:
    """Allow sign-in again (the user signs in afresh)."""
    from shared.engines.users import users

    database_ready()
    with db.transaction() as conn:
        or_fail(lambda: users.set_disabled(conn, email, False))
    typer.echo(f"{users.normalize_email(email)} enabled")


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Accounts with role, client, and whether disabled or locked."""
    from rich.table import Table

    from shared.engines.users import users

    database_ready()
    with db.transaction() as conn:
        rows = users.list_users(conn)
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    table = Table("email", "role", "client", "disabled", "locked until", "last sign-in")
    for r in rows:
        table.add_row(literal(r["email"]), r["role"], literal(r["client"] or ""), "yes" if r["disabled"] else "",
                      literal(r["locked_until"] or ""), literal(r["last_login_at"] or ""))
    console().print(table)
