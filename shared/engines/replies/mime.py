"""Reading untrusted received mail without raising: parsing, header values, addresses and body text.

Everything we receive comes from strangers (bounces from odd MTAs, spam, forged webhooks after a
leaked secret), so these helpers never raise on malformed input. Header values are read from
`Message.raw_items()`, not through `policy.default`'s header classes, because those can raise on
some malformed address lists; RFC 2047 encoded words are decoded by hand, falling back to the raw
text.
"""

from __future__ import annotations

import email.header
import email.utils
import html
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

MAX_QUOTE_DEPTH = 50  # nested quote levels peeled from an HTML body; deeper threads keep the rest
_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]*>")
_DROP_HTML = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
# Innermost blockquote first (no blockquote inside), repeated until none is left: a thread quotes
# quotes, and a non-greedy match from the outer opening tag would leave the outer tail visible.
_INNER_BLOCKQUOTE = re.compile(r"<blockquote\b[^>]*>(?:(?!<blockquote\b).)*?</blockquote\s*>", re.IGNORECASE | re.DOTALL)
# Where clients start the quoted history: Gmail's quote div, Outlook's reply header, Apple Mail's
# and Thunderbird's cite prefix. Everything from there on is history.
_QUOTE_START = re.compile(
    r"<div[^>]*(?:class=\"?gmail_quote|id=\"?(?:divRplyFwdMsg|appendonsend)|class=\"?moz-cite-prefix)[^>]*>.*\Z",
    re.IGNORECASE | re.DOTALL,
)
_BR = re.compile(r"<\s*(br|/p|/div|/li|/tr)\b[^>]*>", re.IGNORECASE)


def parse_bytes(raw: bytes) -> EmailMessage:
    """Parse raw RFC 5322 bytes with the modern policy (the std parser registers defects, it does not raise)."""
    return BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[return-value]


def _decode_words(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:  # undecodable encoded words: the raw text is still evidence
        return value


def header_values(msg: Message, name: str) -> list[str]:
    """Every value of header `name` (case-insensitive), unfolded and decoded; never raises."""
    wanted = name.lower()
    values: list[str] = []
    try:
        items = msg.raw_items() if hasattr(msg, "raw_items") else msg.items()
        for key, value in items:
            if key.lower() != wanted:
                continue
            text = value if isinstance(value, str) else str(value)
            values.append(_WS.sub(" ", _decode_words(text)).strip())
    except Exception:
        return values
    return values


def header(msg: Message, name: str) -> str:
    """The first value of header `name`, or "" when absent."""
    values = header_values(msg, name)
    return values[0] if values else ""


def addresses(msg: Message, *names: str) -> list[str]:
    """Lower-cased bare addresses from the given address headers, in order, without repeats."""
    seen: dict[str, None] = {}
    for name in names:
        try:
            pairs = email.utils.getaddresses(header_values(msg, name))
        except Exception:
            continue
        for _, addr in pairs:
            addr = normalize_address(addr)
            if addr:
                seen.setdefault(addr, None)
    return list(seen)


def normalize_address(addr: str | bytes | None) -> str:
    """`"<Bob@Example.COM> "` -> `bob@example.com`; "" when it is not an address."""
    if isinstance(addr, bytes):
        addr = addr.decode("utf-8", "replace")
    addr = (addr or "").strip().strip("<>").strip().lower()
    return addr if "@" in addr and " " not in addr else ""


def sender(msg: Message) -> str:
    """The From address, normalized; "" when missing or unparseable."""
    found = addresses(msg, "From")
    return found[0] if found else ""


def _part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except (LookupError, UnicodeError, TypeError):
        return payload.decode("utf-8", "replace")


def html_to_text(markup: str) -> str:
    """Visible text of an HTML body, with quoted blocks (blockquote, Gmail's quote div) dropped."""
    markup = _DROP_HTML.sub("", markup)
    for _ in range(MAX_QUOTE_DEPTH):
        markup, found = _INNER_BLOCKQUOTE.subn("", markup)
        if not found:
            break
    markup = _QUOTE_START.sub("", markup)
    markup = _BR.sub("\n", markup)
    return html.unescape(_TAG.sub("", markup))


def _own_parts(msg: Message) -> Iterator[Message]:
    """Leaf parts written by the sender: attached messages (message/*) are not descended into."""
    try:
        if msg.is_multipart() and not msg.get_content_maintype() == "message":
            for sub in msg.get_payload():
                if isinstance(sub, Message):
                    yield from _own_parts(sub)
            return
    except Exception:
        return
    yield msg


def body_text(msg: Message) -> str:
    """The sender's own text: the first inline text/plain part, else the first text/html as text."""
    plain: str | None = None
    markup: str | None = None
    for part in _own_parts(msg):
        try:
            ctype = part.get_content_type()
            attached = (part.get("Content-Disposition") or "").lower().startswith("attachment")
        except Exception:
            continue
        if attached:
            continue
        if ctype == "text/plain" and plain is None:
            plain = _part_text(part)
        elif ctype == "text/html" and markup is None:
            markup = _part_text(part)
    if plain is not None:
        return plain
    return html_to_text(markup) if markup is not None else ""


def all_text(msg: Message) -> str:
    """All text parts including attached reports, for diagnostics such as status codes."""
    chunks: list[str] = []
    try:
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                chunks.append(_part_text(part))
    except Exception:
        pass
    return "\n".join(chunks)


def part_text(part: Message) -> str:
    """One leaf part's text (HTML as visible text); "" when it has none."""
    return _part_text(part)
