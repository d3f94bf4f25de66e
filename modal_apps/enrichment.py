"""Modal App `outbound-enrichment`: one function that runs the enrichment engine on a chunk of items.

Deploy: `modal deploy modal_apps/enrichment.py`. The orchestrator reaches it with
`modal.Function.from_name("outbound-enrichment", "enrich_chunk")` and `.map` / `.spawn_map`.
"""

from __future__ import annotations

import os

import modal

app = modal.App("outbound-enrichment")

# Pinned to requirements.lock (tests/unit/test_modal_app.py keeps them in step).
RUNTIME_PACKAGES = [
    "sqlalchemy==2.1.9",
    "psycopg2-binary==2.9.13",
    "pydantic==2.14.3",
    "pydantic-settings==2.16.3",
    "python-dotenv==1.2.4",
    "httpx==0.28.1",
    "tenacity==9.2.1",
    "email-validator==2.4.0",
    "disposable-email-domains==0.0.293",
    "nameparser==2.6.0",
    "tldextract==5.4.0",
]

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*RUNTIME_PACKAGES)
    .add_local_python_source("shared")
)

postgres = modal.Secret.from_name("postgres-connection-string", required_keys=["DATABASE_URL"])
providers = modal.Secret.from_name("provider-api-keys", required_keys=["APOLLO_API_KEY", "HUNTER_API_KEY"])

RETRIES = modal.Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=2.0, max_delay=30.0)
TIMEOUT_SECONDS = 15 * 60
# Each container holds a pool of Postgres connections: cap containers so the database is not swamped.
MAX_CONTAINERS = int(os.environ.get("MODAL_MAX_CONTAINERS", "20"))


class TransientChunkError(RuntimeError):
    """The chunk could not reach Postgres; raised so modal.Retries tries it again."""


@app.function(
    image=image,
    secrets=[postgres, providers],
    retries=RETRIES,
    timeout=TIMEOUT_SECONDS,
    max_containers=MAX_CONTAINERS,
)
def enrich_chunk(item_ids: list[int]) -> dict:
    """Start, check, enrich, score and finish these work items; returns the chunk report."""
    import sqlalchemy.exc

    from shared.engines.enrichment import enrich_chunk as run

    try:
        return run(item_ids).as_dict()
    except sqlalchemy.exc.OperationalError as exc:  # connection trouble is worth a retry
        raise TransientChunkError(str(exc).splitlines()[0]) from exc


@app.local_entrypoint()
def smoke(batch_id: int, batch_size: int = 50) -> None:
    """`modal run modal_apps/enrichment.py --batch-id N`: claim one chunk of a batch and run it remotely."""
    from shared.db import get_engine
    from shared.engines.batches import chunks

    chunk = next(chunks(get_engine(), batch_id, batch_size), None)
    print(enrich_chunk.remote(chunk) if chunk else f"batch {batch_id} has no PENDING items")
