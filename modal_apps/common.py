"""What every Modal App of this project shares: the image built from the runtime lock, the packages it mounts, the Secrets.

Each App is deployed from the repo root in module mode, `modal deploy -m modal_apps.<name>`
(docs/deploy.md; tests/unit/test_modal_deploy.py replays Modal's own import and mount
resolution for every such command in the docs). Since Modal 1.0 nothing is mounted
automatically: a container gets exactly the packages its image names with
`add_local_python_source`, so every App lists all of ours it imports, `modal_apps` included, and
its `modal.App(..., include_source=False)` keeps Modal from adding the entry module a second way.
"""

from __future__ import annotations

import os
from pathlib import Path

import modal
from modal.file_pattern_matcher import FilePatternMatcher

from shared.settings import MODAL_MAX_CONTAINERS_DEFAULT

# The containers' Python: the same minor version as the tests, the lock and the managed Prefect image.
PYTHON_VERSION = "3.11"
RUNTIME_LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"
LOCK_IN_IMAGE = "/opt/outbound/requirements.lock"
# What `shared` imports (every image ships the whole package: the engine, its providers, settings,
# and the email modules beside them). Names only: every version, and every transitive
# dependency's, comes from the runtime lock installed as pip constraints, so an image cannot drift
# from what the tests ran (tests/unit/test_modal_app.py checks the list against shared/'s imports).
WORKER_DISTRIBUTIONS = (
    "sqlalchemy",
    "psycopg2-binary",
    "pydantic",
    "pydantic-settings",
    "python-dotenv",
    "httpx",
    "aiohttp",
    "tenacity",
    "email-validator",
    "disposable-email-domains",
    "nameparser",
    "tldextract",
    "imap-tools",
    "flufl.bounce",
    "mail-parser-reply",
    "standardwebhooks",
    "jinja2",
    "phonenumbers",
    "tzdata",  # zoneinfo's data: debian_slim has no system time zone database
    "dkimpy",  # DKIM-signing a mailbox's sends (outreach workers)
    "dnspython",
)
# Our packages every worker container needs: the App modules themselves (outreach.py imports
# common.py) and the engine. The web App adds `web`.
WORKER_SOURCES = ("modal_apps", "shared")

# Each container holds a pool of Postgres connections: cap containers so the database is not swamped.
# The orchestrator claims at most MODAL_MAX_CONTAINERS x MODAL_INPUTS_PER_CONTAINER chunks ahead
# (orchestrator/executor.py): deploy and flows must see the same MODAL_MAX_CONTAINERS.
MAX_CONTAINERS = int(os.environ.get("MODAL_MAX_CONTAINERS", str(MODAL_MAX_CONTAINERS_DEFAULT)))


def source_files(*extra: str) -> FilePatternMatcher:
    """What `add_local_python_source` must leave out: everything but .py files and the `extra` patterns."""
    return ~FilePatternMatcher("**/*.py", *extra)


def lock_image(*distributions: str, sources: tuple[str, ...] = WORKER_SOURCES,
               ignore: FilePatternMatcher | None = None) -> modal.Image:
    """debian_slim with `distributions` at the runtime lock's versions, and our `sources` packages.

    The lock goes into the image and pip installs with it as constraints (`-c`): the names pick
    what, the lock alone says which version, transitive dependencies included. Only .py files of
    `sources` are added unless `ignore` (see `source_files`) lets more in. `sources` are resolved
    by name on the deploying machine's sys.path: run `modal deploy -m` from the repo root, where
    `web` is the web/ package (in file mode, `modal deploy modal_apps/web.py`, it would be
    modal_apps/web.py).
    """
    return (
        modal.Image.debian_slim(python_version=PYTHON_VERSION)
        .add_local_file(RUNTIME_LOCK, LOCK_IN_IMAGE, copy=True)
        .pip_install(*distributions, extra_options=f"-c {LOCK_IN_IMAGE}")
        .add_local_python_source(*sources, ignore=ignore if ignore is not None else source_files())
    )


def require_module_mode(module_name: str) -> None:
    """Refuse `modal deploy modal_apps/x.py`: imported as a top-level `x`, the App would resolve the wrong packages."""
    if not module_name.startswith("modal_apps."):
        short = module_name.rsplit(".", 1)[-1]
        raise RuntimeError(f"deploy this App from the repo root with `modal deploy -m modal_apps.{short}` "
                           f"(it was imported as {module_name!r}, as a file path does)")


# The Secret names and keys docs/deploy.md and README create; Modal refuses to start without them.
POSTGRES_SECRET = "postgres-connection-string"
PROVIDERS_SECRET = "provider-api-keys"
SECRET_KEYS = {
    POSTGRES_SECRET: ("DATABASE_URL",),
    PROVIDERS_SECRET: ("APOLLO_API_KEY", "HUNTER_API_KEY"),
    "outreach": ("OUTREACH_SECRET", "PUBLIC_BASE_URL"),
    "console": ("CONSOLE_SECRET",),
}


def _secret(name: str) -> modal.Secret:
    return modal.Secret.from_name(name, required_keys=list(SECRET_KEYS.get(name, ())))


postgres = _secret(POSTGRES_SECRET)
providers = _secret(PROVIDERS_SECRET)
outreach = _secret("outreach")
console = _secret("console")
smtp_passwords = _secret("smtp-passwords")  # one variable per mailbox, named by its --secret-name
inbound_webhooks = _secret("inbound-webhooks")  # STANDARD_WEBHOOK_SECRET and/or MAILGUN_SIGNING_KEY
