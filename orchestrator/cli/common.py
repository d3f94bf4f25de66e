"""What every `outbound` command shares: one-line errors, literal output, a ready database, summaries.

Errors: every failure ends as ONE line on stderr, `error: ...`, with exit code 2 for usage errors
(bad option values, missing arguments: click's UsageError) and 1 for everything else. The root
group (`OneLineErrors`) turns the domain's exceptions into that line; an unexpected exception
gets the same one line unless `--verbose` asks for the traceback.

Output: text that came from the database or a file (a client's name, a CSV header) is shown
literally. It never reaches rich's markup parser (it is wrapped in `Text`), and control and
format characters (ANSI escapes, CR/LF, bidi overrides) are shown as escapes (`shown`), so a
hostile name can neither break a table nor disguise itself.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from typer._click import exceptions as click_exceptions  # typer >= 0.20 vendors click: its exceptions live here
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from shared.errors import CliError, SchemaNotReady

T = TypeVar("T")

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""C0/C1 controls (ESC, CR, LF, ...), zero-width and bidi formatting characters."""

_state = {"verbose": False}


def shown(value: object) -> str:
    """`value` as text safe to print: control and format characters become visible escapes.

    A backslash is doubled, so a name holding the two characters `\\n` never looks like one
    holding a line break (`\\\\n` and `\\n`)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                       str(value).replace("\\", "\\\\"))


def literal(value: object, style: str = "") -> Text:
    """A rich Text that shows `value` exactly (no markup parsing, escapes made visible)."""
    return Text(shown(value), style=style)


def console() -> Console:
    """A console made now, so it sees the terminal (and COLUMNS) of this call."""
    return Console()


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


def print_summary(s: dict[str, Any], out: Console | None = None) -> None:
    out = out or console()
    table = Table(title=Text(f"Batch {s['batch_id']}: {shown(s['status'])}"), show_footer=True)
    table.add_column("status", footer="total")
    table.add_column("items", justify="right", footer=str(s.get("total", sum(s.get("counts", {}).values()))))
    for status, n in sorted(s.get("counts", {}).items()):
        table.add_row(literal(status), str(n))
    out.print(table)
    if s.get("skip_reasons"):
        reasons = Table("skip reason", "items", title="Skipped, and why")
        for reason, n in s["skip_reasons"].items():
            reasons.add_row(literal(reason), str(n))
        out.print(reasons)
    if s.get("provider_calls"):
        calls = Table("provider", "outcome", "calls", title="Provider calls")
        for provider, outcomes in s["provider_calls"].items():
            for outcome, n in outcomes.items():
                calls.add_row(literal(provider), literal(outcome), str(n))
        out.print(calls)
    if "credits_spent" in s:
        out.print(Text.assemble("credits spent: ", (str(s["credits_spent"]), "bold")))


def run_with_progress(batch_id: int, batch_size: int, out: Console | None = None) -> dict[str, Any]:
    """Run orchestrator_main in a thread while a progress bar reads the item counts from Postgres."""
    from orchestrator.flows.batch import orchestrator_main
    from shared import db, workitems

    out = out or console()
    outcome: dict[str, Any] = {}

    def flow() -> None:
        try:
            # The operator asked for this batch by id: a draft is started too.
            outcome["summary"] = orchestrator_main(batch_id=batch_id, batch_size=batch_size, allow_draft=True)
        except BaseException as exc:  # surfaced below, after the progress bar closes
            outcome["error"] = exc

    def counts() -> dict[str, int] | None:
        # The bar is only a view: a poll that meets a restarting database skips a tick, as the flow
        # itself rides out the restart; anything else is a real error.
        try:
            with db.transaction() as conn:
                return workitems.counts(conn, batch_id)
        except Exception as exc:
            if not db.is_transient(exc):
                raise
            return None

    total = sum((counts() or {}).values()) or None
    thread = threading.Thread(target=flow, name="orchestrator_main", daemon=True)
    started = time.perf_counter()
    thread.start()
    with Progress(TextColumn("batch {task.fields[batch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=out) as progress:
        task = progress.add_task("enrich", total=total, batch=batch_id, detail="starting Prefect…")
        while thread.is_alive():
            thread.join(0.25)
            now = counts()
            if now is None:
                progress.update(task, detail="database unreachable, the run is retrying…")
                continue
            finished = sum(now.get(s, 0) for s in ("DONE", "FAILED", "SKIPPED"))
            detail = " ".join(f"{k.lower()}={v}" for k, v in sorted(now.items()))
            progress.update(task, completed=finished, detail=detail)
    if "error" in outcome:
        raise outcome["error"]
    outcome["summary"]["seconds"] = time.perf_counter() - started
    return outcome["summary"]


def wait_line(batch_id: int, judge: Callable[[], Any], seen: Any, out: Console | None = None) -> None:
    """One progress line while the batch's runner is silent (missed heartbeats, not stale yet).

    `judge` re-reads the holder (`batches.holder`); returns as soon as it is no longer silent: gone
    (the caller takes over), alive again, or the batch finished."""
    out = out or console()
    out.print(literal(_waiting(batch_id, seen)))
    with Progress(TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=out, transient=False) as progress:
        task = progress.add_task("wait", total=None, detail=_waiting(batch_id, seen))
        while seen.silent:
            time.sleep(min(0.5, max(0.05, seen.verdict.wait_seconds)))
            seen = judge()
            progress.update(task, detail=_waiting(batch_id, seen) if seen.silent else
                            f"batch {batch_id}: {seen.verdict.reason if seen.verdict else 'free'}")


def _waiting(batch_id: int, seen: Any) -> str:
    from shared import liveness

    return shown(f"batch {batch_id}: waiting for {liveness.shown(seen.runner_id)}: {seen.verdict.reason} "
                 f"(in {seen.verdict.wait_seconds:.0f} s)")


def follow_progress(batch_id: int, judge: Callable[[], Any], seen: Any, out: Console | None = None) -> None:
    """Show the progress of the live runner that holds the batch, until it finishes or that runner is
    no longer alive (then the caller judges again: takes over, or waits for a silent runner)."""
    from shared import db, liveness, workitems

    out = out or console()
    out.print(literal(f"following batch {batch_id}, run by {liveness.shown(seen.runner_id)}"))
    with Progress(TextColumn("batch {task.fields[batch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=out) as progress:
        task = progress.add_task("follow", total=None, batch=batch_id, detail="")
        while seen.busy and not seen.silent:
            try:
                with db.transaction() as conn:
                    now = workitems.counts(conn, batch_id)
            except Exception as exc:
                if not db.is_transient(exc):
                    raise
                progress.update(task, detail="database unreachable…")
            else:
                finished = sum(now.get(s, 0) for s in ("DONE", "FAILED", "SKIPPED"))
                detail = " ".join(f"{k.lower()}={v}" for k, v in sorted(now.items()))
                progress.update(task, total=sum(now.values()) or None, completed=finished, detail=detail)
            time.sleep(0.5)
            seen = judge()
