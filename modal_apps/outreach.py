"""Modal App `outbound-outreach`: one function that runs the send engine on a chunk of send items.

Deploy: `modal deploy modal_apps/outreach.py`. The orchestrator reaches it with
`modal.Function.from_name("outbound-outreach", "send_chunk")` and `.map`, and asks `check_config`
before it claims anything (orchestrator.executor.ModalExecutor.preflight). SMTP passwords come
from the `smtp-passwords` Secret as environment variables named by each mailbox's `secret_name`.
"""

from __future__ import annotations

import os

import modal

from modal_apps.enrichment import WORKER_DISTRIBUTIONS, lock_image

app = modal.App("outbound-outreach")

# The send engine lives in `shared` too: the enrichment workers' packages, at the lock's versions.
DISTRIBUTIONS = WORKER_DISTRIBUTIONS
image = lock_image(*DISTRIBUTIONS)

postgres = modal.Secret.from_name("postgres-connection-string", required_keys=["DATABASE_URL"])
outreach = modal.Secret.from_name("outreach", required_keys=["OUTREACH_SECRET", "PUBLIC_BASE_URL"])
smtp_passwords = modal.Secret.from_name("smtp-passwords")

# No automatic retries: a chunk that died mid-send must not be re-run blindly. Items it did not
# reach are recovered by the next pass (every 5 minutes); a send that got no reply after its final dot is in doubt, never resent.
TIMEOUT_SECONDS = 15 * 60
CHECK_TIMEOUT_SECONDS = 60
MAX_CONTAINERS = int(os.environ.get("MODAL_MAX_CONTAINERS", "20"))


@app.function(image=image, secrets=[postgres, outreach, smtp_passwords], timeout=TIMEOUT_SECONDS,
              max_containers=MAX_CONTAINERS)
def send_chunk(item_ids: list[int]) -> dict:
    """Start, check just in time, send at most once and finish these send items; returns the chunk report."""
    from shared.engines.outreach.sending import send_chunk as run

    return run(item_ids).as_dict()


@app.function(image=image, secrets=[postgres, outreach, smtp_passwords], timeout=CHECK_TIMEOUT_SECONDS)
def check_config() -> None:
    """The send engine's settings in these containers' Secrets; raises OutreachConfigError naming a missing one."""
    from shared.engines.outreach.sending import preflight

    preflight()
