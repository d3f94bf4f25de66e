"""Lead import: load a CSV exported from anywhere into a client's leads, fast, keeping every good row.

Pipeline (`import_csv`), streaming: memory stays bounded whatever the file's size (118 MiB
peak for a million rows, most of it the interpreter and libraries; see MEMORY_CEILING_BYTES):

1. Open the file and refuse anything but a regular file (a FIFO, /dev/zero) before reading.
   Sniff the encoding from the first bytes: UTF-8 BOM, UTF-16 with a BOM, UTF-16LE/BE without
   one (NUL bytes in every other position), otherwise each line is decoded on its own as
   UTF-8, else cp1252, else latin-1, so undecodable bytes never stop an import.
2. Sniff the delimiter (`,` `;` tab `|`, or Excel's `sep=;` first line), map the header onto
   lead fields by name (`map_headers`, which also warns about ambiguous columns; a caller's
   `column_map` can name the field of any column, as the console does for unknown headers), and
   refuse a file without an email column. `peek_header` reads just the header, as the import does.
3. Parse every record with its physical line number (header = line 1). Each row is checked on
   its own (width, field length, email); a bad row is rejected with a reason, never its
   neighbours. A quote that never closes would swallow the rows after it: such records are
   re-read line by line (`_swallowed`). A physical line longer than MAX_LINE_BYTES is cut there
   (and rejected), so one line cannot take all memory.
4. Values are trimmed, stripped of NULs and made spreadsheet-safe (`shared.csvsafe.safe_cell`);
   names and titles lose control characters (an embedded CR/LF would disguise a name).
5. Every row, kept or rejected, streams through COPY into a temp table (no list of rows in
   Python). Postgres then marks duplicates within the file (same email as an earlier line),
   inserts the rest with `ON CONFLICT (client_id, email) DO NOTHING`, and marks the rows that
   already existed.
6. Every row not imported (rejected, duplicate, already existing) is streamed back in line order,
   with its reason and original values, to `<input stem>.rejects.csv` next to the input, written
   atomically (`shared.files.atomic_write`: a planted symlink is replaced, never followed).
   Then one commit: the leads and a newly created campaign land together, or nothing does.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import tldextract
from nameparser import HumanName
from nameparser.config import CONSTANTS as NAME_CONSTANTS
from sqlalchemy import Connection, Engine, text

from shared import csvsafe
from shared.csvsafe import FORMULA_CHARS, LEADING_CONTROL, safe_cell
from shared.db import get_engine, transaction
from shared.emails import normalize_email
from shared.engines.campaigns import campaigns
from shared.engines.clients import clients
from shared.errors import InvalidEmail, LeadImportError, MissingEmailColumn, NotARegularFile, OutputFileError
from shared.files import atomic_write

log = logging.getLogger(__name__)

MAX_FIELD_CHARS = 10_000
"""A longer value is junk or an attack (or a swallowed file): its row is rejected."""

CSV_FIELD_SIZE_LIMIT = 16 * 1024 * 1024
"""Raised from csv's 128 KiB default so a huge field is read whole and rejected by name."""

MAX_LINE_BYTES = CSV_FIELD_SIZE_LIMIT + 1024 * 1024
"""A physical line is read at most this long; the rest of it is skipped (its row is rejected)."""

SNIFF_BYTES = 64 * 1024
"""How much of the file's start decides its encoding (BOM, UTF-16 NUL pattern)."""

REPORTED_ROWS = 1_000
"""ImportReport keeps this many (line, reason) entries per kind in memory; the rejects file has all."""

MEMORY_CEILING_BYTES = 200 * 1024 * 1024
"""Peak RSS an import of any size stays under, interpreter and libraries included. Memory does not
grow with the file: rows stream through COPY, Postgres finds duplicates, the report keeps
REPORTED_ROWS entries, the lru caches are capped (65,536 entries each) and a line is at most
MAX_LINE_BYTES. tests/integration/test_import_limits.py imports a million rows under it (VmHWM)
(measured: 99-118 MiB and 68-78 s for 1M rows; 100k rows: 6-7 s and 112 MiB, against 5.4 s and
287 MiB when the file was read whole, which took 1.96 GB for 1M rows)."""

PROGRESS_EVERY = 1_000

LEAD_COLUMNS = ("email", "first_name", "last_name", "title", "company_name", "company_domain",
                "phone", "linkedin_url", "country")

HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "e-mail", "email address", "e-mail address", "work email", "business email",
              "email_address", "mail"),
    "first_name": ("first name", "firstname", "first", "given name", "forename"),
    "last_name": ("last name", "lastname", "surname", "family name", "last"),
    "full_name": ("full name", "name", "contact name", "person name"),
    "title": ("title", "job title", "position", "role", "job role"),
    "company_name": ("company", "company name", "organization", "organisation", "organization name",
                     "account name", "account", "employer"),
    "company_domain": ("domain", "website", "company domain", "company website", "url", "web",
                       "website url", "company url"),
    "phone": ("phone", "phone number", "mobile", "mobile phone", "work phone", "direct phone",
              "corporate phone", "telephone", "tel"),
    "linkedin_url": ("linkedin", "linkedin url", "person linkedin url", "linkedin profile",
                     "linkedin profile url"),
    "country": ("country", "country name", "country/region"),
}

MAPPABLE_FIELDS = tuple(HEADER_ALIASES)
"""What a column can be read as (`map_headers`' overrides); `full_name` is split into first and last name."""

ColumnOverrides = Mapping[int, str | None]
"""Column index (0-based) -> the lead field it holds, or None for a column not to use."""

DELIMITERS = (",", ";", "\t", "|")
"""Candidates in tie-break order: comma wins a tie."""

_EMAIL_SHAPE = re.compile(r"[^@\s,;\"']+@[^@\s,;\"']+\.[^@\s,;\"']+")
_NAME_TOKEN = re.compile(r"[^\W\d_]{2,}(?:['’\-][^\W\d_]+)*")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://")
_HOST_LABEL = re.compile(r"[^\W_](?:[\w\-]*[^\W_])?")
_SEP_LINE = re.compile(r"sep=(.)\s*", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+")
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


@dataclass
class ImportReport:
    """What happened to every row. total_rows = imported + duplicates + already existing + rejected.

    The lists hold the first REPORTED_ROWS entries of each kind (memory stays bounded); the
    counts are exact and the rejects file lists every row not imported.
    """

    total_rows: int
    imported: int
    duplicates_in_file: int
    already_existing: int
    rejected: list[tuple[int, str]]
    rejects_path: Path | None
    encoding: str
    unknown_columns: list[str]
    elapsed_seconds: float
    client_id: int = 0
    campaign_id: int | None = None
    campaign_created: bool = False
    delimiter: str = ","
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    """(line, line of the first row with the same email)."""
    existing_lines: list[int] = field(default_factory=list)
    rejected_count: int = 0
    warnings: list[str] = field(default_factory=list)
    """Ambiguous columns and how they were read (e.g. a full-name column beside first/last name)."""


@dataclass(frozen=True)
class ColumnMap:
    """Lead field -> indexes of the columns feeding it (file order; the first non-empty wins)."""

    header: tuple[str, ...]
    fields: dict[str, tuple[int, ...]]
    unknown: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def email_indexes(self) -> tuple[int, ...]:
        return self.fields.get("email", ())

    @cached_property
    def value_indexes(self) -> tuple[tuple[int, ...], ...]:
        """The columns feeding each of VALUE_FIELDS, in that order (looked up once per file, not per row)."""
        return tuple(self.fields.get(name, ()) for name in VALUE_FIELDS)


# -- pure rules -------------------------------------------------------------------------------


def header_key(name: str) -> str:
    """`E-Mail Address ` -> `emailaddress`: case, spaces and punctuation do not matter."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


_ALIAS_TO_FIELD = {header_key(alias): name for name, aliases in HEADER_ALIASES.items() for alias in aliases}


def check_overrides(header: Sequence[str], overrides: ColumnOverrides) -> None:
    """LeadImportError unless every override names a column of `header` and a field of MAPPABLE_FIELDS."""
    for index, target in overrides.items():
        if not 0 <= index < len(header):
            raise LeadImportError(f"column map: there is no column {index + 1} (the header has {len(header)})")
        if target is not None and target not in MAPPABLE_FIELDS:
            raise LeadImportError(f"column map: {target!r} is not a lead field (one of {', '.join(MAPPABLE_FIELDS)})")


def map_headers(header: Sequence[str], overrides: ColumnOverrides | None = None) -> ColumnMap:
    """Which column feeds which lead field; columns we do not know are listed, not used.

    `overrides` (checked by `check_overrides`) decide a column's field instead of its name
    (None: the column is not used). Ambiguity is never resolved silently: several columns for
    one field (`Email`, `Work Email`) are read first-non-empty-wins, and a full-name column beside
    first/last-name columns is used only for rows where first and last name are both empty
    (never mixed into one person); each such rule in effect is returned as a warning.
    """
    overrides = overrides or {}
    check_overrides(header, overrides)
    fields: dict[str, list[int]] = {}
    unknown: list[str] = []
    for index, name in enumerate(header):
        target = overrides[index] if index in overrides else _ALIAS_TO_FIELD.get(header_key(name))
        if target is None:
            unknown.append(name.strip() or f"(column {index + 1}, no name)")
        else:
            fields.setdefault(target, []).append(index)
    warnings = []
    for target, indexes in fields.items():
        if len(indexes) > 1:
            names = " and ".join(repr(header[i].strip()) for i in indexes)
            warnings.append(f"columns {names} all hold {target}: the first non-empty one is used in each row")
    if "full_name" in fields and ("first_name" in fields or "last_name" in fields):
        full = ", ".join(repr(header[i].strip()) for i in fields["full_name"])
        parts = ", ".join(repr(header[i].strip()) for f in ("first_name", "last_name") for i in fields.get(f, ()))
        warnings.append(f"column {full} (a full name) is used only in rows where {parts} are empty, "
                        "never mixed with them")
    return ColumnMap(tuple(header), {k: tuple(v) for k, v in fields.items()}, tuple(unknown), tuple(warnings))


@lru_cache(maxsize=1)
def _tld_extractor() -> tldextract.TLDExtract:
    # The bundled public-suffix snapshot: no network fetch, no cache directory written.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@lru_cache(maxsize=65536)
def normalize_domain(raw: str) -> str | None:
    """`https://www.Acme.co.uk/about` -> `acme.co.uk` (the registered domain); None when not a domain."""
    value = raw.strip().lower()
    value = _SCHEME.sub("", value)
    host = re.split(r"[/?#\s\\]", value, maxsplit=1)[0]
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    if not host or not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return _tld_extractor()(host).top_domain_under_public_suffix or None


_NAME_SPECIAL = frozenset().union(NAME_CONSTANTS.titles, NAME_CONSTANTS.suffix_acronyms,
                                  NAME_CONSTANTS.suffix_not_acronyms, NAME_CONSTANTS.prefixes,
                                  NAME_CONSTANTS.conjunctions)


@lru_cache(maxsize=65536)
def split_full_name(full: str) -> tuple[str | None, str | None]:
    """(first, last) from a full name; nameparser handles `Dr. Jane van der Berg Jr.` and `Smith, John`."""
    tokens = full.split()
    # nameparser costs ~200 µs a name; plain `First Last` (most rows) gives the same answer directly.
    if (len(tokens) == 2 and all(_NAME_TOKEN.fullmatch(t) for t in tokens)
            and not any(t.lower() in _NAME_SPECIAL for t in tokens)):
        return tokens[0], tokens[1]
    parsed = HumanName(full)
    return (parsed.first or None), (parsed.last or None)


def sniff_delimiter(line: str) -> str:
    """The candidate seen most often in the header line (outside quotes); comma when none is."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])  # max keeps the first of equals: comma on a tie
    return best if counts[best] else ","


def decode_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding name) of a whole byte string, by the same rules as a streamed file."""
    source = DecodedLines(io.BufferedReader(io.BytesIO(data)))
    text = "".join(source)
    return text, source.encoding


def sniff_encoding(head: bytes) -> str | None:
    """The encoding the file's first bytes prove, or None: then each line is decoded on its own."""
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return _utf16_without_bom(head)


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16LE/BE without a BOM: mostly-ASCII text has a NUL in every other byte (odd: LE, even: BE).

    A UTF-8 or cp1252 CSV has no NUL bytes at all (a stray one is stripped per value), so a third
    of the pairs with a NUL on one side and almost none on the other is unmistakable.
    """
    sample = head[: len(head) - len(head) % 2]
    pairs = len(sample) // 2
    if pairs < 4:
        return None
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    if odd_nuls >= pairs * 0.3 and even_nuls <= pairs * 0.05:
        return "utf-16-le"
    if even_nuls >= pairs * 0.3 and odd_nuls <= pairs * 0.05:
        return "utf-16-be"
    return None


class DecodedLines:
    """The physical lines of a binary file as text (line breaks kept: CRLF, LF or a lone CR).

    Iterate once; `encoding` then names what was used (`utf-8+cp1252` when lines differed).
    """

    def __init__(self, handle: io.BufferedReader) -> None:
        self._handle = handle
        head = handle.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        self._sniffed = sniff_encoding(head)
        self._used: dict[str, None] = {}
        self.overlong: set[int] = set()
        """Physical line numbers cut at MAX_LINE_BYTES (filled while reading)."""
        self._count = 0

    @property
    def encoding(self) -> str:
        if self._sniffed not in (None, "utf-8-sig"):
            return self._sniffed
        name = "+".join(self._used) or "utf-8"
        return "utf-8-sig" if self._sniffed == "utf-8-sig" and name == "utf-8" else name

    def __iter__(self) -> Iterator[str]:
        if self._sniffed in ("utf-16", "utf-16-le", "utf-16-be"):
            lines = self._wide_lines(self._sniffed)
        else:
            if self._sniffed == "utf-8-sig":
                self._handle.read(3)
            lines = self._byte_lines()
        for line in lines:
            self._count += 1
            yield line

    def _cut(self) -> None:
        self.overlong.add(self._count + 1)  # the line about to be yielded

    def _wide_lines(self, encoding: str) -> Iterator[str]:
        text = io.TextIOWrapper(self._handle, encoding=encoding, errors="replace", newline="")
        limit = MAX_LINE_BYTES // 2
        while line := text.readline(limit):
            if len(line) == limit and not line.endswith(("\n", "\r")):
                while (rest := text.readline(limit)) and not rest.endswith(("\n", "\r")):
                    pass  # the rest of an overlong line is skipped
                self._cut()
                line += "\n"
            yield line

    def _byte_lines(self) -> Iterator[str]:
        readline = self._handle.readline
        while raw := readline(MAX_LINE_BYTES):
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass  # the rest of an overlong line is skipped
                self._cut()
                raw += b"\n"
            line = self._decode(raw)
            if "\r" in line and _LONE_CR.search(line):  # an old-Mac line break inside: split there too
                yield from (part for part in _LONE_CR.split(line) if part)
            else:
                yield line

    def _decode(self, raw: bytes) -> str:
        # Line by line, so a UTF-8 file with a few pasted cp1252 lines keeps its UTF-8 lines intact.
        for encoding in ("utf-8", "cp1252"):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError:
                continue
            if not raw.isascii():
                self._used[encoding] = None
            return line
        self._used["latin-1"] = None
        return raw.decode("latin-1")


def estimate_rows(path: Path) -> int:
    """Data rows, counted as newlines minus the header: exact unless values hold line breaks (a
    progress bar's total). Opened like the import opens it, so a FIFO or a device is refused here, before any read."""
    newlines = 0
    last = b""
    with open_input(path) as handle:
        while chunk := handle.read(1 << 20):
            newlines += chunk.count(b"\n")
            last = chunk
    if last and not last.endswith(b"\n"):
        newlines += 1  # a last line without its newline is still a line
    return max(newlines - 1, 0)


def open_input(path: Path) -> io.BufferedReader:
    """The file opened for reading, refused up front unless it is a regular file.

    O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file ignores the flag.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LeadImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a folder" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")
        raise NotARegularFile(path, kind)
    return io.BufferedReader(io.FileIO(fd, "rb", closefd=True), buffer_size=1 << 20)


def clean(value: str | None) -> str | None:
    """The one cleaner for every imported text field (names, title, company, phone, URL, country):
    one line (control and format characters become one space: a CR/LF, an ANSI escape or a bidi
    override would break or disguise the value wherever it is shown or put in a header), NUL-free
    (Postgres text cannot hold NUL), trimmed, spreadsheet-safe; None when empty."""
    if not value:
        return None
    if not value.isprintable():
        value = " ".join(_CONTROL.sub(" ", value.replace("\x00", "")).split())
    value = safe_cell(value.strip()).strip()
    return value or None


clean_name = clean  # the name callers already use for one-line values


def email_problem(raw: str) -> tuple[str | None, str | None]:
    """(normalized email, None) or (None, reason)."""
    value = raw.replace("\x00", "").strip()
    if not value:
        return None, "email is empty"
    shown = _shown(value)
    if raw[:1] in LEADING_CONTROL or value[0] in FORMULA_CHARS:
        first = raw[0] if raw[:1] in LEADING_CONTROL else value[0]
        return None, f"invalid email {shown}: starts with {first!r}, a spreadsheet formula character"
    if "@" not in value:  # cheap pre-check: the common junk (names, phone numbers) skips the validator
        return None, f"invalid email {shown}: there is no @-sign"
    try:
        return normalize_email(value), None
    except InvalidEmail as exc:
        return None, f"invalid email {shown}: {exc}"


def _shown(value: str, limit: int = 80) -> str:
    """A value quoted for a reason message, cut short. The reason starts with a word, so it is a safe cell."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


# -- reading records --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    line: int
    raw_lines: tuple[str, ...]
    fields: list[str] | None
    error: str | None = None


def _dialect(delimiter: str) -> type[csv.Dialect]:
    class Dialect(csv.excel):
        pass

    Dialect.delimiter = delimiter
    Dialect.strict = False
    return Dialect


def _records(lines: Iterable[str], dialect: type[csv.Dialect], first_line: int) -> Iterator[_Record]:
    """Records with the physical line each starts on and the raw lines it consumed."""
    pending: list[str] = []

    def feed() -> Iterator[str]:
        for text_line in lines:
            pending.append(text_line)
            yield text_line

    reader = csv.reader(feed(), dialect)
    line = first_line
    while True:
        try:
            fields: list[str] | None = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as exc:  # the reader resumes cleanly at the next physical line
            fields, error = None, str(exc)
        yield _Record(line, tuple(pending), fields, error)
        line += len(pending)
        pending.clear()


def _parse_line(text_line: str, dialect: type[csv.Dialect]) -> list[str]:
    """One physical line read as a record on its own (its line break is not part of any value)."""
    try:
        return next(csv.reader([text_line.rstrip("\r\n")], dialect), [])
    except csv.Error:
        return [text_line]


def _swallowed(record: _Record, dialect: type[csv.Dialect], email_indexes: Sequence[int]) -> bool:
    """True when a multi-line record is really a stray quote that ate the rows after it.

    A legitimate multi-line value (an address, a note) does not contain lines that look like a
    whole row with an email in the email column.
    """
    if len(record.raw_lines) < 2:
        return False
    if record.error is not None:
        return True
    for text_line in record.raw_lines[1:]:
        fields = _parse_line(text_line, dialect)
        if any(i < len(fields) and _EMAIL_SHAPE.fullmatch(fields[i].strip()) for i in email_indexes):
            return True
    return False


# -- checking rows ----------------------------------------------------------------------------


@dataclass
class ParsedRows:
    """Every data row sorted into valid or rejected (duplicates are found by Postgres on import)."""

    column_map: ColumnMap
    encoding: str
    delimiter: str
    total_rows: int = 0
    valid: list[tuple[int, tuple[str | None, ...], list[str]]] = field(default_factory=list)
    """(line, values in LEAD_COLUMNS order, original fields)."""
    rejected: list[tuple[int, str, list[str]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CheckedRow:
    """One data row: `values` (in LEAD_COLUMNS order) when usable, else the `reason` it is not."""

    line: int
    values: tuple[str | None, ...] | None
    reason: str | None
    fields: list[str]


def _first_value(fields: Sequence[str], indexes: Sequence[int]) -> str:
    for i in indexes:
        if i < len(fields) and fields[i].strip():
            return fields[i]
    return ""


def _row_problem(fields: Sequence[str], header: Sequence[str]) -> str | None:
    """Why the row's shape is unusable, before looking at any value."""
    width = len(header)
    if len(fields) > width and any(v.strip() for v in fields[width:]):
        return (f"row has {len(fields)} values but the header has {width} columns "
                f"(an unquoted delimiter inside a value?)")
    for i, value in enumerate(fields):
        if len(value) > MAX_FIELD_CHARS:
            name = header[i].strip() if i < width and header[i].strip() else f"column {i + 1}"
            return f"value in column {name!r} is {len(value):,} characters (limit {MAX_FIELD_CHARS:,})"
    return None


VALUE_FIELDS = ("first_name", "last_name", "full_name", "title", "company_name", "company_domain", "phone",
                "linkedin_url", "country")
"""The fields a row's values are read from, besides the email (`_lead_values` unpacks them in this order)."""


def _lead_values(email: str, fields: Sequence[str], cmap: ColumnMap) -> tuple[str | None, ...]:
    first, last, full, title, company, domain, phone, linkedin, country = (
        _first_value(fields, indexes) for indexes in cmap.value_indexes)
    first, last = clean_name(first), clean_name(last)
    if first is None and last is None:  # a full name is never mixed with another column's first/last
        full = clean_name(full)
        if full:
            split_first, split_last = split_full_name(full)
            first, last = clean_name(split_first), clean_name(split_last)
    domain = domain.replace("\x00", "")
    return (email, first, last, clean(title), clean(company), normalize_domain(domain) if domain.strip() else None,
            clean(phone), clean(linkedin), clean(country))


def check_row(cmap: ColumnMap, line: int, fields: list[str]) -> CheckedRow:
    problem = _row_problem(fields, cmap.header)
    email: str | None = None
    if problem is None:
        email, problem = email_problem(_first_value(fields, cmap.email_indexes))
    if problem is not None or email is None:
        return CheckedRow(line, None, problem or "invalid email", fields)
    return CheckedRow(line, _lead_values(email, fields, cmap), None, fields)


@dataclass
class CsvHeader:
    """The header of a decoded file, and the lines after it still to be read."""

    delimiter: str
    column_map: ColumnMap
    next_line: int
    """Physical line number of the first line after the header."""
    lines: Iterator[str]
    """The physical lines after the header, not yet read."""


def read_header(source: str | Iterable[str], column_map: ColumnOverrides | None = None) -> CsvHeader:
    """Find the header (first non-blank record), its delimiter and column map (`map_headers` with
    `column_map`'s overrides).

    `source` is the decoded text, or its physical lines (line breaks kept).
    Raises MissingEmailColumn when the file is empty or no column maps to email.
    """
    lines = iter(io.StringIO(source, newline="")) if isinstance(source, str) else iter(source)
    found = _find_header(lines)
    if found is None:
        raise MissingEmailColumn([])
    delimiter, header, next_line = found
    cmap = map_headers(header, column_map)
    if not cmap.email_indexes:
        looks_like_data = any(_EMAIL_SHAPE.fullmatch(h) for h in header)
        raise MissingEmailColumn(header, looks_like_data=looks_like_data)
    return CsvHeader(delimiter, cmap, next_line, lines)


def _find_header(lines: Iterator[str]) -> tuple[str, list[str], int] | None:
    """(delimiter, header cells, physical line after the header) from the first non-blank record;
    `lines` is left at the first line after it. None when there is no record at all."""
    delimiter: str | None = None
    for line_no, text_line in enumerate(lines, start=1):
        if not text_line.strip():
            continue
        sep = _SEP_LINE.fullmatch(text_line.strip()) if line_no == 1 else None
        if sep:  # Excel's `sep=;` hint line
            delimiter = sep.group(1)
            continue
        delimiter = delimiter or sniff_delimiter(text_line)
        # A header cell may hold a quoted newline: let the csv reader pull the lines it needs.
        record = next(_records(_chain([text_line], lines), _dialect(delimiter), line_no))
        return delimiter, [h.strip() for h in (record.fields or [text_line])], line_no + len(record.raw_lines)
    return None


def peek_header(path: Path) -> ColumnMap:
    """The file's header mapped onto lead fields (`map_headers`), opened and decoded as `import_csv`
    reads it, whether or not a column is recognised as the email (the caller may then map one).

    Raises NotARegularFile or LeadImportError for an unreadable file, MissingEmailColumn([]) for an empty one."""
    with open_input(path) as handle:
        found = _find_header(iter(DecodedLines(handle)))
    if found is None:
        raise MissingEmailColumn([])
    return map_headers(found[1])


def _chain(first: Iterable[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def check_rows(header: CsvHeader, on_progress: Callable[[int], None] | None = None,
               overlong: Container[int] = frozenset()) -> Iterator[CheckedRow]:
    """Check every row after the header, one at a time; each is kept or rejected on its own.

    `overlong`: physical lines the reader cut at MAX_LINE_BYTES (their rows are rejected)."""
    cmap = header.column_map
    dialect = _dialect(header.delimiter)
    done = 0
    for record in _records(header.lines, dialect, header.next_line):
        if _swallowed(record, dialect, cmap.email_indexes):
            yield CheckedRow(record.line, None, "unclosed quote: its value ran into the next lines, "
                             "which were read again one by one", _parse_line(record.raw_lines[0], dialect))
            candidates = [(record.line + offset, _parse_line(text_line, dialect))
                          for offset, text_line in enumerate(record.raw_lines[1:], start=1)]
        elif record.fields is None:
            yield CheckedRow(record.line, None, f"unreadable row: {record.error}", list(record.raw_lines))
            continue
        else:
            candidates = [(record.line, record.fields)]
        for line, fields in candidates:
            if not any(v.strip() for v in fields):
                continue  # blank lines and rows of empty cells are not rows
            if line in overlong:
                yield CheckedRow(line, None, f"line is longer than {MAX_LINE_BYTES:,} bytes: not read", fields)
            else:
                yield check_row(cmap, line, fields)
            done += 1
            if on_progress is not None and done % PROGRESS_EVERY == 0:
                on_progress(done)


def parse_rows(header: CsvHeader, encoding: str, on_progress: Callable[[int], None] | None = None) -> ParsedRows:
    """Every row after the header checked and collected in memory (for small inputs and tests)."""
    parsed = ParsedRows(header.column_map, encoding, header.delimiter)
    for row in check_rows(header, on_progress):
        parsed.total_rows += 1
        if row.values is None:
            parsed.rejected.append((row.line, row.reason or "invalid", row.fields))
        else:
            parsed.valid.append((row.line, row.values, row.fields))
    return parsed


# -- database ---------------------------------------------------------------------------------


_TEMP_TABLE = "import_leads"


_COPY_COLUMNS = ("line", "kind", "reason", *LEAD_COLUMNS, "raw")


class _CopySource:
    """A file-like `read()` over checked rows in COPY's csv format, produced as COPY asks for them."""

    def __init__(self, rows: Iterator[CheckedRow]) -> None:
        self._rows = rows
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self._pending = ""
        self._done = False

    def _row(self, row: CheckedRow) -> tuple[Any, ...]:
        # The original values (NUL-free, Postgres text cannot hold one) ride along for the rejects file.
        raw = json.dumps([v.replace("\x00", "") for v in row.fields], ensure_ascii=False)
        if row.values is None:
            return (row.line, "rejected", row.reason, *([None] * len(LEAD_COLUMNS)), raw)
        # In COPY's csv format an unquoted empty field is NULL; every empty value here is None.
        return (row.line, None, None, *row.values, raw)

    def read(self, size: int = -1) -> str:
        want = size if size > 0 else 1 << 20
        while len(self._pending) < want and not self._done:
            for _ in range(500):
                row = next(self._rows, None)
                if row is None:
                    self._done = True
                    break
                self._writer.writerow(self._row(row))
            self._pending += self._buffer.getvalue()
            self._buffer.seek(0)
            self._buffer.truncate()
        out, self._pending = self._pending[:want], self._pending[want:]
        return out


@dataclass
class _Loaded:
    campaign_id: int | None
    campaign_created: bool
    counts: dict[str, int]
    rejected: list[tuple[int, str]]
    duplicates: list[tuple[int, int]]
    existing_lines: list[int]


_CLASSIFY = (
    # Duplicates within the file: the same email as an earlier kept line.
    f"""UPDATE {_TEMP_TABLE} t SET kind = 'duplicate', first_line = d.first_line,
           reason = 'duplicate of line ' || d.first_line || ' (same email)'
        FROM (SELECT line, min(line) OVER (PARTITION BY email) AS first_line
              FROM {_TEMP_TABLE} WHERE kind IS NULL) d
        WHERE t.line = d.line AND d.first_line <> d.line""",
    # Mirrors CHECK (email = lower(email)): one odd row must not fail the whole insert.
    f"""UPDATE {_TEMP_TABLE} SET kind = 'rejected',
           reason = 'email is not lower-case after normalization (database rule)'
        WHERE kind IS NULL AND email <> lower(email)""",
)


def _load(conn: Connection, client_id: int, campaign_name: str | None, rows: Iterator[CheckedRow],
          emit: Callable[[Connection], None]) -> _Loaded:
    """Stream `rows` into a temp table, insert the new leads, then `emit(conn)` the rows not imported
    in line order; all in the caller's transaction, which the temp table ends with."""
    # No statement timeout: the COPY streams the whole file as one statement, bounded by the file, not by time.
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    campaign_id, created = (campaigns.draft_campaign(conn, client_id, campaign_name) if campaign_name
                            else (None, False))
    columns = ", ".join(LEAD_COLUMNS)
    conn.execute(text(f"CREATE TEMP TABLE {_TEMP_TABLE} (line integer, kind text, reason text, first_line integer, "
                      + ", ".join(f"{c} text" for c in LEAD_COLUMNS) + ", raw text) ON COMMIT DROP"))
    with conn.connection.dbapi_connection.cursor() as cur:  # COPY FROM STDIN is the driver's, below SQLAlchemy
        cur.copy_expert(f"COPY {_TEMP_TABLE} ({', '.join(_COPY_COLUMNS)}) FROM STDIN WITH (FORMAT csv)",
                        _CopySource(rows), size=1 << 20)
    for statement in _CLASSIFY:
        conn.execute(text(statement))
    # Only the rows that already existed are rewritten (kind stays NULL for the imported ones).
    conn.execute(text(
        f"WITH inserted AS ("
        f" INSERT INTO leads (client_id, campaign_id, {columns})"
        f" SELECT :client, :campaign, {columns} FROM {_TEMP_TABLE} WHERE kind IS NULL ORDER BY line"
        f" ON CONFLICT (client_id, email) DO NOTHING RETURNING email)"
        f" UPDATE {_TEMP_TABLE} t SET kind = 'existing', reason = 'already exists for this client'"
        f" WHERE t.kind IS NULL AND NOT EXISTS (SELECT 1 FROM inserted i WHERE i.email = t.email)"),
        {"client": client_id, "campaign": campaign_id})
    counts = {kind or "imported": int(n) for kind, n in
              conn.execute(text(f"SELECT kind, count(*) FROM {_TEMP_TABLE} GROUP BY kind"))}
    first = {"n": REPORTED_ROWS}
    rejected = [(int(line), reason) for line, reason in conn.execute(
        text(f"SELECT line, reason FROM {_TEMP_TABLE} WHERE kind = 'rejected' ORDER BY line LIMIT :n"), first)]
    duplicates = [(int(line), int(line_1)) for line, line_1 in conn.execute(
        text(f"SELECT line, first_line FROM {_TEMP_TABLE} WHERE kind = 'duplicate' ORDER BY line LIMIT :n"), first)]
    existing = [int(line) for line in conn.execute(
        text(f"SELECT line FROM {_TEMP_TABLE} WHERE kind = 'existing' ORDER BY line LIMIT :n"), first).scalars()]
    if any(kind != "imported" for kind in counts):
        emit(conn)
    return _Loaded(campaign_id, created, counts, rejected, duplicates, existing)


# -- rejects file -----------------------------------------------------------------------------


def rejects_path_for(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")


def _write_rejects(conn: Connection, target: Path, header: Sequence[str]) -> Path:
    """Write every row not imported to `target` (atomically; a planted symlink is replaced, never
    followed), or to a fresh private folder when `target` cannot be written."""
    try:
        _write_rejects_to(conn, target, header)
        return target
    except OutputFileError as exc:
        # The leads are in: losing the explanation must not turn into a failure.
        fallback = Path(tempfile.mkdtemp(prefix="outbound-rejects-")) / target.name
        log.warning("%s; writing %s instead", exc, fallback)
        _write_rejects_to(conn, fallback, header)
        return fallback


def _write_rejects_to(conn: Connection, target: Path, header: Sequence[str]) -> None:
    # utf-8-sig so Excel reads it as UTF-8; the file can be fixed and imported again as is.
    rows = conn.execute(text(f"SELECT line, reason, raw FROM {_TEMP_TABLE} WHERE kind IS NOT NULL ORDER BY line"),
                        execution_options={"yield_per": 5_000})  # a server-side cursor: memory stays flat
    with atomic_write(target, overwrite=True, encoding="utf-8-sig") as handle:
        writer = csvsafe.writer(handle)
        writer.writerow(["line", "reason", *header])
        for line, reason, raw in rows:
            writer.writerow([int(line), reason, *json.loads(raw)])


# -- entry point ------------------------------------------------------------------------------


def import_csv(path: Path, *, client_name: str, campaign_name: str | None = None,
               engine: Engine | None = None,
               on_progress: Callable[[int], None] | None = None,
               rejects_path: Path | None = None,
               column_map: ColumnOverrides | None = None) -> ImportReport:
    """Import a lead CSV for an existing client (and a campaign, created as a draft if missing).

    Raises NotARegularFile or MissingEmailColumn (LeadImportError), or NotFound for the client, before
    writing anything. `on_progress(rows_done)` is called every PROGRESS_EVERY rows and once at the end.
    `rejects_path` defaults to `<input stem>.rejects.csv` next to the input (pass one when the
    input sits somewhere that must stay clean, such as the bundled sample). `column_map` overrides
    the field of some columns (`map_headers`); a bad one is a LeadImportError before any row is read.
    """
    started = time.perf_counter()
    path = Path(path)
    engine = engine or get_engine()
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_SIZE_LIMIT))
    target = Path(rejects_path) if rejects_path is not None else rejects_path_for(path)
    written: list[Path] = []
    with open_input(path) as handle:
        source = DecodedLines(handle)
        header = read_header(source, column_map)  # header problems first: they need no database
        with transaction(engine) as conn:  # the leads and the campaign commit together, or nothing does
            client_id = clients.client_id(conn, client_name)
            loaded = _load(conn, client_id, campaign_name, check_rows(header, on_progress, source.overlong),
                           lambda c: written.append(_write_rejects(c, target, header.column_map.header)))
    if not written and rejects_path is None:
        # Our default output name: a stale file from an earlier run would mislead.
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
    counts = loaded.counts
    total = sum(counts.values())
    report = ImportReport(
        total_rows=total,
        imported=counts.get("imported", 0),
        duplicates_in_file=counts.get("duplicate", 0),
        already_existing=counts.get("existing", 0),
        rejected=loaded.rejected,
        rejects_path=written[0] if written else None,
        encoding=source.encoding,
        unknown_columns=list(header.column_map.unknown),
        elapsed_seconds=time.perf_counter() - started,
        client_id=client_id,
        campaign_id=loaded.campaign_id,
        campaign_created=loaded.campaign_created,
        delimiter=header.delimiter,
        duplicates=loaded.duplicates,
        existing_lines=loaded.existing_lines,
        rejected_count=counts.get("rejected", 0),
        warnings=list(header.column_map.warnings),
    )
    if on_progress is not None:
        on_progress(total)
    return report
