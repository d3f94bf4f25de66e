"""The embedded Postgres: a pip-installed server (pgserver) the project starts when DATABASE_URL is unset."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE_NAME = "outbound"
_started: dict[tuple[str, str], str] = {}


def _quiet_runtime_dir() -> None:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): give it a private one.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(f"/tmp/runtime-{os.getuid()}")
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def start(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or attach to) the server whose data lives in `data_dir`; return a URL to `database`.

    The server keeps running after this process exits so the next run reuses it (about a second
    to start cold); `outbound db stop` stops it.
    """
    key = (str(data_dir), database)
    if key in _started:
        return _started[key]
    _quiet_runtime_dir()
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = Path(data_dir) / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    _ensure_database(server, database)
    uri = server.get_uri(database).replace("postgresql://", "postgresql+psycopg2://", 1)
    _started[key] = uri
    return uri


def _ensure_database(server, database: str) -> None:  # noqa: ANN001 - pgserver has no public type
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
        log.info("created database %s", database)


def stop(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    _quiet_runtime_dir()
    import subprocess

    from pgserver._commands import POSTGRES_BIN_PATH

    pgdata = Path(data_dir) / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "stop"]
    if os.geteuid() == 0:
        cmd = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(cmd)]
    return subprocess.run(cmd, capture_output=True).returncode == 0
