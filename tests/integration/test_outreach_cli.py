"""`outbound mailboxes`, `sequences`, `suppressions` through the real CLI and Postgres."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from orchestrator.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_mailboxes_add_list_pause_resume(engine):
    assert runner.invoke(app, ["clients", "add", "acme"]).exit_code == 0
    out = runner.invoke(app, ["mailboxes", "add", "acme", "Rep@Acme.test", "--host", "smtp.acme.test",
                              "--secret-name", "SMTP_PASSWORD_REP", "--daily-cap", "40", "--ramp-start", "10",
                              "--ramp-step", "5", "--ramp-ceiling", "30"])
    assert out.exit_code == 0, out.output
    bad = runner.invoke(app, ["mailboxes", "add", "acme", "x@acme.test", "--host", "h", "--tls", "ssl3"])
    assert bad.exit_code == 2 and "tls mode" in bad.output
    assert runner.invoke(app, ["mailboxes", "pause", "acme", "rep@acme.test", "--reason", "bounce rate 6%"]).exit_code == 0
    rows = json.loads(runner.invoke(app, ["mailboxes", "list", "acme", "--json"]).output)
    assert rows[0]["from_address"] == "rep@acme.test" and rows[0]["cap_now"] == 10
    assert (rows[0]["status"], rows[0]["status_reason"]) == ("paused", "bounce rate 6%")
    assert rows[0]["secret_name"] == "SMTP_PASSWORD_REP" and "password" not in rows[0]
    assert runner.invoke(app, ["mailboxes", "resume", "acme", "rep@acme.test"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["mailboxes", "list", "acme", "--json"]).output)[0]["status"] == "active"


def test_suppressions_import_and_export(engine, tmp_path):
    assert runner.invoke(app, ["clients", "add", "acme"]).exit_code == 0
    path = tmp_path / "dnc.csv"
    path.write_text("value\nAnn@X.com\n@competitor.com\nnot an address\n")
    out = runner.invoke(app, ["suppressions", "import", "acme", str(path)])
    assert out.exit_code == 0 and "2 new suppressions (1 rejected)" in out.output
    assert "line 4" in out.output
    exported = runner.invoke(app, ["suppressions", "export", "acme"]).output
    assert exported.startswith('"kind","value","reason","source","created_at"')  # the console's export too
    assert '"email","ann@x.com"' in exported and '"domain","competitor.com"' in exported
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM suppressions")).scalar() == 2
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("value\nren\xe9@x.com\nbob@x.com\n".encode("latin-1"))
    out = runner.invoke(app, ["suppressions", "import", "acme", str(latin1)])
    assert out.exit_code == 2 and "is not UTF-8 text" in out.output and out.output.count("\n") == 1, out.output
    with engine.connect() as conn:  # nothing of an unreadable file is imported
        assert conn.execute(text("SELECT count(*) FROM suppressions")).scalar() == 2


def test_suppressions_import_refuses_special_files_before_reading(engine, tmp_path):
    """A FIFO or /dev/zero used to hang the import (read whole); refused up front like lead imports."""
    import os

    assert runner.invoke(app, ["clients", "add", "acme"]).exit_code == 0
    fifo = tmp_path / "dnc.csv"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a named pipe"), ("/dev/zero", "a device")):
        out = runner.invoke(app, ["suppressions", "import", "acme", str(path)])
        assert out.exit_code == 1 and f"is {kind}" in out.output and out.output.count("\n") == 1, out.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM suppressions")).scalar() == 0


def test_activate_refuses_naming_lead_and_variable_then_forecast_prints(engine, tmp_path):
    assert runner.invoke(app, ["clients", "add", "acme"]).exit_code == 0
    assert runner.invoke(app, ["campaigns", "add", "acme", "q4", "--status", "draft"]).exit_code == 0
    with engine.begin() as conn:
        from tests import factories

        client = conn.execute(text("SELECT id FROM clients")).scalar()
        campaign = conn.execute(text("SELECT id FROM campaigns")).scalar()
        (lead,) = factories.leads(conn, client, 1, campaign_id=campaign)
        conn.execute(text("UPDATE leads SET title = NULL WHERE id = :l"), {"l": lead})
    assert runner.invoke(app, ["mailboxes", "add", "acme", "rep@acme.test", "--host", "h"]).exit_code == 0
    body = tmp_path / "b.txt"
    body.write_text("Hi {{ first_name }}, as {{ title }} you…")
    bad = runner.invoke(app, ["sequences", "step", "acme", "q4", "1", "--subject", "{{ oops", "--body", str(body)])
    assert bad.exit_code == 2 and "step 1 subject" in bad.output
    assert runner.invoke(app, ["sequences", "step", "acme", "q4", "1", "--subject", "Hi", "--body", str(body)]).exit_code == 0
    refused = runner.invoke(app, ["sequences", "activate", "acme", "q4"])
    assert refused.exit_code == 1
    assert f"lead {lead} person1@example.com: step 1 needs {{{{ title }}}}" in refused.output
    forecast = runner.invoke(app, ["campaigns", "forecast", "q4", "--client", "acme", "--json"])
    assert forecast.exit_code == 0, forecast.output
    data = json.loads(forecast.output)
    assert data["leads"] == 1 and sum(sum(d.values()) for d in data["per_day"].values()) == 1
