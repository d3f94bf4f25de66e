"""One SMTP connection per mailbox per chunk (smtp.Session), against real local servers.

A session is reused across messages with RSET between them; a session the server dropped while
idle is replaced by a fresh one for the next message, which then fares as on a connection of its
own; an answered refusal keeps the session, and silence after the final dot closes it (in doubt).
Through the send engine, a chunk's messages from one mailbox share one connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from orchestrator.flows.outreach import outreach_pass
from shared.engines.campaigns import campaigns, sequences
from shared.engines.mailboxes.mailboxes import add_mailbox
from shared.engines.outreach import store
from shared.errors import BOUNCED, IN_DOUBT, SmtpError
from shared.integrations import smtp
from tests import factories
from tests.email_servers import Faults, ScriptedSmtp, free_port

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


@dataclass
class CountingSmtp(ScriptedSmtp):
    """The scripted server, also counting RSETs, and able to hang up right after a 250 (`hang_up_after`)."""

    rsets: int = 0
    hang_up_after: int = 0  # close the connection right after the n-th accepted message's 250; 0: never

    async def handle_RSET(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        with self.lock:
            self.rsets += 1
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        answer = await super().handle_DATA(server, session, envelope)
        if answer.startswith("250") and len(self.accepted) == self.hang_up_after:
            asyncio.get_running_loop().call_soon(server.transport.close)  # after the 250 is written
        return answer


def _message(to: str, n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "rep@acme.test", to, f"m{n}", f"<m{n}@acme.test>"
    msg.set_content("Hi.")
    return msg


def _serve(handler: ScriptedSmtp) -> tuple[Controller, smtp.SmtpAccount]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, smtp.SmtpAccount("127.0.0.1", port, "none", None, None)


@pytest.fixture
def server():
    handler = CountingSmtp()
    controller, account = _serve(handler)
    try:
        yield handler, account
    finally:
        controller.stop()


def _send(session: smtp.Session, to: str, n: int) -> str:
    return session.send(_message(to, n), envelope_from="rep@acme.test", recipient=to)


def test_one_connection_carries_many_messages_with_rset_between(server):
    handler, account = server
    with smtp.Session(account, timeout=5) as session:
        replies = [_send(session, f"p{i}@example.com", i) for i in range(5)]
    assert all(r.startswith("250") for r in replies)
    assert handler.sessions == 1 and session.connections == 1
    assert handler.rsets == 4  # between messages, not before the first
    assert [m["Message-ID"] for _, _, m in handler.accepted] == [f"<m{i}@acme.test>" for i in range(5)]


def test_a_server_that_hangs_up_after_the_first_250_gets_the_next_message_on_a_fresh_connection(server):
    handler, account = server
    handler.hang_up_after = 1
    with smtp.Session(account, timeout=5) as session:
        first = _send(session, "a@example.com", 1)
        second = _send(session, "b@example.com", 2)  # RSET finds the connection gone: nothing was offered yet
    assert first.startswith("250") and second.startswith("250")
    assert handler.sessions == 2 and session.connections == 2
    assert [rcpt for _, rcpt, _ in handler.accepted] == [["a@example.com"], ["b@example.com"]]


def test_a_refusal_keeps_the_session_and_silence_after_the_dot_closes_it(server):
    handler, account = server
    handler.faults = Faults(unknown={"gone@example.com"}, drop_after_dot={"maybe@example.com"})
    with smtp.Session(account, timeout=5) as session:
        with pytest.raises(SmtpError) as bounced:
            _send(session, "gone@example.com", 1)
        assert _send(session, "ok@example.com", 2).startswith("250")
        assert handler.sessions == 1  # an answered 550 leaves the session in a known state
        with pytest.raises(SmtpError) as doubt:
            _send(session, "maybe@example.com", 3)
        assert _send(session, "after@example.com", 4).startswith("250")
    assert bounced.value.outcome == BOUNCED and bounced.value.stage == "rcpt"
    assert doubt.value.outcome == IN_DOUBT and doubt.value.stage == "dot"
    assert handler.sessions == 2  # the in-doubt session was closed; the next message opened a fresh one


def test_connection_refused_is_a_mailbox_failure_for_the_message_it_hit():
    account = smtp.SmtpAccount("127.0.0.1", free_port(), "none", None, None)  # nothing listens there
    with smtp.Session(account, timeout=5) as session:
        with pytest.raises(SmtpError) as refused:
            _send(session, "a@example.com", 1)
    assert refused.value.outcome == smtp.MAILBOX and refused.value.stage == "connect"
    assert session.connections == 0 and session.client is None


def test_a_chunk_sends_one_mailboxs_messages_over_one_connection(engine, env, server):
    handler, account = server
    env(OUTREACH_SECRET="session-secret", PUBLIC_BASE_URL="https://unsub.example.test", LOCAL_WORKERS="1")
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        factories.leads(conn, client, 6, campaign_id=campaign)
        add_mailbox(conn, client, from_address="rep@acme.test", smtp_host=account.host, smtp_port=account.port,
                    tls_mode="none", daily_cap=500, min_gap_seconds=0, jitter_seconds=0,
                    ramp_started_at=START - timedelta(days=30))
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
        sequences.set_step(conn, client, campaign, step=1, subject="Hello {{ first_name }}", body="Hi.")
        store.enroll(conn, client, campaign, now=START)
        assert campaigns.activate(conn, client, campaign) == []
    result = outreach_pass.fn(START, True, campaign, 20)
    assert result["sent"] == 6 and result["chunks"] == 1
    assert handler.sessions == 1 and handler.rsets == 5 and len(handler.accepted) == 6
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT status, count(*) FROM messages GROUP BY 1")).all()
    assert statuses == [("sent", 6)]
