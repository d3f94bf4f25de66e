"""The database URL for flows that run on Prefect infrastructure, from the Secret block `postgres-connection-string`.

A managed work pool starts each flow run in a fresh container whose environment we do not
control, so the connection string travels as a Prefect Secret block instead of an env var.
`outbound secret push` writes the block; each flow calls `ensure_database_url()` first.
"""

from __future__ import annotations

import logging
import os

from shared.settings import get_settings, reset_settings

log = logging.getLogger(__name__)

SECRET_BLOCK_NAME = "postgres-connection-string"
# Modal's client reads its token from these variables; managed runs get them from Secret blocks.
MODAL_TOKEN_BLOCKS = {"MODAL_TOKEN_ID": "modal-token-id", "MODAL_TOKEN_SECRET": "modal-token-secret"}


def _under_prefect() -> bool:
    """True inside a flow run, or when a Prefect API is configured to ask.

    Without either, loading a block would start a throwaway in-process Prefect server just to
    find nothing in it, so a plain local run skips the lookup.
    """
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL

    return FlowRunContext.get() is not None or bool(PREFECT_API_URL.value())


def load_secret(name: str = SECRET_BLOCK_NAME) -> str | None:
    """The Secret block's value, or None when no block of that name exists."""
    from prefect.blocks.system import Secret

    try:
        block = Secret.load(name)
    except ValueError:  # Prefect's "Unable to find block document named ..."
        return None
    value = block.get()
    return str(value) if value else None


def ensure_database_url(block_name: str = SECRET_BLOCK_NAME) -> bool:
    """Put the Secret block's URL in DATABASE_URL when none is configured; True if it did.

    DATABASE_URL from the environment (or `.env`) always wins. Errors other than "no such block"
    (API unreachable, bad key) propagate: falling back to an embedded Postgres inside a managed
    container would silently process nothing.
    """
    if get_settings().database_url is not None or os.environ.get("DATABASE_URL"):
        return False
    if not _under_prefect():
        return False
    value = load_secret(block_name)
    if value is None:
        log.info("no DATABASE_URL and no Prefect Secret block %r: falling back to the embedded Postgres "
                    "(run `outbound secret push` to give deployed flows a database)", block_name)
        return False
    os.environ["DATABASE_URL"] = value
    reset_settings()
    log.info("DATABASE_URL loaded from Prefect Secret block %r", block_name)
    return True


def ensure_runtime_secrets() -> None:
    """Everything a flow run needs from Secret blocks: the database URL, and Modal's token when the
    executor is Modal and the environment does not already carry one."""
    ensure_database_url()
    if get_settings().executor != "modal" or not _under_prefect():
        return
    for env_name, block_name in MODAL_TOKEN_BLOCKS.items():
        if not os.environ.get(env_name):
            value = load_secret(block_name)
            if value is None:
                raise RuntimeError(f"EXECUTOR=modal needs {env_name}: set it, or push the Prefect Secret block "
                                   f"{block_name!r} with `outbound secret push`")
            os.environ[env_name] = value


def push_secret(name: str, value: str) -> None:
    """Create or overwrite a Secret block (the value is never logged)."""
    from prefect.blocks.system import Secret

    Secret(value=value).save(name, overwrite=True)


def push_database_url(url: str, block_name: str = SECRET_BLOCK_NAME) -> None:
    """Create or overwrite the Secret block with `url` (never logged)."""
    from prefect.blocks.system import Secret

    Secret(value=url).save(block_name, overwrite=True)
