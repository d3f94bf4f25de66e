"""Tokens masked in every log line: unsubscribe links (/u/<token>) and secret-looking query values.

uvicorn's access log writes the full request path (`/u/<token>`), and our own loggers may quote a
URL. `install()` wraps the logging record factory, so every record from every logger (uvicorn's,
ours, a library's) has its message and arguments masked before any handler or formatter sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
_PATTERNS = (
    re.compile(r"(/u/)[^\s/?#\"'<>]+"),  # the one-click unsubscribe token in a path
    re.compile(r"((?:token|secret|password|signature|key)=)[^\s&#\"'<>]+", re.IGNORECASE),
)
_installed = False


def mask(text: str) -> str:
    """`text` with every token replaced by MASK."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def _masked(value: Any) -> Any:
    return mask(value) if isinstance(value, str) else value


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message and string arguments masked (argument shapes kept: uvicorn's
    access formatter unpacks a 5-tuple)."""
    if isinstance(record.args, tuple):
        record.args = tuple(_masked(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _masked(v) for k, v in record.args.items()}
    if isinstance(record.msg, str) and mask(record.msg) != record.msg:
        # the template itself holds a token's place ("/u/%s"): mask the finished message instead
        try:
            record.msg, record.args = mask(record.getMessage()), None
        except (TypeError, ValueError):
            record.msg = mask(record.msg)
    return record


class TokenMask(logging.Filter):
    """The same masking as a filter, for a handler configured elsewhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install() -> None:
    """Mask every record created from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return mask_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True
