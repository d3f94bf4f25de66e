"""A local SMTP sink (aiosmtpd on a free port) that records what it accepted: for the demo, the bench and tests.

Port 0 does not work with aiosmtpd's Controller (its readiness check connects to the port it was
given), so a free port is picked first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from devkit.net import free_port


@dataclass
class Sink:
    delay_seconds: float = 0.0
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)  # the bytes as received (a DKIM signature is checked on these)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)  # a slow server, per message
        msg = message_from_bytes(envelope.content, policy=policy.SMTP)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.raws.append(envelope.original_content or envelope.content)
        return "250 2.0.0 Ok: queued"


def _any_login(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001 (aiosmtpd's signature)
    """The sink accepts every login: a mailbox whose SMTP and IMAP share one account can send to it."""
    return AuthResult(success=True)


def _only(password: str):  # noqa: ANN202
    """An authenticator that takes only `password` (a connection test's wrong password is refused, 535)."""
    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        ok = getattr(auth_data, "password", b"") == password.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself
    return check


@contextmanager
def smtp_sink(delay_seconds: float = 0.0, *, password: str | None = None) -> Iterator[tuple[Sink, int]]:
    """The sink on a free port; every login is accepted, or with `password` only that one."""
    sink = Sink(delay_seconds)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=_any_login if password is None
                            else _only(password), auth_require_tls=False)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()
