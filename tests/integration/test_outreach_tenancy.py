"""Outreach rows cannot join two clients: Postgres refuses them; a token reaches only its own client."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.engines.outreach import suppression
from shared.engines.mailboxes import mailboxes
from shared.engines.campaigns import sequences
from tests import factories

pytestmark = pytest.mark.integration


def _two_clients(conn):
    a, b = factories.client(conn, "a"), factories.client(conn, "b")
    camp_a = factories.campaign(conn, a, "qa")
    lead_b = factories.leads(conn, b, 1, domain="b.test")[0]
    box_a = mailboxes.add_mailbox(conn, a, from_address="rep@a.test", smtp_host="h", smtp_port=25)
    return a, b, camp_a, lead_b, box_a


@pytest.mark.parametrize("statement", [
    # a message of client A to client B's lead
    "INSERT INTO messages (client_id, campaign_id, lead_id, step, mailbox_id, message_id, subject, reserved_at) "
    "VALUES (:a, :camp, :lead_b, 1, :box, '<x@a.test>', 's', now())",
    # a send item in B's name using A's mailbox
    "INSERT INTO work_items (client_id, batch_id, lead_id, step, mailbox_id) SELECT :b, "
    "(SELECT id FROM batches LIMIT 1), :lead_b, 1, :box",
    # B's lead enrolled in A's sequence
    "INSERT INTO enrollments (client_id, campaign_id, lead_id, next_due_at, timezone, timezone_source) "
    "VALUES (:a, :camp, :lead_b, now(), 'UTC', 'x')",
])
def test_cross_tenant_outreach_rows_are_refused(engine, statement):
    with engine.begin() as conn:
        a, b, camp_a, lead_b, box_a = _two_clients(conn)
        sequences.set_schedule(conn, a, camp_a)
        conn.execute(text("INSERT INTO batches (client_id, kind, status) VALUES (:b, 'send', 'running')"), {"b": b})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(statement), {"a": a, "b": b, "camp": camp_a, "lead_b": lead_b, "box": box_a})


def test_suppression_is_per_client(engine):
    with engine.begin() as conn:
        a, b = factories.client(conn, "a"), factories.client(conn, "b")
        suppression.suppress(conn, a, "@shared.test", reason="dnc", source="test")
        assert suppression.is_suppressed(conn, a, "ann@shared.test") == "dnc"
        assert suppression.is_suppressed(conn, b, "ann@shared.test") is None


def test_a_token_for_another_message_id_is_refused():
    token = suppression.make_token(7, "k")
    assert suppression.read_token(token, "k") == 7
    assert suppression.read_token(token, "other key") is None
    assert suppression.read_token("8." + token.split(".")[1], "k") is None
    assert suppression.read_token("7", "k") is None and suppression.read_token("", "k") is None
