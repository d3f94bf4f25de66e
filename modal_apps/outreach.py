"""Modal App `outbound-outreach`: one function that runs the send engine on a chunk of send items.

Deploy: `modal deploy modal_apps/outreach.py`. The orchestrator reaches it with
`modal.Function.from_name("outbound-outreach", "send_chunk")` and `.map`. SMTP passwords come
from the `smtp-passwords` Secret as environment variables named by each mailbox's `secret_name`.
"""

from __future__ import annotations

import os

import modal

from modal_apps.enrichment import RUNTIME_PACKAGES as ENRICHMENT_PACKAGES

app = modal.App("outbound-outreach")

# Pinned to requirements.lock (tests/unit/test_modal_app.py keeps them in step).
RUNTIME_PACKAGES = [*ENRICHMENT_PACKAGES, "jinja2==3.1.6", "phonenumbers==9.0.43", "tzdata==2026.6"]

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*RUNTIME_PACKAGES)
    .add_local_python_source("shared")
)

postgres = modal.Secret.from_name("postgres-connection-string", required_keys=["DATABASE_URL"])
outreach = modal.Secret.from_name("outreach", required_keys=["OUTREACH_SECRET", "PUBLIC_BASE_URL"])
smtp_passwords = modal.Secret.from_name("smtp-passwords")

# No automatic retries: a chunk that died mid-send must not be re-run blindly. Items it did not
# reach are recovered by the next hourly pass; a send that reached DATA is in doubt, never resent.
TIMEOUT_SECONDS = 15 * 60
MAX_CONTAINERS = int(os.environ.get("MODAL_MAX_CONTAINERS", "20"))


@app.function(image=image, secrets=[postgres, outreach, smtp_passwords], timeout=TIMEOUT_SECONDS,
              max_containers=MAX_CONTAINERS)
def send_chunk(item_ids: list[int]) -> dict:
    """Start, check just in time, send at most once and finish these send items; returns the chunk report."""
    from shared.engines.outreach.sending import send_chunk as run

    return run(item_ids).as_dict()
