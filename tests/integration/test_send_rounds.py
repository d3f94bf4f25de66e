"""A send chunk in rounds of one item per mailbox, against real Postgres and real local SMTP servers.

What a round must keep: a mailbox's messages still go one at a time (each committed 'sent' before
that mailbox's next one is prepared), the round's mailboxes are delivered side by side, the
connections are pooled between chunks, and concurrent renewals and finishes of the same items
never deadlock.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from shared import workitems
from shared.engines.campaigns import campaigns, sequences
from shared.engines.mailboxes import mailboxes
from shared.engines.outreach import scheduler, sending, store, suppression
from shared.integrations import smtp
from shared.workitems import Started
from tests import factories
from tests.email_servers import free_port

pytestmark = pytest.mark.integration

MONDAY_10_UTC = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@dataclass
class SlowSink:
    """Accepts everything after `delay` seconds per message, recording how many DATA were in progress at once."""

    delay: float = 0.0
    accepted: list[str] = field(default_factory=list)
    in_progress: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        with self.lock:
            self.in_progress += 1
            self.most_at_once = max(self.most_at_once, self.in_progress)
        await asyncio.sleep(self.delay)
        with self.lock:
            self.in_progress -= 1
            self.accepted.append(envelope.rcpt_tos[0])
        return "250 2.0.0 Ok"


@pytest.fixture
def slow_sink():
    handler, port = SlowSink(delay=0.3), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _campaign(engine, env, port: int, *, leads: int, boxes: int) -> dict:
    env(OUTREACH_SECRET="rounds-secret", PUBLIC_BASE_URL="https://unsub.example.test")
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        campaign = factories.campaign(conn, client, "seq", status="draft")
        lead_ids = factories.leads(conn, client, leads, campaign_id=campaign)
        box_ids = [mailboxes.add_mailbox(conn, client, from_address=f"rep{i}@acme.test", smtp_host="127.0.0.1",
                                         smtp_port=port, tls_mode="none", daily_cap=500, min_gap_seconds=0,
                                         jitter_seconds=0, ramp_started_at=MONDAY_10_UTC - timedelta(days=30))
                   for i in range(boxes)]
        sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=0, end_hour=24,
                               fallback_timezone="UTC")
        sequences.set_step(conn, client, campaign, step=1, subject="Hello {{ first_name }}", body="Hi.")
        store.enroll(conn, client, campaign, now=MONDAY_10_UTC)
        assert campaigns.activate(conn, client, campaign) == []
        inputs = store.planning_inputs(conn, MONDAY_10_UTC)
        plan = scheduler.due_sends(MONDAY_10_UTC, inputs.candidates, inputs.windows, inputs.mailboxes)
        (batch,) = store.enqueue_sends(conn, plan.sends)
        items = [c.id for c in workitems.claim(conn, batch, 1000)]
    return {"client": client, "leads": lead_ids, "boxes": box_ids, "items": items}


def test_rounds_take_each_item_once_and_at_most_one_per_mailbox_in_order():
    items = [Started(i, i, 1, 1, 7, mailbox_id=m) for i, m in enumerate([1, 1, 2, 1, 3, 2, 2, None, None])]
    rounds = sending.rounds(items)
    assert [[i.id for i in r] for r in rounds] == [[0, 2, 4, 7], [1, 5, 8], [3, 6]]
    other_client = [Started(1, 1, 1, 1, 7, mailbox_id=1), Started(2, 2, 1, 1, 8, mailbox_id=1)]
    assert [[i.id for i in r] for r in sending.rounds(other_client)] == [[1], [2]]  # one client per round


def test_a_mailboxs_next_message_is_prepared_only_after_its_last_one_is_committed_sent(engine, env, slow_sink):
    """Between each 250 and its round's commit, every earlier message of the same mailbox is already 'sent'
    for any other connection to see, and no later one of it exists yet."""
    handler, port = slow_sink
    handler.delay = 0.0
    world = _campaign(engine, env, port, leads=6, boxes=2)
    seen: list[tuple[int, list[str], int]] = []

    def check(message_pk: int) -> None:
        with engine.connect() as conn:
            box = conn.execute(text("SELECT mailbox_id FROM messages WHERE id = :m"), {"m": message_pk}).scalar_one()
            earlier = conn.execute(text("SELECT status FROM messages WHERE mailbox_id = :b AND id < :m"),
                                   {"b": box, "m": message_pk}).scalars().all()
            later = conn.execute(text("SELECT count(*) FROM messages WHERE mailbox_id = :b AND id > :m"),
                                 {"b": box, "m": message_pk}).scalar_one()
        seen.append((message_pk, earlier, later))

    report = sending.send_chunk(world["items"], now=MONDAY_10_UTC, after_reply=check)
    assert report.sent == 6 and len(handler.accepted) == 6
    assert len(seen) == 6
    assert all(set(earlier) <= {"sent"} and later == 0 for _, earlier, later in seen)
    assert sorted(len(earlier) for _, earlier, _ in seen) == [0, 0, 1, 1, 2, 2]  # three rounds of two


def test_a_rounds_mailboxes_are_delivered_side_by_side(engine, env, slow_sink):
    handler, port = slow_sink
    world = _campaign(engine, env, port, leads=4, boxes=4)
    report = sending.send_chunk(world["items"], now=MONDAY_10_UTC)
    assert report.sent == 4 and sorted(handler.accepted) == sorted(f"person{i}@example.com" for i in range(1, 5))
    assert handler.most_at_once == 4  # one round: its four messages were in the server at the same time


def test_sessions_are_kept_between_chunks_and_a_closed_one_is_not(slow_sink):
    handler, port = slow_sink
    pool = smtp.SessionPool(idle_seconds=60)
    account = smtp.SmtpAccount("127.0.0.1", port, "none", None, None)
    first = pool.take(account, timeout=5)
    assert first.client is None  # not connected until it sends
    handler.delay = 0.0
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "rep@acme.test", "a@example.com", "s"
    msg.set_content("x")
    first.send(msg, envelope_from="rep@acme.test", recipient="a@example.com")
    pool.give(first)
    assert pool.take(account, timeout=5) is first  # reused
    other = pool.take(account, timeout=5)
    assert other is not first  # the first one is taken: a second sender gets its own
    first.close()
    pool.give(first)  # closed: not kept
    assert pool.take(account, timeout=5) is not first
    first.send(msg, envelope_from="rep@acme.test", recipient="a@example.com")
    stale = smtp.SessionPool(idle_seconds=0)
    stale.give(first)
    assert stale.take(account, timeout=5) is not first and first.client is None  # idle too long: closed
    pool.close()


def test_renewals_and_finishes_of_the_same_items_from_two_connections_never_deadlock(engine, env, slow_sink):
    _, port = slow_sink
    world = _campaign(engine, env, port, leads=400, boxes=3)
    with engine.begin() as conn:
        started, _ = workitems.start(conn, world["items"], worker_id="w", lease_seconds=60)
    held = [(s.id, s.attempt) for s in started]
    errors: list[BaseException] = []

    def renew(order: list[tuple[int, int]]) -> None:
        try:
            for _ in range(40):
                with engine.begin() as conn:
                    workitems.extend_lease(conn, order, lease_seconds=60)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=renew, args=(held,)), threading.Thread(target=renew, args=(held[::-1],))]
    for th in threads:
        th.start()
    with engine.begin() as conn:  # and a finish in reverse order while both renew
        moved = workitems.finish(conn, [workitems.Outcome(i, a, "SKIPPED", skip_reason="test") for i, a in held[::-1]])
    for th in threads:
        th.join()
    assert errors == [] and sorted(moved.moved) == sorted(i for i, _ in held)


def test_suppression_reasons_for_many_addresses_prefer_the_address_entry(engine):
    with engine.begin() as conn:
        client = factories.client(conn, "acme")
        other = factories.client(conn, "other")
        suppression.suppress(conn, client, "acme-corp.example", reason="whole domain", source="test")
        suppression.suppress(conn, client, "Ann@acme-corp.example", reason="asked", source="test")
        suppression.suppress(conn, other, "bob@else.example", reason="other client's", source="test")
        found = suppression.reasons(conn, client, ["ANN@acme-corp.example", "zed@acme-corp.example",
                                                   "bob@else.example", "ann@acme-corp.example"])
    assert found == {"ANN@acme-corp.example": "asked", "zed@acme-corp.example": "whole domain",
                     "ann@acme-corp.example": "asked"}
