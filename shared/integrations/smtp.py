"""SMTP: one message per transaction, telling the caller exactly when DATA starts.

The at-most-once rule needs that moment: a failure before DATA means nothing was sent (retry is
safe); a failure after DATA started may have delivered the message (RFC 1047), so it is in doubt.
Passwords come from the environment or `.env` under the mailbox's secret *name*; they never
appear in a log line or an exception message.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email import policy

from dotenv import dotenv_values


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


class SmtpError(Exception):
    """An SMTP exchange failed; `data_started` says whether the message may have been delivered."""

    def __init__(self, message: str, *, data_started: bool, permanent: bool = False) -> None:
        super().__init__(message)
        self.data_started = data_started
        self.permanent = permanent


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {detail}"[:300]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
                         for code, msg in exc.recipients.values())[:300]
    return f"{type(exc).__name__}: {exc}"[:300]  # never the password: it is only ever passed to login()


def send(account: SmtpAccount, message: EmailMessage, *, envelope_from: str, recipient: str, timeout: float,
         on_data: Callable[[], None] | None = None, raw: bytes | None = None) -> str:
    """Deliver `message` to one recipient; returns the server's reply to the final dot (e.g. "250 OK").

    `raw`: the exact bytes to send instead of serializing `message` (a DKIM signature covers them)."""
    data_started = False
    client: smtplib.SMTP | None = None
    try:
        if account.tls_mode == "tls":
            client = smtplib.SMTP_SSL(account.host, account.port, timeout=timeout,
                                      context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(account.host, account.port, timeout=timeout)
        client.ehlo()
        if account.tls_mode == "starttls":
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        password = account.password()
        if account.username and password:
            client.login(account.username, password)
        code, reply = client.mail(envelope_from)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, envelope_from)
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        if on_data is not None:
            on_data()
        data_started = True
        code, reply = client.data(raw if raw is not None else message.as_bytes(policy=policy.SMTP))
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        answer = f"{code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
    except (smtplib.SMTPException, OSError) as exc:
        permanent = isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            permanent = any(500 <= code < 600 for code, _ in exc.recipients.values())
        raise SmtpError(_describe(exc), data_started=data_started, permanent=permanent) from None
    finally:
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    return answer
