"""Lead import against size and shape attacks: a million rows in bounded memory, odd encodings and headers.

The million-row test is the slow one (about 70-90 s on the 2-core dev machine: the import runs at
~15k rows/s, dominated by email validation); it runs in `make test` because the memory bound is a
promise the import makes (importer.MEMORY_CEILING_BYTES).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.engines.leads.importer import MEMORY_CEILING_BYTES, import_csv
from shared.errors import NotARegularFile
from tests import factories

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MILLION = 1_000_000

# Runs in a fresh interpreter; its peak is VmHWM, the high-water mark of this process's own memory
# (ru_maxrss would not do: Linux carries the forking parent's peak over exec, so a big pytest
# process would be measured instead of the import).
_CHILD = """
import json, sys, time
from pathlib import Path
from shared.engines.leads.importer import import_csv
started = time.perf_counter()
report = import_csv(Path(sys.argv[1]), client_name="acme")
print(json.dumps({
    "total": report.total_rows, "imported": report.imported, "rejected": report.rejected_count,
    "duplicates": report.duplicates_in_file, "first_rejected": report.rejected[:2],
    "kept_in_report": len(report.rejected), "rejects_path": str(report.rejects_path),
    "seconds": time.perf_counter() - started,
    "peak_rss_bytes": next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                           if line.startswith("VmHWM:")),
}))
"""


def _million_row_csv(path: Path) -> tuple[int, int]:
    """Every 1000th row has a broken email, every 997th repeats the row before; returns (rejects, duplicates)."""
    rejects = duplicates = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("Email,First Name,Last Name,Title,Company,Website,Country\n")
        chunk: list[str] = []
        for i in range(MILLION):
            if i % 1000 == 999:
                chunk.append(f"broken{i}@,Bad,Row,,,,\n")
                rejects += 1
            elif i % 997 == 996 and (i - 1) % 1000 != 999:
                chunk.append(f"person{i - 1}@company{(i - 1) % 997}.com,Dup,Licate,,,,\n")
                duplicates += 1
            else:
                chunk.append(f"person{i}@company{i % 997}.com,First{i},Last{i},VP Sales,Company {i % 997},"
                             f"https://www.company{i % 997}.com,Germany\n")
            if len(chunk) == 10_000:
                handle.write("".join(chunk))
                chunk.clear()
        handle.write("".join(chunk))
    return rejects, duplicates


def test_a_million_rows_import_in_bounded_memory(engine, database_url, tmp_path):
    with engine.begin() as conn:
        client = factories.client(conn)
    source = tmp_path / "million.csv"
    rejects, duplicates = _million_row_csv(source)
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", _CHILD, str(source)], env=env, capture_output=True, text=True,
                           cwd=ROOT, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"\n1M-row import: {result['seconds']:.1f} s, peak RSS {result['peak_rss_bytes'] / 2**20:.0f} MiB")

    assert result["peak_rss_bytes"] < MEMORY_CEILING_BYTES, result
    assert (result["total"], result["rejected"], result["duplicates"]) == (MILLION, rejects, duplicates)
    assert result["imported"] == MILLION - rejects - duplicates
    assert result["first_rejected"][0] == [1001, "invalid email 'broken999@': There must be something after the @-sign."]
    assert result["kept_in_report"] == 1000  # the report keeps the first ones; the rejects file has all
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads WHERE client_id = :c"),
                            {"c": client}).scalar() == result["imported"]
    with open(result["rejects_path"], encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 1 + rejects + duplicates
    assert [int(r[0]) for r in rows[1:]] == sorted(int(r[0]) for r in rows[1:])  # in line order


def test_special_files_are_refused_before_reading(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a named pipe (FIFO)"), (Path("/dev/zero"), "a device"), (tmp_path, "a folder")):
        with pytest.raises(NotARegularFile, match=f"is {kind.replace('(', '.').replace(')', '.')}, not a regular file"):
            import_csv(path, client_name="acme", engine=engine)


def test_an_overlong_line_is_rejected_alone(engine, tmp_path, monkeypatch):
    from shared.engines.leads import importer

    monkeypatch.setattr(importer, "MAX_LINE_BYTES", 4096)
    with engine.begin() as conn:
        factories.client(conn)
    path = tmp_path / "long.csv"
    path.write_text("Email,Notes\nbefore@acme.com,ok\nlong@acme.com," + "x" * 50_000 + "\nafter@acme.com,ok\n")
    report = import_csv(path, client_name="acme", engine=engine)
    assert (report.imported, report.rejected_count) == (2, 1)
    assert report.rejected == [(3, "line is longer than 4,096 bytes: not read")]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_recognised(engine, tmp_path, encoding):
    with engine.begin() as conn:
        client = factories.client(conn)
    path = tmp_path / "wide.csv"
    path.write_bytes("Email,First Name,Last Name,Company\r\nzoe@acme.com,Zoë,Ångström,Café Ünïcode\r\n"
                     "li@acme.cn,李,王,北京公司\r\n".encode(encoding))
    report = import_csv(path, client_name="acme", engine=engine)
    assert (report.encoding, report.imported, report.rejected) == (encoding, 2, [])
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT email, first_name, last_name, company_name FROM leads "
                                 "WHERE client_id = :c ORDER BY id"), {"c": client}).all()
    assert [tuple(r) for r in rows] == [("zoe@acme.com", "Zoë", "Ångström", "Café Ünïcode"),
                                        ("li@acme.cn", "李", "王", "北京公司")]


def test_duplicate_name_columns_are_never_merged_into_one_person(engine, tmp_path):
    with engine.begin() as conn:
        client = factories.client(conn)
    path = tmp_path / "both.csv"
    path.write_text("Email,first_name,Name,Email Address\n"
                    "jane@acme.com,Jane,Bob Smith,other@acme.com\n"  # first name given: Name is not mixed in
                    "bob@acme.com,,Bob Smith,\n"  # no first/last: the full name is used whole
                    ",,Ann Lee,ann@acme.com\n")  # first email column empty: the second one is used
    report = import_csv(path, client_name="acme", engine=engine)
    assert report.imported == 3
    assert any("'Name' (a full name) is used only in rows where 'first_name' are empty" in w for w in report.warnings)
    assert any("'Email' and 'Email Address' all hold email" in w for w in report.warnings)
    with engine.connect() as conn:
        people = {r.email: (r.first_name, r.last_name) for r in conn.execute(
            text("SELECT email, first_name, last_name FROM leads WHERE client_id = :c"), {"c": client})}
    assert people == {"jane@acme.com": ("Jane", None), "bob@acme.com": ("Bob", "Smith"), "ann@acme.com": ("Ann", "Lee")}


def test_names_lose_line_breaks_and_escapes(engine, tmp_path):
    with engine.begin() as conn:
        client = factories.client(conn)
    path = tmp_path / "names.csv"
    path.write_text('Email,First Name,Last Name,Title,Company\n'
                    'a@acme.com,"Jane\r\nIgnore previous","Doe\x1b[31m",VP\u202eSales,"Acme\nSuite 4"\n',
                    newline="")
    report = import_csv(path, client_name="acme", engine=engine)
    assert report.imported == 1
    with engine.connect() as conn:
        row = conn.execute(text("SELECT first_name, last_name, title, company_name FROM leads WHERE client_id = :c"),
                           {"c": client}).one()
    # every text field is one line, the company too (issue 17: it kept its newline)
    assert tuple(row) == ("Jane Ignore previous", "Doe [31m", "VP Sales", "Acme Suite 4")
