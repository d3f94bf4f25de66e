"""Real processes for the trigger-path tests: a Prefect server, a process worker, the bridge, Deno.

Everything listens on 127.0.0.1 on free ports, keeps its state in a temp dir, and is stopped
(by its own process id) when the tests are done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from devkit.net import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
DENO_CANDIDATES = (
    REPO_ROOT / "node_modules" / ".bin" / "deno",
    REPO_ROOT / "node_modules" / "@deno" / "linux-x64-glibc" / "deno",
)


def deno_path() -> Path:
    """Deno from npm (`npm ci`); missing is a failure under CI and a skip on a developer machine."""
    for candidate in DENO_CANDIDATES:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    message = "Deno is not installed: run `npm ci` (or `make deno`) at the repo root"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Proc:
    """A child process in its own process group, with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = REPO_ROOT
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal our own child's process group (it may have spawned flow-run subprocesses)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self._log is not None:
            self._log.close()
        return self.popen.returncode


DEPLOY_COMMANDS = {"deploy", "secret", "worker", "bridge"}


def outbound_argv() -> list[str]:
    """The `outbound` CLI, as `python -m orchestrator.cli`.

    Until orchestrator/cli/__init__.py registers the deploy commands (test_deploy_boundary checks that it
    does), the same app with `deploy_app` added stands in.
    """
    if DEPLOY_COMMANDS <= outbound_commands():
        return [sys.executable, "-m", "orchestrator.cli"]
    return [sys.executable, "-c", "from orchestrator.cli import app; from orchestrator.cli.deploy import deploy_app; "
                                  "app.add_typer(deploy_app); app(prog_name='outbound')"]


def outbound_commands() -> set[str]:
    """Top-level command names of the `outbound` app, as click sees them."""
    import typer.main

    from orchestrator.cli import app

    return set(typer.main.get_command(app).commands)


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    env: dict[str, str]  # what a client of this server needs (PREFECT_API_URL, PREFECT_HOME, ...)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api_url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api_url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    server_env = {
        **base,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    server = Proc("prefect-server", [sys.executable, "-m", "prefect", "server", "start",
                                     "--host", "127.0.0.1", "--port", str(port)],
                  server_env, home / "server.log").start()

    def healthy() -> bool:
        assert server.alive(), f"prefect server exited:\n{server.output()[-3000:]}"
        try:
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 90, "prefect server /api/health")
        client_env = {
            **base,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        yield PrefectServer(api_url, client_env)
    finally:
        server.stop()
