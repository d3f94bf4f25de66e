"""Lead import: load a CSV exported from anywhere into a client's leads, fast, keeping every good row.

Pipeline (`import_csv`):

1. Read the bytes and decode them: UTF-8 (BOM or not), UTF-16 with a BOM, otherwise line by
   line UTF-8 / cp1252 / latin-1, so undecodable bytes never stop an import.
2. Sniff the delimiter (`,` `;` tab `|`, or Excel's `sep=;` first line), map the header onto
   lead fields by name (`map_headers`), and refuse a file without an email column.
3. Parse every record with its physical line number (header = line 1). Each row is checked on
   its own (width, field length, email, duplicate in the file); a bad row is rejected with a
   reason, never its neighbours. A quote that never closes would swallow the rows after it:
   such records are re-read line by line (`_swallowed`).
4. Values are trimmed, stripped of NULs and made spreadsheet-safe (`shared.csvsafe.safe_cell`).
5. One transaction: COPY the valid rows into a temp table, then one
   `INSERT ... SELECT ... ON CONFLICT (client_id, email) DO NOTHING RETURNING email`;
   emails not returned already existed for the client (reported, not an error).
6. Every row not imported (rejected, duplicate, already existing) is written with its line and
   reason to `<input stem>.rejects.csv` next to the input.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import tldextract
from nameparser import HumanName
from nameparser.config import CONSTANTS as NAME_CONSTANTS
from sqlalchemy import Engine

from shared.csvsafe import FORMULA_CHARS, LEADING_CONTROL, safe_cell
from shared.db import get_engine
from shared.emails import InvalidEmail, normalize_email

log = logging.getLogger(__name__)

MAX_FIELD_CHARS = 10_000
"""A longer value is junk or an attack (or a swallowed file): its row is rejected."""

CSV_FIELD_SIZE_LIMIT = 16 * 1024 * 1024
"""Raised from csv's 128 KiB default so a huge field is read whole and rejected by name."""

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

DELIMITERS = (",", ";", "\t", "|")
"""Candidates in tie-break order: comma wins a tie."""

_EMAIL_SHAPE = re.compile(r"[^@\s,;\"']+@[^@\s,;\"']+\.[^@\s,;\"']+")
_NAME_TOKEN = re.compile(r"[^\W\d_]{2,}(?:['’\-][^\W\d_]+)*")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://")
_HOST_LABEL = re.compile(r"[^\W_](?:[\w\-]*[^\W_])?")
_SEP_LINE = re.compile(r"sep=(.)\s*", re.IGNORECASE)


class LeadImportError(Exception):
    """The file cannot be imported at all; nothing was written."""


class ClientNotFound(LeadImportError):
    def __init__(self, name: str, suggestion: str | None = None) -> None:
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"client {name!r} does not exist{hint}")
        self.name = name


class MissingEmailColumn(LeadImportError):
    def __init__(self, columns: Sequence[str], *, looks_like_data: bool = False) -> None:
        found = ", ".join(repr(c) for c in columns) or "none"
        hint = " (the first row looks like data: add a header row)" if looks_like_data else ""
        super().__init__(f"no email column found; columns in the file: {found}{hint}")
        self.columns = list(columns)


@dataclass
class ImportReport:
    """What happened to every row. total_rows = imported + duplicates + already existing + rejected."""

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


@dataclass(frozen=True)
class ColumnMap:
    """Lead field -> indexes of the columns feeding it (file order; the first non-empty wins)."""

    header: tuple[str, ...]
    fields: dict[str, tuple[int, ...]]
    unknown: tuple[str, ...]

    @property
    def email_indexes(self) -> tuple[int, ...]:
        return self.fields.get("email", ())


# -- pure rules -------------------------------------------------------------------------------


def header_key(name: str) -> str:
    """`E-Mail Address ` -> `emailaddress`: case, spaces and punctuation do not matter."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


_ALIAS_TO_FIELD = {header_key(alias): name for name, aliases in HEADER_ALIASES.items() for alias in aliases}


def map_headers(header: Sequence[str]) -> ColumnMap:
    """Which column feeds which lead field; columns we do not know are listed, not used."""
    fields: dict[str, list[int]] = {}
    unknown: list[str] = []
    for index, name in enumerate(header):
        target = _ALIAS_TO_FIELD.get(header_key(name))
        if target is None:
            unknown.append(name.strip() or f"(column {index + 1}, no name)")
        else:
            fields.setdefault(target, []).append(index)
    return ColumnMap(tuple(header), {k: tuple(v) for k, v in fields.items()}, tuple(unknown))


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
    """(text, encoding name). Never raises: bytes no encoding explains are read as latin-1."""
    if data.startswith(b"\xef\xbb\xbf"):
        text, name = _decode_utf8_or_legacy(data[3:])
        return text, "utf-8-sig" if name == "utf-8" else name
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), "utf-16"
    return _decode_utf8_or_legacy(data)


def _decode_utf8_or_legacy(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Line by line, so a UTF-8 file with a few pasted cp1252 lines keeps its UTF-8 lines intact.
    used: dict[str, None] = {}
    parts: list[str] = []
    for line in data.splitlines(keepends=True):
        for encoding in ("utf-8", "cp1252", "latin-1"):
            try:
                parts.append(line.decode(encoding))
            except UnicodeDecodeError:
                continue
            if not line.isascii():
                used[encoding] = None
            break
    return "".join(parts), "+".join(used) or "utf-8"


def clean(value: str | None) -> str | None:
    """Trimmed, NUL-free (Postgres text cannot hold NUL), spreadsheet-safe; None when empty."""
    if not value:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    value = safe_cell(value.strip()).strip()
    return value or None


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
    """Every data row sorted into valid, rejected or duplicate, before the database is involved."""

    column_map: ColumnMap
    encoding: str
    delimiter: str
    total_rows: int = 0
    valid: list[tuple[int, tuple[str | None, ...], list[str]]] = field(default_factory=list)
    """(line, values in LEAD_COLUMNS order, original fields)."""
    rejected: list[tuple[int, str, list[str]]] = field(default_factory=list)
    duplicates: list[tuple[int, int, list[str]]] = field(default_factory=list)
    first_line_of: dict[str, int] = field(default_factory=dict)


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


def _lead_values(email: str, fields: Sequence[str], cmap: ColumnMap) -> tuple[str | None, ...]:
    def get(name: str) -> str:
        return _first_value(fields, cmap.fields.get(name, ()))

    first, last = clean(get("first_name")), clean(get("last_name"))
    if first is None or last is None:
        full = clean(get("full_name"))
        if full:
            split_first, split_last = split_full_name(full)
            first = first or clean(split_first)
            last = last or clean(split_last)
    raw_domain = get("company_domain").replace("\x00", "")
    return (email, first, last, clean(get("title")), clean(get("company_name")),
            normalize_domain(raw_domain) if raw_domain.strip() else None,
            clean(get("phone")), clean(get("linkedin_url")), clean(get("country")))


def _check_row(parsed: ParsedRows, line: int, fields: list[str]) -> None:
    cmap = parsed.column_map
    problem = _row_problem(fields, cmap.header)
    email: str | None = None
    if problem is None:
        email, problem = email_problem(_first_value(fields, cmap.email_indexes))
    if problem is not None or email is None:
        parsed.rejected.append((line, problem or "invalid email", fields))
        return
    first = parsed.first_line_of.get(email)
    if first is not None:
        parsed.duplicates.append((line, first, fields))
        return
    parsed.first_line_of[email] = line
    parsed.valid.append((line, _lead_values(email, fields, cmap), fields))


@dataclass
class CsvHeader:
    """The header of a decoded file, and the lines after it still to be read."""

    delimiter: str
    column_map: ColumnMap
    next_line: int
    """Physical line number of the first line after the header."""
    lines: Iterator[str]
    """The physical lines after the header, not yet read."""


def read_header(text: str) -> CsvHeader:
    """Find the header (first non-blank record), its delimiter and column map.

    Raises MissingEmailColumn when the file is empty or no column maps to email.
    """
    lines = iter(io.StringIO(text, newline=""))
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
        header = [h.strip() for h in (record.fields or [text_line])]
        column_map = map_headers(header)
        if not column_map.email_indexes:
            looks_like_data = any(_EMAIL_SHAPE.fullmatch(h) for h in header)
            raise MissingEmailColumn(header, looks_like_data=looks_like_data)
        return CsvHeader(delimiter, column_map, line_no + len(record.raw_lines), lines)
    raise MissingEmailColumn([])


def _chain(first: Iterable[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def parse_rows(header: CsvHeader, encoding: str, on_progress: Callable[[int], None] | None = None) -> ParsedRows:
    """Check every row after the header; each row is kept, rejected or marked duplicate on its own."""
    cmap = header.column_map
    dialect = _dialect(header.delimiter)
    parsed = ParsedRows(cmap, encoding, header.delimiter)
    for record in _records(header.lines, dialect, header.next_line):
        if _swallowed(record, dialect, cmap.email_indexes):
            parsed.total_rows += 1
            parsed.rejected.append((record.line, "unclosed quote: its value ran into the next lines, "
                                    "which were read again one by one", _parse_line(record.raw_lines[0], dialect)))
            for offset, text_line in enumerate(record.raw_lines[1:], start=1):
                _count_and_check(parsed, record.line + offset, _parse_line(text_line, dialect), on_progress)
        elif record.fields is None:
            parsed.total_rows += 1
            parsed.rejected.append((record.line, f"unreadable row: {record.error}", list(record.raw_lines)))
        else:
            _count_and_check(parsed, record.line, record.fields, on_progress)
    return parsed


def _count_and_check(parsed: ParsedRows, line: int, fields: list[str], on_progress: Callable[[int], None] | None) -> None:
    if not any(v.strip() for v in fields):
        return  # blank lines and rows of empty cells are not rows
    parsed.total_rows += 1
    _check_row(parsed, line, fields)
    if on_progress is not None and parsed.total_rows % PROGRESS_EVERY == 0:
        on_progress(parsed.total_rows)


# -- database ---------------------------------------------------------------------------------


_TEMP_TABLE = "import_leads"


def _resolve_client(engine: Engine, name: str) -> int:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("SELECT id FROM clients WHERE name = %s", (name,))
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT name FROM clients WHERE lower(name) = lower(%s) ORDER BY id LIMIT 1", (name,))
                near = cur.fetchone()
                raise ClientNotFound(name, near[0] if near else None)
        return int(row[0])
    finally:
        raw.rollback()
        raw.close()


def _campaign_id(cur: Any, client_id: int, name: str) -> tuple[int, bool]:
    """(id, created): a missing campaign is created as a draft."""
    cur.execute(
        "INSERT INTO campaigns (client_id, name) VALUES (%s, %s) "
        "ON CONFLICT ON CONSTRAINT uq_campaigns_client_name DO NOTHING RETURNING id",
        (client_id, name),
    )
    row = cur.fetchone()
    if row is not None:
        return int(row[0]), True
    cur.execute("SELECT id FROM campaigns WHERE client_id = %s AND name = %s", (client_id, name))
    return int(cur.fetchone()[0]), False


def _copy_buffer(rows: Iterable[tuple[int, tuple[str | None, ...], list[str]]]) -> io.StringIO:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # In COPY's csv format an unquoted empty field is NULL; every empty value here is None.
    writer.writerows((line, *values) for line, values, _ in rows)
    buffer.seek(0)
    return buffer


def _load(engine: Engine, client_id: int, campaign_name: str | None,
          valid: list[tuple[int, tuple[str | None, ...], list[str]]]) -> tuple[int | None, bool, set[str], set[int]]:
    """(campaign id, campaign created, inserted emails, lines the database refused) in one transaction."""
    columns = ", ".join(LEAD_COLUMNS)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            campaign_id, created = _campaign_id(cur, client_id, campaign_name) if campaign_name else (None, False)
            cur.execute(f"CREATE TEMP TABLE {_TEMP_TABLE} (line integer, "
                        + ", ".join(f"{c} text" for c in LEAD_COLUMNS) + ") ON COMMIT DROP")
            cur.copy_expert(f"COPY {_TEMP_TABLE} (line, {columns}) FROM STDIN WITH (FORMAT csv)", _copy_buffer(valid))
            # The WHERE mirrors CHECK (email = lower(email)): one odd row must not fail the whole insert.
            cur.execute(
                f"INSERT INTO leads (client_id, campaign_id, {columns}) "
                f"SELECT %s, %s, {columns} FROM {_TEMP_TABLE} WHERE email = lower(email) ORDER BY line "
                "ON CONFLICT (client_id, email) DO NOTHING RETURNING email",
                (client_id, campaign_id),
            )
            inserted = {r[0] for r in cur.fetchall()}
            cur.execute(f"SELECT line FROM {_TEMP_TABLE} WHERE email <> lower(email)")
            refused = {int(r[0]) for r in cur.fetchall()}
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    return campaign_id, created, inserted, refused


# -- rejects file -----------------------------------------------------------------------------


def rejects_path_for(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")


def _write_rejects(target: Path, header: Sequence[str], entries: list[tuple[int, str, list[str]]], *,
                   remove_stale: bool) -> Path | None:
    """Write the rejects file to `target`, or to the temp directory when that is not writable."""
    if not entries:
        if remove_stale:  # our default output name: a stale file from an earlier run would mislead
            with contextlib.suppress(OSError):
                target.unlink(missing_ok=True)
        return None
    entries = sorted(entries, key=lambda e: e[0])
    try:
        _write_rejects_to(target, header, entries)
    except OSError as exc:
        # The leads are already committed: losing the explanation must not turn into a failure.
        fallback = Path(tempfile.gettempdir()) / target.name
        log.warning("cannot write %s (%s); writing %s instead", target, exc, fallback)
        _write_rejects_to(fallback, header, entries)
        target = fallback
    return target


def _write_rejects_to(target: Path, header: Sequence[str], entries: list[tuple[int, str, list[str]]]) -> None:
    # utf-8-sig so Excel reads it as UTF-8; the file can be fixed and imported again as is.
    with target.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "reason", *(safe_cell(h) for h in header)])
        for line, reason, fields in entries:
            writer.writerow([line, safe_cell(reason), *(safe_cell(v.replace("\x00", "")) for v in fields)])


# -- entry point ------------------------------------------------------------------------------


def import_csv(path: Path, *, client_name: str, campaign_name: str | None = None,
               engine: Engine | None = None,
               on_progress: Callable[[int], None] | None = None,
               rejects_path: Path | None = None) -> ImportReport:
    """Import a lead CSV for an existing client (and a campaign, created as a draft if missing).

    Raises ClientNotFound or MissingEmailColumn (LeadImportError) before writing anything.
    `on_progress(rows_done)` is called every PROGRESS_EVERY rows and once at the end.
    `rejects_path` defaults to `<input stem>.rejects.csv` next to the input (pass one when the
    input sits somewhere that must stay clean, such as the bundled sample).
    """
    started = time.perf_counter()
    path = Path(path)
    engine = engine or get_engine()
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_SIZE_LIMIT))
    text, encoding = decode_bytes(path.read_bytes())
    header = read_header(text)  # header problems first: they need no database
    client_id = _resolve_client(engine, client_name)
    parsed = parse_rows(header, encoding, on_progress)
    campaign_id, created, inserted, refused = _load(engine, client_id, campaign_name, parsed.valid)
    report, not_imported = _report(parsed, client_id, campaign_id, created, inserted, refused)
    report.rejects_path = _write_rejects(Path(rejects_path) if rejects_path is not None else rejects_path_for(path),
                                         parsed.column_map.header, not_imported,
                                         remove_stale=rejects_path is None)
    report.elapsed_seconds = time.perf_counter() - started
    if on_progress is not None:
        on_progress(parsed.total_rows)
    return report


def _report(parsed: ParsedRows, client_id: int, campaign_id: int | None, created: bool, inserted: set[str],
            refused: set[int]) -> tuple[ImportReport, list[tuple[int, str, list[str]]]]:
    """The report, and every row not imported as (line, reason, original fields) for the rejects file."""
    rejected = list(parsed.rejected)
    existing: list[tuple[int, str, list[str]]] = []
    for line, values, fields in parsed.valid:
        if line in refused:
            rejected.append((line, "email is not lower-case after normalization (database rule)", fields))
        elif values[0] not in inserted:
            existing.append((line, "already exists for this client", fields))
    duplicates = [(line, f"duplicate of line {first} (same email)", fields)
                  for line, first, fields in parsed.duplicates]
    report = ImportReport(
        total_rows=parsed.total_rows,
        imported=len(inserted),
        duplicates_in_file=len(parsed.duplicates),
        already_existing=len(existing),
        rejected=sorted((line, reason) for line, reason, _ in rejected),
        rejects_path=None,
        encoding=parsed.encoding,
        unknown_columns=list(parsed.column_map.unknown),
        elapsed_seconds=0.0,
        client_id=client_id,
        campaign_id=campaign_id,
        campaign_created=created,
        delimiter=parsed.delimiter,
        duplicates=[(line, first) for line, first, _ in parsed.duplicates],
        existing_lines=[line for line, _, _ in existing],
    )
    return report, rejected + duplicates + existing
