"""Real mail servers for tests: the pymap IMAP server (shared.integrations.imap_server) as a pytest fixture.

Use in a test module:

    from tests.email_servers import imap_server  # noqa: F401  (pytest fixture)

    def test_x(imap_server):
        imap_server.append("INBOX", raw_bytes)
        settings = imap_server.settings()
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.integrations.imap_server import (  # noqa: F401  (re-exported for tests)
    DEFAULT_FOLDERS,
    DEMO_PASSWORD,
    DEMO_USER,
    STARTUP_TIMEOUT_S,
    ImapServer,
    free_port,
)


@pytest.fixture
def imap_server() -> Iterator[ImapServer]:
    """A fresh pymap server with INBOX and Sent, stopped after the test."""
    server = ImapServer().start()
    try:
        yield server
    finally:
        server.stop()
