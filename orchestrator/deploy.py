"""Register the Prefect deployments declared in prefect.yaml: on the managed pool (from a git URL) or on a local process pool.

Managed follows the deployment plan exactly: `flow.from_source(GitRepository("https://...git",
directories=[...]), entrypoint).deploy(work_pool_name="managed-production", job_variables={"image": ...,
"pip_packages": [...]}, ...)`, the directories being prefect.yaml's sparse checkout (pull_directories).
Local registers the same deployments against the local checkout on a process pool, for a
`prefect server` plus `outbound worker` on this machine.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from uuid import UUID

import yaml

from shared.errors import DeployError

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
LOCK_FILE = REPO_ROOT / "requirements.lock"  # runtime
DEV_LOCK_FILE = REPO_ROOT / "requirements-dev.lock"  # the dev extra's tools, never deployed
PYPROJECT = REPO_ROOT / "pyproject.toml"

MANAGED_POOL = "managed-production"
MANAGED_POOL_TYPE = "prefect:managed"
LOCAL_POOL = "local-process"
LOCAL_POOL_TYPE = "process"
MAIN_DEPLOYMENT = "orchestrator-main"
GIT_CLONE_STEP = "prefect.deployments.steps.git_clone"


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of prefect.yaml's `deployments:` list, reduced to what we pass to Prefect."""

    name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    description: str | None = None
    # (cron, timezone) pairs; every schedule in prefect.yaml names its timezone.
    crons: tuple[tuple[str, str], ...] = ()
    # prefect.yaml's `concurrency_limit` ({limit, collision_strategy}), passed to Prefect as is.
    concurrency: dict[str, Any] | None = None


@dataclass(frozen=True)
class Deployed:
    name: str
    flow_name: str
    deployment_id: UUID
    work_pool: str


# -- the surfaces we call (Prefect's own objects satisfy them; tests pass small fakes) ----------

class LoadedFlow(Protocol):
    name: str

    def deploy(self, name: str, **kwargs: Any) -> UUID: ...


class FlowSource(Protocol):
    """`prefect.flow` (the decorator object) has this: `flow.from_source(source=..., entrypoint=...)`."""

    def from_source(self, source: Any, entrypoint: str) -> LoadedFlow: ...


class PoolClient(Protocol):
    """The part of Prefect's sync client we use: `get_client(sync_client=True)`."""

    def read_work_pool(self, work_pool_name: str) -> Any: ...

    def create_work_pool(self, work_pool: Any, overwrite: bool = False) -> Any: ...


# -- prefect.yaml --------------------------------------------------------------------------------

def load_specs(path: Path = PREFECT_YAML, only: Iterable[str] | None = None) -> list[DeploymentSpec]:
    """The deployments prefect.yaml declares (anchors resolved), optionally only some by name."""
    config = yaml.safe_load(path.read_text())
    specs: list[DeploymentSpec] = []
    for entry in config.get("deployments") or []:
        crons: list[tuple[str, str]] = []
        for schedule in entry.get("schedules") or []:
            if "cron" not in schedule:
                raise DeployError(f"{path.name}: deployment {entry['name']!r} has a non-cron schedule")
            if not schedule.get("timezone"):
                raise DeployError(f"{path.name}: deployment {entry['name']!r} schedule needs an explicit timezone")
            crons.append((schedule["cron"], schedule["timezone"]))
        limit = entry.get("concurrency_limit")
        if crons and not (isinstance(limit, dict) and limit.get("limit") and limit.get("collision_strategy")):
            raise DeployError(f"{path.name}: scheduled deployment {entry['name']!r} needs a concurrency_limit "
                              f"with limit and collision_strategy (a run must not queue behind the last one)")
        specs.append(DeploymentSpec(
            name=entry["name"],
            entrypoint=entry["entrypoint"],
            parameters=dict(entry.get("parameters") or {}),
            tags=tuple(entry.get("tags") or ()),
            description=entry.get("description"),
            crons=tuple(crons),
            concurrency=dict(entry["concurrency_limit"]) if entry.get("concurrency_limit") else None,
        ))
    if only:
        wanted = set(only)
        unknown = wanted - {s.name for s in specs}
        if unknown:
            raise DeployError(f"unknown deployment(s) {sorted(unknown)}; {path.name} has {[s.name for s in specs]}")
        specs = [s for s in specs if s.name in wanted]
    return specs


# -- pinned packages for the managed pool --------------------------------------------------------

def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(lock: Path) -> dict[str, str]:
    """{normalized name: 'Name==version'} for each pin of a lock file (comments and blank lines skipped)."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalize(name.split("[", 1)[0])] = f"{name.strip()}=={version.strip()}"
    return pins


def pinned_packages(lock: Path = LOCK_FILE, pyproject: Path = PYPROJECT, dev_lock: Path = DEV_LOCK_FILE) -> list[str]:
    """Every pin of the runtime lock (requirements.lock), for the managed pool's `pip_packages`.

    The whole runtime lock, not only the direct dependencies: pip would otherwise resolve the
    transitive ones afresh in each container, and production would run versions nobody tested.
    Refuses a lock that misses a direct runtime dependency of pyproject.toml, or that carries a
    development tool (anything in requirements-dev.lock): those never go to production.
    """
    from packaging.requirements import Requirement

    locked = read_lock(lock)
    for spec in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        name = Requirement(spec).name
        if _normalize(name) not in locked:
            raise DeployError(f"{name} is a dependency in {pyproject.name} but not pinned in {lock.name}")
    dev_tools = sorted(set(locked) & set(read_lock(dev_lock))) if dev_lock.exists() else []
    if dev_tools:
        raise DeployError(f"{lock.name} pins development tools {dev_tools}; they belong in {dev_lock.name} only")
    return sorted(locked.values(), key=str.lower)


# -- what the managed image already has ----------------------------------------------------------

# The managed runs' Python: the tests', the lock's and the Modal images' minor version.
MANAGED_PYTHON = "3.11"
PREFECT_DISTRIBUTION = "prefect"


def managed_image(lock: Path = LOCK_FILE) -> str:
    """The managed runs' image: Prefect's own, at exactly the prefect version the lock pins."""
    pin = read_lock(lock).get(PREFECT_DISTRIBUTION)
    if pin is None:
        raise DeployError(f"{lock.name} does not pin {PREFECT_DISTRIBUTION}: the managed image is chosen by its version")
    return f"prefecthq/prefect:{pin.split('==', 1)[1]}-python{MANAGED_PYTHON}"


def image_distributions(lock: Path = LOCK_FILE) -> set[str]:
    """The distributions `managed_image` already has: prefect's dependency closure (normalized names).

    Read from this environment's installed metadata (markers evaluated for it: Linux, Python
    3.11, like the image), which must be the lock's versions: an installed version that differs
    from its pin is refused (re-create the venv from the lock), so the subtraction is computed
    at exactly the versions we lock. Prefect's image installs prefect without extras.
    """
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    locked = read_lock(lock)
    installed = {_normalize(d.metadata["Name"]): d for d in metadata.distributions()}
    names: set[str] = set()
    todo = [(PREFECT_DISTRIBUTION, frozenset[str]())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in installed:
            raise DeployError(f"{name} (needed by {PREFECT_DISTRIBUTION}) is not installed: run `make venv` first")
        version = installed[name].version
        if name in locked and locked[name].split("==", 1)[1] != version:
            raise DeployError(f"installed {name} {version} is not the locked {locked[name]}: run `make venv` first")
        names.add(name)
        for spec in installed[name].requires or []:
            dependency = Requirement(spec)
            if dependency.marker is None or any(
                    dependency.marker.evaluate({**default_environment(), "extra": extra}) for extra in ("", *extras)):
                todo.append((_normalize(dependency.name), frozenset(dependency.extras)))
    return names


def managed_packages(lock: Path = LOCK_FILE, pyproject: Path = PYPROJECT, dev_lock: Path = DEV_LOCK_FILE) -> list[str]:
    """The managed pool's `pip_packages`: the runtime lock's pins minus what `managed_image` already has."""
    in_image = image_distributions(lock)
    return [pin for pin in pinned_packages(lock, pyproject, dev_lock)
            if _normalize(pin.split("==", 1)[0].split("[", 1)[0]) not in in_image]


# prefect.yaml's managed job variables are generated between these lines (`outbound deploy-packages --write`).
PACKAGES_BEGIN = "# BEGIN managed job variables: generated by `outbound deploy-packages --write`, checked by tests"
PACKAGES_END = "# END managed job variables"


def managed_job_variables_yaml(indent: str, lock: Path = LOCK_FILE) -> str:
    """The generated block of prefect.yaml: `image:` and `pip_packages:` at `indent`, between the markers."""
    lines = [f"{indent}{PACKAGES_BEGIN}", f"{indent}image: {managed_image(lock)}", f"{indent}pip_packages:"]
    lines += [f"{indent}  - {pin}" for pin in managed_packages(lock)]
    return "\n".join([*lines, f"{indent}{PACKAGES_END}"]) + "\n"


def _generated_block(path: Path) -> tuple[list[str], int, int]:
    lines = path.read_text().splitlines(keepends=True)
    begin = next((i for i, li in enumerate(lines) if li.strip() == PACKAGES_BEGIN), None)
    end = next((i for i, li in enumerate(lines) if li.strip() == PACKAGES_END), None)
    if begin is None or end is None or end < begin:
        raise DeployError(f"{path.name} has no generated block: add the lines {PACKAGES_BEGIN!r} and "
                          f"{PACKAGES_END!r} under the managed pool's job_variables")
    return lines, begin, end


def read_managed_job_variables(path: Path = PREFECT_YAML) -> list[str]:
    """prefect.yaml's generated block, markers included, without its indentation."""
    lines, begin, end = _generated_block(path)
    return [li.strip() for li in lines[begin:end + 1]]


def write_managed_job_variables(path: Path = PREFECT_YAML, lock: Path = LOCK_FILE) -> bool:
    """Rewrite prefect.yaml's generated block from the lock; True when it changed."""
    text = path.read_text()
    lines, begin, end = _generated_block(path)
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    updated = "".join(lines[:begin]) + managed_job_variables_yaml(indent, lock) + "".join(lines[end + 1:])
    if updated != text:
        path.write_text(updated)
    return updated != text


# -- source and pool checks ----------------------------------------------------------------------

def pull_directories(path: Path = PREFECT_YAML) -> list[str]:
    """The directories prefect.yaml's git_clone pull step checks out (sparse): the packages the flows import."""
    config = yaml.safe_load(path.read_text())
    for step in config.get("pull") or []:
        if GIT_CLONE_STEP in step:
            return list(step[GIT_CLONE_STEP].get("directories") or [])
    raise DeployError(f"{path.name}: the pull steps have no {GIT_CLONE_STEP}")


def managed_source(url: str) -> Any:
    """The git repository at `url` as managed runs pull it: only pull_directories() checked out, as prefect.yaml's pull does."""
    from prefect.runner.storage import GitRepository

    return GitRepository(url=url, directories=pull_directories())


def check_git_source(source: str) -> str:
    """The source URL, if Prefect will treat it as a git repository; otherwise a DeployError.

    Prefect only clones URLs whose path ends in `.git` (or git:// URLs); any other https URL is
    taken as fsspec remote storage and the deploy fails obscurely, which is how the first managed
    deploy attempts failed. Checked before any network call.
    """
    parsed = urlparse(source)
    if parsed.scheme not in ("https", "http", "ssh", "git") or not parsed.netloc:
        raise DeployError(
            f"--source must be a git URL such as https://github.com/<org>/<repo>.git (got {source!r})"
        )
    if not parsed.path.endswith(".git"):
        raise DeployError(
            f"--source must end with .git (got {source!r}): Prefect treats other URLs as file "
            f"storage, not a git repository. Use {source.rstrip('/')}.git"
        )
    return source


def _pool_type(pool: Any) -> str:
    return str(getattr(pool, "type", ""))


def require_pool(client: PoolClient, name: str, expected_type: str) -> None:
    """Fail with the command that creates the pool when it is missing or of another type."""
    from prefect.exceptions import ObjectNotFound

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        raise DeployError(
            f"work pool {name!r} does not exist in this Prefect workspace. Create it with:\n"
            f"  prefect work-pool create {name} --type {expected_type}"
        ) from None
    if _pool_type(pool) != expected_type:
        raise DeployError(f"work pool {name!r} has type {_pool_type(pool)!r}; expected {expected_type!r}")


def ensure_pool(client: PoolClient, name: str, pool_type: str = LOCAL_POOL_TYPE) -> bool:
    """Create the work pool if missing; True if it was created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    try:
        client.read_work_pool(name)
        return False
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
        return True


def _default_flow_source() -> FlowSource:
    from prefect import flow

    return flow


def _schedules(spec: DeploymentSpec) -> list[Any]:
    from prefect.schedules import Cron

    return [Cron(cron, timezone=tz) for cron, tz in spec.crons]


def _extra(spec: DeploymentSpec) -> dict[str, Any]:
    """Schedules and the concurrency limit, when the spec has them."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    extra: dict[str, Any] = {"schedules": _schedules(spec)} if spec.crons else {}
    if spec.concurrency:
        extra["concurrency_limit"] = ConcurrencyLimitConfig(**spec.concurrency)
    return extra


def _deployment_name(spec: DeploymentSpec, main_name: str | None) -> str:
    return main_name if (main_name and spec.name == MAIN_DEPLOYMENT) else spec.name


# -- the two targets -----------------------------------------------------------------------------

# Engine loggers (`shared.*`) to the Prefect UI as well as Prefect's own: Prefect attaches its API
# handler to the loggers this names when a flow run's process starts.
PREFECT_LOG_ENV = {"PREFECT_LOGGING_EXTRA_LOGGERS": "shared"}
# Managed runs dispatch per-lead work to the deployed Modal App; credentials come from Secret blocks
# (orchestrator.secrets.ensure_runtime_secrets), never from job variables, which are stored in clear.
MANAGED_ENV = {"EXECUTOR": "modal", **PREFECT_LOG_ENV}


def deploy_managed(
    source: str,
    *,
    client: PoolClient,
    flow_source: FlowSource | None = None,
    pool: str = MANAGED_POOL,
    main_name: str | None = None,
    specs: Sequence[DeploymentSpec] | None = None,
    pip_packages: list[str] | None = None,
) -> list[Deployed]:
    """Deploy each spec from the git `source` to the managed pool; returns what was registered."""
    check_git_source(source)  # before anything touches the network
    require_pool(client, pool, MANAGED_POOL_TYPE)
    flow_source = flow_source or _default_flow_source()
    specs = list(specs if specs is not None else load_specs())
    packages = pip_packages if pip_packages is not None else managed_packages()
    image = managed_image()
    repository = managed_source(source)
    deployed: list[Deployed] = []
    for spec in specs:
        loaded = flow_source.from_source(source=repository, entrypoint=spec.entrypoint)
        extra = _extra(spec)
        deployment_id = loaded.deploy(
            name=_deployment_name(spec, main_name),
            work_pool_name=pool,
            job_variables={"image": image, "pip_packages": packages, "env": dict(MANAGED_ENV)},
            tags=list(spec.tags),
            parameters=spec.parameters,
            **extra,
        )
        deployed.append(Deployed(_deployment_name(spec, main_name), loaded.name, UUID(str(deployment_id)), pool))
    return deployed


def deploy_local(
    *,
    client: PoolClient,
    flow_source: FlowSource | None = None,
    pool: str = LOCAL_POOL,
    source: Path = REPO_ROOT,
    main_name: str | None = None,
    specs: Sequence[DeploymentSpec] | None = None,
) -> list[Deployed]:
    """Deploy each spec from the local checkout to a process pool (created when missing).

    The source is a directory, so Prefect stores a `set_working_directory` pull step: the worker
    runs the flow from this checkout, with this checkout's code and the worker's environment.
    """
    ensure_pool(client, pool, LOCAL_POOL_TYPE)
    flow_source = flow_source or _default_flow_source()
    specs = list(specs if specs is not None else load_specs())
    deployed: list[Deployed] = []
    for spec in specs:
        loaded = flow_source.from_source(source=str(source), entrypoint=spec.entrypoint)
        extra = _extra(spec)
        deployment_id = loaded.deploy(
            name=_deployment_name(spec, main_name),
            work_pool_name=pool,
            # The worker's environment is the flow's, plus where engine logs go.
            job_variables={"env": dict(PREFECT_LOG_ENV)},
            tags=list(spec.tags),
            parameters=spec.parameters,
            description=spec.description,
            print_next_steps=False,
            ignore_warnings=True,  # Prefect suggests .serve() for process pools; we want the worker path
            **extra,
        )
        deployed.append(Deployed(_deployment_name(spec, main_name), loaded.name, UUID(str(deployment_id)), pool))
    return deployed


def main_deployment_id(deployed: Sequence[Deployed], main_name: str | None = None) -> UUID | None:
    """The id the trigger path needs (PREFECT_DEPLOYMENT_ID): the batch flow's deployment."""
    wanted = main_name or MAIN_DEPLOYMENT
    return next((d.deployment_id for d in deployed if d.name == wanted), None)
