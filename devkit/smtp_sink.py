"""A local SMTP sink (aiosmtpd on a free port) that records what it accepted: for the demo, the bench and tests.

Port 0 does not work with aiosmtpd's Controller (its readiness check connects to the port it was
given), so a free port is picked first. `sink_process` (and `python -m devkit.smtp_sink`) runs one in
a process of its own that only counts, as a real server would be: the bench's sender must not share
its interpreter (and GIL) with the server it measures against.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from devkit.net import free_port, wait_until


@dataclass
class Sink:
    delay_seconds: float = 0.0
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)  # the bytes as received (a DKIM signature is checked on these)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep: bool = True  # False: only count what it accepts (`sink_process`)
    accepted: int = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)  # a slow server, per message
        msg = message_from_bytes(envelope.content, policy=policy.SMTP) if self.keep else None
        with self.lock:
            self.accepted += 1
            if msg is not None:
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


@dataclass
class SinkProcess:
    """A counting sink in its own process: its port, and how many messages it accepted once it stopped."""

    port: int
    accepted: int | None = None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def sink_process(delay_seconds: float = 0.0) -> Iterator[SinkProcess]:
    """`python -m devkit.smtp_sink` on a free port until the block ends; then `accepted` is its count."""
    handle = SinkProcess(free_port())
    proc = subprocess.Popen([sys.executable, "-m", "devkit.smtp_sink", "--port", str(handle.port),
                             "--delay-ms", str(delay_seconds * 1000)], stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: proc.poll() is not None or _listening(handle.port), 30, "the SMTP sink process")
        if proc.poll() is not None:
            raise RuntimeError(f"the SMTP sink process exited with {proc.returncode}")
        yield handle
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        counted = [line for line in out.splitlines() if line.startswith("accepted ")]
        handle.accepted = int(counted[-1].split()[1]) if counted else None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devkit.smtp_sink", description="A counting SMTP sink "
                                     "(every login accepted); prints `accepted N` when stopped (SIGTERM or Ctrl-C).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait this long before answering each final dot")
    args = parser.parse_args()
    sink = Sink(args.delay_ms / 1000, keep=False)
    controller = Controller(sink, hostname="127.0.0.1", port=args.port, authenticator=_any_login,
                            auth_require_tls=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
        print(f"accepted {sink.accepted}", flush=True)


if __name__ == "__main__":
    main()
