"""CLI commands for running on Prefect: `outbound deploy`, `secret push`, `worker` and `bridge`.

`deploy_app` holds all four; orchestrator/cli/__init__.py merges them into `outbound` with
`app.add_typer(deploy_app)` (no name: the commands join the top level).
"""

from __future__ import annotations

import logging
import os
import signal
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import NoReturn

import typer

from orchestrator import deploy as deploying
from orchestrator import worker as workers
from shared.errors import DeployError

log = logging.getLogger(__name__)

deploy_app = typer.Typer(help="Run on Prefect: deployments, secrets, workers, the trigger bridge.")
secret_app = typer.Typer(help="Prefect Secret blocks the flows read.", no_args_is_help=True)
deploy_app.add_typer(secret_app, name="secret")


class Target(str, Enum):
    managed = "managed"
    local = "local"


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _prefect_api() -> tuple[str, str | None]:
    """PREFECT_API_URL (env or active Prefect profile) and the API key if any; fail if no URL.

    Without a URL Prefect would register into a throwaway in-process server, which no worker or
    Edge Function can reach: refuse instead.
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if not settings.api.url:
        _fail("PREFECT_API_URL is not set. Locally: `prefect server start` in another terminal, then\n"
              "  export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
              "For Prefect Cloud: `prefect cloud login` (or export PREFECT_API_URL and PREFECT_API_KEY).")
    key = settings.api.key.get_secret_value() if settings.api.key else None
    return str(settings.api.url), key


@deploy_app.command("deploy")
def deploy(
    target: Target = typer.Option(..., "--target", "-t", help="managed: Prefect Managed pool from a git URL; "
                                  "local: a process pool running this checkout."),
    source: str = typer.Option(None, "--source", help="managed: the repo's git URL ending in .git "
                               "(env OUTBOUND_REPO_URL). local: a checkout directory (default: this one)."),
    name: str = typer.Option(None, "--name", help="Name for the batch deployment "
                             f"(default {deploying.MAIN_DEPLOYMENT!r})."),
    pool: str = typer.Option(None, "--pool", help=f"Work pool (default {deploying.MANAGED_POOL!r} for managed, "
                             f"{deploying.LOCAL_POOL!r} for local)."),
    only: list[str] = typer.Option(None, "--only", help="Deploy only this prefect.yaml deployment (repeatable)."),
) -> None:
    """Register the deployments declared in prefect.yaml and print their ids.

    The last line, PREFECT_DEPLOYMENT_ID=<uuid>, is the batch deployment's id: the Edge Function
    secret of that name, and what `outbound bridge` uses.
    """
    from prefect.client.orchestration import get_client

    try:
        if target is Target.managed:
            source = source or os.environ.get("OUTBOUND_REPO_URL")
            if not source:
                _fail("--source is required for --target managed, e.g. --source https://github.com/<org>/<repo>.git")
            deploying.check_git_source(source)  # before anything touches the network
            _prefect_api()
            specs = deploying.load_specs(only=only)
            with get_client(sync_client=True) as client:
                deployed = deploying.deploy_managed(source, client=client, pool=pool or deploying.MANAGED_POOL,
                                                    main_name=name, specs=specs)
        else:
            checkout = Path(source).resolve() if source else deploying.REPO_ROOT
            if not checkout.is_dir():
                _fail(f"--source for --target local must be a directory (got {source!r})")
            _prefect_api()
            specs = deploying.load_specs(only=only)
            with get_client(sync_client=True) as client:
                deployed = deploying.deploy_local(client=client, pool=pool or deploying.LOCAL_POOL,
                                                  source=checkout, main_name=name, specs=specs)
    except DeployError as exc:
        _fail(str(exc))
    for d in deployed:
        typer.echo(f"deployed {d.flow_name}/{d.name} on pool {d.work_pool}: {d.deployment_id}")
    main_id = deploying.main_deployment_id(deployed, name)
    if main_id is not None:
        typer.echo(f"PREFECT_DEPLOYMENT_ID={main_id}")


@deploy_app.command("deploy-packages")
def deploy_packages(
    write: bool = typer.Option(False, "--write", help="Rewrite prefect.yaml's generated block instead of checking it."),
    file: Path = typer.Option(deploying.PREFECT_YAML, "--file", help="The prefect.yaml to check or rewrite."),
) -> None:
    """The managed runs' image and pip_packages: the runtime lock minus what Prefect's image has.

    Without --write, exits 1 when prefect.yaml's block is not what the lock gives (after a lock change).
    """
    try:
        image, packages = deploying.managed_image(), deploying.managed_packages()
        locked = len(deploying.pinned_packages())
        if write:
            changed = deploying.write_managed_job_variables(file)
            typer.echo(f"{'updated' if changed else 'unchanged'}: {file}")
        else:
            expected = [li.strip() for li in deploying.managed_job_variables_yaml("").splitlines()]
            if deploying.read_managed_job_variables(file) != expected:
                _fail(f"{file}'s managed job variables are not the lock's: "
                      f"run `outbound deploy-packages --write`")
    except DeployError as exc:
        _fail(str(exc))
    typer.echo(f"image {image}: pip_packages {len(packages)} of the lock's {locked} pins (the rest are in the image)")


@secret_app.command("push")
def secret_push(
    block: str = typer.Option(None, "--block", help="Secret block name (default 'postgres-connection-string')."),
) -> None:
    """Save DATABASE_URL (and MODAL_TOKEN_ID/MODAL_TOKEN_SECRET when set) as Secret blocks; never printed."""
    from orchestrator.secrets import SECRET_BLOCK_NAME, push_database_url
    from shared.db import redacted
    from shared.settings import get_settings, reset_settings

    reset_settings()
    url = get_settings().database_url
    if url is None or not url.get_secret_value():
        _fail("DATABASE_URL is not set: export it (or put it in .env) first.")
    _prefect_api()
    name = block or SECRET_BLOCK_NAME
    push_database_url(url.get_secret_value(), name)
    try:
        shown = redacted(url.get_secret_value())
    except Exception:  # an unparseable URL: still never echo it
        shown = "(hidden)"
    typer.echo(f"Secret block {name!r} saved ({shown})")
    from orchestrator.secrets import MODAL_TOKEN_BLOCKS, push_secret

    for env_name, block_name in MODAL_TOKEN_BLOCKS.items():
        if os.environ.get(env_name):  # for managed runs with EXECUTOR=modal
            push_secret(block_name, os.environ[env_name])
            typer.echo(f"Secret block {block_name!r} saved (from {env_name})")


@deploy_app.command("worker")
def worker_command(
    pool: str = typer.Option(workers.DEFAULT_POOL, "--pool", "-p", help="Work pool to pull flow runs from."),
    worker_type: str = typer.Option("process", "--type", help="Worker type (process runs flows as subprocesses)."),
) -> None:
    """Run a Prefect worker for a non-managed pool (execs `prefect worker start --pool POOL --type process`)."""
    _prefect_api()
    workers.exec_worker(pool, worker_type)


@deploy_app.command("bridge")
def bridge_command(
    deployment_id: str = typer.Option(None, "--deployment-id", envvar="PREFECT_DEPLOYMENT_ID",
                                      help="Deployment to run (default: look up --deployment-name)."),
    deployment_name: str = typer.Option("orchestrator_main/orchestrator-main", "--deployment-name",
                                        help="flow/deployment to look up when no id is given."),
    once: bool = typer.Option(False, "--once", help="Launch what is pending, then exit."),
    timeout: float = typer.Option(None, "--timeout", help="Exit after this many seconds."),
    sweep_seconds: float = typer.Option(30.0, "--sweep-seconds",
                                        help="How often to re-check for launched batches without a flow run."),
) -> None:
    """LISTEN for launched batches (Postgres trigger) and create their Prefect flow runs.

    Stands in for Supabase's pg_net → Edge Function hop wherever that is absent. Stops on Ctrl-C
    or SIGTERM.
    """
    from orchestrator.bridge import Bridge, Launcher
    from shared.db import database_url, redacted

    # A long-running service: its launches are worth seeing without -v.
    for name in ("orchestrator.bridge", __name__):
        logging.getLogger(name).setLevel(logging.INFO)
    api_url, api_key = _prefect_api()
    # The deployment id is looked up on first use, and again after a failure: a Prefect that is
    # down or answers oddly at start-up is logged and retried, never a crash loop.
    launcher = Launcher(api_url, deployment_id or None, api_key, deployment_name=deployment_name)
    url = database_url()
    bridge = Bridge(url, launcher, sweep_seconds=sweep_seconds)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        bridge.stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("bridge: %s -> deployment %s at %s", redacted(url), deployment_id or deployment_name, api_url)
    try:
        launched = bridge.run(once=once, timeout=timeout)
    finally:
        bridge.launcher.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"bridge stopped after {launched} launch(es)")

