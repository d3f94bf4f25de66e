"""A campaign with known outcomes (every send status, reply, bounce, unsubscribe and verdict kind),
and the analytics figures it must give: shared by the analytics engine's tests and the console page's."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from shared.engines.campaigns import analytics, sequences
from shared.engines.mailboxes import mailboxes
from shared.engines.outreach import suppression
from shared.engines.replies import inbox, ingest
from shared.status import Verdict
from tests import factories

D0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday; 05:00 in New York


def _send(conn, client, campaign, lead, step, status, box, at):
    return conn.execute(text(
        "INSERT INTO messages (client_id, campaign_id, lead_id, step, mailbox_id, message_id, subject, status, "
        "reserved_at, sent_at, smtp_reply, error, retry_at) VALUES (:c, :camp, :l, :s, :m, :mid, 'Hello', :st, :at, "
        ":sent, :reply, :err, :retry) RETURNING id"),
        {"c": client, "camp": campaign, "l": lead, "s": step, "m": box, "st": status, "at": at,
         "mid": f"<{client}.{campaign}.{lead}.{step}@test>", "sent": at if status == "sent" else None,
         "reply": "250 ok" if status == "sent" else None,
         "err": {"failed": "550 refused", "deferred": "451 later"}.get(status),
         "retry": at if status == "deferred" else None}).scalar_one()


def _inbound(conn, client, campaign, lead, pk, kind, at, *, verified=True, outcome="acted"):
    conn.execute(text(
        "INSERT INTO inbound_messages (client_id, source, provider, webhook_id, dedupe_key, raw, raw_bytes, "
        "message_pk, lead_id, campaign_id, match_kind, kind, evidence, received_at, processed_at, outcome, verified) "
        "VALUES (:c, 'webhook', 'standard_webhooks', :w, :w, 'x', 1, :pk, :l, :camp, 'message_id', :k, 'test', "
        ":at, :at, :o, :v)"),
        {"c": client, "w": f"w{random.random()}", "pk": pk, "l": lead, "camp": campaign, "k": kind, "at": at,
         "o": outcome, "v": verified})


def _email(conn, lead):
    return conn.execute(text("SELECT email FROM leads WHERE id = :l"), {"l": lead}).scalar_one()


def _client_world(conn, name):
    """One client's campaign `q4` (4 steps, 10 enrolled leads), a second campaign `other`, a mailbox."""
    client = factories.client(conn, name)
    camp = factories.campaign(conn, client, "q4")
    other = factories.campaign(conn, client, "other")
    leads = factories.leads(conn, client, 10, campaign_id=camp)
    box = mailboxes.add_mailbox(conn, client, from_address=f"rep@{name}.test", smtp_host="h", smtp_port=25)
    for c in (camp, other):
        sequences.set_schedule(conn, client, c, weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17,
                               fallback_timezone="America/New_York")
    for step in (1, 2, 3, 4):
        sequences.set_step(conn, client, camp, step=step, subject="Hi", body="Hello", delay_amount=step - 1)
    sequences.set_step(conn, client, other, step=1, subject="Hi", body="Hello")
    conn.execute(text("INSERT INTO enrollments (client_id, campaign_id, lead_id, next_due_at, timezone, "
                      "timezone_source) SELECT :c, :camp, l, :at, 'UTC', 'test' FROM unnest(CAST(:ls AS bigint[])) l"),
                 {"c": client, "camp": camp, "ls": leads, "at": D0})
    return client, camp, other, leads, box


def known_outcomes(conn, name):
    """The campaign whose every figure the test below states (L1..L10 are its leads)."""
    client, camp, other, L, box = _client_world(conn, name)
    L = [None, *L]  # L[1]..L[10]
    day = [D0 + timedelta(days=n) for n in range(7)]
    s1 = {i: _send(conn, client, camp, L[i], 1, "sent", box, day[0]) for i in range(1, 9)}
    s1[9] = _send(conn, client, camp, L[9], 1, "failed", box, day[0])
    s1[10] = _send(conn, client, camp, L[10], 1, "in_doubt", box, day[0])
    # Step 1 is an A/B test: the odd leads got its own text (A), the even ones variant B.
    sequences.set_variant(conn, client, camp, 1, "B", "Hi again", "Hello there")
    conn.execute(text("UPDATE messages SET variant = CASE WHEN lead_id = ANY(:odd) THEN 'A' ELSE 'B' END "
                      "WHERE id = ANY(:ids)"), {"odd": L[1::2], "ids": list(s1.values())})
    s2 = {i: _send(conn, client, camp, L[i], 2, "sent", box, day[2]) for i in range(1, 6)}
    for i, status in ((6, "deferred"), (7, "unknown"), (8, "sending")):
        s2[i] = _send(conn, client, camp, L[i], 2, status, box, day[2])
    at3 = day[4].replace(hour=3)  # 22:00 the day before in New York
    s3 = {i: _send(conn, client, camp, L[i], 3, "sent", box, at3) for i in (1, 2)}
    s3[3] = _send(conn, client, camp, L[3], 3, "failed", box, at3)
    _inbound(conn, client, camp, L[1], s1[1], "human_reply", day[1].replace(hour=15))
    _inbound(conn, client, camp, L[2], s1[2], "human_reply", day[1].replace(hour=16), verified=None)  # pre-0011
    _inbound(conn, client, camp, L[2], s2[2], "human_reply", day[3].replace(hour=2))  # 21:00 NY, day 2
    _inbound(conn, client, camp, L[3], s1[3], "human_reply", day[1], verified=False, outcome=ingest.UNVERIFIED)
    _inbound(conn, client, camp, L[3], s1[3], "auto_reply", day[1])
    _inbound(conn, client, camp, L[4], s2[4], "hard_bounce", day[2].replace(hour=12))
    _inbound(conn, client, camp, L[5], s1[5], "soft_bounce", day[1])
    _inbound(conn, client, camp, L[5], s1[5], "hard_bounce", day[1], verified=False, outcome=ingest.UNVERIFIED)
    _inbound(conn, client, camp, L[6], s1[6], "unsubscribe_request", day[1])
    _inbound(conn, client, camp, L[7], s1[7], "human_reply", day[1], verified=None, outcome=ingest.OURS)
    _inbound(conn, client, camp, L[8], s1[8], "complaint", day[1])
    # One-click: L3's latest delivered send is step 2 (step 3 failed); L10's is its in-doubt step 1;
    # L9's only send here failed and its latest is in `other`; L5's suppression was imported.
    o9 = _send(conn, client, other, L[9], 1, "sent", box, day[3])
    o1 = _send(conn, client, other, L[1], 1, "sent", box, day[3])
    _inbound(conn, client, other, L[1], o1, "human_reply", day[3])
    for i, source in ((3, suppression.ONE_CLICK_SOURCE), (10, suppression.ONE_CLICK_SOURCE),
                      (9, suppression.ONE_CLICK_SOURCE), (5, "import:dnc.csv")):
        suppression.suppress(conn, client, _email(conn, L[i]), reason="unsubscribed", source=source)
    assert o9
    # Verdicts: the newest counts (L2: not interested, then interested, in one transaction: the id breaks
    # the tie); L3's only reply is unverified, so its verdict makes no positive reply.
    inbox.mark(conn, L[1], Verdict.INTERESTED, by="test")
    inbox.mark(conn, L[2], Verdict.NOT_INTERESTED, by="test")
    inbox.mark(conn, L[2], Verdict.INTERESTED, by="test")
    inbox.mark(conn, L[3], Verdict.INTERESTED, by="test")
    inbox.mark(conn, L[4], Verdict.WRONG_PERSON, by="test")
    return client, camp


def figures(**kw):
    base = dict.fromkeys(analytics.COUNTS, 0) | kw
    return base | {"rates": analytics.rates(base)}


EXPECTED_STEPS = [
    {"step": 1} | figures(enrolled=10, contacted=8, sent=8, replied=2, positive=2, unsubscribed=2, complained=1,
                           in_doubt=1, failed=1) | {"variants": [
        # A: L1 (replied, interested), L3, L5, L7 sent, L9 failed; `enrolled`: the leads assigned the variant.
        {"variant": "A"} | figures(enrolled=5, contacted=4, sent=4, replied=1, positive=1, failed=1),
        # B: L2 (replied, interested), L4, L6 (unsubscribed), L8 (complained) sent; L10 in doubt, one-click.
        {"variant": "B"} | figures(enrolled=5, contacted=4, sent=4, replied=1, positive=1, unsubscribed=2,
                                   complained=1, in_doubt=1)]},
    {"step": 2, "variants": []} | figures(enrolled=8, contacted=5, sent=5, replied=1, positive=1, bounced=1,
                                          unsubscribed=1, in_doubt=2, deferred=1),
    {"step": 3, "variants": []} | figures(enrolled=5, contacted=2, sent=2, failed=1),
    {"step": 4, "variants": []} | figures(enrolled=2),
]
EXPECTED_TOTALS = figures(enrolled=10, contacted=8, sent=15, replied=2, positive=2, bounced=1, unsubscribed=3,
                           complained=1, in_doubt=3, failed=2, deferred=1)


def into_recent_days(conn) -> datetime:
    """A page's daily series ends today: move the fixed week of outcomes (whole weeks, so the weekdays and
    the hours stay) to end within the last fortnight. Returns the moved D0."""
    weeks = max(0, (datetime.now(UTC) - D0).days - 14) // 7
    by = timedelta(weeks=weeks)
    conn.execute(text("UPDATE messages SET reserved_at = reserved_at + :by, sent_at = sent_at + :by, "
                      "retry_at = retry_at + :by"), {"by": by})
    conn.execute(text("UPDATE inbound_messages SET received_at = received_at + :by, processed_at = processed_at + :by"),
                 {"by": by})
    return D0 + by
