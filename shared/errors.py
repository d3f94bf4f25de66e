"""Every error the project raises on purpose, in one place, under one base class.

An `OutboundError` without a message says its docstring's first line, so `raise BatchIsDraft()`
needs no text of its own; a message names the row or field when there is one. Each class keeps
the built-in it has always been (`ValueError`, `LookupError`, `RuntimeError`, …) so callers that
catch those still do. This module imports nothing of ours: every layer may raise from it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol


class OutboundError(Exception):
    """The request cannot be honoured."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else default_message(type(self)))


def default_message(cls: type) -> str:
    """The first line of the class's docstring (its name when it has none)."""
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else cls.__name__


# --- Requests about clients, campaigns and outreach -------------------------------------------

class NotFound(OutboundError, LookupError):
    """The named client, campaign or batch does not exist."""


class AlreadyExists(OutboundError, ValueError):
    """A client or campaign with that name already exists; nothing was changed."""


class KeyConflict(OutboundError, ValueError):
    """The idempotency key was already used for a different amount; nothing was added."""


class CampaignInvalid(OutboundError, ValueError):
    """The campaign cannot be activated."""


class OutreachError(OutboundError, ValueError):
    """A request about mailboxes, sequences or campaigns that cannot be honoured (named in the message)."""


# --- Values read from people: form fields, email addresses -----------------------------------

class BadNumber(OutboundError, ValueError):
    """A form field that should hold a number does not."""


class InvalidEmail(OutboundError, ValueError):
    """The address is not a usable email address."""


# --- The work-item state machine and batches -------------------------------------------------

class IllegalTransition(OutboundError, ValueError):
    """A move the state machine does not allow."""


class BatchIsDraft(OutboundError, ValueError):
    """The batch is a draft: nothing launched it, so no orchestrator may start it on its own."""


class NotAnEnrichmentBatch(OutboundError, ValueError):
    """The batch holds outreach sends: outreach_run works it, never orchestrator_main's enrichment engine."""


class BatchTakenOver(OutboundError, RuntimeError):
    """Another orchestrator took the batch over (this one missed its heartbeats): stop dispatching."""


class BatchCancelled(BatchTakenOver):
    """The batch was cancelled while it ran: stop dispatching, let in-flight items finish."""


class NoProgress(OutboundError, RuntimeError):
    """The batch's rounds stopped moving items to a terminal status."""


class TransientChunkError(OutboundError, RuntimeError):
    """The chunk could not reach Postgres; raised so modal.Retries tries it again."""


# --- Settings, deploys and launching ---------------------------------------------------------

class DeploymentConfigError(OutboundError, ValueError):
    """A deployed process's settings that cannot work; the message names each setting."""


class DeployError(OutboundError):
    """A deploy that cannot go ahead; the message says what to do."""


class ExecutorUnavailable(OutboundError, RuntimeError):
    """The executor cannot run chunks at all (for Modal: the App is not deployed); the message says what to do."""


class LaunchError(OutboundError):
    """Prefect refused or could not be reached; the message carries its status and body."""


# --- Files, lead imports and ICPs ------------------------------------------------------------

class OutputFileError(OutboundError, OSError):
    """A file could not be written; the message names the path and why, in one line."""

    def __init__(self, path: Path, cause: str, errno_: int | None = None) -> None:
        OSError.__init__(self, errno_ or 0, f"cannot write {path}: {cause}")
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        return self.args[1]


class UnreadableFile(OutboundError, ValueError):
    """The file is not a CSV this import can read; nothing was imported."""


class LeadImportError(OutboundError):
    """The file cannot be imported at all; nothing was written."""


class NotARegularFile(LeadImportError):
    """The path to import is a directory, device or pipe, not a regular file: nothing was read."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file: nothing was read")


class MissingEmailColumn(LeadImportError):
    """No column of the file maps to email; the message lists the columns found."""

    def __init__(self, columns: Sequence[str], *, looks_like_data: bool = False) -> None:
        found = ", ".join(repr(c) for c in columns) or "none"
        hint = " (the first row looks like data: add a header row)" if looks_like_data else ""
        super().__init__(f"no email column found; columns in the file: {found}{hint}")
        self.columns = list(columns)


class IcpError(OutboundError, ValueError):
    """A campaign's ICP JSON is not valid; `fields` names every offending field (dotted paths)."""

    def __init__(self, message: str, fields: Sequence[str]) -> None:
        super().__init__(message)
        self.fields = tuple(fields)


# --- Console users ---------------------------------------------------------------------------

class UserError(OutboundError, ValueError):
    """A console user could not be created or changed as asked."""


class SignInRefused(OutboundError):
    """Wrong email or password."""


class AccountLocked(SignInRefused):
    """Wrong email or password.

    Raised for an account locked after too many wrong passwords (logged as such): the person is
    told only SignInRefused's text, so a locked account reads exactly like an unknown one.
    """


# --- Outreach: settings, capacity, templates, runs -------------------------------------------

class OutreachConfigError(OutboundError, ValueError):
    """Outreach cannot send with these settings; the message names the setting (never its value)."""


class NoSlot(OutboundError):
    """The mailbox has no slot now: paused, backing off, inside its gap, or at its cap for the rolling 24 h."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RenderTooLarge(OutboundError, ValueError):
    """A template would render more than RENDER_MAX_CHARS characters."""


class TemplateProblem(OutboundError, ValueError):
    """A step template cannot be rendered for a lead."""


class OutreachRunFailed(OutboundError, RuntimeError):
    """Every send chunk of the run raised: nothing was sent, and the run must not look like a success."""


# --- Inbound-mail webhooks (`status` is the HTTP answer) -------------------------------------

class WebhookError(OutboundError):
    """The webhook was refused."""

    status: ClassVar[int] = 400

    def __init__(self, reason: str | None = None) -> None:
        message = default_message(type(self)).rstrip(".")
        super().__init__(f"{message}: {reason}" if reason else message)


class BadSignature(WebhookError):
    """The webhook's signature is missing or does not match."""

    status = 401


class StaleTimestamp(WebhookError):
    """The webhook's timestamp is outside the tolerance."""

    status = 401


class BodyTooLarge(WebhookError):
    """The webhook body is over the size limit."""

    status = 413


class MalformedMessage(WebhookError):
    """The webhook does not carry a usable RFC 5322 message."""

    status = 422


# --- Data providers --------------------------------------------------------------------------

class ProviderConfigError(OutboundError, ValueError):
    """The provider settings cannot work (a missing key or URL, an unknown name); the message names the setting."""


class ProviderError(OutboundError):
    """A provider call failed; `transient` says whether trying again later could help."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


# --- Mail servers: SMTP, IMAP, SPF/DKIM ------------------------------------------------------

# What an SMTP reply meant (`SmtpError.outcome`; `shared.integrations.smtp.classify` decides).
DEFERRED, REFUSED, BOUNCED, MAILBOX, IN_DOUBT = "deferred", "refused", "bounced", "mailbox", "in_doubt"
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def enhanced_status(text: str) -> str | None:
    """The RFC 3463 enhanced status code a reply text starts with ("5.1.1"), or None."""
    m = _ENHANCED.match(text)
    return ".".join(m.groups()) if m else None


class SmtpError(OutboundError):
    """An SMTP exchange did not deliver the message; `outcome` says what that means (see shared.integrations.smtp)."""

    def __init__(self, message: str, *, stage: str, outcome: str, code: int | None = None, reply: str = "",
                 transient: bool = False) -> None:
        super().__init__(message)
        self.stage = stage
        self.outcome = outcome
        self.code = code
        self.reply = reply  # the server's words after the code
        self.transient = transient

    @property
    def status(self) -> str | None:
        """The enhanced status code ("5.1.1") or else the bare reply code ("550"); None without a reply."""
        return enhanced_status(self.reply) or (str(self.code) if self.code is not None else None)

    @property
    def data_started(self) -> bool:
        """True when the message may have been delivered (the final dot went out, no reply came)."""
        return self.outcome == IN_DOUBT

    @property
    def permanent(self) -> bool:
        return self.outcome in (REFUSED, BOUNCED) or (self.outcome == MAILBOX and not self.transient)


class _ImapServer(Protocol):
    """What ImapError names of an IMAP account (`shared.integrations.imap.ImapSettings`)."""

    @property
    def username(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


class ImapError(OutboundError):
    """The IMAP server refused or failed a request."""

    def __init__(self, settings: _ImapServer, what: str) -> None:
        super().__init__(f"IMAP {settings.username}@{settings.host}:{settings.port}: {what}")


class MailAuthError(OutboundError):
    """Mail authentication failed."""


# --- Secrets and the command line ------------------------------------------------------------

class RedactedError(OutboundError, RuntimeError):
    """An error whose original carried a secret; this one keeps its type name and redacted message only."""


class CliError(OutboundError):
    """A command could not do what was asked; the message says why in one line."""


class SchemaNotReady(CliError):
    """The database has no (or an older) schema and is not ours to migrate."""


# --- The replies inbox -----------------------------------------------------------------------

class InboxRefused(OutboundError, ValueError):
    """The received message cannot be reclassified or marked as asked (named in the message)."""


# --- The console (each becomes its HTTP answer in web/console) -------------------------------

class NotSignedIn(OutboundError):
    """Sign in to continue."""


class CsrfRefused(OutboundError):
    """The form is stale or did not come from this console: reload the page and try again."""


class Forbidden(OutboundError):
    """Your account may not do this."""


class FormTooLarge(OutboundError):
    """The form is larger than a console form can be."""


class Busy(OutboundError):
    """Forecasts are being computed for others right now: try again in a few seconds."""
