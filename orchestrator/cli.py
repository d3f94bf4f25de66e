"""The `outbound` command line."""

from __future__ import annotations

import logging

import typer

from shared import db, embedded, migrate
from shared.settings import get_settings

app = typer.Typer(help="Outbound-sales engine: leads in, enriched, scored, batched through Prefect.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
db_app = typer.Typer(help="The database: migrations and the embedded server.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


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


if __name__ == "__main__":
    app()
