"""The one request-body cap: a declared Content-Length over the limit is refused before anything is read,
and the body is counted while it arrives (whatever Content-Length said), so it is never held beyond the cap.

The console's forms (`web.console.deps.read_form`, FormTooLarge → 413) and the inbound-mail webhooks
(`web.public`, BodyTooLarge → 413) both read their bodies through `capped`; each says how a refusal is
raised (`refuse(detail)`), so each keeps its own answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from shared import ids

Refuse = Callable[[str], Exception]  # builds the exception to raise, from a detail such as "more than N bytes"


def declared_within(declared: str | None, limit: int) -> bool:
    """A missing Content-Length passes (the count while reading decides); otherwise ASCII digits, at most `limit`."""
    return declared is None or (declared.isascii() and declared.isdigit() and len(declared) <= ids.MAX_DIGITS
                                and int(declared) <= limit)


def _counted(receive: Any, limit: int, refuse: Refuse) -> Any:
    """The ASGI `receive`, raising `refuse(...)` once more than `limit` body bytes have arrived."""
    seen = 0

    async def counted() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise refuse(f"more than {limit} bytes")
        return message

    return counted


def capped(request: Request, limit: int, refuse: Refuse) -> Request:
    """`request` with its body capped at `limit` bytes: refused now by its declared length, else while it is read."""
    declared = request.headers.get("content-length")
    if not declared_within(declared, limit):
        raise refuse(f"{declared} bytes declared")
    return Request(request.scope, _counted(request.receive, limit, refuse))


async def read(request: Request, limit: int, refuse: Refuse) -> bytes:
    """The whole body, at most `limit` bytes (`capped`)."""
    chunks = [chunk async for chunk in capped(request, limit, refuse).stream()]
    return b"".join(chunks)
