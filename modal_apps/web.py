"""Modal App `outbound-web`: the one-click unsubscribe app as a Modal web endpoint (same factory as `outbound serve`).

Deploy: `modal deploy modal_apps/web.py`; its https URL is the PUBLIC_BASE_URL put in List-Unsubscribe.
"""

from __future__ import annotations

import modal

from modal_apps.outreach import RUNTIME_PACKAGES

app = modal.App("outbound-web")

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*RUNTIME_PACKAGES, "fastapi==0.150.0")
    .add_local_python_source("shared", "web")
)

postgres = modal.Secret.from_name("postgres-connection-string", required_keys=["DATABASE_URL"])
outreach = modal.Secret.from_name("outreach", required_keys=["OUTREACH_SECRET", "PUBLIC_BASE_URL"])


@app.function(image=image, secrets=[postgres, outreach])
@modal.asgi_app()
def unsubscribe():
    from web.app import create_app

    return create_app()
