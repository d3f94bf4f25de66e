"""Modal App `outbound-replies`: reply recovery for one mailbox per call (IMAP → ingest).

Deploy from the repo root: `modal deploy -m modal_apps.replies` (modal_apps/common.py says why).
The `reply_recovery` flow reaches it with `modal.Function.from_name("outbound-replies",
"recover_mailbox")` and `.map` over `[[mailbox_id], …]`. IMAP passwords come from the
`smtp-passwords` Secret (env vars named by each mailbox's `secret_name`).
"""

from __future__ import annotations

import modal

from modal_apps.common import (
    MAX_CONTAINERS,
    WORKER_DISTRIBUTIONS,
    lock_image,
    outreach,
    postgres,
    require_module_mode,
    smtp_passwords,
)

require_module_mode(__name__)

app = modal.App("outbound-replies", include_source=False)

# Reply recovery lives in `shared` too: the workers' packages, at the runtime lock's versions.
DISTRIBUTIONS = WORKER_DISTRIBUTIONS
image = lock_image(*DISTRIBUTIONS)

# Retrying a mailbox is safe (cursor + dedupe), but the next 6-hourly run does it anyway.
TIMEOUT_SECONDS = 30 * 60


@app.function(image=image, secrets=[postgres, outreach, smtp_passwords], timeout=TIMEOUT_SECONDS,
              max_containers=MAX_CONTAINERS)
def recover_mailbox(mailbox_ids: list[int]) -> dict:
    """Recover the mailboxes named (one per call from the flow); returns their reports."""
    from shared.engines.replies.recovery import recover_chunk

    return recover_chunk(mailbox_ids)
