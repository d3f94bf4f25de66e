"""`make chaos` / `python -m chaos`: every chaos scenario at full size, a table of what happened.

Runs against a scratch database `outbound_chaos` on the embedded Postgres (restarted during the
run: do not point it at a server others use), a temporary Prefect API server and the sandbox
provider. `--write-docs` puts the table into docs/reliability.md. Exit code 1 if any invariant broke.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from sqlalchemy import create_engine, pool, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from chaos import scenarios  # noqa: E402
from chaos.harness import REPO_ROOT, Outcome, Stage, fast_settings, table  # noqa: E402
from shared import db, embedded, migrate  # noqa: E402
from shared.settings import get_settings, reset_settings  # noqa: E402

CHAOS_DATABASE = "outbound_chaos"
DOC = REPO_ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def scratch_database() -> tuple[str, Path]:
    """A fresh, migrated `outbound_chaos` on this checkout's embedded Postgres, and its data dir."""
    os.environ.pop("DATABASE_URL", None)
    reset_settings()
    data_dir = get_settings().data_dir
    base = embedded.start(data_dir)
    admin = create_engine(base, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {CHAOS_DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {CHAOS_DATABASE}"))
    admin.dispose()
    url = make_url(base).set(database=CHAOS_DATABASE).render_as_string(hide_password=False)
    migrate.upgrade("head", url)
    return url, data_dir / "pg"


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.machine()}, {os.cpu_count()} cores, load average {load} (1/5/15 min), Python {platform.python_version()}"


def write_docs(report: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + report + "\n" + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the small sizes `make test` uses")
    parser.add_argument("--only", action="append", help="run only this scenario (function name); repeatable")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOC.relative_to(REPO_ROOT)}")
    parser.add_argument("--logs", type=Path, help="keep every orchestrator's output in this folder")
    args = parser.parse_args(argv)
    scale = scenarios.FAST if args.fast else scenarios.FULL
    chosen = [s for s in scenarios.ALL if not args.only or s.__name__ in args.only]

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from devkit import sandbox

    import logging

    # A killed orchestrator drops its in-flight provider requests: the sandbox logging each is noise.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    url, pg_data = scratch_database()
    started = datetime.now(timezone.utc)
    before = machine()
    outcomes: list[Outcome] = []
    with prefect_test_harness(server_startup_timeout=120), sandbox.serve(latency_ms=20, hit_rate=0.7, seed=1) as sb, \
            tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        stage = Stage(url, PREFECT_API_URL.value(), sb.url, args.logs or Path(scratch), pg_data, fast_settings())
        for scenario in chosen:
            print(f"-- {scenario.__name__} ...", file=sys.stderr, flush=True)
            outcome = scenario(stage, scale, f"{int(time.time())}")
            outcomes.append(outcome)
            print(f"   {'ok' if outcome.ok else 'FAILED'} in {outcome.seconds:.0f}s: {outcome.found}", file=sys.stderr)
    db.dispose_engines()
    report = "\n".join([
        f"Run {started:%Y-%m-%d %H:%M} UTC ({'fast' if args.fast else 'full'} sizes) on {before}; "
        f"after: load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        "",
        table(outcomes),
    ])
    print(report)
    if args.write_docs:
        write_docs(report)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
