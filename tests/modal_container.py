"""Run Modal function bodies in a subprocess shaped like the container: its environment, its packages.

The environment holds only what Modal's container sets plus the two Secrets by the names
docs/deploy.md creates; nothing from this machine (no PROVIDER_ORDER, no SANDBOX_URL, no .env).
An import hook refuses every installed distribution the image does not install
(modal_apps.enrichment.WORKER_DISTRIBUTIONS, plus the modal client Modal adds to every image, and
what those require), so a module the worker imports but the image lacks fails here as it would on
Modal.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# Set by Modal in every container (the values are placeholders of the right shape).
MODAL_CONTAINER_ENV = {
    "MODAL_IS_REMOTE": "1",
    "MODAL_TASK_ID": "ta-01LOCALTEST",
    "MODAL_ENVIRONMENT": "main",
    "MODAL_REGION": "us-east-1",
    "MODAL_CLOUD_PROVIDER": "CLOUD_PROVIDER_AWS",
    "MODAL_IMAGE_ID": "im-01LOCALTEST",
}
# Our packages in the image: `shared` (add_local_python_source) and the app file itself.
OUR_PACKAGES_IN_IMAGE = {"shared", "modal_apps"}
OUR_PACKAGES = {"shared", "modal_apps", "orchestrator", "tests", "bench", "web"}
# debian_slim's Python comes with these.
BASE_IMAGE_MODULES = {"pip", "setuptools", "pkg_resources", "_distutils_hack"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> set[str]:
    """The installed distributions `roots` need, transitively (markers evaluated, extras followed)."""
    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in roots]
    names: set[str] = set()
    while todo:
        requirement, extras = todo.pop()
        name = _norm(requirement.name)
        if (name, extras) in seen or name not in installed:
            continue
        seen.add((name, extras))
        names.add(name)
        for spec in installed[name].requires or []:
            dependency = Requirement(spec)
            wanted = dependency.marker is None or any(
                dependency.marker.evaluate({**default_environment(), "extra": extra}) for extra in ("", *extras))
            if wanted:
                todo.append((dependency, frozenset(dependency.extras)))
    return names


def modules_not_in_image(worker_distributions: tuple[str, ...], sources: tuple[str, ...] = ()) -> list[str]:
    """Top-level modules installed here whose distribution the image would not have.

    `sources`: our packages the image adds besides `shared` (the web App adds `web`)."""
    in_image = closure([*worker_distributions, "modal"])
    ours = OUR_PACKAGES_IN_IMAGE | set(sources)
    denied: set[str] = set()
    for module, dists in metadata.packages_distributions().items():
        if module in ours | BASE_IMAGE_MODULES or module.startswith("__editable__"):
            continue
        if not {_norm(d) for d in dists} & in_image:
            denied.add(module)
    denied |= OUR_PACKAGES - ours
    return sorted(denied)


BOOTSTRAP = r"""
import importlib.abc, json, sys
DENIED = set(json.loads(sys.argv[1]))

class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in DENIED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not in the Modal image)", name=fullname)
        return None

sys.meta_path.insert(0, NotInImage())
exec(compile(sys.argv[2], "<container>", "exec"))
"""


def run_in_container(code: str, env: dict[str, str], cwd: Path, worker_distributions: tuple[str, ...],
                     timeout: float = 300, sources: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with exactly `env` (plus MODAL_CONTAINER_ENV) and the image's packages."""
    # PYTHONPATH: our packages from this checkout, as Modal puts `shared` on the container's path.
    full_env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8", "PYTHONPATH": str(REPO),
                **MODAL_CONTAINER_ENV, **env}
    denied = modules_not_in_image(worker_distributions, sources)
    return subprocess.run([PYTHON, "-c", BOOTSTRAP, json.dumps(denied), code], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
