"""Modal App `outbound-web`: the one-click unsubscribe app as a Modal web endpoint (same factory as `outbound serve`).

Deploy: `modal deploy modal_apps/web.py`; its https URL is the PUBLIC_BASE_URL put in List-Unsubscribe.
"""

from __future__ import annotations

import modal

from modal_apps.enrichment import WORKER_DISTRIBUTIONS, lock_image

app = modal.App("outbound-web")

# `shared` plus the ASGI app in `web/`, at the runtime lock's versions.
DISTRIBUTIONS = (*WORKER_DISTRIBUTIONS, "fastapi")
image = lock_image(*DISTRIBUTIONS, sources=("shared", "web"))

postgres = modal.Secret.from_name("postgres-connection-string", required_keys=["DATABASE_URL"])
outreach = modal.Secret.from_name("outreach", required_keys=["OUTREACH_SECRET", "PUBLIC_BASE_URL"])


@app.function(image=image, secrets=[postgres, outreach])
@modal.asgi_app()
def unsubscribe():
    from web.app import create_app

    return create_app()
