"""The one parser for ids and page numbers that arrive from outside (URLs, forms, tokens).

`int()` takes Unicode digits ("²", "٣") and any size; Postgres's bigint does not. Here a value is
an id only when it is ASCII digits, at most MAX_DIGITS of them, and in 1..BIGINT_MAX; anything
else is None, so a caller answers 404/400 instead of raising.
"""

from __future__ import annotations

from shared.errors import BadNumber

BIGINT_MAX = 2**63 - 1
MAX_DIGITS = len(str(BIGINT_MAX))
PAGE_MAX = 10**9


def parse_id(raw: object, *, maximum: int = BIGINT_MAX) -> int | None:
    """A positive id from text, or None when it is not ASCII digits in 1..maximum."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if 0 < raw <= maximum else None
    if not isinstance(raw, str) or not raw or len(raw) > MAX_DIGITS or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if 0 < value <= maximum else None


def parse_page(raw: object) -> int:
    """A page number (1 when absent or not a number in 1..PAGE_MAX)."""
    return parse_id(raw, maximum=PAGE_MAX) or 1


def field_id(raw: object, name: str) -> int | None:
    """An optional id typed in a form field: None when blank, BadNumber (naming the field) when not an id."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    value = parse_id(raw.strip() if isinstance(raw, str) else raw)
    if value is None:
        raise BadNumber(f"{name}: {str(raw)[:40]!r} is not a number")
    return value
