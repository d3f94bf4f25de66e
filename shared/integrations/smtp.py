"""SMTP: one message per transaction, and what each of the server's replies means (RFC 5321).

A reply code is a definite answer: 4xx means the server did not take the message (try again
later, same Message-ID), 5xx means it refused it. Only a connection lost or timed out after the
final dot went out, before any reply, leaves the message in doubt (RFC 1047): the server may have
accepted it. `SmtpError.outcome` names which of these happened, and `stage` the command that got
the answer, so the send engine never has to guess:

- `deferred`: 4xx to MAIL, RCPT, DATA or the final dot: not sent, retry later;
- `refused`: 5xx to RCPT, DATA or the final dot: not sent, do not retry (`bounced` when RCPT got a
  5.1.x "no such recipient": a hard bounce for that lead);
- `mailbox`: the mailbox's own server failed before any message was offered (connect, TLS, EHLO,
  AUTH, 5xx to MAIL FROM, 421 "closing" at any stage, a connection lost before the dot);
  `transient` (shared.db.is_transient, the project's one rule) says whether trying later can help;
- `in_doubt`: no reply after the final dot.

`Session` keeps one connection open across messages (RSET between them, still one message per
transaction) and classifies each message exactly as a connection of its own would; `SessionPool`
keeps idle sessions between chunks; `send` is one message on a session of its own.
`probe` is the operators' connection test (EHLO, TLS, AUTH; never MAIL): each reply line, or what failed.

Passwords come from the environment or `.env` under the mailbox's secret *name*; they never
appear in a log line or an exception message.
"""

from __future__ import annotations

import atexit
import os
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

from dotenv import dotenv_values

from shared.db import is_transient
from shared.errors import BOUNCED, DEFERRED, IN_DOUBT, MAILBOX, REFUSED, SmtpError, enhanced_status


@dataclass(frozen=True, slots=True)
class SmtpAccount:
    host: str
    port: int
    tls_mode: str  # starttls | tls | none
    username: str | None
    secret_name: str | None

    def password(self) -> str | None:
        return lookup_secret(self.secret_name)


def lookup_secret(name: str | None) -> str | None:
    """The secret's value from the environment (Modal Secrets and Prefect set it there), else `.env`."""
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        value = dotenv_values(".env").get(name)
    return value


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]  # never the password: it is only ever passed to login()


def classify(stage: str, code: int | None, text: str = "") -> str:
    """The outcome of a reply `code` (None: no reply) to the command at `stage` (pure; see the module)."""
    if code is None:
        return IN_DOUBT if stage == "dot" else MAILBOX
    if code == 421 or stage in ("connect", "ehlo", "starttls", "auth"):
        return MAILBOX  # 421: the server is closing the channel, whatever command it answered
    if 400 <= code < 500:
        return DEFERRED
    if stage == "mail":
        return MAILBOX  # 5xx to MAIL FROM: this sender cannot send at all
    if stage == "rcpt" and (enhanced_status(text) or "").startswith("5.1."):
        return BOUNCED
    return REFUSED


def _answered(stage: str, code: int, reply: bytes | str) -> SmtpError:
    words = _text(reply)
    error = smtplib.SMTPResponseException(code, words)
    return SmtpError(f"{stage.upper()} answered {code} {words}"[:300], stage=stage, outcome=classify(stage, code, words),
                     code=code, reply=words, transient=is_transient(error))


def _dot_stuffed(payload: bytes) -> bytes:
    """The DATA payload as it goes on the wire: CRLF line ends, leading dots doubled, then CRLF.CRLF."""
    body = re.sub(rb"(?m)^\.", b"..", re.sub(rb"\r\n|\r|\n", b"\r\n", payload))
    return body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def _failed(stage: str, exc: smtplib.SMTPException | OSError) -> SmtpError:
    """A raised exchange (no reply, a lost connection, or smtplib's own answered error) as an SmtpError."""
    code = exc.smtp_code if isinstance(exc, smtplib.SMTPResponseException) else None
    words = _text(getattr(exc, "smtp_error", b""))
    return SmtpError(f"{stage.upper()}: {_describe(exc)}"[:300], stage=stage, outcome=classify(stage, code, words),
                     code=code, reply=words, transient=is_transient(exc))


def _keeps_session(exc: SmtpError) -> bool:
    """True when the server answered a command of the transaction (not 421): the session is in a known state."""
    return exc.code is not None and exc.code != 421 and exc.stage in ("mail", "rcpt", "data", "dot")


class Session:
    """One connection to a mailbox's server, kept open across messages (RSET between them).

    Each `send` classifies exactly as a fresh connection would: a session found dead at RSET
    (the server dropped it while idle; nothing of this message was offered) is closed and a fresh
    one opened for this message; any error that leaves the session unknown closes it, and the
    next `send` connects again."""

    def __init__(self, account: SmtpAccount, *, timeout: float) -> None:
        self.account = account
        self.timeout = timeout
        self.client: smtplib.SMTP | None = None
        self.connections = 0  # opened so far (tests, logs)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, message: EmailMessage, *, envelope_from: str, recipient: str,
             on_data: Callable[[], None] | None = None, raw: bytes | None = None) -> str:
        """Deliver `message` to one recipient over this session; returns the server's reply to the final dot.

        Raises SmtpError with the stage and outcome otherwise. `raw`: the exact bytes to send instead
        of serializing `message` (a DKIM signature covers them)."""
        if self.client is not None and not self._reset():
            self.client.close()  # no QUIT: the server is gone or not answering
            self.client = None
        try:
            if self.client is None:
                self._open()
            return self._transaction(message, envelope_from, recipient, on_data, raw)
        except SmtpError as exc:
            if not _keeps_session(exc):
                self.close()
            raise

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    def _reset(self) -> bool:
        """RSET on a session kept from the previous message; False: it is gone (open a fresh one)."""
        assert self.client is not None
        try:
            return self.client.rset()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def _open(self) -> None:
        account, stage = self.account, "connect"
        try:
            if account.tls_mode == "tls":
                client = smtplib.SMTP_SSL(account.host, account.port, timeout=self.timeout,
                                          context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(account.host, account.port, timeout=self.timeout)
        except (smtplib.SMTPException, OSError) as exc:
            raise _failed(stage, exc) from None
        self.client = client
        self.connections += 1
        try:
            stage = "ehlo"
            client.ehlo()
            if account.tls_mode == "starttls":
                stage = "starttls"
                client.starttls(context=ssl.create_default_context())
                stage = "ehlo"
                client.ehlo()
            password = account.password()
            if account.username and password:
                stage = "auth"
                client.login(account.username, password)
        except (smtplib.SMTPException, OSError) as exc:
            raise _failed(stage, exc) from None

    def _transaction(self, message: EmailMessage, envelope_from: str, recipient: str,
                     on_data: Callable[[], None] | None, raw: bytes | None) -> str:
        client, stage = self.client, "mail"
        assert client is not None
        try:
            code, reply = client.mail(envelope_from)
            if code != 250:
                raise _answered(stage, code, reply)
            stage = "rcpt"
            code, reply = client.rcpt(recipient)
            if code not in (250, 251):
                raise _answered(stage, code, reply)
            if on_data is not None:
                on_data()
            stage = "data"
            client.putcmd("data")
            code, reply = client.getreply()
            if code != 354:
                raise _answered(stage, code, reply)
            stage = "body"  # a failure while the body goes out: the final dot never left, nothing delivered
            client.send(_dot_stuffed(raw if raw is not None else message.as_bytes(policy=policy.SMTP)))
            stage = "dot"  # from here on, no reply means the server may have taken it
            code, reply = client.getreply()
            if code != 250:
                raise _answered(stage, code, reply)
            return f"{code} {_text(reply)}"
        except (smtplib.SMTPException, OSError) as exc:
            raise _failed(stage, exc) from None


class SessionPool:
    """Sessions kept open between chunks in one process (a local worker, a warm Modal container), each
    used by one sender at a time: `take` gives an idle session to the account (or a new, unopened one),
    `give` puts it back. A session idle longer than `idle_seconds` is closed instead of reused (servers
    drop idle clients; one dropped sooner is found dead at RSET and replaced before anything is offered)."""

    def __init__(self, *, idle_seconds: float = 30.0) -> None:
        self.idle_seconds = idle_seconds
        self._idle: dict[tuple[SmtpAccount, float], list[tuple[float, Session]]] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def take(self, account: SmtpAccount, *, timeout: float) -> Session:
        now, stale, found = time.monotonic(), [], None
        with self._lock:
            idle = self._idle.get((account, timeout), [])
            while idle and found is None:
                returned_at, session = idle.pop()
                if now - returned_at <= self.idle_seconds:
                    found = session
                else:
                    stale.append(session)
        for session in stale:
            session.close()
        return found or Session(account, timeout=timeout)

    def give(self, session: Session) -> None:
        if session.client is None:  # closed after an error: nothing to keep
            return
        with self._lock:
            self._idle.setdefault((session.account, session.timeout), []).append((time.monotonic(), session))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for sessions in idle.values():
            for _, session in sessions:
                session.close()


def send(account: SmtpAccount, message: EmailMessage, *, envelope_from: str, recipient: str, timeout: float,
         on_data: Callable[[], None] | None = None, raw: bytes | None = None) -> str:
    """Deliver `message` to one recipient on a connection of its own (`Session.send` says the rest)."""
    with Session(account, timeout=timeout) as session:
        return session.send(message, envelope_from=envelope_from, recipient=recipient, on_data=on_data, raw=raw)


PROBE_TIMEOUT_S = 15.0  # a connection test the operator waits for


@dataclass(frozen=True, slots=True)
class Probe:
    """A connection test's answer: the server's replies line by line, and the failure class when it failed
    (`refused`, `timeout`, `TLS`, `auth`, `secret`, or `error`); `ok` when every step was answered as hoped."""

    lines: tuple[str, ...]
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def probe_failure(exc: BaseException, step: str) -> str:
    """What kind of failure a connection test met at `step` (pure; the classes `Probe.failure` names)."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError) or step == "STARTTLS":
        return "TLS"
    if step in ("AUTH", "LOGIN"):
        return "auth"
    return "error"


def _said(lines: list[str], step: str, code: int, reply: bytes | str) -> None:
    for line in _text(reply).splitlines() or [""]:
        lines.append(f"{step}: {code} {line}")


def _probe_steps(client: smtplib.SMTP, account: SmtpAccount, lines: list[str], step: list[str]) -> None:
    """Each step of `probe`, its name in `step[0]` while it runs (the failure's class depends on it)."""
    step[0] = "connect"
    _said(lines, "connect", *client.connect(account.host, account.port))
    step[0] = "EHLO"
    _said(lines, "EHLO", *client.ehlo())
    if account.tls_mode == "starttls":
        step[0] = "STARTTLS"
        _said(lines, "STARTTLS", *client.starttls(context=ssl.create_default_context()))
        step[0] = "EHLO"
        _said(lines, "EHLO", *client.ehlo())
    password = account.password()
    if account.username and account.secret_name and password is None:
        raise _NoSecret(account.secret_name)
    if account.username and password:
        step[0] = "AUTH"
        _said(lines, "AUTH", *client.login(account.username, password))
    else:
        lines.append("no username: not logged in")


class _NoSecret(Exception):
    """The mailbox names a secret that is not set (its name only; there is no value to show)."""


def probe(account: SmtpAccount, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Connect, EHLO, STARTTLS or implicit TLS as the mailbox says, AUTH with its secret: no mail is sent.

    The password is looked up by the secret's name as `send` does and only ever passed to login()."""
    lines: list[str] = [f"SMTP {account.host}:{account.port} ({account.tls_mode})"]
    step = ["connect"]
    if account.tls_mode == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(timeout=timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(timeout=timeout)
    try:
        _probe_steps(client, account, lines, step)
    except _NoSecret as exc:
        lines.append(f"secret {str(exc)!r} is not set: not logged in")
        return Probe(tuple(lines), "secret")
    except (smtplib.SMTPException, OSError) as exc:
        failure = probe_failure(exc, step[0])
        lines.append(f"{failure}: {step[0]}: {_describe(exc)}")
        return Probe(tuple(lines), failure)
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
    return Probe(tuple(lines))
