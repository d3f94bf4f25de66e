"""Every `modal deploy` command the docs give ships what its App imports: Modal's own import and mount resolution, replayed.

For each command in docs/deploy.md and README.md, Modal 1.6.4's import_refs imports the App as
`modal deploy` would, the functions' mounts are listed from the installed package (no network, no
token), exactly those files are copied into a temporary container root, and each function's entry
module is imported there in a clean interpreter (`python -S`, no editable install, only the
image's distributions), the way Modal's container entrypoint imports it; then every module the
App's files import (including those imported inside function bodies) is imported too, and the web
App's ASGI factory serves a console page with its template and static file.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tests.modal_container import container_root, deploy_commands, resolve_deploy, run_in_root

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "docs" / "deploy.md", REPO / "README.md")
COMMANDS = sorted({command for doc in DOCS for command in deploy_commands(doc.read_text())})
# Every module of modal_apps/ that defines an App (the shared parts live in common.py).
APP_MODULES = sorted(f"modal_apps.{p.stem}" for p in (REPO / "modal_apps").glob("*.py")
                     if re.search(r"^app = modal\.App\(", p.read_text(), re.M))

# What a container gets from the Secrets (placeholder values of the right shape).
SECRETS_ENV = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:1/x", "OUTREACH_SECRET": "s" * 32,
               "PUBLIC_BASE_URL": "https://example.modal.run", "CONSOLE_SECRET": "c" * 32}

CONTAINER = """
import ast, importlib, sys
module = importlib.import_module(%(module)r)          # as modal/_runtime/user_code_imports.py does
function = getattr(module, %(tag)r)
seen = set()
while True:  # every import statement of every modal_apps module loaded, function bodies included
    ours = [m for name, m in list(sys.modules.items()) if name.startswith("modal_apps") and name not in seen]
    if not ours:
        break
    for m in ours:
        seen.add(m.__name__)
        for node in ast.walk(ast.parse(open(m.__file__).read())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                importlib.import_module(name)
if %(web)r:
    from fastapi.testclient import TestClient
    client = TestClient(function.local())
    page, css = client.get("/console/login"), client.get("/console/static/console.css")
    assert page.status_code == 200 and "Sign in" in page.text, page.status_code
    assert css.status_code == 200, css.status_code
print("IMPORTED", %(module)r)
"""


def _entry_module(ref: str, module_mode: bool) -> str:
    return ref if module_mode else ".".join(Path(ref).with_suffix("").parts)


def _run(resolved: dict, tmp_path: Path, app_module: str) -> dict[str, object]:
    """Each function's container: its mounted files, the image's distributions (the App module's DISTRIBUTIONS)."""
    results = {}
    module = importlib.import_module(app_module)
    distributions = getattr(module, "DISTRIBUTIONS", getattr(module, "WORKER_DISTRIBUTIONS", ()))
    for tag, fn in resolved.items():
        env = {**SECRETS_ENV, **getattr(module, "CONTAINER_ENV", {})}
        root = container_root(fn["files"], tmp_path / tag)
        results[tag] = run_in_root(CONTAINER % {"module": fn["module"], "tag": tag, "web": fn["web"]},
                                   env, root, distributions)
    return results


def test_the_docs_deploy_every_app_and_nothing_else():
    assert COMMANDS, "no `modal deploy` command found in the docs"
    for doc in DOCS:
        documented = {_entry_module(*c) for c in deploy_commands(doc.read_text())}
        assert documented == set(APP_MODULES), f"{doc.name} deploys {sorted(documented)}; the Apps are {APP_MODULES}"


@pytest.mark.parametrize(("ref", "module_mode"), COMMANDS, ids=[f"{'-m ' if m else ''}{r}" for r, m in COMMANDS])
def test_a_documented_deploy_command_ships_everything_its_app_imports(ref, module_mode, tmp_path):
    resolved = resolve_deploy(ref, module_mode)
    assert resolved, f"`modal deploy {ref}` registers no function"
    for tag, fn in resolved.items():
        remote = {r for _, r in fn["files"]}
        assert f"/root/{fn['module'].replace('.', '/')}.py" in remote, f"{tag}: its own module is not mounted"
        assert not any("__pycache__" in r or r.endswith(".pyc") for r in remote)
    for tag, result in _run(resolved, tmp_path, _entry_module(ref, module_mode)).items():
        assert result.returncode == 0, f"{ref} {tag} in its container:\n{result.stderr[-3000:]}"
        assert "IMPORTED" in result.stdout


@pytest.mark.parametrize("module", APP_MODULES)
def test_cutting_any_package_from_an_apps_sources_breaks_its_container(module, tmp_path):
    """The check above is not vacuous: each `add_local_python_source` package is needed, and missed if cut."""
    sources = {s for fn in resolve_deploy(module, True).values() for s in fn["sources"]}
    assert {"modal_apps", "shared"} <= sources, sources
    for source in sorted(sources):
        for tag, result in _run(resolve_deploy(module, True, cut=(source,)), tmp_path / source, module).items():
            assert result.returncode != 0, f"{module} {tag} still imports with {source!r} cut"
            assert f"No module named '{source}" in result.stderr, result.stderr[-2000:]


def test_a_file_path_deploy_is_refused_with_the_module_command(tmp_path):
    """`modal deploy modal_apps/web.py` (the old docs' command) stops at import, naming the command that works."""
    with pytest.raises(AssertionError, match=r"modal deploy -m modal_apps\.web"):
        resolve_deploy("modal_apps/web.py", False)


def test_every_app_module_names_its_sources_explicitly():
    """include_source=False on every App: the image's sources are the only way our code gets in."""
    for module in APP_MODULES:
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
        apps = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "App"]
        assert apps and all(any(k.arg == "include_source" and getattr(k.value, "value", None) is False
                                for k in a.keywords) for a in apps), module
