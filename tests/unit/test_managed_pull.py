"""The Prefect Managed pull carries exactly the packages the flows import: prefect.yaml's sparse checkout, walked and replayed.

The walk follows every import statement (function bodies included) of our own modules from each
deployment's entrypoint; the replay runs Prefect 3.8.8's own `git_clone` step, with prefect.yaml's
arguments, on a clone of this checkout's HEAD, then imports every flow from that checkout alone in
an interpreter where the project is not pip-installed (as in a managed run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
from pathlib import Path

import yaml

from orchestrator import deploy

REPO = Path(__file__).resolve().parents[2]
DEV_ONLY = {"devkit", "tests", "bench", "chaos", "demo", "docs"}


def _module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_packages(entry_modules: list[str]) -> set[str]:
    """Top-level packages of this repo reached from `entry_modules` (parent packages' __init__ included)."""
    todo, seen = list(entry_modules), set()
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):
            module = ".".join(parts[:depth])
            path = _module_file(module)
            if path is None or module in seen:
                continue
            seen.add(module)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    todo += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return {module.split(".")[0] for module in seen}


def _entry_modules() -> list[str]:
    return [spec.entrypoint.split(":")[0].removesuffix(".py").replace("/", ".") for spec in deploy.load_specs()]


def test_the_pull_checks_out_every_package_the_flows_import_and_nothing_dev_only():
    directories = deploy.pull_directories()
    needed = _imported_packages(_entry_modules())
    assert {"orchestrator", "shared"} <= needed  # the walk does reach our packages
    assert sorted(directories) == sorted(needed), f"the flows import {sorted(needed)}; the pull has {directories}"
    assert not DEV_ONLY & set(directories)
    config = yaml.safe_load(deploy.PREFECT_YAML.read_text())
    assert config["pull"][0][deploy.GIT_CLONE_STEP]["directories"] == directories  # the one list both pulls use


def test_prefects_git_clone_with_those_directories_leaves_devkit_out(tmp_path, monkeypatch):
    from prefect.deployments.steps.pull import git_clone

    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    origin = tmp_path / "origin.git"  # a bare copy of HEAD: what the managed run clones from GitHub
    subprocess.run(["git", "clone", "--quiet", "--bare", str(REPO), str(origin)], check=True)
    subprocess.run(["git", "-C", str(origin), "branch", "--quiet", "-f", "main", head.stdout.strip()], check=True)
    monkeypatch.chdir(tmp_path)
    step = yaml.safe_load(deploy.PREFECT_YAML.read_text())["pull"][0][deploy.GIT_CLONE_STEP]
    cloned = git_clone(repository=f"file://{origin}", branch=step["branch"], directories=step["directories"])
    root = tmp_path / cloned["directory"]
    top = {p.name for p in root.iterdir() if p.name != ".git"}
    assert {"requirements.lock", "prefect.yaml", *step["directories"]} <= top  # pip_install_requirements' file too
    assert not top & (DEV_ONLY | {"modal_apps", "web", "supabase"}), sorted(top)
    for spec in deploy.load_specs():
        assert (root / spec.entrypoint.split(":")[0]).is_file(), spec.entrypoint
    result = _run_uninstalled(_FLOWS_AND_SANDBOX % _entry_modules(), root, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    origin_line, refused = result.stdout.splitlines()[-2:]
    assert origin_line == f"from: {root / 'shared' / '__init__.py'} {root / 'orchestrator' / '__init__.py'}"
    assert refused.startswith("refused: PROVIDER_ORDER names unknown provider 'sandbox'"), refused


# Every flow imports from the sparse checkout; with no `outbound.providers` entry point the sandbox is unknown.
_FLOWS_AND_SANDBOX = """
import importlib
for name in %r:
    importlib.import_module(name)
import orchestrator, shared
print("from:", shared.__file__, orchestrator.__file__)
from shared.errors import ProviderConfigError
from shared.integrations.providers import preflight
from shared.settings import Settings
try:
    preflight(Settings(provider_order="heuristics,sandbox", sandbox_url="http://127.0.0.1:8765"))
except ProviderConfigError as exc:
    print("refused:", exc)
"""


def _run_uninstalled(code: str, cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`code` in `cwd` with this venv's distributions but not the project's own (no dist-info, no editable finder)."""
    packages = Path(sysconfig.get_paths()["purelib"])
    site.mkdir()
    for entry in packages.iterdir():
        if not (entry.name.startswith(("outbound-", "__editable__")) or entry.name.endswith(".pth")):
            (site / entry.name).symlink_to(entry)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8", "PYTHONPATH": str(site),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(cwd / ".prefect")}
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
