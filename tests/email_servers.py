"""Real mail servers for tests: the pymap IMAP server as a fixture, and an SMTP server that answers like a real one.

Use in a test module:

    from tests.email_servers import imap_server, smtp_server  # noqa: F401  (pytest fixtures)

    def test_x(imap_server):
        imap_server.append("INBOX", raw_bytes)
        settings = imap_server.settings()

`smtp_server` is an aiosmtpd server on a free port whose answers the test scripts (`Faults`):
`451 4.3.0` to every n-th message after its final dot, `550 5.1.1` at RCPT for chosen addresses,
`554 5.7.1` after the dot for others, a dropped connection after the dot (no reply) for others.
It records what it accepted (each accepted message once) and every session it saw, so a test can
count deliveries, deferrals and connection attempts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from devkit.imap_server import (  # noqa: F401  (re-exported for tests)
    DEFAULT_FOLDERS,
    DEMO_PASSWORD,
    DEMO_USER,
    STARTUP_TIMEOUT_S,
    ImapServer,
)
from devkit.net import free_port


@pytest.fixture
def imap_server() -> Iterator[ImapServer]:
    """A fresh pymap server with INBOX and Sent, stopped after the test."""
    server = ImapServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Faults:
    """What the server answers besides 250: scripted per message count and per recipient."""

    defer_every: int = 0  # every n-th message (by DATA received) is answered 451 after the dot; 0: never
    unknown: set[str] = field(default_factory=set)  # RCPT answered 550 5.1.1
    rejected: set[str] = field(default_factory=set)  # answered 554 5.7.1 after the dot
    drop_after_dot: set[str] = field(default_factory=set)  # connection closed after the dot, no reply


@dataclass
class ScriptedSmtp:
    """An aiosmtpd handler that answers by `faults`; `accepted` holds each message it took (250)."""

    faults: Faults = field(default_factory=Faults)
    accepted: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (recipient, Message-ID) answered 451
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (recipient, Message-ID) taken, then no reply
    sessions: int = 0  # EHLOs seen: one per connection attempt that got that far
    data_seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 (aiosmtpd's name)
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.lower() in self.faults.unknown:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = message_from_bytes(envelope.content, policy=policy.SMTP)
        rcpt = envelope.rcpt_tos[0].lower()
        with self.lock:
            self.data_seen += 1
            n = self.data_seen
            if rcpt in self.faults.drop_after_dot:
                # Taken, but the client never hears so: it cannot know (RFC 1047).
                self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
                self.dropped.append((rcpt, msg["Message-ID"]))
                server.transport.close()
                return "250 2.0.0 Ok: queued (never heard)"
            if rcpt in self.faults.rejected:
                return "554 5.7.1 Message rejected as spam"
            if self.faults.defer_every and n % self.faults.defer_every == 0:
                self.deferred.append((rcpt, msg["Message-ID"]))
                return "451 4.3.0 try again later"
            self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 2.0.0 Ok: queued"


@dataclass
class SmtpServer:
    handler: ScriptedSmtp
    port: int
    host: str = "127.0.0.1"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A scripted SMTP server (no AUTH offered: aiosmtpd offers it only over TLS), stopped after the test."""
    handler, port = ScriptedSmtp(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(handler, port)
    finally:
        controller.stop()
