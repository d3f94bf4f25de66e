"""A local IMAP server (pymap's in-memory `dict` backend in a subprocess): for the demo and the tests.

pymap 0.36's `dict` backend keeps everything in memory and always has one login,
`demouser` / `demopass` (its `--demo-user` / `--demo-password` defaults; see
pymap/backend/dict/__init__.py). Without `--demo-data` only INBOX exists; `ImapServer.start`
creates the folders asked for. UIDVALIDITY is new on every start, so `restart()` is how a test
makes it change (and empties the server). Plain IMAP on 127.0.0.1 only: never a real mailbox.
"""

from __future__ import annotations

import imaplib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imap_tools import MailBoxUnencrypted

from devkit.net import free_port
from shared.integrations.imap import ImapSettings
from shared.status import TlsMode

DEMO_USER = "demouser"
DEMO_PASSWORD = "demopass"
STARTUP_TIMEOUT_S = 30.0  # generous: the machine is shared; this bounds a hang, it asserts no speed
DEFAULT_FOLDERS = ("Sent",)


class ImapServer:
    """pymap's dict backend on 127.0.0.1:<port>, plain IMAP (no TLS)."""

    def __init__(self, folders: Iterable[str] = DEFAULT_FOLDERS) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.folders = tuple(folders)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = Path(f"/tmp/pymap-test-{self.port}.log")

    def start(self) -> ImapServer:
        pymap = Path(sys.executable).with_name("pymap")
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [str(pymap), "--host", self.host, "--port", str(self.port), "--no-tls", "dict"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        with self.mailbox() as box:
            for folder in self.folders:
                if not box.folder.exists(folder):
                    box.folder.create(folder)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"pymap exited with {self._proc.returncode}: {self._log.read_text(errors='replace')}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pymap did not answer on port {self.port} within {STARTUP_TIMEOUT_S} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._log.unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop and start on the same port: all mail is gone and UIDVALIDITY is new."""
        self.stop()
        self.start()

    def settings(self, password: str = DEMO_PASSWORD) -> ImapSettings:
        return ImapSettings(self.host, self.port, DEMO_USER, password, tls=TlsMode.NONE)

    def mailbox(self) -> MailBoxUnencrypted:
        """A logged-in imap-tools client (use as a context manager)."""
        return MailBoxUnencrypted(self.host, self.port, timeout=10).login(DEMO_USER, DEMO_PASSWORD, initial_folder="INBOX")

    def append(self, folder: str, raw: bytes, flags: Iterable[str] = ()) -> int:
        """APPEND one message; returns its UID (from the APPENDUID response, RFC 4315)."""
        with self.mailbox() as box:
            status, data = box.append(raw, folder, flag_set=list(flags))
        text = data[0].decode() if data and isinstance(data[0], bytes) else str(data)
        # "[APPENDUID <uidvalidity> <uid>] APPEND completed."
        return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])

    def flags(self, folder: str) -> dict[int, tuple[str, ...]]:
        """Each message's flags, read without touching them (EXAMINE + FLAGS only)."""
        with self.mailbox() as box:
            box.folder.set(folder, readonly=True)
            status, data = box.client.uid("FETCH", "1:*", "(UID FLAGS)")
        found: dict[int, tuple[str, ...]] = {}
        for line in data:
            if not isinstance(line, bytes):
                continue
            uid = re.search(rb"UID (\d+)", line)
            if uid:
                found[int(uid.group(1))] = tuple(f.decode() for f in imaplib.ParseFlags(line))
        return found


@contextmanager
def running_imap_server(folders: Iterable[str] = DEFAULT_FOLDERS) -> Iterator[ImapServer]:
    """A started server for the block, stopped after it (also on errors)."""
    server = ImapServer(folders).start()
    try:
        yield server
    finally:
        server.stop()
