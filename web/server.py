"""Run the web app with uvicorn in a background thread (the demo and tests; `outbound serve` runs it in front)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

STARTUP_TIMEOUT_SECONDS = 30.0


@contextmanager
def background(app: FastAPI, *, host: str = "127.0.0.1", port: int) -> Iterator[str]:
    """Serve `app` on host:port until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the web app did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_SECONDS)
