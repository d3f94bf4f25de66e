"""Modal App `outbound-web`: the web app (operator console, one-click unsubscribe, inbound-mail webhooks) as a Modal web endpoint.

The same factory as `outbound serve`. Deploy: `modal deploy modal_apps/web.py`; its https URL is
the PUBLIC_BASE_URL put in List-Unsubscribe, and `<URL>/webhooks/inbound` (Standard Webhooks) or
`<URL>/webhooks/mailgun` is where the inbound provider posts received mail. The webhook secrets
come from the `inbound-webhooks` Secret (STANDARD_WEBHOOK_SECRET and/or MAILGUN_SIGNING_KEY).
The operator console (`<URL>/console`) signs its sessions with CONSOLE_SECRET from the `console`
Secret; accounts are made with `outbound users add` against the same database.
"""

from __future__ import annotations

import modal

from modal_apps.enrichment import WORKER_DISTRIBUTIONS, lock_image, source_files

app = modal.App("outbound-web")

# `shared` plus the ASGI app in `web/`, at the runtime lock's versions.
DISTRIBUTIONS = (*WORKER_DISTRIBUTIONS, "fastapi", "argon2-cffi", "itsdangerous", "python-multipart")
# The console's templates and static files travel with the code (by default only .py files do).
SOURCE_FILES = source_files("**/console/templates/*.html", "**/console/static/*")
image = lock_image(*DISTRIBUTIONS, sources=("shared", "web"), ignore=SOURCE_FILES)

postgres = modal.Secret.from_name("postgres-connection-string", required_keys=["DATABASE_URL"])
outreach = modal.Secret.from_name("outreach", required_keys=["OUTREACH_SECRET", "PUBLIC_BASE_URL"])
inbound_webhooks = modal.Secret.from_name("inbound-webhooks")
console = modal.Secret.from_name("console", required_keys=["CONSOLE_SECRET"])


@app.function(image=image, secrets=[postgres, outreach, inbound_webhooks, console])
@modal.asgi_app()
def unsubscribe():
    from web.app import create_app

    return create_app()
