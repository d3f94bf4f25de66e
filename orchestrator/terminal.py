"""Terminal output the CLI and the demo share: text shown literally, batch summaries, progress read from Postgres.

Text that came from the database or a file (a client's name, a CSV header) is shown literally. It
never reaches rich's markup parser (it is wrapped in `Text`), and control and format characters
(ANSI escapes, CR/LF, bidi overrides) are shown as escapes (`shown`), so a hostile name can
neither break a table nor disguise itself.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""C0/C1 controls (ESC, CR, LF, ...), zero-width and bidi formatting characters."""


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
