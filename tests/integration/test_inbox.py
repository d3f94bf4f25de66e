"""The inbox (issue 19) on real Postgres: mail ingested through the one ingest path, read back page by page,
as an operator and as each client's viewer (row-level security), marked, reclassified, and from the CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from typer.testing import CliRunner

from orchestrator.cli import app
from shared import db, mailids, migrate
from shared.engines.campaigns import sequences
from shared.engines.leads import story
from shared.engines.mailboxes import mailboxes
from shared.engines.outreach import store
from shared.engines.replies import inbox, ingest
from shared.engines.replies.webhooks import parse_message
from shared.engines.users.users import Principal
from shared.errors import InboxRefused, NotFound
from shared.settings import get_settings
from tests import factories
from tests.replies_mail import dsn, reply

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ID_SECRET = "inbox-test-message-id-secret"
runner = CliRunner()


def _client_world(conn, name: str, n_leads: int = 3) -> dict:
    """One client: two campaigns (the second without sends), two mailboxes, leads enrolled, step 1 sent to each."""
    client = factories.client(conn, name)
    campaign = factories.campaign(conn, client, "seq", status="draft")
    other = factories.campaign(conn, client, "other", status="draft")
    leads = factories.leads(conn, client, n_leads, campaign_id=campaign, domain=f"{name}-leads.test")
    boxes = [mailboxes.add_mailbox(conn, client, from_address=f"rep{i}@{name}.test", smtp_host="127.0.0.1",
                                   smtp_port=25, tls_mode="none") for i in (1, 2)]
    sequences.set_schedule(conn, client, campaign, weekdays=[1, 2, 3, 4, 5], start_hour=0, end_hour=24,
                           fallback_timezone="UTC")
    sequences.set_step(conn, client, campaign, step=1, subject="Hello {{ first_name }}", body="Hi.")
    sequences.set_step(conn, client, campaign, step=2, subject="x", body="Again.", delay_amount=2, delay_unit="days")
    store.enroll(conn, client, campaign, now=NOW)
    sends = {}
    for i, lead in enumerate(leads):
        email = conn.execute(text("SELECT email FROM leads WHERE id = :l"), {"l": lead}).scalar_one()
        sends[lead] = _send(conn, client, campaign, lead, boxes[i % 2], 1, email,
                            mailids.message_id(campaign, lead, 1, f"{name}.test", ID_SECRET))
    return {"client": client, "campaign": campaign, "other": other, "leads": leads, "boxes": boxes, "sends": sends}


def _send(conn, client, campaign, lead, box, step, email, message_id) -> dict:
    pk = conn.execute(
        text("INSERT INTO messages (client_id, campaign_id, lead_id, step, mailbox_id, message_id, subject, status, "
             "smtp_reply, reserved_at, sent_at) VALUES (:c, :camp, :l, :s, :b, :mid, 'Hello', 'sent', '250 ok', :t, :t) "
             "RETURNING id"),
        {"c": client, "camp": campaign, "l": lead, "s": step, "b": box, "mid": message_id, "t": NOW}).scalar_one()
    box_address = conn.execute(text("SELECT from_address FROM mailboxes WHERE id = :b"), {"b": box}).scalar_one()
    return {"pk": pk, "email": email, "message_id": message_id, "box": box, "box_address": box_address, "step": step}


@pytest.fixture
def world(engine, env):
    env(OUTREACH_SECRET="inbox-test-outreach-secret")
    with engine.begin() as conn:
        return {"A": _client_world(conn, "acme"), "B": _client_world(conn, "globex", n_leads=2)}


def _ingest(engine, raw: bytes, at: datetime | None = None) -> ingest.Ingested:
    received = ingest.Received(raw, parse_message(raw), "webhook", provider="standard_webhooks",
                               webhook_id=f"msg_{uuid.uuid4().hex}")
    result = ingest.ingest(engine, received, settings=get_settings(), now=NOW + timedelta(hours=1))
    if at is not None:  # received at a chosen time, so the order is the test's, not the clock's
        with engine.begin() as conn:
            conn.execute(text("UPDATE inbound_messages SET received_at = :t WHERE id = :i"),
                         {"t": at, "i": result.inbound_id})
    return result


def _reply(engine, send: dict, body: str = "Sounds good, let's talk.", at: datetime | None = None, **kw):
    return _ingest(engine, reply(frm=send["email"], to=send["box_address"], subject="Re: Hello",
                                 in_reply_to=send["message_id"], body=body, **kw), at)


def _bounce(engine, send: dict, status: str = "5.1.1", at: datetime | None = None):
    return _ingest(engine, dsn(recipient=send["email"], original_message_id=send["message_id"],
                               original_subject="Hello", to=send["box_address"], status=status), at)


def viewer(client_id: int) -> Principal:
    return Principal(user_id=0, email=f"viewer-{client_id}@client.test", role="viewer", client_id=client_id,
                     client_name=None, session_epoch=1)


OPERATOR = Principal(user_id=0, email="ops@agency.test", role="operator", client_id=None, client_name=None,
                     session_epoch=1)


def _page(engine, role=OPERATOR, **kw) -> inbox.Page:
    with db.transaction(engine, role=role) as conn:
        return inbox.inbound(conn, **kw)


@pytest.fixture
def mail(engine, world):
    """A's mail: a reply, an unverified reply, a hard bounce, a soft bounce, our own copy; B's: one reply."""
    a, b = world["A"], world["B"]
    l1, l2, l3 = a["leads"]
    with engine.begin() as conn:  # step 2 to lead 2 went out under a legacy (uuid5) id: quoting it proves nothing
        legacy = _send(conn, a["client"], a["campaign"], l2, a["boxes"][1], 2, a["sends"][l2]["email"],
                       mailids.legacy_message_id(a["campaign"], l2, 2, "acme.test"))
    t = NOW + timedelta(hours=1)
    ids = {
        "reply": _reply(engine, a["sends"][l1], at=t).inbound_id,
        "unverified": _reply(engine, legacy, body="Who is this?", at=t + timedelta(minutes=1)).inbound_id,
        "hard": _bounce(engine, a["sends"][l3], at=t + timedelta(minutes=2)).inbound_id,
        "soft": _bounce(engine, a["sends"][l2], status="4.2.2", at=t + timedelta(minutes=3)).inbound_id,
        "b_reply": _reply(engine, b["sends"][b["leads"][0]], body="globex-private reply", at=t).inbound_id,
    }
    ours = _ingest(engine, reply(frm=a["sends"][l1]["box_address"], to=a["sends"][l1]["email"], subject="Re: Hello",
                                 in_reply_to=a["sends"][l1]["message_id"], body="Following up."), t + timedelta(minutes=4))
    assert ours.ours
    ids["ours"] = ours.inbound_id
    return ids


# -- the list ------------------------------------------------------------------------------------


def test_the_inbox_lists_newest_first_with_what_each_row_needs(engine, world, mail):
    a = world["A"]
    page = _page(engine, client_id=a["client"])
    assert [r["id"] for r in page.rows] == [mail["soft"], mail["hard"], mail["unverified"], mail["reply"]]
    assert page.next is None  # our own follow-up read back is not in the inbox
    row = next(r for r in page.rows if r["id"] == mail["reply"])
    send = a["sends"][a["leads"][0]]
    assert (row["kind"], row["verified"], row["campaign"], row["mailbox"], row["lead"], row["step"], row["verdict"]) == (
        "human_reply", True, "seq", send["box_address"], send["email"], 1, None)
    assert row["from_address"] == send["email"] and row["subject"] == "Re: Hello" and row["client"] == "acme"
    unverified = next(r for r in page.rows if r["id"] == mail["unverified"])
    assert (unverified["verified"], unverified["step"]) == (False, 2)  # it answered step 2
    hard = next(r for r in page.rows if r["id"] == mail["hard"])
    assert (hard["kind"], hard["reason"]) == ("hard_bounce", "user_unknown")
    # An operator without --client sees both clients; webhook mail that matched nothing is not here.
    _ingest(engine, reply(frm="stranger@nowhere.test", to="rep1@acme.test", subject="hi", in_reply_to=None))
    everyone = _page(engine)
    assert {r["client"] for r in everyone.rows} == {"acme", "globex"} and len(everyone.rows) == 5


def test_every_filter(engine, world, mail):
    a = world["A"]

    def ids(**kw):
        return [r["id"] for r in _page(engine, client_id=a["client"], **kw).rows]

    assert ids(kind="human_reply") == [mail["unverified"], mail["reply"]]
    assert ids(kind="hard_bounce") == [mail["hard"]]
    assert ids(kind="complaint") == []
    assert ids(unverified=True) == [mail["unverified"]]
    assert ids(unverified=False) == [mail["soft"], mail["hard"], mail["reply"]]
    assert ids(campaign_id=a["campaign"]) == [mail["soft"], mail["hard"], mail["unverified"], mail["reply"]]
    assert ids(campaign_id=a["other"]) == []
    box1, box2 = a["boxes"]
    assert ids(mailbox_id=box1) == [mail["hard"], mail["reply"]]  # leads 1 and 3 were sent from rep1
    assert ids(mailbox_id=box2) == [mail["soft"], mail["unverified"]]
    assert ids(kind="human_reply", mailbox_id=box2, unverified=True) == [mail["unverified"]]
    assert [r["id"] for r in _page(engine, client_id=world["B"]["client"]).rows] == [mail["b_reply"]]
    with pytest.raises(ValueError, match="unknown class"):
        _page(engine, kind="spam")


def test_keyset_paging_has_no_gaps_or_repeats_even_on_equal_times_and_new_mail(engine, world, mail):
    a = world["A"]
    for i in range(7):  # seven more replies, five of them at the very same instant
        at = NOW + timedelta(hours=2) if i < 5 else NOW + timedelta(hours=2, minutes=i)
        _reply(engine, a["sends"][a["leads"][i % 3]], body=f"reply number {i}", at=at,
               message_id=f"<extra-{i}@{uuid.uuid4().hex}.test>")
    with engine.connect() as conn:
        expected = list(conn.execute(text(
            "SELECT id FROM inbound_messages WHERE client_id = :c AND outcome IS DISTINCT FROM :ours "
            "ORDER BY received_at DESC, id DESC"), {"c": a["client"], "ours": ingest.OURS}).scalars())
    assert len(expected) == 11
    seen, cursor, pages = [], None, 0
    while True:
        page = _page(engine, client_id=a["client"], limit=3, before=cursor)
        seen += [r["id"] for r in page.rows]
        pages += 1
        if pages == 2:  # new mail arrives while someone pages: it is newer, so no later page shifts
            _reply(engine, a["sends"][a["leads"][0]], body="late", message_id=f"<late@{uuid.uuid4().hex}.test>")
        if page.next is None:
            break
        cursor = inbox.parse_cursor(inbox.cursor_text(page.next))  # the cursor survives a round trip as text
        assert cursor == page.next
    assert seen == expected and pages == 4
    assert inbox.parse_cursor("not-a-cursor") is None and inbox.parse_cursor(None) is None


# -- one message ---------------------------------------------------------------------------------


def test_a_message_is_read_as_text_with_its_quoted_history_folded(engine, world, mail):
    a = world["A"]
    send = a["sends"][a["leads"][0]]
    body = ("Tuesday works, call me.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Rep <rep1@acme.test> wrote:\n"
            "> Hi First1,\n> would a call help?\n")
    plain = _reply(engine, send, body=body, message_id=f"<q@{uuid.uuid4().hex}.test>").inbound_id
    german = _reply(engine, send, body="Gerne.\n\nAm Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Rep <rep1@acme.test>:\n"
                                        "> Hallo\n", message_id=f"<de@{uuid.uuid4().hex}.test>").inbound_id
    with db.transaction(engine, role=OPERATOR) as conn:
        shown = inbox.message(conn, plain)
        de = inbox.message(conn, german)
        bounce = inbox.message(conn, mail["hard"])
        assert inbox.message(conn, 999_999) is None
    assert shown["text"] == "Tuesday works, call me."
    assert shown["quoted"].startswith("On Mon, Nov 23, 2026") and "> would a call help?" in shown["quoted"]
    assert (shown["kind"], shown["verified"], shown["lead"], shown["step"], shown["campaign"]) == (
        "human_reply", True, send["email"], 1, "seq")
    assert shown["answered_message_id"] == send["message_id"] and shown["truncated"] is False
    assert ("From", send["email"]) in shown["headers"] and "raw" not in shown
    assert (de["text"], de["quoted"].startswith("Am Mo.")) == ("Gerne.", True)
    assert (bounce["kind"], bounce["reason"], bounce["rule"], bounce["status_code"]) == (
        "hard_bounce", "user_unknown", "rfc3464", "5.1.1")
    assert "5.1.1" in bounce["diagnostic"] and bounce["evidence"] and bounce["trust"].startswith("quotes our keyed")


def test_html_is_shown_as_text_and_a_cut_message_says_so(engine, world):
    from email.message import EmailMessage

    a = world["A"]
    send = a["sends"][a["leads"][1]]
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = send["email"], send["box_address"], "Re: Hello"
    msg["In-Reply-To"] = send["message_id"]
    msg["Message-ID"] = f"<html@{uuid.uuid4().hex}.test>"
    msg.set_content("<p>Yes <b>please</b></p><script>alert(1)</script><blockquote>old thread</blockquote>",
                    subtype="html")
    stored = _ingest(engine, msg.as_bytes()).inbound_id
    with engine.begin() as conn:  # as if the message was larger than inbound_raw_max_bytes
        conn.execute(text("UPDATE inbound_messages SET raw_bytes = raw_bytes + 5000 WHERE id = :i"), {"i": stored})
        shown = inbox.message(conn, stored)
    assert shown["text"] == "Yes please"
    assert "alert" not in shown["text"] + shown["quoted"] and "<" not in shown["text"]
    assert shown["truncated"] is True


# -- tenancy -------------------------------------------------------------------------------------


def test_a_viewer_never_sees_another_clients_mail_or_verdicts(engine, world, mail):
    a, b = world["A"], world["B"]
    with db.transaction(engine, role=OPERATOR) as conn:
        inbox.mark(conn, b["leads"][0], "interested", by="ops@agency.test", inbound_message_id=mail["b_reply"])
        inbox.mark(conn, a["leads"][0], "not_interested", by="ops@agency.test")
    as_a = _page(engine, role=viewer(a["client"]))
    assert {r["client"] for r in as_a.rows} == {"acme"} and len(as_a.rows) == 4
    assert _page(engine, role=viewer(a["client"]), client_id=b["client"]).rows == []  # asking for B shows nothing
    assert [r["id"] for r in _page(engine, role=viewer(b["client"])).rows] == [mail["b_reply"]]
    with db.transaction(engine, role=viewer(a["client"])) as conn:
        assert inbox.message(conn, mail["b_reply"]) is None  # exactly like an id that does not exist
        assert inbox.message(conn, mail["reply"])["verdict"]["verdict"] == "not_interested"
        assert inbox.current_verdict(conn, b["leads"][0]) is None
        assert conn.execute(text("SELECT DISTINCT client_id FROM lead_verdicts")).scalars().all() == [a["client"]]
        assert story.story(conn, b["leads"][0]) is None
        with pytest.raises(NotFound):
            inbox.mark(conn, b["leads"][0], "wrong_person", by="viewer")  # B's lead is not there at all


def test_viewers_cannot_mark_or_reclassify_their_own_clients_mail(engine, world, mail):
    a = world["A"]
    lead = a["leads"][0]
    for attempt in (lambda c: inbox.mark(c, lead, "interested", by="viewer@acme.test"),
                    lambda c: inbox.reclassify(c, mail["reply"], "auto_reply", by="viewer@acme.test")):
        with pytest.raises(ProgrammingError, match="permission denied"), \
                db.transaction(engine, role=viewer(a["client"])) as conn:
            attempt(conn)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lead_verdicts")).scalar() == 0
        assert conn.execute(text("SELECT kind FROM inbound_messages WHERE id = :i"),
                            {"i": mail["reply"]}).scalar() == "human_reply"


# -- verdicts ------------------------------------------------------------------------------------


def test_verdicts_are_recorded_the_newest_stands_and_the_story_shows_each(engine, world, mail):
    a = world["A"]
    lead = a["leads"][0]
    with db.transaction(engine, role=OPERATOR) as conn:
        first = inbox.mark(conn, lead, "interested", by="ops@agency.test", inbound_message_id=mail["reply"],
                           note="  wants a call Tuesday ")
    with db.transaction(engine, role=OPERATOR) as conn:
        second = inbox.mark(conn, lead, "wrong_person", by="other@agency.test")
        assert (first["note"], first["inbound_message_id"]) == ("wants a call Tuesday", mail["reply"])
        assert inbox.current_verdict(conn, lead)["id"] == second["id"]
        row = next(r for r in inbox.inbound(conn, client_id=a["client"]).rows if r["id"] == mail["reply"])
        assert row["verdict"] == "wrong_person"
        timeline = story.story(conn, lead)["timeline"]
    marks = [e for e in timeline if e.kind == "verdict"]
    assert [e.title for e in marks] == ["Marked interested", "Marked wrong person"]
    assert ("by", "ops@agency.test") in marks[0].details and ("note", "wants a call Tuesday") in marks[0].details
    assert ("on reply", f"{mail['reply']} Re: Hello") in marks[0].details
    assert timeline.index(marks[0]) > next(i for i, e in enumerate(timeline) if e.kind == "inbound")


def test_mark_refuses_what_it_cannot_record(engine, world, mail):
    a = world["A"]
    with db.transaction(engine, role=OPERATOR) as conn:
        with pytest.raises(NotFound):
            inbox.mark(conn, 999_999, "interested", by="ops")
        with pytest.raises(NotFound, match="not one of"):  # a reply of another lead
            inbox.mark(conn, a["leads"][1], "interested", by="ops", inbound_message_id=mail["reply"])
        with pytest.raises(ValueError):
            inbox.mark(conn, a["leads"][0], "maybe", by="ops")
        with pytest.raises(ValueError, match="named"):
            inbox.mark(conn, a["leads"][0], "interested", by="  ")
        with pytest.raises(ValueError, match="at most"):
            inbox.mark(conn, a["leads"][0], "interested", by="ops", note="x" * 1001)


# -- reclassify ----------------------------------------------------------------------------------


def _lead_state(engine, lead):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT l.status, l.email, array_agg(e.status ORDER BY e.id) AS enrollments, "
            "(SELECT array_agg(s.reason) FROM suppressions s WHERE s.client_id = l.client_id AND s.value = l.email) AS supp "
            "FROM leads l LEFT JOIN enrollments e ON e.lead_id = l.id WHERE l.id = :l GROUP BY l.id"), {"l": lead}).one()


def test_reclassify_changes_the_class_only_and_keeps_what_the_classifier_said(engine, world, mail):
    a = world["A"]
    lead = a["leads"][0]
    before = _lead_state(engine, lead)  # the human reply stopped the lead's sequence when it came in
    assert (before.status, before.enrollments, before.supp) == ("replied", ["stopped"], None)
    with db.transaction(engine, role=OPERATOR) as conn:
        done = inbox.reclassify(conn, mail["reply"], "auto_reply", by="ops@agency.test")
    assert (done.was, done.kind, done.effect) == ("human_reply", "auto_reply", None)
    assert _lead_state(engine, lead) == before  # nothing re-run, nothing undone
    with db.transaction(engine, role=OPERATOR) as conn:
        assert inbox.reclassify(conn, mail["reply"], "auto_reply", by="ops").effect is None  # already: a no-op
        inbox.reclassify(conn, mail["reply"], "human_reply", by="second@agency.test")
        shown = inbox.message(conn, mail["reply"])
        entry = next(e for e in story.story(conn, lead)["timeline"] if e.kind == "inbound")
    assert (shown["kind"], shown["classified_kind"], shown["reclassified_by"]) == (
        "human_reply", "human_reply", "second@agency.test")
    assert "reclassified human_reply -> auto_reply by ops@agency.test" in shown["outcome"]
    assert any(k == "reclassified" and v.startswith("from human reply by second@agency.test") for k, v in entry.details)


def test_reclassify_to_an_opt_out_or_hard_bounce_suppresses_and_stops_as_ingest_does(engine, world, mail):
    a = world["A"]
    soft_lead = a["leads"][1]
    assert _lead_state(engine, soft_lead).enrollments == ["active"]  # a soft bounce retries the step
    with db.transaction(engine, role=OPERATOR) as conn:
        done = inbox.reclassify(conn, mail["soft"], "hard_bounce", by="ops@agency.test")
    assert "lead bounced and suppressed, 1 enrollment(s) stopped" in done.effect
    state = _lead_state(engine, soft_lead)
    assert (state.status, state.enrollments, state.supp) == ("bounced", ["stopped"], ["hard_bounce"])
    # The same row ingest writes for a real hard bounce (lead 3's): one action, not a copy.
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT value, reason, source FROM suppressions WHERE client_id = :c ORDER BY id"),
                            {"c": a["client"]}).all()
    assert [(r.reason, r.source) for r in rows] == [("hard_bounce", "bounce 5.1.1"), ("hard_bounce", "bounce 4.2.2")]

    # A fresh reply of a new lead, reclassified as the opt-out it was: suppressed, unsubscribed, stopped.
    with engine.begin() as conn:
        [fresh] = factories.leads(conn, a["client"], 1, campaign_id=a["campaign"], domain="fresh-leads.test")
        store.enroll(conn, a["client"], a["campaign"], now=NOW)
        send = _send(conn, a["client"], a["campaign"], fresh, a["boxes"][0], 1, "person1@fresh-leads.test",
                     mailids.message_id(a["campaign"], fresh, 1, "acme.test", ID_SECRET))
    answer = _reply(engine, send, body="Thanks, but this is an auto reply.",
                    headers={"Auto-Submitted": "auto-replied"})
    assert answer.kind == "auto_reply" and _lead_state(engine, fresh).enrollments == ["active"]
    with db.transaction(engine, role=OPERATOR) as conn:
        done = inbox.reclassify(conn, answer.inbound_id, "unsubscribe_request", by="ops@agency.test")
    state = _lead_state(engine, fresh)
    assert (state.status, state.enrollments, state.supp) == ("unsubscribed", ["stopped"], ["unsubscribed"])
    # Back to a human reply: the suppression stays (reclassify never lifts one).
    with db.transaction(engine, role=OPERATOR) as conn:
        inbox.reclassify(conn, answer.inbound_id, "human_reply", by="ops@agency.test")
    assert _lead_state(engine, fresh).supp == ["unsubscribed"]


def test_reclassify_refuses_our_own_mail_pending_mail_and_unknown_classes(engine, world, mail):
    with db.transaction(engine, role=OPERATOR) as conn:
        with pytest.raises(InboxRefused, match="our own mail"):
            inbox.reclassify(conn, mail["ours"], "human_reply", by="ops")
        with pytest.raises(NotFound):
            inbox.reclassify(conn, 999_999, "human_reply", by="ops")
        with pytest.raises(ValueError, match="unknown class"):
            inbox.reclassify(conn, mail["reply"], "spam", by="ops")
        conn.execute(text("UPDATE inbound_messages SET processed_at = NULL, outcome = NULL WHERE id = :i"),
                     {"i": mail["reply"]})  # as if stored and not acted on yet (a crash between the two)
        with pytest.raises(InboxRefused, match="not processed yet"):
            inbox.reclassify(conn, mail["reply"], "auto_reply", by="ops")


# -- the CLI -------------------------------------------------------------------------------------


def test_the_cli_lists_shows_marks_and_reclassifies(engine, world, mail):
    a = world["A"]
    listed = runner.invoke(app, ["replies", "inbox", "--client", "acme", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.output)["rows"]] == [mail["soft"], mail["hard"], mail["unverified"],
                                                                    mail["reply"]]
    first = json.loads(runner.invoke(app, ["replies", "inbox", "--client", "acme", "--limit", "3", "--json"]).output)
    rest = json.loads(runner.invoke(app, ["replies", "inbox", "--client", "acme", "--limit", "3", "--before",
                                          first["next"], "--json"]).output)
    assert [r["id"] for r in rest["rows"]] == [mail["reply"]] and rest["next"] is None
    only = json.loads(runner.invoke(app, ["replies", "inbox", "--client", "acme", "--campaign", "seq",
                                          "--kind", "human_reply", "--unverified", "--json"]).output)
    assert [r["id"] for r in only["rows"]] == [mail["unverified"]]
    table = runner.invoke(app, ["replies", "inbox", "--limit", "3"], env={"COLUMNS": "300"})
    assert table.exit_code == 0 and "UNVERIFIED" in table.output and "more: add --before" in table.output

    shown = runner.invoke(app, ["replies", "show", str(mail["reply"])])
    assert shown.exit_code == 0 and "kind: human_reply" in shown.output and "Sounds good" in shown.output

    email = a["sends"][a["leads"][0]]["email"]
    marked = runner.invoke(app, ["replies", "mark", email.upper(), "not-interested", "--client", "acme",
                                 "--reply", str(mail["reply"]), "--note", "budget next year"])
    assert marked.exit_code == 0, marked.output
    assert "not interested" in marked.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT verdict, decided_by, note FROM lead_verdicts")).one() == (
            "not_interested", "cli", "budget next year")
    assert "verdict: not_interested by cli" in runner.invoke(app, ["replies", "show", str(mail["reply"])]).output

    moved = runner.invoke(app, ["replies", "reclassify", str(mail["unverified"]), "unsubscribe_request"])
    assert moved.exit_code == 0 and "human_reply -> unsubscribe_request" in moved.output and "suppressed" in moved.output

    for args, code, words in (
            (["replies", "mark", "nobody@x.test", "interested", "--client", "acme"], 1, "no lead"),
            (["replies", "mark", email, "interested", "--client", "nobody"], 1, "does not exist"),
            (["replies", "mark", email, "maybe", "--client", "acme"], 2, "maybe"),
            (["replies", "inbox", "--campaign", "seq"], 2, "needs --client"),
            (["replies", "inbox", "--before", "junk"], 2, "not a cursor"),
            (["replies", "inbox", "--kind", "spam"], 2, "spam"),
            (["replies", "show", "999999"], 1, "no received message"),
            (["replies", "reclassify", str(mail["ours"]), "human_reply"], 1, "our own mail")):
        result = runner.invoke(app, args)
        assert result.exit_code == code and words in result.output, (args, result.output)


# -- the migration -------------------------------------------------------------------------------


def test_migration_0015_goes_down_and_up(database_url, engine, world, mail):
    with db.transaction(engine) as conn:
        inbox.mark(conn, world["A"]["leads"][0], "interested", by="ops")
    engine.dispose()
    try:
        migrate.downgrade("0014", database_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('public.lead_verdicts')")).scalar() is None
            columns = set(conn.execute(text("SELECT column_name FROM information_schema.columns "
                                            "WHERE table_name = 'inbound_messages'")).scalars())
            assert not columns & {"classified_kind", "reclassified_by", "reclassified_at"}
            assert conn.execute(text("SELECT count(*) FROM inbound_messages")).scalar() == 6  # the mail stays
    finally:
        engine.dispose()
        migrate.upgrade("head", database_url)
    with engine.connect() as conn:
        policies = conn.execute(text("SELECT array_agg(policyname ORDER BY policyname) FROM pg_policies "
                                     "WHERE tablename = 'lead_verdicts'")).scalar()
        assert policies == ["operator_all", "service_role_all", "tenant_own_rows"]
        assert conn.execute(text("SELECT has_table_privilege('outbound_tenant', 'lead_verdicts', 'INSERT'), "
                                 "has_table_privilege('outbound_tenant', 'lead_verdicts', 'SELECT'), "
                                 "has_table_privilege('outbound_operator', 'lead_verdicts', 'INSERT')")).one() == (
            False, True, True)
