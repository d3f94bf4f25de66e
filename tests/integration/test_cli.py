"""The `outbound` CLI: every command has --help, and the batch commands work on a real database."""

from __future__ import annotations

import csv

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from orchestrator.cli import app
from tests import factories

runner = CliRunner()


def _all_commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from _all_commands(cmd, (*prefix, name))


def test_every_command_has_help():
    paths = list(_all_commands(get_command(app)))
    assert ("batch", "status") in paths and ("db", "upgrade") in paths and ("demo",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


@pytest.mark.integration
def test_client_campaign_batch_status_and_export(engine, tmp_path):
    assert runner.invoke(app, ["clients", "add", "acme", "--credits", "40"]).exit_code == 0
    out = runner.invoke(app, ["clients", "topup", "acme", "10", "--key", "pay_1"])
    assert "balance 50" in out.output
    again = runner.invoke(app, ["clients", "topup", "acme", "10", "--key", "pay_1"])
    assert "already applied" in again.output and "balance 50" in again.output
    icp = tmp_path / "icp.json"
    icp.write_text('{"seniorites": ["vp"]}')
    bad = runner.invoke(app, ["campaigns", "add", "acme", "q4", "--icp", str(icp)])
    assert bad.exit_code == 1 and "seniorites" in bad.output
    with engine.begin() as conn:
        factories.leads(conn, 1, 5)
    created = runner.invoke(app, ["batch", "create", "--client", "acme"])
    assert created.exit_code == 0, created.output
    batch_id = created.output.strip()
    status = runner.invoke(app, ["batch", "status", batch_id])
    assert status.exit_code == 0 and "PENDING" in status.output
    out_csv = tmp_path / "out.csv"
    exported = runner.invoke(app, ["batch", "export", batch_id, str(out_csv)])
    assert exported.exit_code == 0 and "wrote 5 rows" in exported.output
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 5 and rows[0]["item_status"] == "PENDING"
    missing = runner.invoke(app, ["batch", "status", "999999"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    nobody = runner.invoke(app, ["batch", "create", "--client", "nobody"])
    assert nobody.exit_code == 1 and "'nobody' does not exist" in nobody.output


@pytest.mark.integration
def test_batch_run_shows_progress_and_the_real_summary(engine, prefect_harness, env):
    """A draft batch run by id is run (the operator asked); run again, it only shows its summary."""
    env(PROVIDER_ORDER="heuristics")
    with engine.begin() as conn:
        client = factories.client(conn, credits=100)
        campaign = factories.campaign(conn, client)
        batch = factories.batch(conn, client, factories.leads(conn, client, 20, campaign_id=campaign),
                                campaign_id=campaign)
    result = runner.invoke(app, ["batch", "run", str(batch), "--batch-size", "5"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"batch {batch}" in result.stdout and "20/20" in result.stdout  # the progress bar's last frame
    assert f"Batch {batch}: completed" in result.stdout
    again = runner.invoke(app, ["batch", "run", str(batch)], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and f"batch {batch} is already completed" in again.stdout
