"""Lead import on real Postgres: every good row lands, every bad row is reported with its line and why."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from shared.engines.leads.importer import ImportReport, import_csv
from shared.errors import MissingEmailColumn, NotFound
from tests import factories

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "shared" / "data" / "sample_leads.csv"
LEAD_FIELDS = "email, first_name, last_name, title, company_name, company_domain, phone, linkedin_url, country"


def _leads(engine, client_id: int | None = None) -> list[dict]:
    where = "WHERE client_id = :c" if client_id is not None else ""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {LEAD_FIELDS}, campaign_id FROM leads {where} ORDER BY id"),
                            {"c": client_id})
        return [dict(r._mapping) for r in rows]


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def _client(engine, name: str = "acme") -> int:
    with engine.begin() as conn:
        return factories.client(conn, name)


def _write(tmp_path: Path, content: str | bytes, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def _accounts_for_every_row(report: ImportReport) -> None:
    assert report.total_rows == (report.imported + report.duplicates_in_file + report.already_existing
                                 + report.rejected_count)


# -- happy path -------------------------------------------------------------------------------


def test_happy_path_with_header_variants(engine, tmp_path):
    client_id = _client(engine)
    path = _write(tmp_path, (
        "E-mail,Given Name,Surname,Position,Organization,Company Website,Mobile,Person Linkedin Url,Country,Notes\n"
        "Jane.Doe@Acme.com,Jane,Doe,VP Sales,Acme Inc,https://www.acme.com/about,+1 415 555 0100,"
        "https://www.linkedin.com/in/jane-doe,United States,met at expo\n"
        " bob@beta.io ,Bob,Stone,CTO,Beta,beta.io,,,Germany,\n"
    ))
    progress: list[int] = []
    report = import_csv(path, client_name="acme", campaign_name="Q3 outbound", engine=engine,
                        on_progress=progress.append)

    assert (report.total_rows, report.imported, report.rejected) == (2, 2, [])
    assert report.unknown_columns == ["Notes"]
    assert report.encoding == "utf-8" and report.delimiter == ","
    assert report.rejects_path is None and not (tmp_path / "leads.rejects.csv").exists()
    assert progress[-1] == 2
    assert report.campaign_created
    with engine.connect() as conn:
        campaign = conn.execute(text("SELECT client_id, name, status FROM campaigns WHERE id = :i"),
                                {"i": report.campaign_id}).one()
    assert tuple(campaign) == (client_id, "Q3 outbound", "draft")
    assert _leads(engine, client_id) == [
        {"email": "jane.doe@acme.com", "first_name": "Jane", "last_name": "Doe", "title": "VP Sales",
         "company_name": "Acme Inc", "company_domain": "acme.com", "phone": "+1 415 555 0100",
         "linkedin_url": "https://www.linkedin.com/in/jane-doe", "country": "United States",
         "campaign_id": report.campaign_id},
        {"email": "bob@beta.io", "first_name": "Bob", "last_name": "Stone", "title": "CTO",
         "company_name": "Beta", "company_domain": "beta.io", "phone": None, "linkedin_url": None,
         "country": "Germany", "campaign_id": report.campaign_id},
    ]


def test_full_name_column_is_split_and_existing_campaign_reused(engine, tmp_path):
    client_id = _client(engine)
    with engine.begin() as conn:
        campaign_id = factories.campaign(conn, client_id, "spring")
    path = _write(tmp_path, "Name,Work Email,Job Title\nDr. Jane Q. Doe,jane@acme.com,CEO\nDoe, John,john@acme.com,COO\n"
                            "Ann Lee,ann@acme.com,CFO\n")
    report = import_csv(path, client_name="acme", campaign_name="spring", engine=engine)
    assert (report.imported, report.campaign_id, report.campaign_created) == (2, campaign_id, False)
    # `Doe, John` unquoted has one value too many: it is rejected, not shifted into the wrong columns.
    assert report.rejected == [(3, "row has 4 values but the header has 3 columns "
                                   "(an unquoted delimiter inside a value?)")]
    names = [(r["first_name"], r["last_name"]) for r in _leads(engine)]
    assert names == [("Jane", "Doe"), ("Ann", "Lee")]


def test_utf8_bom_and_tab_delimiter(engine, tmp_path):
    _client(engine)
    path = _write(tmp_path, "\ufeffEmail\tFirst Name\tCompany\nzoe@acme.com\tZoë\tAcme, Inc\n".encode())
    report = import_csv(path, client_name="acme", engine=engine)
    assert (report.imported, report.encoding, report.delimiter) == (1, "utf-8-sig", "\t")
    assert _leads(engine)[0]["first_name"] == "Zoë" and _leads(engine)[0]["company_name"] == "Acme, Inc"


# -- hostile input ----------------------------------------------------------------------------


HOSTILE_LINES = [
    "Email;First Name;Last Name;Title;Company;Website;Phone",                  # 1 header
    "ren\xe9@acme.fr;Ren\xe9;M\xfcller;CEO;Caf\xe9 €uro;acme.fr;+33 1 23 45 67 89",   # 2 ok, cp1252 bytes
    "=cmd()@evil.com;Eve;Hack;;;;",                                            # 3 formula email
    "ok1@acme.com;=cmd();+1;@SUM(A1:A9);-2+3;;+1+cmd|' /C calc'!A0",           # 4 ok, values neutralised
    "not-an-email;Ann;Bad;;;;",                                                # 5 invalid
    ";Empty;Email;;;;",                                                        # 6 empty email
    "",                                                                        # 7 blank: not a row
    "OK1@ACME.COM ;Dup;Licate;;;;",                                            # 8 duplicate of line 4
    "known@acme.com;Already;There;;;;",                                        # 9 exists in the DB
    "big@acme.com;Big;Field;" + "x" * 20_000 + ";;;",                          # 10 huge field
    "short@acme.com",                                                          # 11 ok, short row
    "extra@acme.com;A;B;C;D;E;F;surprise",                                     # 12 too many values
    'quote@acme.com;"Never;Closed;;;;',                                        # 13 unclosed quote
    "after@acme.com;After;Quote;;;;",                                          # 14 ok, not swallowed
    "jane@acme;No;Dot;;;;",                                                    # 15 invalid domain
    "nul@acme.com;Nu\x00ll;;;;;",                                              # 16 ok, NUL removed
    "  \t@SUM(1)@acme.com;At;Sign;;;;",                                        # 17 formula email
]


def _hostile_file(tmp_path: Path) -> Path:
    return _write(tmp_path, ("\r\n".join(HOSTILE_LINES) + "\r\n").encode("cp1252"), "hostile.csv")


def test_hostile_csv_every_bad_row_reported_every_good_row_stored(engine, tmp_path):
    client_id = _client(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO leads (client_id, email, first_name) VALUES (:c, 'known@acme.com', 'Orig')"),
                     {"c": client_id})
    report = import_csv(_hostile_file(tmp_path), client_name="acme", engine=engine)

    assert report.encoding == "cp1252" and report.delimiter == ";"
    assert report.total_rows == 15
    assert report.rejected == [
        (3, "invalid email '=cmd()@evil.com': starts with '=', a spreadsheet formula character"),
        (5, "invalid email 'not-an-email': there is no @-sign"),
        (6, "email is empty"),
        (10, "value in column 'Title' is 20,000 characters (limit 10,000)"),
        (12, "row has 8 values but the header has 7 columns (an unquoted delimiter inside a value?)"),
        (13, "unclosed quote: its value ran into the next lines, which were read again one by one"),
        (15, "invalid email 'jane@acme': The part after the @-sign is not valid. It should have a period."),
        (17, "invalid email '@SUM(1)@acme.com': starts with '@', a spreadsheet formula character"),
    ]
    assert report.duplicates == [(8, 4)] and report.duplicates_in_file == 1
    assert report.existing_lines == [9] and report.already_existing == 1
    assert report.imported == 5
    _accounts_for_every_row(report)

    stored = {r["email"]: r for r in _leads(engine, client_id)}
    assert set(stored) == {"known@acme.com", "rené@acme.fr", "ok1@acme.com", "short@acme.com",
                           "after@acme.com", "nul@acme.com"}
    assert stored["known@acme.com"]["first_name"] == "Orig"  # an existing lead is never overwritten
    assert (stored["rené@acme.fr"]["first_name"], stored["rené@acme.fr"]["company_name"]) == ("René", "Café €uro")
    neutralised = stored["ok1@acme.com"]
    assert (neutralised["first_name"], neutralised["last_name"], neutralised["title"],
            neutralised["company_name"], neutralised["phone"]) == ("cmd()", "1", "SUM(A1:A9)", "2+3",
                                                                    "1+cmd|' /C calc'!A0")
    assert stored["nul@acme.com"]["first_name"] == "Null"


def test_rejects_csv_lists_every_row_not_imported_with_safe_values(engine, tmp_path):
    client_id = _client(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO leads (client_id, email) VALUES (:c, 'known@acme.com')"), {"c": client_id})
    report = import_csv(_hostile_file(tmp_path), client_name="acme", engine=engine)

    assert report.rejects_path == tmp_path / "hostile.rejects.csv"
    with report.rejects_path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "Email", "First Name", "Last Name", "Title", "Company", "Website", "Phone"]
    by_line = {int(r[0]): r for r in rows[1:]}
    assert sorted(by_line) == [3, 5, 6, 8, 9, 10, 12, 13, 15, 17]
    assert by_line[8][1] == "duplicate of line 4 (same email)"
    assert by_line[9][1] == "already exists for this client"
    assert by_line[3][2] == "cmd()@evil.com"  # the original value, made safe
    assert by_line[5][2:5] == ["not-an-email", "Ann", "Bad"]
    assert len(by_line[10][5]) == 20_000
    assert by_line[12][-1] == "surprise"
    for row in rows[1:]:
        assert all(not cell[:1] or cell[0] not in "=+-@\t\r" for cell in row), row


def test_rejects_file_goes_where_asked_and_stale_default_is_removed(engine, tmp_path):
    _client(engine)
    stale = tmp_path / "leads.rejects.csv"
    stale.write_text("old")
    clean = import_csv(_write(tmp_path, "Email\njane@acme.com\n"), client_name="acme", engine=engine)
    assert clean.rejects_path is None and not stale.exists()

    elsewhere = tmp_path / "out" / "why.csv"
    elsewhere.parent.mkdir()
    report = import_csv(_write(tmp_path, "Email\njane@acme.com\nnope\n"), client_name="acme", engine=engine,
                        rejects_path=elsewhere)
    assert report.rejects_path == elsewhere and not stale.exists()
    rows = list(csv.reader(elsewhere.open(encoding="utf-8-sig")))
    assert rows == [["line", "reason", "Email"], ["2", "already exists for this client", "jane@acme.com"],
                    ["3", "invalid email 'nope': there is no @-sign", "nope"]]


def test_missing_email_column_imports_nothing(engine, tmp_path):
    _client(engine)
    path = _write(tmp_path, "Name,Company,Phone\nJane Doe,Acme,123\n")
    with pytest.raises(MissingEmailColumn, match="'Name', 'Company', 'Phone'"):
        import_csv(path, client_name="acme", campaign_name="new", engine=engine)
    assert (_count(engine, "leads"), _count(engine, "campaigns")) == (0, 0)
    assert not (tmp_path / "leads.rejects.csv").exists()


def test_unknown_client_is_an_error_and_nothing_is_created(engine, tmp_path):
    _client(engine, "Acme")
    path = _write(tmp_path, "Email\njane@acme.com\n")
    with pytest.raises(NotFound, match="'acme' does not exist \\(did you mean 'Acme'\\?\\)"):
        import_csv(path, client_name="acme", campaign_name="new", engine=engine)
    assert (_count(engine, "leads"), _count(engine, "campaigns")) == (0, 0)


def test_same_email_in_another_client_is_not_a_duplicate(engine, tmp_path):
    _client(engine, "acme")
    other = _client(engine, "other")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO leads (client_id, email) VALUES (:c, 'jane@acme.com')"), {"c": other})
    report = import_csv(_write(tmp_path, "Email\njane@acme.com\n"), client_name="acme", engine=engine)
    assert (report.imported, report.already_existing) == (1, 0)


# -- the sample file and re-imports -----------------------------------------------------------


def _sample_module():
    spec = importlib.util.spec_from_file_location("make_sample_leads", ROOT / "bench" / "make_sample_leads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_file_imports_and_reimport_is_idempotent(engine, tmp_path):
    sample = _sample_module()
    client_id = _client(engine)
    path = tmp_path / "sample.csv"
    path.write_bytes(SAMPLE.read_bytes())

    first = import_csv(path, client_name="acme", campaign_name="sample", engine=engine)
    assert first.imported == sample.N_LEADS
    assert first.duplicates_in_file == sample.N_DUPLICATES
    assert len(first.rejected) == sample.N_INVALID
    assert first.unknown_columns == ["Lead Source"]
    _accounts_for_every_row(first)
    assert len(_leads(engine, client_id)) == sample.N_LEADS

    second = import_csv(path, client_name="acme", campaign_name="sample", engine=engine)
    assert (second.imported, second.already_existing) == (0, sample.N_LEADS)
    assert second.rejected == first.rejected and second.duplicates == first.duplicates
    assert len(_leads(engine, client_id)) == sample.N_LEADS


def test_a_hundred_thousand_rows(engine, tmp_path):
    client_id = _client(engine)
    n = 100_000
    lines = ["Email,First Name,Last Name,Title,Company,Website,Country"]
    lines += [f"person{i}@company{i % 997}.com,First{i},Last{i},VP Sales,Company {i % 997},"
              f"https://www.company{i % 997}.com,Germany" for i in range(n)]
    lines += ["PERSON7@company7.com,Dup,Licate,,,,", "broken@,Bad,Row,,,,", ""]
    path = _write(tmp_path, "\n".join(lines), "big.csv")
    progress: list[int] = []

    report = import_csv(path, client_name="acme", engine=engine, on_progress=progress.append)
    assert (report.total_rows, report.imported, report.duplicates_in_file) == (n + 2, n, 1)
    assert report.rejected == [(n + 3, "invalid email 'broken@': There must be something after the @-sign.")]
    assert report.duplicates == [(n + 2, 9)]
    assert len(progress) >= n // 1000 and progress[-1] == n + 2
    with engine.connect() as conn:
        count, domains = conn.execute(text("SELECT count(*), count(DISTINCT company_domain) FROM leads "
                                           "WHERE client_id = :c"), {"c": client_id}).one()
    assert (count, domains) == (n, 997)

    again = import_csv(path, client_name="acme", engine=engine)
    assert (again.imported, again.already_existing) == (0, n)


# -- the command line -------------------------------------------------------------------------


def _outbound() -> typer.Typer:
    """The whole `outbound` app: its root group turns import errors into one line on stderr."""
    from orchestrator.cli import app

    return app


def test_cli_imports_and_summarises(engine, tmp_path):
    _client(engine)
    path = _write(tmp_path, "Email,Name\njane@acme.com,Jane Doe\nbad,Bob\n")
    result = CliRunner().invoke(_outbound(), ["leads", "import", str(path), "--client", "acme", "--campaign", "q3"])
    assert result.exit_code == 0, result.output
    assert "imported" in result.output and "invalid email 'bad'" in result.output
    assert "leads.rejects.csv" in result.output
    assert _count(engine, "leads") == 1


@pytest.mark.parametrize(
    ("content", "client", "message"),
    [("Email\njane@acme.com\n", "nobody", "client 'nobody' does not exist"),
     ("Name\nJane\n", "acme", "no email column found")],
)
def test_cli_exits_1_with_a_clear_message(engine, tmp_path, content, client, message):
    _client(engine)
    result = CliRunner().invoke(_outbound(), ["leads", "import", str(_write(tmp_path, content)), "--client", client])
    assert result.exit_code == 1
    assert message in result.output
    assert _count(engine, "leads") == 0
