"""`make demo`'s job, end to end on the test database: import, batch, flow, summary, logs, export."""

from __future__ import annotations

import csv

import pytest

from demo.run import SAMPLE, run_demo
from shared.errors import SignInRefused

pytestmark = pytest.mark.integration


def test_demo_runs_the_main_job(engine, prefect_harness, env, tmp_path):
    env(DATA_DIR=str(tmp_path))
    rows = SAMPLE.read_text(encoding="utf-8").splitlines()
    small = tmp_path / "leads.csv"
    small.write_text("\n".join(rows[:301]) + "\n", encoding="utf-8")  # header + 300 rows, some bad

    summary = run_demo(leads_csv=small, latency_ms=0, credits=100)

    assert summary["status"] == "completed"
    assert summary["credits_spent"] <= 100
    assert summary["skip_reasons"].get("no_credits", 0) > 0  # credits ran out mid-batch
    log = next((tmp_path / "logs").glob("batch-*.log")).read_text()
    assert "lead_id=" in log and "item_id=" in log and "batch_id=" in log
    exported = list(csv.DictReader(next(tmp_path.glob("batch-*.csv")).open()))
    assert len(exported) == summary["total"]
    assert (tmp_path / "leads.rejects.csv").exists()
    outreach = summary["outreach"]  # part two: a simulated week of the sequence on the local SMTP sink
    assert outreach["sent"] > 0 and outreach["delivered"] == outreach["sent"]
    assert outreach["sent_after_unsubscribe"] == 0
    replies = outreach["replies"]  # part three: webhook and IMAP-only replies, a bounce, one recovery run
    events = replies["events"]
    assert [e["http"] for e in events if e["path"] == "webhook"] == ["200"] * 3
    imap_only = [e for e in events if e["path"] == "imap only"]
    assert replies["backfilled"] == {"replies": sum(e["event"] == "reply" for e in imap_only),
                                     "bounces": sum(e["event"] == "hard_bounce" for e in imap_only), "complaints": 0}
    stopped = [replies["per_lead"][e["email"]] for e in events if e["event"] in ("reply", "hard_bounce")]
    assert stopped and all(p["enrollment"].startswith("stopped") and p["not_sent"] > 0 for p in stopped)
    assert all(replies["per_lead"][e["email"]]["enrollment"] == "active" for e in events if e["event"] == "auto_reply")
    # part four: the console's accounts on the demo's data, and they sign in
    from shared.engines.users import users
    from shared.db import get_engine

    with get_engine().begin() as conn:
        operator = users.authenticate(conn, summary["console"]["operator"], summary["console"]["password"])
        viewer = users.authenticate(conn, summary["console"]["viewer"], summary["console"]["viewer_password"])
    assert operator.is_operator and viewer.client_name == "Demo Agency"
    # each account has its own password: the viewer's does not open the operator account (issue 17)
    assert summary["console"]["viewer_password"] != summary["console"]["password"]
    with get_engine().begin() as conn:
        with pytest.raises(SignInRefused):
            users.authenticate(conn, summary["console"]["operator"], summary["console"]["viewer_password"])
    # the demo's settings and log handler were for the demo only
    import logging
    import os

    assert "SANDBOX_URL" not in os.environ and "PROVIDER_ORDER" not in os.environ
    assert logging.getLogger("shared").handlers == []
