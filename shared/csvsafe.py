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

A cell's *start* is not the only place a formula can begin. A spreadsheet in a locale whose list
separator is `;` (most of continental Europe) may split `x;=cmd|' /C calc'!A0;y` into three
cells, the middle one a formula; a reader that loses track of our quotes, or splits on tabs or
at line breaks, does the same. So on export (`writer`), two more rules:

* Every text field is quoted (csv.QUOTE_NONNUMERIC): one cell for any reader that honours quotes.
* Inside a value, a formula character that follows a separator of any common locale (`;` tab `|`)
  or a line break (after optional blanks and quotes) gets the OWASP `'` prefix:
  `x;=cmd|' /C calc'!A0;y` -> `x;'=cmd|' /C calc'!A0;y`. Even a reader that splits the value
  there gets a cell starting with `'`, which is text. The comma is not among them: the file is
  comma-delimited, so a reader splitting on commas is the one that honours our quotes. A phone
  number after a separator (`+1 555 0100; +44 20 7946 0958`) is kept, as at the start.
Every CSV the project writes for people (exports, rejects files) goes through `writer`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any, TypeVar

_Cell = TypeVar("_Cell")

FORMULA_CHARS = frozenset("=+-@")
"""A value whose first non-blank character is one of these is read as a formula."""

SEPARATORS = frozenset(",;\t|")
"""List separators of common locales: a field holding one is quoted on export (every text field is)."""

LEADING_CONTROL = frozenset("\t\r\n")
"""Some spreadsheets trim these and then evaluate what follows."""

# `+`, then at least 7 digits among phone punctuation, then an optional extension.
_PHONE = re.compile(r"\+(?:[ ().\-/]*[0-9]){7,}[ ().\-/]*(?:\s*(?:x|ext\.?)\s*[0-9]{1,6})?", re.IGNORECASE)
_DANGEROUS_PREFIX = re.compile(r"^[\s=+\-@]+")
_INNER_SEPARATORS = ";\t|\r\n"
_INNER_FORMULA = re.compile(rf'([{_INNER_SEPARATORS}][ "]*)([=+\-@][^{_INNER_SEPARATORS}]*)')


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


class SafeWriter:
    """A csv writer whose every text cell is spreadsheet-safe and quoted (see the module docstring)."""

    def __init__(self, handle: IO[str]) -> None:
        # QUOTE_NONNUMERIC: every str (and None, written as "") is quoted; ints and floats are not.
        self._writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([_exportable(v) for v in row])


def writer(handle: IO[str]) -> SafeWriter:
    """The one way the project writes a CSV for people to open."""
    return SafeWriter(handle)


def safe_export_cell(value: str) -> str:
    """`safe_cell`, and a `'` before any formula that a separator inside the value could expose."""
    value = safe_cell(value)
    if not any(ch in value for ch in _INNER_SEPARATORS):
        return value
    return _INNER_FORMULA.sub(_prefix_inner_formula, value)


def _prefix_inner_formula(match: re.Match[str]) -> str:
    before, formula = match.group(1), match.group(2)
    return match.group(0) if is_phone_number(formula.strip()) else f"{before}'{formula}"


def _exportable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return safe_export_cell("" if value is None else str(value))
    if isinstance(value, (int, float)):
        return value
    return safe_export_cell(str(value))  # Decimal, dates, ...: as text, quoted
