"""The Modal App file at its boundary: its image holds what the worker imports at locked versions, its
Secrets are the documented ones, its logs reach the dashboard, and its names match the executor's."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import modal
import pytest

from modal_apps import enrichment
from orchestrator import deploy
from orchestrator.executor import MODAL_CHECK_FUNCTION
from tests.modal_container import resolve_deploy, run_in_container
from tests.unit.test_modal_deploy import APP_MODULES

REPO = Path(__file__).resolve().parents[2]
# Imported somewhere in shared/ but never by a worker, each for a reason.
NOT_ON_THE_WORKER = {
    "alembic": "migrations, run by the operator with `outbound db upgrade`",
    "pgserver": "the embedded Postgres, only when DATABASE_URL is unset (never on Modal)",
    "argon2": "shared.engines.users.users, the console's password hashes: the web App's image has it, workers do not",
}
# Modules of shared/ a worker container never imports (they need the packages above).
LOCAL_ONLY_MODULES = {"migrate.py", "users.py"}
# Dev-only scaffolding (devkit/): the sandbox provider, the SMTP sink, the IMAP server. No image mounts it.
DEV_ONLY_MODULES = {"sandbox.py", "smtp_sink.py", "imap_server.py"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_distributions_are_pinned_by_the_runtime_lock():
    runtime = deploy.read_lock(deploy.LOCK_FILE)
    for name in enrichment.WORKER_DISTRIBUTIONS:
        assert _norm(name) in runtime, f"{name} is installed in the Modal image but not pinned in requirements.lock"
    assert "==" not in "".join(enrichment.WORKER_DISTRIBUTIONS)  # versions come from the lock only
    assert enrichment.RUNTIME_LOCK == deploy.LOCK_FILE


def test_image_has_every_distribution_shared_imports():
    providers = packages_distributions()
    needed: set[str] = set()
    for path in (REPO / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in ("shared", "__future__") or top in NOT_ON_THE_WORKER:
                    continue
                needed |= {_norm(d) for d in providers.get(top, [top])}
    missing = needed - {_norm(d) for d in enrichment.WORKER_DISTRIBUTIONS}
    assert missing == set(), f"shared/ imports {missing}, which the Modal image does not install"


def test_the_worker_imports_with_only_the_images_packages(tmp_path):
    """Every module of `shared` a worker may load imports in a process that has only the image's packages."""
    modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO / "shared").rglob("*.py")
        if "migrations" not in path.parts and path.name not in LOCAL_ONLY_MODULES
    )
    code = "import importlib\nfor name in %r:\n    importlib.import_module(name)\nimport modal_apps.enrichment\nprint('ok')" % (
        modules,)
    result = run_in_container(code, {}, tmp_path, enrichment.WORKER_DISTRIBUTIONS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
    blocked = run_in_container("import prefect", {}, tmp_path, enrichment.WORKER_DISTRIBUTIONS)
    assert "not in the Modal image" in blocked.stderr  # the hook does refuse what the image lacks


@pytest.mark.parametrize("module", APP_MODULES)
def test_no_app_mounts_devkit_or_a_dev_server(module):
    """The files Modal 1.6 would upload for each function (`modal deploy -m`, replayed): no devkit/ file,
    and no sandbox, SMTP sink or IMAP server module under any name."""
    resolved = resolve_deploy(module, module_mode=True)
    assert resolved
    for tag, function in resolved.items():
        remote = [Path(r) for _local, r in function["files"]]
        assert any(r.parts[-2:] == ("shared", "__init__.py") for r in remote), f"{tag}: shared is not mounted"
        assert "devkit" not in function["sources"], tag
        mounted = [str(r) for r in remote if "devkit" in r.parts or r.name in DEV_ONLY_MODULES]
        assert mounted == [], f"{module}.{tag} mounts dev-only files: {mounted}"


def test_a_worker_without_devkit_refuses_the_sandbox_by_name_and_auto_leaves_it_out(tmp_path):
    """In the worker's image (no devkit), PROVIDER_ORDER=sandbox fails preflight naming it; auto skips it."""
    code = """
from shared.errors import ProviderConfigError
from shared.integrations.providers import preflight
from shared.settings import Settings
try:
    preflight(Settings(provider_order="heuristics,sandbox", sandbox_url="http://127.0.0.1:8765"))
except ProviderConfigError as exc:
    print("refused:", exc)
print("auto:", preflight(Settings(provider_order="auto", sandbox_url="http://127.0.0.1:8765")))
"""
    result = run_in_container(code, {}, tmp_path, enrichment.WORKER_DISTRIBUTIONS)
    assert result.returncode == 0, result.stderr[-3000:]
    refused, auto = result.stdout.strip().splitlines()
    assert refused.startswith("refused: provider 'sandbox' ") and "cannot be imported here" in refused, refused
    assert auto == "auto: ['heuristics']"


def test_app_and_function_names_match_what_the_executor_looks_up():
    from shared.settings import Settings

    s = Settings()
    assert enrichment.app.name == s.modal_app_name
    assert isinstance(getattr(enrichment, s.modal_function_name), modal.Function)
    assert isinstance(getattr(enrichment, MODAL_CHECK_FUNCTION), modal.Function)


def test_function_declares_retries_timeout_and_container_cap():
    assert isinstance(enrichment.RETRIES, modal.Retries)
    assert enrichment.TIMEOUT_SECONDS == 15 * 60
    assert enrichment.MAX_CONTAINERS > 0
    assert isinstance(enrichment.postgres, modal.Secret) and isinstance(enrichment.providers, modal.Secret)


def test_secret_names_and_keys_are_the_ones_the_docs_create():
    """README and docs/deploy.md tell people to create exactly the Secrets the App requires."""
    expected = {name: list(keys) for name, keys in enrichment.SECRET_KEYS.items()}
    for doc in (REPO / "README.md", REPO / "docs" / "deploy.md"):
        created = {}
        for match in re.finditer(r"modal secret create (\S+)((?: [A-Z_]+=\S+)+)", doc.read_text()):
            created[match.group(1)] = re.findall(r"([A-Z_]+)=", match.group(2))
        assert {name: keys for name, keys in created.items() if name in expected} == expected, f"{doc.name}: {created}"


def test_container_logging_sends_engine_info_to_stderr_and_keeps_httpx_quiet(tmp_path):
    """Modal's dashboard shows the container's stderr: the per-lead INFO lines must be there, the
    request URLs httpx logs at INFO (Hunter's carries the API key and the lead's name) must not."""
    code = """
import logging
from modal_apps.enrichment import configure_logging
configure_logging()
configure_logging()  # twice: still one handler, one line per record
logging.getLogger("shared.engines.enrichment").info("lead_id=7 item_id=70 batch_id=3 enriched by apollo (confidence 0.90)")
logging.getLogger("shared.engines.enrichment").debug("lead_id=7 item_id=70 batch_id=3 apollo: hit in 12 ms")
logging.getLogger("httpx").info("HTTP Request: GET http://h/v2/email-finder?first_name=Ada&api_key=hunter-SECRET")
logging.getLogger("somelib").info("chatter")
"""
    result = run_in_container(code, {}, tmp_path, enrichment.WORKER_DISTRIBUTIONS)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO shared\.engines\.enrichment: "
                        r"lead_id=7 item_id=70 batch_id=3 enriched by apollo \(confidence 0\.90\)", lines[0])
    assert "hunter-SECRET" not in result.stderr and "Ada" not in result.stderr


def test_outreach_apps_are_pinned_named_and_use_the_same_engine_and_app_factory():
    from modal_apps import outreach, web
    from shared.settings import Settings

    runtime = deploy.read_lock(deploy.LOCK_FILE)
    for name in (*outreach.DISTRIBUTIONS, *web.DISTRIBUTIONS):  # versions from the runtime lock only
        assert _norm(name) in runtime and "==" not in name, name
    s = Settings()
    assert outreach.app.name == s.modal_outreach_app_name
    assert isinstance(getattr(outreach, s.modal_outreach_function_name), modal.Function)
    assert isinstance(outreach.smtp_passwords, modal.Secret)
    assert isinstance(web.unsubscribe, modal.Function)


def test_replies_app_is_pinned_named_and_runs_one_mailbox_per_call():
    from modal_apps import replies, web
    from shared.settings import Settings

    runtime = deploy.read_lock(deploy.LOCK_FILE)
    for name in replies.DISTRIBUTIONS:  # versions from the runtime lock only
        assert _norm(name) in runtime and "==" not in name, name
    s = Settings()
    assert replies.app.name == s.modal_replies_app_name
    assert isinstance(getattr(replies, s.modal_replies_function_name), modal.Function)
    assert isinstance(replies.smtp_passwords, modal.Secret) and isinstance(web.inbound_webhooks, modal.Secret)


def test_the_web_app_serves_the_console_with_only_its_images_packages_and_files(tmp_path):
    """The web App's image: its distributions, its Secrets' keys, and the console's templates and static files."""
    from pathlib import Path

    from modal_apps import web

    files = [p.relative_to(REPO / "web") for p in (REPO / "web" / "console").rglob("*") if p.is_file()
             and "__pycache__" not in p.parts]
    assert files and [str(f) for f in files if web.SOURCE_FILES(Path(f))] == []  # nothing of the console left out
    assert web.SOURCE_FILES(Path("console/notes.txt"))  # and still only what is named
    code = (
        "from fastapi.testclient import TestClient\n"
        "from web.app import create_app\n"
        "c = TestClient(create_app())\n"
        "page = c.get('/console/login')\n"
        "css = c.get('/console/static/console.css')\n"
        "print(page.status_code, 'Sign in' in page.text, css.status_code)\n"
    )
    env = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:1/x", "OUTREACH_SECRET": "s" * 32,
           "PUBLIC_BASE_URL": "https://example.modal.run", "CONSOLE_SECRET": "c" * 32}
    result = run_in_container(code, env, tmp_path, web.DISTRIBUTIONS, sources=("web",))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["200", "True", "200"]
    assert isinstance(web.console, modal.Secret)
