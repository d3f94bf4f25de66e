"""Modal App `outbound-outreach`: one function that runs the send engine on a chunk of send items.

Deploy from the repo root: `modal deploy -m modal_apps.outreach` (modal_apps/common.py says why).
The orchestrator reaches it with `modal.Function.from_name("outbound-outreach", "send_chunk")`,
one `.remote` call per chunk in a window of the containers' capacity, and asks `check_config`
before it claims anything (orchestrator.executor.ModalExecutor.preflight). SMTP passwords come
from the `smtp-passwords` Secret as environment variables named by each mailbox's `secret_name`.
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

app = modal.App("outbound-outreach", include_source=False)

# The send engine lives in `shared` too: the enrichment workers' packages, at the lock's versions.
DISTRIBUTIONS = WORKER_DISTRIBUTIONS
image = lock_image(*DISTRIBUTIONS)

# No automatic retries: a chunk that died mid-send must not be re-run blindly. Items it did not
# reach are recovered by the next pass (every 5 minutes); a send that got no reply after its final dot is in doubt, never resent.
TIMEOUT_SECONDS = 15 * 60
CHECK_TIMEOUT_SECONDS = 60


@app.function(image=image, secrets=[postgres, outreach, smtp_passwords], timeout=TIMEOUT_SECONDS,
              max_containers=MAX_CONTAINERS)
def send_chunk(item_ids: list[int]) -> dict:
    """Check the deployed settings, start, check just in time, send at most once and finish these send items."""
    from shared.engines.outreach.sending import send_chunk as run
    from shared.settings import check_deployed, get_settings

    check_deployed(get_settings())  # an http PUBLIC_BASE_URL would go into every List-Unsubscribe
    return run(item_ids).as_dict()


@app.function(image=image, secrets=[postgres, outreach, smtp_passwords], timeout=CHECK_TIMEOUT_SECONDS)
def check_config() -> None:
    """The send engine's settings in these containers' Secrets; raises OutreachConfigError naming a missing one."""
    from shared.engines.outreach.sending import preflight

    preflight()
