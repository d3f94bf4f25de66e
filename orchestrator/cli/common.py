"""What every `outbound` command shares: the consoles, one-line errors, the batch summary table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

console = Console()
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def or_fail(fn: Callable[[], T]) -> T:
    """Run `fn`; a domain NotFound becomes a one-line error and exit code 1."""
    from shared.engines.batches import NotFound

    try:
        return fn()
    except NotFound as exc:
        fail(str(exc))


def print_summary(s: dict[str, Any]) -> None:
    table = Table(title=f"Batch {s['batch_id']}: {s['status']}", show_footer=True)
    table.add_column("status", footer="total")
    table.add_column("items", justify="right", footer=str(s.get("total", sum(s.get("counts", {}).values()))))
    for status, n in sorted(s.get("counts", {}).items()):
        table.add_row(status, str(n))
    console.print(table)
    if s.get("skip_reasons"):
        reasons = Table("skip reason", "items", title="Skipped, and why")
        for reason, n in s["skip_reasons"].items():
            reasons.add_row(reason, str(n))
        console.print(reasons)
    if s.get("provider_calls"):
        calls = Table("provider", "outcome", "calls", title="Provider calls")
        for provider, outcomes in s["provider_calls"].items():
            for outcome, n in outcomes.items():
                calls.add_row(provider, outcome, str(n))
        console.print(calls)
    if "credits_spent" in s:
        console.print(f"credits spent: [bold]{s['credits_spent']}[/bold]")
