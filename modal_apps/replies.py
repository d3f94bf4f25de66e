"""Modal App `outbound-replies`: reply recovery for one mailbox per call (IMAP → ingest).

Deploy: `modal deploy modal_apps/replies.py`. The `reply_recovery` flow reaches it with
`modal.Function.from_name("outbound-replies", "recover_mailbox")` and `.map` over `[[mailbox_id], …]`.
IMAP passwords come from the `smtp-passwords` Secret (env vars named by each mailbox's `secret_name`).
"""

from __future__ import annotations

import os

import modal

from modal_apps.enrichment import WORKER_DISTRIBUTIONS, lock_image

app = modal.App("outbound-replies")

# Reply recovery lives in `shared` too: the workers' packages, at the runtime lock's versions.
DISTRIBUTIONS = WORKER_DISTRIBUTIONS
image = lock_image(*DISTRIBUTIONS)

postgres = modal.Secret.from_name("postgres-connection-string", required_keys=["DATABASE_URL"])
outreach = modal.Secret.from_name("outreach", required_keys=["OUTREACH_SECRET", "PUBLIC_BASE_URL"])
smtp_passwords = modal.Secret.from_name("smtp-passwords")

# Retrying a mailbox is safe (cursor + dedupe), but the next 6-hourly run does it anyway.
TIMEOUT_SECONDS = 30 * 60
MAX_CONTAINERS = int(os.environ.get("MODAL_MAX_CONTAINERS", "20"))


@app.function(image=image, secrets=[postgres, outreach, smtp_passwords], timeout=TIMEOUT_SECONDS,
              max_containers=MAX_CONTAINERS)
def recover_mailbox(mailbox_ids: list[int]) -> dict:
    """Recover the mailboxes named (one per call from the flow); returns their reports."""
    from shared.engines.replies.recovery import recover_chunk

    return recover_chunk(mailbox_ids)
