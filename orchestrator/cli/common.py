"""What every `outbound` command shares: one-line errors and a ready database (output: orchestrator.terminal).

Errors: every failure ends as ONE line on stderr, `error: ...`, with exit code 2 for usage errors
(bad option values, missing arguments: click's UsageError) and 1 for everything else. The root
group (`OneLineErrors`) turns the domain's exceptions into that line; an unexpected exception
gets the same one line unless `--verbose` asks for the traceback.

Output goes through `orchestrator.terminal` (text shown literally, summaries, progress bars),
which the demo shares.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from typer._click import exceptions as click_exceptions  # typer >= 0.20 vendors click: its exceptions live here
from typer.core import TyperGroup

from orchestrator.terminal import shown
from shared.errors import CliError, SchemaNotReady

T = TypeVar("T")


_state = {"verbose": False}








def error_line(message: str) -> None:
    """One line on stderr; typer.echo never wraps (rich would, at the terminal's width)."""
    one_line = " ".join(shown(message).split()) or "failed"
    typer.echo(typer.style("error:", fg="red") + " " + one_line, err=True)


def fail(message: str) -> NoReturn:
    error_line(message)
    raise typer.Exit(1)


def or_fail(fn: Callable[[], T]) -> T:
    """Run `fn`; a domain NotFound becomes a one-line error and exit code 1."""
    from shared.errors import NotFound

    try:
        return fn()
    except NotFound as exc:
        fail(str(exc))


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = verbose


def _known_errors() -> tuple[type[BaseException], ...]:
    from shared.errors import AlreadyExists, IcpError, KeyConflict, LeadImportError, NotFound, OutputFileError, UserError

    return (CliError, NotFound, AlreadyExists, KeyConflict, LeadImportError, IcpError, OutputFileError, UserError)


def _database_error(exc: BaseException) -> str | None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if isinstance(exc, OperationalError):
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(getattr(exc, "orig", exc)).strip() else ""
        return f"cannot use the database: {first}"
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc.orig):
        first = str(exc.orig).strip().splitlines()[0]
        return f"{first} (is the schema at the latest migration? run: outbound db upgrade)"
    return None


class OneLineErrors(TyperGroup):
    """The root group: every error becomes one line on stderr with the right exit code."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:  # a bare group (`outbound clients`): its help
            if exc.format_message():  # typer's rich mode has printed the help already and leaves this empty
                typer.echo(exc.format_message())
            sys.exit(exc.exit_code)
        except click_exceptions.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            error_line(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except (click_exceptions.ClickException, typer.TyperException) as exc:
            error_line(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        except _known_errors() as exc:
            error_line(str(exc))
            sys.exit(1)
        except Exception as exc:
            message = _database_error(exc)
            if message is None and _state["verbose"]:
                raise
            error_line(message or f"unexpected {type(exc).__name__}: {exc} (run with --verbose for the traceback)")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)


# -- the database -----------------------------------------------------------------------------

_ready: set[str] = set()


def database_ready() -> None:
    """Make sure the schema is current: the embedded database is migrated on first use; a
    DATABASE_URL one is not ours to change, so an old or empty one is one line saying what to run."""
    from alembic.script import ScriptDirectory

    from shared import db, migrate
    from shared.settings import get_settings

    url = db.database_url()
    if url in _ready:
        return
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    current = migrate.current(url)
    if current != head:
        if get_settings().database_url is not None:
            raise SchemaNotReady(f"the database at {db.redacted(url)} is at revision {current or '(empty)'}, "
                                 f"this version needs {head}: run: outbound db upgrade")
        migrate.upgrade("head", url)
        typer.echo(f"migrated the embedded database to revision {head}", err=True)
    _ready.add(url)


# -- batch output -----------------------------------------------------------------------------










