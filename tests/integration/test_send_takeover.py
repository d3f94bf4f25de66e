"""A sending process killed with SIGKILL mid-run: the rerun sends the rest at once, the in-doubt ones never.

Real parts: Postgres, the aiosmtpd sink on a socket (slow: 0.2 s before each 250, so the kill lands
mid-conversation), the real `outreach_pass` in its own process with the local executor's threads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from orchestrator.flows.outreach import outreach_pass
from shared import leases
from shared.engines.campaigns import campaigns
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from shared.engines.outreach import store
from tests import factories
from tests.email_sink import smtp_sink

pytestmark = pytest.mark.integration

SECRET = "test-outreach-secret"
MONDAY_10_UTC = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LEADS = 40

SENDER = """
import sys
from datetime import datetime
from orchestrator.flows.outreach import outreach_pass
outreach_pass.fn(datetime.fromisoformat(sys.argv[1]), True)
"""


@pytest.fixture
def slow_sink():
    with smtp_sink(delay_seconds=0.2) as (sink, port):
        yield sink, port


@pytest.fixture
def campaign(engine, env, slow_sink):
    settings = {"OUTREACH_SECRET": SECRET, "PUBLIC_BASE_URL": "https://unsub.example.test", "LOCAL_WORKERS": "2",
                "OUTREACH_CHUNK_SIZE": "10"}
    env(**settings)
    _, port = slow_sink
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        camp = factories.campaign(conn, client, "seq", status="draft")
        leads = factories.leads(conn, client, LEADS, campaign_id=camp)
        for i in (1, 2):
            mailboxes.add_mailbox(conn, client, from_address=f"rep{i}@acme.test", from_name=f"Rep {i}",
                              smtp_host="127.0.0.1", smtp_port=port, tls_mode="none", daily_cap=500,
                              min_gap_seconds=0, jitter_seconds=0, ramp_started_at=MONDAY_10_UTC - timedelta(days=60))
        sequences.set_schedule(conn, client, camp, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17,
                           fallback_timezone="UTC")
        sequences.set_step(conn, client, camp, step=1, subject="Hello {{ first_name }}", body="Hi {{ first_name }}.")
        store.enroll(conn, client, camp, now=MONDAY_10_UTC)
        assert campaigns.activate(conn, client, camp) == []
    return {"leads": leads, "env": settings}


def _rows(engine, sql: str, **params):
    with engine.begin() as conn:
        return conn.execute(text(sql), params).all()


def test_kill_9_mid_send_then_rerun_sends_the_rest_at_once_and_never_the_in_doubt(engine, database_url, slow_sink,
                                                                                   campaign):
    sink, _ = slow_sink
    env = {**os.environ, **campaign["env"], "DATABASE_URL": database_url, "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-c", SENDER, MONDAY_10_UTC.isoformat()], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # Mid-conversation: some messages went out, one is 'sending' (the sink holds each 0.2 s before its 250).
        while len(sink.messages) < 8 or not _rows(engine, "SELECT 1 FROM messages WHERE status = 'sending'"):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the sender never got going"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    received_at_kill = Counter(rcpt[0] for _, rcpt, _ in sink.messages)
    by_status = dict(_rows(engine, "SELECT status, count(*) FROM messages GROUP BY 1"))
    sending_at_kill = {r.lead_id for r in _rows(engine, "SELECT lead_id FROM messages WHERE status = 'sending'")}
    held = _rows(engine, "SELECT count(*) AS n, min(extract(epoch FROM lease_until - now())) AS left_s "
                         "FROM work_items WHERE status = 'IN_PROGRESS'")[0]
    assert sending_at_kill  # killed with a message whose DATA may have run: in doubt
    assert held.n > 0 and held.left_s > 5  # the dead sender's items, their leases still running
    assert held.left_s <= leases.SEND_LEASE_SECONDS  # short leases (renewed while it lived), not 5 minutes

    t0 = time.monotonic()
    result = outreach_pass.fn(MONDAY_10_UTC, True)
    rerun_seconds = time.monotonic() - t0

    emails = dict(_rows(engine, "SELECT id, email FROM leads"))
    received = Counter(rcpt[0] for _, rcpt, _ in sink.messages)
    in_doubt = {emails[lead] for lead in sending_at_kill}
    assert max(received.values()) == 1, received.most_common(3)  # at most once, whatever happened
    for lead, email in emails.items():
        if email in in_doubt:
            assert received[email] == received_at_kill[email]  # the rerun never resent it
        else:
            assert received[email] == 1, f"lead {lead} {email} got {received[email]}"
    statuses = dict(_rows(engine, "SELECT lead_id, status FROM messages"))
    assert {statuses[lead] for lead in sending_at_kill} <= {"in_doubt"}
    held_leads = {r.lead_id for r in _rows(engine, "SELECT lead_id FROM enrollments WHERE status = 'held'")}
    assert held_leads == sending_at_kill
    assert result["sent"] == LEADS - by_status.get("sent", 0) - len(sending_at_kill)
    # The rerun did not wait for the leases: it finished before the killed sender's would have run out.
    assert rerun_seconds < held.left_s, f"rerun took {rerun_seconds:.1f} s, leases had {held.left_s:.1f} s left"
    details = {r.last_error.split(" (")[0] for r in _rows(engine, "SELECT last_error FROM work_items "
                                                                   "WHERE last_error LIKE 'handed back%'")}
    assert details == {"handed back: its worker is gone"}
