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
import os
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
OUR_PACKAGES = {"shared", "modal_apps", "orchestrator", "tests", "bench", "web", "demo", "chaos", "devkit"}
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


# -- `modal deploy` replayed: Modal's own import and mount resolution, then the container's import ------

# Run on the deploying machine (cwd = repo root), in a fresh interpreter as the `modal` command is:
# Modal's import_refs imports the App exactly as `modal deploy [-m] REF` does, then each function's
# mounts are listed the way Modal builds them for upload: the function spec's mounts (the entry
# module's mount unless include_source=False; the client mount is Modal's own, by name) plus the
# image's deferred `add_local_*` layers (_Image._add_mount_layer_or_copy chains them as
# "Image(local files)" images over their base). No network: nothing is hydrated.
RESOLVE = r"""
import json, sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # the `modal` script's sys.path has no cwd; import_refs adds it
args = json.loads(sys.argv[1])
from modal._utils.async_utils import synchronizer
from modal.cli.import_refs import import_app_from_ref, parse_import_ref
from modal.mount import _MountedPythonModule

ref = parse_import_ref(args["ref"], use_module_mode=args["module_mode"], command="deploy")
app = synchronizer._translate_in(import_app_from_ref(ref, base_cmd="modal deploy"))

def deferred_mounts(image):
    mounts = []
    while image._rep == "Image(local files)":
        base, mount = image._deps()
        mounts.insert(0, mount)
        image = base
    return mounts

out = {}
for tag, function in app._local_state.functions.items():
    files, sources = [], []
    for mount in [*function._spec.mounts, *deferred_mounts(function._spec.image)]:
        if not mount.is_local():
            continue  # the client mount: Modal's own packages, present in every container
        for entry in mount.entries:
            if isinstance(entry, _MountedPythonModule):
                if entry.module_name in args["cut"]:
                    continue
                sources.append(entry.module_name)
            files += [[str(local), str(remote)] for local, remote in entry.get_files_to_upload()]
    out[tag] = {"module": function._source_info.module_name, "files": files, "sources": sources,
                "web": function._webhook_config is not None and function._webhook_config.type != 0}
print("RESOLVED" + json.dumps(out))
"""

DEPLOY_COMMAND = re.compile(r"modal deploy (?P<flags>(?:-\S+ )*)(?P<ref>[\w./:-]+)")


def deploy_commands(text: str) -> list[tuple[str, bool]]:
    """Each `modal deploy` command in `text` as (ref, module mode), in order, without repeats."""
    found: list[tuple[str, bool]] = []
    for match in DEPLOY_COMMAND.finditer(text):
        flags = match.group("flags").split()
        command = (match.group("ref"), "-m" in flags or "--module" in flags)
        if command not in found:
            found.append(command)
    return found


def resolve_deploy(ref: str, module_mode: bool, cut: tuple[str, ...] = ()) -> dict:
    """What `modal deploy [-m] ref` would upload, per function: entry module, (local, remote) files, sources.

    `cut`: leave these `add_local_python_source` packages out, as if the App's list lacked them.
    Raises AssertionError with Modal's own error when the import itself fails.
    """
    env = {"PATH": "/usr/bin:/bin", "HOME": str(REPO), "LANG": "C.UTF-8", "MODAL_TOKEN_ID": "", "MODAL_TOKEN_SECRET": ""}
    result = subprocess.run([PYTHON, "-c", RESOLVE, json.dumps({"ref": ref, "module_mode": module_mode,
                                                                 "cut": list(cut)})],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    line = next((li for li in result.stdout.splitlines() if li.startswith("RESOLVED")), None)
    assert result.returncode == 0 and line, f"`modal deploy {'-m ' if module_mode else ''}{ref}` fails: {result.stderr[-2000:]}"
    return json.loads(line.removeprefix("RESOLVED"))


def container_root(files: list[list[str]], into: Path) -> Path:
    """Copy exactly the mounted files to their remote paths under `into`; returns the container's /root."""
    import shutil

    for local, remote in files:
        target = into / remote.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
    (into / "root").mkdir(exist_ok=True)
    return into / "root"


def run_in_root(code: str, env: dict[str, str], root: Path, worker_distributions: tuple[str, ...],
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`code` as Modal's container runs user code: cwd and sys.path /root (only the mounted files), the image's packages.

    `python -S` with site-packages put back by hand: no .pth file runs, so this checkout's editable
    install (which maps shared/, web/, modal_apps/ to the repo) cannot supply what was not mounted.
    """
    import sysconfig

    site_packages = sysconfig.get_paths()["purelib"]
    full_env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8",
                "PYTHONPATH": os.pathsep.join([str(root), site_packages]), **MODAL_CONTAINER_ENV, **env}
    denied = [m for m in modules_not_in_image(worker_distributions, tuple(OUR_PACKAGES)) if m not in OUR_PACKAGES]
    return subprocess.run([PYTHON, "-S", "-c", BOOTSTRAP, json.dumps(denied), code], env=full_env, cwd=root,
                          capture_output=True, text=True, timeout=timeout)
