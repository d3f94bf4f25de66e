"""Modal App `outbound-replies`: reply recovery for one mailbox per call (IMAP → ingest).

Deploy: `modal deploy modal_apps/replies.py`. The `reply_recovery` flow reaches it with
`modal.Function.from_name("outbound-replies", "recover_mailbox")` and `.map` over `[[mailbox_id], …]`.
IMAP passwords come from the `smtp-passwords` Secret (env vars named by each mailbox's `secret_name`).
"""

from __future__ import annotations

import os

import modal

from modal_apps.outreach import RUNTIME_PACKAGES as OUTREACH_PACKAGES

app = modal.App("outbound-replies")

# Pinned to requirements.lock (tests/unit/test_modal_app.py keeps them in step).
REPLIES_PACKAGES = ["imap-tools==1.16.0", "flufl.bounce==6.0.0", "mail-parser-reply==1.36", "standardwebhooks==1.1.0"]
RUNTIME_PACKAGES = [*OUTREACH_PACKAGES, *REPLIES_PACKAGES]

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*RUNTIME_PACKAGES)
    .add_local_python_source("shared")
)

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
