"""The `outbound` CLI against bad input and hostile data: one-line errors, literal output, nothing overwritten.

Each test performs the mistake or the attack through the real command line on a real Postgres and
then checks that the database and the files are as they were (or as exactly asked).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli import common as cli_common
from shared import migrate
from shared.engines.campaigns import campaigns
from shared.csvsafe import FORMULA_CHARS
from shared.engines.clients import clients
from tests import factories

pytestmark = pytest.mark.integration

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # rich tables wrap at the terminal width; the tests read whole rows


def _run(*args: str):
    return runner.invoke(app, list(args), env=WIDE)


def _one_line_error(result, exit_code: int, *needles: str) -> str:
    """The result failed with `exit_code`, wrote ONE line on stderr naming each needle, no traceback."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


# -- 10.7: errors are one line on stderr, usage errors exit 2 ----------------------------------


def test_bad_choices_are_usage_errors_and_change_nothing(engine):
    _one_line_error(_run("clients", "add", "acme", "--subscription", "bogus"), 2, "bogus", "--subscription")
    assert _scalar(engine, "SELECT count(*) FROM clients") == 0
    assert _run("clients", "add", "acme").exit_code == 0
    _one_line_error(_run("campaigns", "add", "acme", "q4", "--status", "bogus"), 2, "bogus", "--status")
    _one_line_error(_run("clients", "topup", "acme", "-5", "--key", "k"), 2, "-5")
    _one_line_error(_run("clients", "update", "acme", "--subscription", "free"), 2, "free")
    assert _scalar(engine, "SELECT count(*) FROM campaigns") == 0
    assert _scalar(engine, "SELECT subscription_status FROM clients") == "active"


def test_icp_problems_are_one_line_naming_the_file_or_field(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    cases = {
        "missing": (tmp_path / "nope.json", "No such file"),
        "folder": (folder, "not a regular file"),
        "device": (Path("/dev/zero"), "not a regular file"),
        "not json": (_file(tmp_path, "bad.json", "{nope"), "not valid JSON"),
        "typo": (_file(tmp_path, "typo.json", '{"seniorites": ["vp"]}'), "seniorites"),
        "huge number": (_file(tmp_path, "big.json", '{"company_size": {"max": 1' + "0" * 400 + "}}"),
                        "company_size.max"),
        "1e400": (_file(tmp_path, "inf.json", '{"company_size": {"min": 1e400}}'), "company_size.min"),
        "too long a list": (_file(tmp_path, "long.json", json.dumps({"title_keywords": ["k"] * 5000})),
                            "title_keywords"),
        "10 MB": (_file(tmp_path, "ten.json", json.dumps({"industries": ["x" * 100] * 100_000})), "limit"),
    }
    for name, (path, needle) in cases.items():
        result = _run("campaigns", "add", "acme", "q4", "--icp", str(path))
        _one_line_error(result, 1, needle)
    assert _scalar(engine, "SELECT count(*) FROM campaigns") == 0


def test_missing_client_campaign_and_batch_are_one_line(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn)
    _one_line_error(_run("clients", "topup", "nobody", "5", "--key", "k"), 1, "'nobody' does not exist")
    _one_line_error(_run("clients", "update", "nobody", "--subscription", "active"), 1, "'nobody'")
    _one_line_error(_run("campaigns", "update", "acme", "nope", "--status", "paused"), 1, "'nope' does not exist")
    _one_line_error(_run("campaigns", "status", "acme", "nope", "paused"), 1, "'nope' does not exist")
    for command in (["batch", "status", "424242"], ["batch", "run", "424242"], ["batch", "launch", "424242"],
                    ["batch", "export", "424242", str(tmp_path / "x.csv")]):
        _one_line_error(_run(*command), 1, "batch 424242 does not exist")
    assert not (tmp_path / "x.csv").exists()
    _one_line_error(_run("batch", "status", "not-a-number"), 2, "batch_id", "valid integer")


def test_fresh_embedded_database_is_migrated_and_a_configured_one_is_not(engine, database_url, monkeypatch):
    name = f"outbound_test_fresh_{os.getpid()}"  # the conftest's orphan sweep knows this shape
    fresh = _fresh_database(database_url, name)
    try:
        # DATABASE_URL: not ours to migrate. One line says what to run; the database stays empty.
        monkeypatch.setenv("DATABASE_URL", fresh)
        _reset(monkeypatch)
        _one_line_error(_run("clients", "list"), 1, "run: outbound db upgrade")
        assert migrate.current(fresh) is None
        # The embedded database (no DATABASE_URL): migrated on first use, then the command works.
        monkeypatch.delenv("DATABASE_URL")
        _reset(monkeypatch)
        monkeypatch.setattr("shared.db.database_url", lambda: fresh)
        result = _run("clients", "add", "first")
        assert result.exit_code == 0, result.output
        assert "migrated the embedded database" in result.stderr
        assert migrate.current(fresh) is not None
        listed = _run("clients", "list", "--json")
        assert [c["name"] for c in json.loads(listed.stdout)] == ["first"]
    finally:
        from shared.settings import reset_settings

        monkeypatch.undo()  # DATABASE_URL back to the test database, database_url() unpatched
        reset_settings()
        cli_common._ready.clear()
        _drop_database(database_url, name)


def test_status_commands_speak_json(engine):
    with engine.begin() as conn:
        client = factories.client(conn, credits=7)
        camp = factories.campaign(conn, client)
        batch = factories.batch(conn, client, factories.leads(conn, client, 3, campaign_id=camp), campaign_id=camp)
    status = json.loads(_run("batch", "status", str(batch), "--json").stdout)
    assert (status["batch_id"], status["total"], status["counts"]) == (batch, 3, {"PENDING": 3})
    clients = json.loads(_run("clients", "list", "--json").stdout)
    assert clients == [{"id": client, "name": "acme", "ok": True, "reason": None, "credits": 7}]
    campaigns = json.loads(_run("campaigns", "list", "--json").stdout)
    assert campaigns == [{"id": camp, "client": "acme", "name": "q4", "status": "active", "status_reason": None,
                         "paused_at": None, "leads": 3}]


def test_batch_run_on_a_finished_batch_shows_its_summary_and_runs_nothing(engine):
    with engine.begin() as conn:
        client = factories.client(conn)
        batch = factories.batch(conn, client, factories.leads(conn, client, 2))
        conn.execute(text("UPDATE work_items SET status = 'SKIPPED', skip_reason = 'no_credits' WHERE batch_id = :b"),
                     {"b": batch})
        conn.execute(text("UPDATE batches SET status = 'completed', finished_at = now() WHERE id = :b"), {"b": batch})
    result = _run("batch", "run", str(batch))
    assert result.exit_code == 0, result.output
    assert f"batch {batch} is already completed" in result.stdout
    assert "SKIPPED" in result.stdout and "no_credits" in result.stdout
    assert _scalar(engine, "SELECT flow_run_id FROM batches WHERE id = :b", b=batch) is None


# -- 11.4: database text is shown literally ----------------------------------------------------

HOSTILE_NAMES = {
    "[/bogus]": "[/bogus]",
    "[link=https://evil.example]Acme Corp[/link]": "[link=https://evil.example]Acme Corp[/link]",
    "[bold red]admin[/bold red]": "[bold red]admin[/bold red]",
    "\x1b[31mred\x1b[0m\x1b]8;;https://evil.example\x07x": "\\x1b[31mred\\x1b[0m\\x1b]8;;https://evil.example\\x07x",
    "two\nlines\r\nthree": "two\\nlines\\r\\nthree",
    "\u202eevil.exe": "\\u202eevil.exe",
    "fake\\nbreak": "fake\\\\nbreak",  # a typed backslash-n is not shown as if it were a line break
}


def test_hostile_client_names_are_shown_literally(engine):
    with engine.begin() as conn:
        for name in HOSTILE_NAMES:
            client = clients.create_client(conn, name, credits=1)
            campaigns.create_campaign(conn, client, name)
    for command in (["clients", "list"], ["campaigns", "list"]):
        result = _run(*command)
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
        for shown in HOSTILE_NAMES.values():
            assert shown in out, (shown, out)
        # Each client is one row: the newline inside a name did not add lines.
        data_rows = [line for line in out.splitlines() if line.startswith("│")]
        assert len(data_rows) == len(HOSTILE_NAMES)
    exact = {c["name"] for c in json.loads(_run("clients", "list", "--json").stdout)}
    assert exact == set(HOSTILE_NAMES)
    # Messages echo names literally too, and errors stay one line.
    result = _run("clients", "add", "two\nlines\r\nthree")
    _one_line_error(result, 1, "already exists")
    assert "\x1b" not in _run("clients", "topup", "\x1b[31mred\x1b[0m\x1b]8;;https://evil.example\x07x", "1",
                              "--key", "k").output


# -- 11.5: formula injection through a locale's separator ----------------------------------------

PAYLOAD = "x;=cmd|' /C calc'!A0;y"


def _cells_as_excel_reads_them(path: Path, delimiter: str) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [cell for row in csv.reader(handle, delimiter=delimiter) for cell in row]


def test_export_quotes_cells_so_no_locale_splits_out_a_formula(engine, tmp_path):
    with engine.begin() as conn:
        client = factories.client(conn)
        lead = factories.leads(conn, client, 1)[0]
        conn.execute(text("UPDATE leads SET first_name = :p, last_name = :t, company_name = :c WHERE id = :i"),
                     {"p": PAYLOAD, "t": "a\t=1+1\tb", "c": "Acme|=HYPERLINK(\"http://evil\")|x", "i": lead})
        batch = factories.batch(conn, client, [lead])
    out = tmp_path / "out.csv"
    assert _run("batch", "export", str(batch), str(out)).exit_code == 0
    assert '"x;\'=cmd|\' /C calc\'!A0;y"' in out.read_text()  # quoted, and the inner formula prefixed
    for delimiter in (",", ";", "\t", "|"):
        for cell in _cells_as_excel_reads_them(out, delimiter):
            head = cell.lstrip()
            assert not (head and head[0] in FORMULA_CHARS), (delimiter, cell)
    rows = list(csv.DictReader(out.open(newline="")))
    assert rows[0]["first_name"] == "x;'=cmd|' /C calc'!A0;y"  # OWASP's ' where a cell could start
    assert rows[0]["last_name"] == "a\t'=1+1\tb"


def test_rejects_file_quotes_cells_too(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn)
    source = _file(tmp_path, "in.csv", f'Email,Name\nnot-an-email,"{PAYLOAD}"\n')
    assert _run("leads", "import", str(source), "--client", "acme").exit_code == 0
    rejects = tmp_path / "in.rejects.csv"
    for delimiter in (",", ";", "\t", "|"):
        for cell in _cells_as_excel_reads_them(rejects, delimiter):
            head = cell.lstrip()
            assert not (head and head[0] in FORMULA_CHARS), (delimiter, cell)


# -- 11.6: create and update are separate intents ------------------------------------------------


def test_adding_an_existing_client_changes_nothing(engine):
    assert _run("clients", "add", "beta", "--credits", "100").exit_code == 0
    assert "subscription cancelled" not in _run("clients", "update", "beta", "--subscription", "cancelled").output
    _one_line_error(_run("clients", "add", "beta", "--credits", "100"), 1, "'beta' already exists",
                    "clients update")
    row = _client_row(engine, "beta")
    assert (row.subscription_status, row.credit_balance) == ("cancelled", 100)
    changed = _run("clients", "update", "beta", "--subscription", "active")
    assert "subscription cancelled -> active" in changed.stdout
    assert "nothing changed" in _run("clients", "update", "beta").stdout
    assert _client_row(engine, "beta").credit_balance == 100


def test_campaign_add_and_update_touch_only_what_they_name(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn)
    icp = _file(tmp_path, "icp.json", '{"seniorities": ["vp"], "countries": ["US"]}')
    assert _run("campaigns", "add", "acme", "q4", "--icp", str(icp)).exit_code == 0
    assert _run("campaigns", "status", "acme", "q4", "paused").exit_code == 0
    # Re-running `add` (with or without --icp) is refused and changes nothing.
    _one_line_error(_run("campaigns", "add", "acme", "q4"), 1, "'q4' already exists")
    _one_line_error(_run("campaigns", "add", "acme", "q4", "--icp", str(icp)), 1, "already exists")
    assert _campaign_row(engine) == ("paused", {"seniorities": ["vp"], "countries": ["US"]})
    # update without --icp keeps the ICP; with --icp only, keeps the status.
    assert "status paused -> active" in _run("campaigns", "update", "acme", "q4", "--status", "active").stdout
    assert _campaign_row(engine) == ("active", {"seniorities": ["vp"], "countries": ["US"]})
    assert _run("campaigns", "status", "acme", "q4", "paused").exit_code == 0
    other = _file(tmp_path, "other.json", '{"seniorities": ["director"]}')
    changed = _run("campaigns", "update", "acme", "q4", "--icp", str(other))
    assert "icp" in changed.stdout and "status" not in changed.stdout
    assert _campaign_row(engine) == ("paused", {"seniorities": ["director"]})
    assert "nothing changed" in _run("campaigns", "update", "acme", "q4").stdout


def test_repeated_topup_says_already_applied_and_a_different_amount_is_refused(engine):
    assert _run("clients", "add", "acme").exit_code == 0
    first = _run("clients", "topup", "acme", "10", "--key", "pay-1")
    assert "client acme: added 10 credits (key pay-1); balance 10" in first.stdout
    again = _run("clients", "topup", "acme", "10", "--key", "pay-1")
    assert again.exit_code == 0
    assert "key pay-1 already applied (10 credits), nothing added; balance 10" in again.stdout
    _one_line_error(_run("clients", "topup", "acme", "25", "--key", "pay-1"), 1,
                    "already applied for 10 credits", "25 were not added")
    assert _client_row(engine, "acme").credit_balance == 10


# -- 11.7: top-up keys are per client -------------------------------------------------------------


def test_the_same_payment_key_for_two_clients_applies_to_both(engine):
    assert _run("clients", "add", "alpha").exit_code == 0
    assert _run("clients", "add", "bravo").exit_code == 0
    a = _run("clients", "topup", "alpha", "10", "--key", "pay-123")
    b = _run("clients", "topup", "bravo", "20", "--key", "pay-123")
    assert "client alpha: added 10 credits (key pay-123); balance 10" in a.stdout
    assert "client bravo: added 20 credits (key pay-123); balance 20" in b.stdout
    assert (_client_row(engine, "alpha").credit_balance, _client_row(engine, "bravo").credit_balance) == (10, 20)
    again = _run("clients", "topup", "bravo", "20", "--key", "pay-123")
    assert "client bravo: key pay-123 already applied (20 credits)" in again.stdout


# -- 11.8: files -----------------------------------------------------------------------------------


def _exportable_batch(engine, n: int = 3) -> int:
    with engine.begin() as conn:
        client = factories.client(conn)
        return factories.batch(conn, client, factories.leads(conn, client, n))


def test_export_refuses_an_existing_file_unless_forced(engine, tmp_path):
    batch = _exportable_batch(engine)
    out = _file(tmp_path, "out.csv", "precious\n")
    _one_line_error(_run("batch", "export", str(batch), str(out)), 1, str(out), "already exists", "--force")
    assert out.read_text() == "precious\n"
    assert _run("batch", "export", str(batch), str(out), "--force").exit_code == 0
    assert len(list(csv.DictReader(out.open(newline="")))) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left behind


def test_export_never_writes_through_a_planted_symlink(engine, tmp_path):
    batch = _exportable_batch(engine)
    victim = _file(tmp_path, "victim.txt", "do not touch\n")
    out = tmp_path / "out.csv"
    out.symlink_to(victim)
    _one_line_error(_run("batch", "export", str(batch), str(out)), 1, "a symlink with that name already exists")
    assert victim.read_text() == "do not touch\n" and out.is_symlink()
    assert _run("batch", "export", str(batch), str(out), "--force").exit_code == 0
    assert victim.read_text() == "do not touch\n"
    assert not out.is_symlink() and out.read_text().startswith('"item_id"')
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "would-be-created.txt")
    _one_line_error(_run("batch", "export", str(batch), str(dangling)), 1, "already exists")
    assert not (tmp_path / "would-be-created.txt").exists()


def test_export_into_a_missing_folder_is_one_line(engine, tmp_path):
    batch = _exportable_batch(engine)
    _one_line_error(_run("batch", "export", str(batch), str(tmp_path / "no" / "such" / "out.csv")), 1,
                    "the folder does not exist")


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(engine, tmp_path):
    batch = _exportable_batch(engine, 400)
    disk = tmp_path / "tiny"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        _one_line_error(_run("batch", "export", str(batch), str(disk / "out.csv")), 1,
                        "no space left on the device")
        assert os.listdir(disk) == []  # neither a partial out.csv nor a temp file
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_rejects_file_never_writes_through_a_planted_symlink(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn)
    victim = _file(tmp_path, "victim.txt", "do not touch\n")
    (tmp_path / "leads.rejects.csv").symlink_to(victim)
    source = _file(tmp_path, "leads.csv", "Email,Name\nok@acme.com,Ok\nbroken,Bad\n")
    result = _run("leads", "import", str(source), "--client", "acme")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "do not touch\n"
    rejects = tmp_path / "leads.rejects.csv"
    assert not rejects.is_symlink()
    assert list(csv.reader(rejects.open(encoding="utf-8-sig", newline="")))[1][:3] == [
        "3", "invalid email 'broken': there is no @-sign", "broken"]


# -- 11.9: special files ---------------------------------------------------------------------------


def test_fifo_and_devices_are_refused_up_front(engine, tmp_path):
    with engine.begin() as conn:
        factories.client(conn)
    fifo = tmp_path / "leads.csv"
    os.mkfifo(fifo)  # nobody writes to it: reading it would wait forever
    _one_line_error(_run("leads", "import", str(fifo), "--client", "acme"), 1, "named pipe", "not a regular file")
    _one_line_error(_run("leads", "import", "/dev/zero", "--client", "acme"), 1, "a device", "not a regular file")
    assert _scalar(engine, "SELECT count(*) FROM leads") == 0


# -- helpers ---------------------------------------------------------------------------------------


def _file(folder: Path, name: str, content: str) -> Path:
    path = folder / name
    path.write_text(content, encoding="utf-8")
    return path


def _client_row(engine, name: str):
    with engine.connect() as conn:
        return conn.execute(text("SELECT subscription_status, credit_balance FROM clients WHERE name = :n"),
                            {"n": name}).one()


def _campaign_row(engine) -> tuple[str, dict]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, icp FROM campaigns")).one()
    return row.status, row.icp


def _reset(monkeypatch) -> None:
    from shared.settings import reset_settings

    reset_settings()
    monkeypatch.setattr(cli_common, "_ready", set())


def _admin(database_url: str):
    return create_engine(make_url(database_url).set(database="postgres"), poolclass=pool.NullPool,
                         isolation_level="AUTOCOMMIT")


def _fresh_database(database_url: str, name: str) -> str:
    admin = _admin(database_url)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(database_url: str, name: str) -> None:
    from shared import db

    db.dispose_engines()
    admin = _admin(database_url)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()

