"""The worker entrypoint (ORC-001): run Prefect's process worker for a non-managed work pool.

A managed pool (`managed-production`) needs no worker: Prefect starts the infrastructure. Every
other pool needs a long-running `prefect worker start --pool <pool> --type process` next to the
code: locally that is `local-process`; when managed execution is unavailable, the deployment
plan's fallback is the same worker on `default-agent-pool` (docs/deploy.md).

The worker runs each flow run as a subprocess that inherits the worker's environment, so
DATABASE_URL, PROVIDER_ORDER, EXECUTOR, ... set here reach the flows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

DEFAULT_POOL = "local-process"
FALLBACK_POOL = "default-agent-pool"


def worker_command(pool: str = DEFAULT_POOL, worker_type: str = "process",
                   extra: Sequence[str] = ()) -> list[str]:
    """The documented command line, run with this interpreter so the venv's Prefect is the one used."""
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", worker_type, *extra]


def exec_worker(pool: str = DEFAULT_POOL, worker_type: str = "process", extra: Sequence[str] = ()) -> None:
    """Replace this process with the worker: signals (Ctrl-C, SIGTERM from a supervisor) reach it directly."""
    argv = worker_command(pool, worker_type, extra)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
