"""IMAP access for reply recovery and the Sent-folder reconciler: new messages by UID, Message-ID lookups.

Built on imap-tools (and `probe`, the console's connection test). Three rules the callers rely on:
- Only UIDs above the cursor's `last_uid` are returned. imap-tools' `UID N:*` search answers
  with the last message even when N is past it (RFC 3501: `*` is the highest UID), so the result
  is filtered here.
- A changed UIDVALIDITY invalidates every stored UID: the folder is rescanned from the start and
  `rescanned` is set; the caller deduplicates on Message-ID.
- Nothing is changed on the server: the folder is opened read-only (EXAMINE) and bodies are
  fetched with BODY.PEEK (`mark_seen=False`), so a message the user has not read stays unread.

The password comes from the caller (an env var, Prefect Secret block or Modal Secret resolved by
name); it is excluded from the settings' repr and never logged.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from imap_tools import AND, H, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessage
from imap_tools.errors import MailboxLoginError
from imap_tools.mailbox import BaseMailBox

from shared.errors import ImapError
from shared.integrations.smtp import Probe, probe_failure
from shared.status import TlsMode

log = logging.getLogger(__name__)

FETCH_BULK = 50  # messages per FETCH command: bounded memory, few round trips
DEFAULT_LIMIT = 500  # messages per call; the caller loops with the returned cursor
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ImapSettings:
    """Where and how to log in; `password` is resolved by the caller and never shown."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    tls: TlsMode = TlsMode.TLS
    timeout_s: float = TIMEOUT_S


def mailbox_login(host: str, port: int | None, username: str | None, from_address: str, password: str, tls_mode: str,
                  timeout_s: float = TIMEOUT_S) -> ImapSettings:
    """How a mailbox logs in to IMAP: its SMTP username (else its from address), port 993 unless it names one."""
    return ImapSettings(host, port or 993, username or from_address, password, tls=TlsMode(tls_mode), timeout_s=timeout_s)


class Cursor(NamedTuple):
    """Where the last fetch of one folder stopped."""

    uidvalidity: int
    last_uid: int


class FetchedMessage(NamedTuple):
    """One message as the server stores it."""

    uid: int
    raw: bytes
    flags: tuple[str, ...]


class FetchResult(NamedTuple):
    """`fetch_new`'s answer; `cursor` is what to store once the messages are safely recorded."""

    messages: list[FetchedMessage]
    cursor: Cursor
    rescanned: bool  # UIDVALIDITY changed (or no cursor yet): everything was read from the start
    more: bool  # the limit was reached; call again with `cursor`


class _RawMessage(MailMessage):
    """imap-tools' message, keeping the exact bytes the server sent (parsing and re-serializing is not lossless)."""

    def __init__(self, fetch_data: list) -> None:
        super().__init__(fetch_data)
        self.raw: bytes = self._get_message_data_parts(fetch_data)[0]


def _mailbox(settings: ImapSettings) -> BaseMailBox:
    if settings.tls is TlsMode.TLS:
        box: BaseMailBox = MailBox(settings.host, settings.port, timeout=settings.timeout_s, ssl_context=ssl.create_default_context())
    elif settings.tls is TlsMode.STARTTLS:
        box = MailBoxStartTls(settings.host, settings.port, timeout=settings.timeout_s, ssl_context=ssl.create_default_context())
    else:
        box = MailBoxUnencrypted(settings.host, settings.port, timeout=settings.timeout_s)
    box.email_message_class = _RawMessage
    return box


def _login(settings: ImapSettings) -> BaseMailBox:
    try:
        box = _mailbox(settings)
        box.login(settings.username, settings.password, initial_folder=None)
    except Exception as exc:  # the server's answer only: imap-tools errors do not carry the password
        raise ImapError(settings, f"login failed ({type(exc).__name__}: {exc})") from None
    return box


def _open(box: BaseMailBox, settings: ImapSettings, folder: str) -> int:
    """EXAMINE the folder (read-only) and return its UIDVALIDITY.

    Read from the EXAMINE response itself (imaplib flushes untagged responses at SELECT), so it
    belongs to the same selection the UIDs come from; STATUS is the fallback for a server that
    leaves it out.
    """
    try:
        box.folder.set(folder, readonly=True)
        announced = box.client.untagged_responses.get("UIDVALIDITY")
        if announced and announced[-1]:
            return int(announced[-1])
        return int(box.folder.status(folder, ["UIDVALIDITY"])["UIDVALIDITY"])
    except Exception as exc:
        raise ImapError(settings, f"cannot open folder {folder!r} ({type(exc).__name__}: {exc})") from None


def fetch_new(settings: ImapSettings, folder: str, cursor: Cursor | None, *, limit: int = DEFAULT_LIMIT) -> FetchResult:
    """Messages in `folder` with UIDs above the cursor, oldest first, at most `limit`, never marked seen."""
    box = _login(settings)
    try:
        uidvalidity = _open(box, settings, folder)
        rescanned = cursor is None or cursor.uidvalidity != uidvalidity
        last_uid = 0 if rescanned else cursor.last_uid  # type: ignore[union-attr]
        if cursor is not None and rescanned:
            log.warning("IMAP %s folder %s: UIDVALIDITY %s -> %s, rescanning", settings.username, folder, cursor.uidvalidity, uidvalidity)
        found = box.uids(AND(uid=f"{last_uid + 1}:*"), charset=None)
        uids = sorted(u for u in (int(x) for x in found) if u > last_uid)
        chosen, more = uids[:limit], len(uids) > limit
        messages: list[FetchedMessage] = []
        if chosen:
            for item in box.fetch(uid_list=[str(u) for u in chosen], mark_seen=False, bulk=FETCH_BULK):
                assert isinstance(item, _RawMessage)
                messages.append(FetchedMessage(int(item.uid or 0), item.raw, tuple(item.flags)))
        messages.sort(key=lambda m: m.uid)
        new_last = messages[-1].uid if messages else last_uid
        return FetchResult(messages, Cursor(uidvalidity, new_last), rescanned, more)
    except ImapError:
        raise
    except Exception as exc:
        raise ImapError(settings, f"fetch from {folder!r} failed ({type(exc).__name__}: {exc})") from None
    finally:
        _logout(box)


def _logout(box: BaseMailBox) -> None:
    try:
        box.logout()
    except Exception:  # the connection is closing anyway; the result is already in hand
        pass


def _normalize_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def find_message_ids(settings: ImapSettings, folder: str, ids: Iterable[str]) -> set[str]:
    """Which of `ids` (`<uuid@domain>`) are present in `folder` (the Sent-folder reconciler's question).

    IMAP's HEADER search is a substring match, so each hit's Message-ID header is fetched and
    compared exactly before it counts.
    """
    wanted = {_normalize_id(i).lower(): _normalize_id(i) for i in ids if i and i.strip()}
    if not wanted:
        return set()
    box = _login(settings)
    try:
        _open(box, settings, folder)
        present: set[str] = set()
        for key, original in wanted.items():
            uids = box.uids(AND(header=H("Message-ID", original)), charset=None)
            if not uids:
                continue
            for item in box.fetch(uid_list=uids, mark_seen=False, headers_only=True, bulk=FETCH_BULK):
                values = item.headers.get("message-id", ())
                if any(_normalize_id(v).lower() == key for v in values):
                    present.add(original)
                    break
        return present
    except ImapError:
        raise
    except Exception as exc:
        raise ImapError(settings, f"search in {folder!r} failed ({type(exc).__name__}: {exc})") from None
    finally:
        _logout(box)


def sent_folder(settings: ImapSettings) -> str:
    """The Sent folder's name: the one flagged `\\Sent` (RFC 6154), else a common name, else "Sent"."""
    box = _login(settings)
    try:
        folders = box.folder.list()
    except Exception as exc:
        raise ImapError(settings, f"cannot list folders ({type(exc).__name__}: {exc})") from None
    finally:
        _logout(box)
    for info in folders:
        if "\\Sent" in info.flags:
            return info.name
    names = {info.name.lower(): info.name for info in folders}
    for common in ("sent", "sent items", "sent messages", "[gmail]/sent mail", "inbox.sent", "gesendet", "gesendete elemente"):
        if common in names:
            return names[common]
    return "Sent"


def _answer(lines: list[str], step: str, result: tuple) -> None:
    kind, data = result
    for item in data or [b""]:
        text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
        lines.append(f"{step}: {kind} {text}".rstrip())


def _probe_steps(box: BaseMailBox, settings: ImapSettings, lines: list[str], step: list[str]) -> None:
    _answer(lines, "connect", ("OK", [box.client.welcome]))
    step[0] = "LOGIN"
    box.login(settings.username, settings.password, initial_folder=None)
    _answer(lines, "LOGIN", box.login_result)
    step[0] = "EXAMINE"
    _answer(lines, "EXAMINE INBOX", box.folder.set("INBOX", readonly=True))


def probe(settings: ImapSettings) -> Probe:
    """Connect (TLS as set), LOGIN, open INBOX read-only: the server's answers, or the failure's class
    (`smtp.probe_failure`: refused, timeout, TLS, auth). Nothing changes on the server."""
    lines = [f"IMAP {settings.host}:{settings.port} ({settings.tls})"]
    step = ["connect"]
    box: BaseMailBox | None = None
    try:
        box = _mailbox(settings)
        _probe_steps(box, settings, lines, step)
    except Exception as exc:  # imap-tools' and imaplib's errors carry the server's words, never the password
        failure = "auth" if isinstance(exc, MailboxLoginError) else probe_failure(exc, step[0])
        lines.append(f"{failure}: {step[0]}: {type(exc).__name__}: {exc}"[:300])
        return Probe(tuple(lines), failure)
    finally:
        if box is not None:
            _logout(box)
    return Probe(tuple(lines))
