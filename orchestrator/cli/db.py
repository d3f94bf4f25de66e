"""`outbound db ...`: migrations and the embedded Postgres server."""

from __future__ import annotations

import typer

from shared import db, embedded, migrate
from shared.settings import get_settings

db_app = typer.Typer(help="The database: migrations and the embedded server.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations to DATABASE_URL, or to the embedded Postgres when it is unset."""
    url = db.database_url()
    migrate.upgrade(revision, url)
    typer.echo(f"database at {db.redacted(url)} is at revision {migrate.current(url)}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base.")) -> None:
    """Undo migrations down to REVISION."""
    url = db.database_url()
    migrate.downgrade(revision, url)
    typer.echo(f"database at {db.redacted(url)} is at revision {migrate.current(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the applied revision."""
    typer.echo(migrate.current() or "(empty: run `outbound db upgrade`)")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use, password hidden."""
    typer.echo(db.redacted(db.database_url()))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres (it otherwise keeps running between commands)."""
    stopped = embedded.stop(get_settings().data_dir)
    typer.echo("embedded Postgres stopped" if stopped else "embedded Postgres was not running")
