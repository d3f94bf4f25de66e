"""Dependencies match use: what the shipped code imports is declared, and what is declared is used."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("shared", "orchestrator", "modal_apps", "web", "demo", "devkit")  # the wheel's packages (pyproject.toml)
OURS = set(SHIPPED)
# Declared but never imported by name, each for a reason.
DECLARED_NOT_IMPORTED = {
    "python-dotenv": "pydantic-settings reads .env through it",
    "pymap": "run as a program (`python -m pymap`): the IMAP server make demo starts",
    "tzdata": "zoneinfo's time zone data where the system has none (Modal's debian_slim)",
    "python-multipart": "Starlette parses the console's form posts (request.form()) with it",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(root: Path) -> dict[str, set[str]]:
    """{top-level module: files importing it} over every .py file under root (function bodies included)."""
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def _declared(group: str | None = None) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {_norm(Requirement(spec).name) for spec in specs}


def _third_party() -> dict[str, tuple[set[str], set[str]]]:
    """{module: (distributions providing it, files importing it)} for every non-stdlib, non-ours import."""
    providers = packages_distributions()
    out: dict[str, tuple[set[str], set[str]]] = {}
    for package in SHIPPED:
        for module, files in _imports(REPO / package).items():
            if module in sys.stdlib_module_names or module in OURS or module == "__future__":
                continue
            dists = {_norm(d) for d in providers.get(module, [])}
            previous = out.get(module, (dists, set()))
            out[module] = (dists, previous[1] | files)
    return out


def test_every_import_of_the_shipped_code_is_a_declared_runtime_dependency():
    runtime = _declared()
    undeclared = {module: sorted(files)[:3] for module, (dists, files) in _third_party().items()
                  if not dists & runtime}
    assert undeclared == {}, f"imported but not in [project] dependencies: {undeclared}"


def test_every_declared_runtime_dependency_is_imported():
    imported = set().union(*(dists for dists, _files in _third_party().values()))
    unused = _declared() - imported - set(DECLARED_NOT_IMPORTED)
    assert unused == set(), f"declared in [project] dependencies but imported nowhere in {SHIPPED}: {unused}"


def test_test_and_bench_tools_are_dev_only():
    runtime, dev = _declared(), _declared("dev")
    assert "psutil" in dev and "psutil" not in runtime  # tests/ and bench/ only
    assert {"pytest", "hypothesis", "faker", "import-linter"} <= dev
    assert not {"pytest", "hypothesis", "faker", "import-linter", "pytest-httpserver"} & runtime
