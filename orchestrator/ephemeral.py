"""Prefect's temporary API server dies with the process that started it (issue 7.7).

With no PREFECT_API_URL, running a flow makes Prefect start a temporary ("ephemeral") API server:
`SubprocessASGIServer` Popens `python -m uvicorn ... prefect.server.api.server:create_app` and stops
it from an `atexit` hook. A process killed with SIGKILL runs no atexit hook, so every `kill -9` of
`outbound batch run` left that server running for good. `install()` makes Prefect start the same
uvicorn command through `python -m orchestrator.ephemeral <parent pid> ...`, which watches its
parent and shuts the server down (SIGTERM to itself, a hard exit if that hangs) as soon as the
parent is gone. Everything else about the server (environment, port, start-up wait, normal stop)
is Prefect's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

WATCH_SECONDS = 0.5  # how often the server checks that its parent lives
HARD_EXIT_SECONDS = 10.0  # a graceful shutdown that takes longer than this is cut short


def _popen_uvicorn(self: Any) -> subprocess.Popen[Any]:
    """Prefect 3.8's `SubprocessASGIServer._run_uvicorn_command`, run under the parent watchdog."""
    import prefect
    from prefect.settings import get_current_settings

    server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    return subprocess.Popen(
        args=[sys.executable, "-m", "orchestrator.ephemeral", str(os.getpid()),
              "--app-dir", str(prefect.__module_path__.parent), "--factory", "prefect.server.api.server:create_app",
              "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
        env={**os.environ, **server_env, **get_current_settings().to_environment_variables(exclude_unset=True)},
    )


def install() -> None:
    """Route Prefect's temporary server through the watchdog (idempotent).

    Only where a temporary server can start at all (no PREFECT_API_URL): the server module is a
    second and a half of imports that a process talking to a real API never needs.
    """
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return
    from prefect.server.api.server import SubprocessASGIServer

    if getattr(SubprocessASGIServer._run_uvicorn_command, "__name__", "") != _popen_uvicorn.__name__:
        SubprocessASGIServer._run_uvicorn_command = _popen_uvicorn  # type: ignore[method-assign]


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    # Orphaned: re-parented to init or a subreaper. Stop the way a terminal's Ctrl-C would.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(HARD_EXIT_SECONDS)
    os._exit(1)


def main(argv: list[str]) -> None:
    parent, uvicorn_args = int(argv[0]), argv[1:]
    if os.getppid() != parent:  # the parent died before we got here
        raise SystemExit(1)
    threading.Thread(target=_watch, args=(parent,), name="parent-watchdog", daemon=True).start()
    import uvicorn.main

    sys.argv = ["uvicorn", *uvicorn_args]
    uvicorn.main.main()


if __name__ == "__main__":
    main(sys.argv[1:])
