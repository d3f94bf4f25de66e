"""The deploy code at the boundary we cannot reach from here (Prefect Cloud, managed pools).

Fakes with the same surface as `prefect.flow` (from_source → .deploy) and the sync Prefect client
(read_work_pool / create_work_pool) record what would be sent. No network, no server: fast, and
part of the ordinary suite. The real local path is exercised in test_trigger_path.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from orchestrator import deploy, worker
from orchestrator.cli import deploy as cli_deploy
from shared.errors import DeployError

GIT = "https://github.com/acme/outbound.git"


@dataclass
class FakeFlow:
    recorder: FakeFlowSource
    source: Any
    entrypoint: str
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.entrypoint.rsplit(":", 1)[1]

    def deploy(self, name: str, **kwargs: Any) -> uuid.UUID:
        deployment_id = uuid.uuid4()
        self.recorder.deploys.append({"entrypoint": self.entrypoint, "name": name, **kwargs})
        self.recorder.ids[name] = deployment_id
        return deployment_id


@dataclass
class FakeFlowSource:
    """Same surface as `prefect.flow`: from_source(source=..., entrypoint=...) → a deployable flow."""

    sources: list[dict[str, Any]] = field(default_factory=list)
    deploys: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def from_source(self, source: Any, entrypoint: str) -> FakeFlow:
        self.sources.append({"source": source, "entrypoint": entrypoint})
        return FakeFlow(self, source, entrypoint)


@dataclass
class FakePoolClient:
    """Same surface as Prefect's sync client for work pools; 404 is Prefect's ObjectNotFound."""

    pools: dict[str, str] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)
    created: list[tuple[str, str]] = field(default_factory=list)

    def read_work_pool(self, work_pool_name: str) -> Any:
        from prefect.exceptions import ObjectNotFound

        self.reads.append(work_pool_name)
        if work_pool_name not in self.pools:
            raise ObjectNotFound(http_exc=Exception("404"), help_message=f"Work pool {work_pool_name!r} not found.")
        return SimpleNamespace(name=work_pool_name, type=self.pools[work_pool_name])

    def create_work_pool(self, work_pool: Any, overwrite: bool = False) -> Any:
        self.pools[work_pool.name] = work_pool.type
        self.created.append((work_pool.name, work_pool.type))
        return SimpleNamespace(name=work_pool.name, type=work_pool.type)


# -- the .git rule, checked before anything else -------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://github.com/acme/outbound",
    "https://github.com/acme/outbound/",
    "https://github.com/bencrane/data-enrichment-orchestration-v1",
])
def test_source_without_dot_git_is_refused_with_the_fix(url):
    with pytest.raises(DeployError, match=r"must end with \.git") as info:
        deploy.check_git_source(url)
    assert url.rstrip("/") + ".git" in str(info.value)


@pytest.mark.parametrize("url", ["github.com/acme/outbound.git", "/home/me/outbound.git", "outbound", ""])
def test_source_that_is_not_a_url_is_refused(url):
    with pytest.raises(DeployError, match="git URL"):
        deploy.check_git_source(url)


def test_git_urls_pass():
    for url in (GIT, "ssh://git@github.com/acme/outbound.git", "git://example.org/x.git"):
        assert deploy.check_git_source(url) == url


def test_bad_source_fails_before_any_call():
    flows, client = FakeFlowSource(), FakePoolClient({"managed-production": "prefect:managed"})
    with pytest.raises(DeployError):
        deploy.deploy_managed("https://github.com/acme/outbound", client=client, flow_source=flows)
    assert client.reads == [] and flows.sources == []


# -- the work pool -------------------------------------------------------------------------------

def test_missing_managed_pool_names_it_and_how_to_create_it():
    flows, client = FakeFlowSource(), FakePoolClient()
    with pytest.raises(DeployError) as info:
        deploy.deploy_managed(GIT, client=client, flow_source=flows)
    message = str(info.value)
    assert "'managed-production'" in message
    assert "prefect work-pool create managed-production --type prefect:managed" in message
    assert flows.sources == []  # nothing cloned or deployed


def test_managed_pool_of_another_type_is_refused():
    flows, client = FakeFlowSource(), FakePoolClient({"managed-production": "process"})
    with pytest.raises(DeployError, match="expected 'prefect:managed'"):
        deploy.deploy_managed(GIT, client=client, flow_source=flows)


# -- what the managed deploy sends ---------------------------------------------------------------

def test_managed_deploy_calls_from_source_and_deploy_exactly_as_the_plan_shows():
    flows, client = FakeFlowSource(), FakePoolClient({"managed-production": "prefect:managed"})
    packages = deploy.managed_packages()
    deployed = deploy.deploy_managed(GIT, client=client, flow_source=flows)

    # The pull step each deployment stores: the repo, sparse-checked-out as prefect.yaml's pull is.
    pull = {deploy.GIT_CLONE_STEP: {"repository": GIT, "branch": None, "directories": ["orchestrator", "shared"]}}
    assert [{**s, "source": s["source"].to_pull_step()} for s in flows.sources] == [
        {"source": pull, "entrypoint": "orchestrator/flows/batch.py:orchestrator_main"},
        {"source": pull, "entrypoint": "orchestrator/flows/enrichment.py:enrichment_daily"},
        {"source": pull, "entrypoint": "orchestrator/flows/campaign.py:activate_campaign"},
        {"source": pull, "entrypoint": "orchestrator/flows/sweep.py:batch_sweep"},
        {"source": pull, "entrypoint": "orchestrator/flows/outreach.py:outreach_run"},
        {"source": pull, "entrypoint": "orchestrator/flows/replies.py:reply_recovery"},
    ]
    main, daily, campaign, sweep, outreach, recovery = flows.deploys
    assert main == {
        "entrypoint": "orchestrator/flows/batch.py:orchestrator_main",
        "name": "orchestrator-main",
        "work_pool_name": "managed-production",
        "job_variables": {"image": "prefecthq/prefect:3.8.8-python3.11", "pip_packages": packages,
                          "env": {"EXECUTOR": "modal", "PREFECT_LOGGING_EXTRA_LOGGERS": "shared"}},
        "tags": ["outbound", "orchestrator", "batch"],
        "parameters": {"batch_size": 50},
    }
    assert daily["name"] == "enrichment-daily"
    [schedule] = daily["schedules"]
    assert (schedule.cron, schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)
    assert daily["job_variables"] == main["job_variables"]
    assert campaign["name"] == "campaign-activation" and "schedules" not in campaign
    assert sweep["name"] == "batch-sweep" and sweep["work_pool_name"] == "managed-production"
    [every] = sweep["schedules"]
    assert (every.cron, every.timezone) == ("*/5 * * * *", "UTC")
    assert outreach["name"] == "outreach-run"
    [passes] = outreach["schedules"]
    assert (passes.cron, passes.timezone) == ("2-59/5 * * * *", "UTC")
    assert outreach["job_variables"] == main["job_variables"]
    assert recovery["name"] == "reply-recovery" and recovery["job_variables"] == main["job_variables"]
    [six] = recovery["schedules"]
    assert (six.cron, six.timezone) == ("0 */6 * * *", "UTC")
    assert deploy.main_deployment_id(deployed) == flows.ids["orchestrator-main"]


def test_managed_deploy_with_a_custom_name_and_subset():
    flows, client = FakeFlowSource(), FakePoolClient({"managed-production": "prefect:managed"})
    specs = deploy.load_specs(only=["orchestrator-main"])
    deployed = deploy.deploy_managed(GIT, client=client, flow_source=flows, specs=specs,
                                     main_name="data-enrichment-orchestrator", pip_packages=["prefect==3.8.8"])
    assert [d["name"] for d in flows.deploys] == ["data-enrichment-orchestrator"]
    assert deploy.main_deployment_id(deployed, "data-enrichment-orchestrator") == flows.ids["data-enrichment-orchestrator"]


DEV_TOOLS = {"pytest", "pytest-timeout", "pytest-httpserver", "hypothesis", "faker", "import-linter", "grimp"}


def _name(pin: str) -> str:
    return pin.split("==")[0].lower().replace("_", "-")


def test_pip_packages_are_the_whole_runtime_lock_and_no_dev_tool():
    packages = deploy.pinned_packages()
    runtime = deploy.read_lock(deploy.LOCK_FILE)
    assert sorted(p.lower() for p in packages) == sorted(p.lower() for p in runtime.values())  # every runtime pin
    assert "prefect==3.8.8" in packages and all("==" in p for p in packages)
    names = {_name(p) for p in packages}
    assert {"prefect", "psycopg2-binary", "sqlalchemy", "modal", "httpx", "aiohttp", "pyyaml", "packaging"} <= names
    assert not names & DEV_TOOLS  # dev tools stay out of production containers
    assert not names & {_name(p) for p in deploy.read_lock(deploy.DEV_LOCK_FILE).values()}


def test_the_dev_extra_is_pinned_in_the_dev_lock_only():
    import tomllib

    from packaging.requirements import Requirement

    dev = tomllib.loads(deploy.PYPROJECT.read_text())["project"]["optional-dependencies"]["dev"]
    runtime, dev_lock = deploy.read_lock(deploy.LOCK_FILE), deploy.read_lock(deploy.DEV_LOCK_FILE)
    for spec in dev:
        name = deploy._normalize(Requirement(spec).name)
        assert name in dev_lock or name in runtime, f"{spec} is not pinned in either lock"
    assert {"pytest", "hypothesis", "faker", "import-linter"} <= set(dev_lock)


def test_pinned_packages_refuses_an_unpinned_dependency(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["prefect>=3", "left-out>=1"]\n')
    (tmp_path / "requirements.lock").write_text("prefect==3.8.8\n")
    with pytest.raises(DeployError, match="left-out"):
        deploy.pinned_packages(tmp_path / "requirements.lock", tmp_path / "pyproject.toml", tmp_path / "none.lock")


def test_pinned_packages_refuses_a_dev_tool_in_the_runtime_lock(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["prefect>=3"]\n')
    (tmp_path / "requirements.lock").write_text("# runtime\nprefect==3.8.8\npytest==9.2.0\n")
    (tmp_path / "requirements-dev.lock").write_text("pytest==9.2.0\n")
    with pytest.raises(DeployError, match="pytest"):
        deploy.pinned_packages(tmp_path / "requirements.lock", tmp_path / "pyproject.toml",
                               tmp_path / "requirements-dev.lock")


# -- local target ----------------------------------------------------------------------------------

def test_local_deploy_creates_the_process_pool_and_uses_the_checkout():
    flows, client = FakeFlowSource(), FakePoolClient()
    deployed = deploy.deploy_local(client=client, flow_source=flows)
    assert client.created == [("local-process", "process")]
    assert {s["source"] for s in flows.sources} == {str(deploy.REPO_ROOT)}
    assert {d["work_pool_name"] for d in flows.deploys} == {"local-process"}
    # The worker's environment is the flow's, plus Prefect's handler on the engine's loggers.
    assert {str(d["job_variables"]) for d in flows.deploys} == {str({"env": {"PREFECT_LOGGING_EXTRA_LOGGERS": "shared"}})}
    assert [d.name for d in deployed] == ["orchestrator-main", "enrichment-daily", "campaign-activation", "batch-sweep",
                                          "outreach-run", "reply-recovery"]

    deploy.deploy_local(client=client, flow_source=flows)  # second time: pool reused
    assert client.created == [("local-process", "process")]


# -- prefect.yaml ----------------------------------------------------------------------------------

def specs_outreach(raw: dict) -> tuple[str, str]:
    (entry,) = [d for d in raw["deployments"] if d["name"] == "outreach-run"]
    return entry["schedules"][0]["cron"], entry["schedules"][0]["timezone"]


def test_prefect_yaml_is_valid_for_prefect_and_has_every_deployment():
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load(deploy.PREFECT_YAML.read_text())
    model = PrefectYamlModel.model_validate(raw)  # Prefect's own schema for `prefect deploy`
    by_name = {d.name: d for d in model.deployments}
    assert set(by_name) == {"orchestrator-main", "enrichment-daily", "campaign-activation", "batch-sweep",
                            "outreach-run", "reply-recovery"}
    assert specs_outreach(raw) == ("2-59/5 * * * *", "UTC")  # one short pass every 5 minutes, off the sweep
    assert by_name["orchestrator-main"].parameters == {"batch_size": 50}
    assert all(d.work_pool.name == "managed-production" for d in model.deployments)
    assert raw["definitions"]["work_pools"]["local_process"]["name"] == "local-process"
    daily = raw["deployments"][1]["schedules"][0]
    assert (daily["cron"], daily["timezone"]) == ("0 2 * * *", "UTC")
    clone, install = raw["pull"]
    assert "prefect.deployments.steps.git_clone" in clone
    assert install["prefect.deployments.steps.pip_install_requirements"]["requirements_file"] == "requirements.lock"
    for pool in raw["definitions"]["work_pools"].values():  # engine logs reach the UI from every pool
        assert pool["job_variables"]["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "shared"


def test_specs_from_prefect_yaml():
    specs = {s.name: s for s in deploy.load_specs()}
    assert specs["enrichment-daily"].crons == (("0 2 * * *", "UTC"),)
    assert specs["orchestrator-main"].entrypoint == "orchestrator/flows/batch.py:orchestrator_main"
    assert specs["reply-recovery"].crons == (("0 */6 * * *", "UTC"),)
    assert specs["reply-recovery"].entrypoint == "orchestrator/flows/replies.py:reply_recovery"
    with pytest.raises(DeployError, match="unknown deployment"):
        deploy.load_specs(only=["reply-recovery-typo"])


def test_a_schedule_without_timezone_is_refused(tmp_path):
    path = tmp_path / "prefect.yaml"
    path.write_text("deployments:\n  - name: x\n    entrypoint: a.py:f\n    schedules:\n      - cron: '0 2 * * *'\n")
    with pytest.raises(DeployError, match="timezone"):
        deploy.load_specs(path)


# -- CLI and worker ---------------------------------------------------------------------------------

def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, as in orchestrator/cli/__init__.py
        pass

    app.add_typer(cli_deploy.deploy_app)
    return app


def test_cli_refuses_a_source_without_dot_git_before_asking_prefect(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(_cli(), ["deploy", "--target", "managed", "--source", "https://github.com/acme/outbound"])
    assert result.exit_code == 1
    assert "must end with .git" in result.output


def test_cli_managed_needs_a_source(monkeypatch):
    monkeypatch.delenv("OUTBOUND_REPO_URL", raising=False)
    result = CliRunner().invoke(_cli(), ["deploy", "--target", "managed"])
    assert result.exit_code == 1
    assert "--source is required" in result.output


def test_cli_refuses_to_deploy_without_a_prefect_api(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "")
    result = CliRunner().invoke(_cli(), ["deploy", "--target", "local"])
    assert result.exit_code == 1
    assert "PREFECT_API_URL is not set" in result.output


def test_cli_secret_push_needs_database_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "")
    result = CliRunner().invoke(_cli(), ["secret", "push"])
    assert result.exit_code == 1
    assert "DATABASE_URL is not set" in result.output


def test_worker_command_is_the_documented_one():
    argv = worker.worker_command("default-agent-pool")
    assert argv[1:] == ["-m", "prefect", "worker", "start", "--pool", "default-agent-pool", "--type", "process"]


def test_ensure_database_url_keeps_an_explicit_url(monkeypatch):
    from orchestrator.secrets import ensure_database_url

    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/d")
    assert ensure_database_url() is False


def test_ensure_database_url_outside_prefect_does_nothing(monkeypatch):
    from orchestrator.secrets import ensure_database_url
    from shared.settings import reset_settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "")
    reset_settings()
    try:
        assert ensure_database_url() is False
    finally:
        reset_settings()


def test_outbound_cli_registers_the_deploy_commands():
    """orchestrator/cli/__init__.py must do `app.add_typer(deploy_app)`: `outbound deploy|secret|worker|bridge`."""
    from tests.e2e.conftest import DEPLOY_COMMANDS, outbound_commands

    assert DEPLOY_COMMANDS <= outbound_commands()


def test_dockerfile_prefect_pins_prefect_from_the_lock_and_listens_on_all_interfaces():
    dockerfile = (deploy.REPO_ROOT / "Dockerfile.prefect").read_text()
    assert "COPY requirements.lock" in dockerfile
    assert "-c /tmp/requirements.lock prefect" in dockerfile  # the lock pins prefect==3.8.8 and its deps
    assert 'CMD ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]' in dockerfile
    assert "prefect==3.8.8" in deploy.LOCK_FILE.read_text().splitlines()
