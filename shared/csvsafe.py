"""Spreadsheet formula-injection defence shared by lead import and every CSV export.

A spreadsheet treats a cell that starts with `=`, `+`, `-` or `@` as a formula, and some also
do so after a leading tab, CR or LF. A lead file is hostile input: `=HYPERLINK(...)` or
`+cmd|' /C calc'!A0` in a name would run when an agency opens the export in Excel.

The rule (one rule, applied on import and again on export):

* A value is dangerous when it starts with tab/CR/LF, or when its first non-blank character
  is one of `= + - @`.
* A dangerous value is neutralised by STRIPPING its leading whitespace and formula
  characters: `=cmd()` -> `cmd()`, `@SUM(A1)` -> `SUM(A1)`, `+1` -> `1`.
  Stripping, not the OWASP `'` prefix, because imported values end up in emails, CRMs and
  scores, where a stray apostrophe is visible garbage; stripping is also idempotent.
* One exception: a phone number (`+` then at least 7 digits and only phone punctuation
  `( ) . - /` and spaces, optionally `x123`/`ext 123`) is kept. It has no letters, so it
  cannot call a function, name a cell or start DDE, and the `+` carries meaning (E.164).
"""

from __future__ import annotations

import re
from typing import TypeVar

_Cell = TypeVar("_Cell")

FORMULA_CHARS = frozenset("=+-@")
"""A value whose first non-blank character is one of these is read as a formula."""

LEADING_CONTROL = frozenset("\t\r\n")
"""Some spreadsheets trim these and then evaluate what follows."""

# `+`, then at least 7 digits among phone punctuation, then an optional extension.
_PHONE = re.compile(r"\+(?:[ ().\-/]*[0-9]){7,}[ ().\-/]*(?:\s*(?:x|ext\.?)\s*[0-9]{1,6})?", re.IGNORECASE)
_DANGEROUS_PREFIX = re.compile(r"^[\s=+\-@]+")


def is_phone_number(value: str) -> bool:
    """True for `+44 20 7946 0958`-style values: harmless in a spreadsheet, and worth keeping."""
    return _PHONE.fullmatch(value) is not None


def is_dangerous(value: str) -> bool:
    """True when a spreadsheet could evaluate `value` as a formula."""
    if not value:
        return False
    if value[0] in LEADING_CONTROL:
        return True
    head = value.lstrip()
    return bool(head) and head[0] in FORMULA_CHARS and not is_phone_number(head)


def safe_cell(value: _Cell) -> _Cell:
    """`value` made safe to put in a spreadsheet cell (see the module docstring for the rule).

    Anything but a string (None, numbers, dates) is returned as is: exports pass whole rows.
    """
    # Fast path: nearly every value starts with a letter or digit.
    if not isinstance(value, str) or not value or not (value[0] in FORMULA_CHARS or value[0].isspace()):
        return value
    if not is_dangerous(value):
        return value
    head = value.lstrip()
    if is_phone_number(head):
        return head
    return _DANGEROUS_PREFIX.sub("", value)
