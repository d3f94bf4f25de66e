"""Modal App `outbound-web`: the web app (operator console, one-click unsubscribe, inbound-mail webhooks) as a Modal web endpoint.

The same factory as `outbound serve`. Deploy from the repo root: `modal deploy -m modal_apps.web`
(in file mode `web` would resolve to this file, not the web/ package: modal_apps/common.py). Its
https URL is the PUBLIC_BASE_URL put in List-Unsubscribe, and `<URL>/webhooks/inbound` (Standard
Webhooks) or `<URL>/webhooks/mailgun` is where the inbound provider posts received mail. The
webhook secrets come from the `inbound-webhooks` Secret (STANDARD_WEBHOOK_SECRET and/or
MAILGUN_SIGNING_KEY). The operator console (`<URL>/console`) signs its sessions with
CONSOLE_SECRET from the `console` Secret; accounts are made with `outbound users add` against the
same database.

Capacity: each container serves up to MAX_INPUTS requests at once (`@modal.concurrent`, so a
one-click POST rarely waits for a cold start) and holds a pool of at most DB_POOL_SIZE +
DB_MAX_OVERFLOW Postgres connections; at most MAX_CONTAINERS containers run, so the App holds at
most MAX_CONTAINERS x (DB_POOL_SIZE + DB_MAX_OVERFLOW) pooler clients. The factory refuses a
configuration over DB_POOLER_MAX_CLIENTS (shared.settings.check_deployed; docs/deploy.md).
"""

from __future__ import annotations

import os

import modal

from modal_apps.common import (
    WORKER_DISTRIBUTIONS,
    WORKER_SOURCES,
    console,
    inbound_webhooks,
    lock_image,
    outreach,
    postgres,
    require_module_mode,
    source_files,
)

require_module_mode(__name__)

app = modal.App("outbound-web", include_source=False)

# `shared` plus the ASGI app in `web/`, at the runtime lock's versions.
DISTRIBUTIONS = (*WORKER_DISTRIBUTIONS, "fastapi", "argon2-cffi", "itsdangerous", "python-multipart")
SOURCES = (*WORKER_SOURCES, "web")
# The console's templates and static files travel with the code (by default only .py files do).
SOURCE_FILES = source_files("**/console/templates/*.html", "**/console/static/*")
image = lock_image(*DISTRIBUTIONS, sources=SOURCES, ignore=SOURCE_FILES)

MAX_CONTAINERS = int(os.environ.get("WEB_MAX_CONTAINERS", "4"))
MAX_INPUTS = int(os.environ.get("WEB_MAX_INPUTS", "16"))
# Each container's SQLAlchemy pool: enough connections for MAX_INPUTS requests at once, no more.
# The deploy-time values travel to the containers (the module is imported again there), so the
# check in the factory judges what was deployed.
CONTAINER_ENV = {"DB_POOL_SIZE": os.environ.get("WEB_DB_POOL_SIZE", "4"),
                 "DB_MAX_OVERFLOW": os.environ.get("WEB_DB_MAX_OVERFLOW", "12"),
                 "WEB_MAX_CONTAINERS": str(MAX_CONTAINERS), "WEB_MAX_INPUTS": str(MAX_INPUTS)}


@app.function(image=image, secrets=[postgres, outreach, inbound_webhooks, console], env=CONTAINER_ENV,
              max_containers=MAX_CONTAINERS)
@modal.concurrent(max_inputs=MAX_INPUTS)
@modal.asgi_app()
def unsubscribe():
    from shared.settings import check_deployed, get_settings
    from web.app import create_app

    # Before the first request: https PUBLIC_BASE_URL, and the pools within the pooler's client limit.
    check_deployed(get_settings(), containers=MAX_CONTAINERS, concurrent_inputs=MAX_INPUTS)
    return create_app()
