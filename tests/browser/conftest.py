"""The console in a real headless Chromium (Playwright driving Debian's `chromium`, which `make browser` installs).

The app runs in uvicorn on a free port against the test database, with the local launch path of
`outbound serve --run-launches`: the launch trigger's NOTIFY → the bridge → orchestrator_main in
this process, with the sandbox provider over real HTTP. Screenshots of each main page go to
docs/screenshots/ (README shows them).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console_helpers import PASSWORD, SECRET
from devkit.net import free_port

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
# Chromium in a container: no sandbox (no user namespaces), no GPU, no phoning home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--metrics-recording-only"]
VIEWPORT = {"width": 1280, "height": 860}


def chromium_path() -> str:
    """Debian's Chromium (or CHROMIUM_PATH); missing is a failure under CI and a skip elsewhere."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "Chromium is not installed: run `make browser` (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is
    open, which would break every later test that calls asyncio.run()."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser):
    """A fresh browser context per signed-in person (its own cookies)."""
    contexts = []

    def make():
        context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def console_url(engine, database_url, env) -> Iterator[str]:
    """The web app in uvicorn plus the in-process launcher, as `outbound serve --run-launches` runs them.

    No `prefect_harness`: the launcher's flows start Prefect's temporary server on their own, as they
    do under `outbound serve`, and the session-wide harness (whose settings would then be in force for
    every later test in this process) is left to the tests that ask for it."""
    from orchestrator.bridge import Bridge, LocalLauncher
    from devkit import sandbox
    from web.app import create_app
    from web.server import background

    with sandbox.serve(latency_ms=20, hit_rate=0.8, seed=7) as provider:
        env(PROVIDER_ORDER="heuristics,sandbox", SANDBOX_URL=provider.url, LOCAL_WORKERS="2")
        bridge = Bridge(database_url, LocalLauncher(batch_size=10), sweep_seconds=5.0, poll_seconds=0.2)
        thread = threading.Thread(target=bridge.run, name="launches", daemon=True)
        thread.start()
        try:
            with background(create_app(engine=engine, secret="unsubscribe-secret", console_secret=SECRET),
                            port=free_port()) as url:
                yield url
        finally:
            bridge.stop.set()
            thread.join(30)


def sign_in(page, base: str, email: str, password: str = PASSWORD, *, screenshot: str | None = None) -> None:
    page.goto(f"{base}/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    if screenshot:
        shot(page, screenshot)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/batches")


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
