"""Every error the domain raises on purpose, in one place, under one base class.

An `OutboundError` without a message says its docstring's first line, so `raise BatchIsDraft()`
needs no text of its own; a message names the row or field when there is one. Each class keeps
the built-in it has always been (`ValueError`, `LookupError`, …) so callers that catch those
still do.
"""

from __future__ import annotations


class OutboundError(Exception):
    """The request cannot be honoured."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else default_message(type(self)))


def default_message(cls: type) -> str:
    """The first line of the class's docstring (its name when it has none)."""
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else cls.__name__


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


class InboxRefused(OutboundError, ValueError):
    """The received message cannot be reclassified or marked as asked (named in the message)."""


# console


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
