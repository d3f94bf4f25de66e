"""Modal App `outbound-enrichment`: the enrichment engine on a chunk of items, and a configuration check.

Deploy from the repo root: `modal deploy -m modal_apps.enrichment` (modal_apps/common.py says why). The orchestrator reaches it with
`modal.Function.from_name("outbound-enrichment", "enrich_chunk")` and `.map` / `.spawn_map`, and
asks `check_config` before it claims anything (orchestrator.executor.ModalExecutor.preflight).

The containers' environment is exactly the two Modal Secrets docs/deploy.md creates:
`postgres-connection-string` (DATABASE_URL) and `provider-api-keys` (APOLLO_API_KEY,
HUNTER_API_KEY); every other setting keeps its default (PROVIDER_ORDER=auto builds the
waterfall from the keys present).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import modal

from modal_apps.common import (
    MAX_CONTAINERS,
    POSTGRES_SECRET,
    PROVIDERS_SECRET,
    RUNTIME_LOCK,
    SECRET_KEYS as ALL_SECRET_KEYS,
    WORKER_DISTRIBUTIONS,
    lock_image,
    postgres,
    providers,
    require_module_mode,
)
from shared.errors import TransientChunkError

require_module_mode(__name__)

APP_NAME = "outbound-enrichment"
# include_source=False: the image's add_local_python_source("modal_apps", "shared") is the one
# place our code comes from (modal_apps.common).
app = modal.App(APP_NAME, include_source=False)

DISTRIBUTIONS = WORKER_DISTRIBUTIONS
image = lock_image(*DISTRIBUTIONS)

# This App's Secrets and the keys Modal requires in them (docs/deploy.md and README create them).
SECRET_KEYS = {name: ALL_SECRET_KEYS[name] for name in (POSTGRES_SECRET, PROVIDERS_SECRET)}
__all__ = ["RUNTIME_LOCK", "WORKER_DISTRIBUTIONS", "MAX_CONTAINERS", "app", "enrich_chunk", "check_config"]

RETRIES = modal.Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=2.0, max_delay=30.0)
TIMEOUT_SECONDS = 15 * 60
CHECK_TIMEOUT_SECONDS = 60

# The engine's per-lead lines already carry "lead_id=… item_id=… batch_id=…" in the message.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ENGINE_LOGGER = "shared"


def in_modal_container() -> bool:
    """True inside a Modal container (Modal sets MODAL_IS_REMOTE=1 there), False for `.local()` in our tests."""
    return os.environ.get("MODAL_IS_REMOTE") == "1"


def configure_logging() -> None:
    """Engine INFO lines to stderr, which Modal shows in the dashboard; everything else at WARNING.

    Only the `shared` loggers go to INFO: httpx logs each request URL at INFO, and Hunter's URL
    carries the lead's first and last name in its query string (personal data stays out of logs).
    """
    root = logging.getLogger()
    if not any(getattr(h, "_outbound", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._outbound = True  # type: ignore[attr-defined]  # mark ours, so a second call adds none
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger(ENGINE_LOGGER).setLevel(logging.INFO)


_ready = False


def container_start() -> None:
    """Once per container, before its first chunk touches an item: logging, then the configuration check.

    A missing setting raises ProviderConfigError naming it, so the chunk fails at once instead of
    every item failing one by one (or sitting QUEUED until the queue timeout).
    """
    global _ready
    if _ready:
        return
    if in_modal_container():  # a process's logging belongs to whoever runs it; in a container, that is us
        configure_logging()
    from shared.integrations.providers import preflight

    waterfall = preflight()
    logging.getLogger(f"{ENGINE_LOGGER}.modal").info("container ready: waterfall %s", ",".join(waterfall))
    _ready = True


@app.function(
    image=image,
    secrets=[postgres, providers],
    retries=RETRIES,
    timeout=TIMEOUT_SECONDS,
    max_containers=MAX_CONTAINERS,
)
def enrich_chunk(item_ids: list[int]) -> dict[str, Any]:
    """Start, check, enrich, score and finish these work items; returns the chunk report."""
    container_start()
    import sqlalchemy.exc

    from shared.engines.enrichment import enrich_chunk as run

    try:
        return run(item_ids).as_dict()
    except sqlalchemy.exc.OperationalError as exc:  # connection trouble is worth a retry
        raise TransientChunkError(str(exc).splitlines()[0]) from exc


@app.function(image=image, secrets=[postgres, providers], timeout=CHECK_TIMEOUT_SECONDS)
def check_config() -> list[str]:
    """The waterfall these containers would run; raises ProviderConfigError naming a missing setting.

    Runs the same check as a worker's start, in the workers' own image and Secrets, so the flow
    can fail before it claims anything (orchestrator.executor.ModalExecutor.preflight).
    """
    if in_modal_container():
        configure_logging()
    from shared.integrations.providers import preflight

    return preflight()


@app.local_entrypoint()
def smoke(batch_id: int, batch_size: int = 50) -> None:
    """`modal run -m modal_apps.enrichment --batch-id N`: check the configuration, then run one chunk remotely."""
    from shared.db import get_engine
    from shared.engines.batches.batches import chunks

    print(f"waterfall: {', '.join(check_config.remote())}")
    chunk = next(chunks(get_engine(), batch_id, batch_size), None)
    print(enrich_chunk.remote(chunk) if chunk else f"batch {batch_id} has no PENDING items")
