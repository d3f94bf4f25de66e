"""The console's inbox over HTTP against the real app and Postgres: the list and its filters and paging, one
message, verdicts and reclassifying, read-only viewers and the tenant wall. Mail arrives through the real ingest
path (test_inbox.py's world: two clients, sends, replies, bounces, our own copy read back)."""

from __future__ import annotations

import html
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from shared.engines.replies import ingest
from shared.engines.replies.webhooks import parse_message
from shared.settings import get_settings
from tests.console_helpers import SECRET, accounts, csrf_of, post_form, signed_in
from tests.integration.test_hostile_input import HOSTILE_VALUES
from tests.integration.test_inbox import NOW, _reply, mail, world  # noqa: F401  (fixtures)
from tests.replies_mail import reply
from web.app import create_app

pytestmark = pytest.mark.integration

INBOX = "/console/inbox"
QUOTED = ("Tuesday works, call me.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Rep <rep1@acme.test> wrote:\n"
          "> Hi First1,\n> would a call help?\n")


@pytest.fixture
def app(engine):
    return create_app(engine=engine, secret="unsub-secret", console_secret=SECRET)


@pytest.fixture
def acc(engine, world):
    return accounts(engine, world["A"]["client"], world["B"]["client"])


def ids_of(page_html: str) -> list[int]:
    """The inbox table's message ids, top to bottom."""
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)">', page_html)]


def notice_of(page_html: str) -> str:
    found = re.search(r'<p class="notice" role="status">(.*?)</p>', page_html, re.S)
    return html.unescape(found.group(1)) if found else ""


def verdicts(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT lead_id, inbound_message_id, verdict, decided_by, note FROM lead_verdicts "
                                 "ORDER BY id")).all()


def kind_of(engine, inbound_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT kind FROM inbound_messages WHERE id = :i"), {"i": inbound_id}).scalar_one()


def test_the_operator_sees_every_clients_mail_newest_first_and_filters_it(app, acc, world, mail):
    a = world["A"]
    c = signed_in(app, acc.operator)
    page = c.get(INBOX)
    assert page.status_code == 200 and 'href="/console/inbox" class="on"' in page.text
    # reply and b_reply arrived at the same instant: the later id comes first
    assert ids_of(page.text) == [mail["soft"], mail["hard"], mail["unverified"], mail["b_reply"], mail["reply"]]
    assert mail["ours"] not in ids_of(page.text)  # our own follow-up read back is not inbound mail
    assert "UNVERIFIED" in page.text and "user_unknown" in page.text and "globex" in page.text

    def shown(**params):
        return ids_of(c.get(INBOX, params=params).text)

    assert shown(kind="hard_bounce") == [mail["hard"]]
    assert shown(kind="human_reply", client=a["client"]) == [mail["unverified"], mail["reply"]]
    assert shown(campaign=a["campaign"]) == [mail["soft"], mail["hard"], mail["unverified"], mail["reply"]]
    assert shown(campaign=a["other"]) == []
    assert shown(mailbox=a["boxes"][0]) == [mail["hard"], mail["reply"]]
    assert shown(unverified="1") == [mail["unverified"]]
    assert shown(client=world["B"]["client"]) == [mail["b_reply"]]
    assert shown(kind="", campaign="", mailbox="", client="", unverified="") == shown()  # the form's "all"
    filtered = c.get(INBOX, params={"kind": "complaint"}).text
    assert "No received mail matches these filters." in filtered
    assert '<option value="complaint" selected>' in filtered


def test_malformed_filters_are_a_notice_and_the_first_page(app, acc, mail):
    c = signed_in(app, acc.operator)
    everything = ids_of(c.get(INBOX).text)
    for params, words in (({"kind": "spam"}, "unknown class 'spam'"), ({"campaign": "x"}, "campaign: 'x' is not"),
                          ({"mailbox": "99999999999999999999999"}, "mailbox: "), ({"client": "ü"}, "client: 'ü'"),
                          ({"before": "not-a-cursor"}, "")):
        answer = c.get(INBOX, params=params)
        assert answer.status_code == 200, params
        assert ids_of(answer.text) == everything and words in notice_of(answer.text), params
    huge = c.get(INBOX, params={"before": "99999999999999999.9999999999999999999"})  # a cursor past every row
    assert huge.status_code == 200 and ids_of(huge.text) == everything


def test_the_older_link_pages_by_cursor_without_gaps_or_repeats(app, acc, engine, world, mail):
    a = world["A"]
    for i in range(50):  # 52 human replies of A's in all: two pages of the engine's 50
        _reply(engine, a["sends"][a["leads"][i % 3]], body=f"reply {i}", at=NOW + timedelta(hours=2, seconds=i % 7),
               message_id=f"<page-{i}@{uuid.uuid4().hex}.test>")
    c = signed_in(app, acc.operator)
    first = c.get(INBOX, params={"client": a["client"], "kind": "human_reply"})
    older = re.search(r'<a href="([^"]+)" rel="next" data-testid="older">', first.text)
    assert older and len(ids_of(first.text)) == 50
    url = html.unescape(older.group(1))
    assert "client=" in url and "kind=human_reply" in url and "before=" in url  # the filters stay
    second = c.get(url)
    assert ids_of(second.text) == [mail["unverified"], mail["reply"]] and 'data-testid="older"' not in second.text
    assert len(set(ids_of(first.text) + ids_of(second.text))) == 52
    assert ">newest</a>" in second.text


def test_a_message_shows_its_text_with_the_quote_folded_its_evidence_lead_and_step(app, acc, engine, world, mail):
    a = world["A"]
    send = a["sends"][a["leads"][0]]
    quoted = _reply(engine, send, body=QUOTED, message_id=f"<q@{uuid.uuid4().hex}.test>").inbound_id
    c = signed_in(app, acc.operator)
    page = c.get(f"{INBOX}/{quoted}").text
    assert "<pre data-testid=\"own-text\">Tuesday works, call me.</pre>" in page
    folded = page.split('<details data-testid="quoted">', 1)[1].split("</details>", 1)[0]
    assert "<summary>Quoted history (3 line(s))</summary>" in folded and "&gt; would a call help?" in folded
    assert f'href="/console/leads/{a["leads"][0]}"' in page and html.escape(send["email"]) in page
    assert "step 1 of seq" in page and "verified" in page and 'data-testid="mark"' in page
    bounce = c.get(f"{INBOX}/{mail['hard']}").text
    assert "user_unknown" in bounce and "rfc3464" in bounce and "5.1.1" in bounce and "quotes our keyed" in bounce
    unverified = c.get(f"{INBOX}/{mail['unverified']}").text
    assert "UNVERIFIED</span> (stored, changed nothing)" in unverified and "step 2 of seq" in unverified
    for missing in ("999999", "99999999999999999999999", "x", "-1"):
        assert c.get(f"{INBOX}/{missing}").status_code == 404


def test_the_operator_marks_a_lead_and_sees_the_verdict_on_the_message_the_list_and_the_story(app, acc, engine,
                                                                                             world, mail):
    a = world["A"]
    lead = a["leads"][0]
    c = signed_in(app, acc.operator)
    page = f"{INBOX}/{mail['reply']}"
    done = post_form(c, page, f"{page}/mark", {"verdict": "interested", "note": "  wants a call Tuesday "})
    assert done.status_code == 303 and done.headers["location"].startswith(f"{page}?notice=")
    shown = c.get(done.headers["location"]).text
    assert re.fullmatch(rf"lead {re.escape(a['sends'][lead]['email'])}: interested \(verdict \d+, by ops@agency.test\)",
                        notice_of(shown))
    assert "interested by ops@agency.test" in shown and "“wants a call Tuesday”" in shown
    assert verdicts(engine) == [(lead, mail["reply"], "interested", "ops@agency.test", "wants a call Tuesday")]
    assert 'class="badge v-interested">interested</span>' in c.get(INBOX).text
    story = c.get(f"/console/leads/{lead}").text
    assert "Marked interested" in story and "wants a call Tuesday" in story

    post_form(c, page, f"{page}/mark", {"verdict": "wrong_person"})  # the newest stands
    assert "wrong person by ops@agency.test" in c.get(page).text
    for data, words in (({"verdict": "maybe"}, "not marked: 'maybe' is not a valid Verdict"),
                        ({}, "not marked: "),
                        ({"verdict": "interested", "note": "x" * 1001}, "not marked: a note is at most 1000")):
        answer = post_form(c, page, f"{page}/mark", data)
        assert answer.status_code == 303 and words in notice_of(c.get(answer.headers["location"]).text)
    assert len(verdicts(engine)) == 2
    assert post_form(c, page, f"{INBOX}/999999/mark", {"verdict": "interested"}).status_code == 404


def test_mail_without_a_lead_offers_no_verdict_and_refuses_one(app, acc, engine, world):
    a = world["A"]
    raw = reply(frm="stranger@nowhere.test", to="rep1@acme.test", subject="Question", in_reply_to=None)
    stranger = ingest.ingest(engine, ingest.Received(raw, parse_message(raw), "imap", client_id=a["client"],
                                                     mailbox_id=a["boxes"][0], folder="INBOX", imap_uid=1),
                             settings=get_settings(), now=NOW).inbound_id
    c = signed_in(app, acc.operator)
    page = c.get(f"{INBOX}/{stranger}").text
    assert "matched no lead" in page and 'data-testid="mark"' not in page and 'data-testid="reclassify"' in page
    answer = post_form(c, f"{INBOX}/{stranger}", f"{INBOX}/{stranger}/mark", {"verdict": "interested"})
    assert "has no lead to mark" in notice_of(c.get(answer.headers["location"]).text) and verdicts(engine) == []


def test_the_operator_reclassifies_with_the_engines_effect_and_refusals(app, acc, engine, mail):
    c = signed_in(app, acc.operator)
    page = f"{INBOX}/{mail['soft']}"

    def post(inbound_id, kind):
        answer = post_form(c, page, f"{INBOX}/{inbound_id}/reclassify", {"kind": kind})
        assert answer.status_code == 303
        return notice_of(c.get(answer.headers["location"]).text)

    assert post(mail["soft"], "hard_bounce") == (f"received message {mail['soft']}: soft_bounce -> hard_bounce; "
                                                 "hard bounce 4.2.2: lead bounced and suppressed, 1 enrollment(s) stopped")
    assert kind_of(engine, mail["soft"]) == "hard_bounce"
    shown = c.get(page).text
    assert "(the classifier said soft bounce); reclassified by ops@agency.test" in shown
    assert '<option value="hard_bounce">' not in shown  # not offered: it is the class already
    assert post(mail["soft"], "hard_bounce") == f"received message {mail['soft']} is already hard_bounce: nothing changed"
    assert post(mail["soft"], "spam").startswith("not reclassified: unknown class 'spam'")
    assert post(mail["ours"], "human_reply").startswith("not reclassified: received message")
    assert "our own mail" in post(mail["ours"], "human_reply")
    assert post_form(c, page, f"{INBOX}/999999/reclassify", {"kind": "auto_reply"}).status_code == 404


def test_a_viewer_reads_its_own_clients_inbox_only_and_cannot_act(app, acc, engine, world, mail):
    a_view, b_view = signed_in(app, acc.viewer_a), signed_in(app, acc.viewer_b)
    own = a_view.get(INBOX)
    assert ids_of(own.text) == [mail["soft"], mail["hard"], mail["unverified"], mail["reply"]]
    assert "globex" not in own.text and '<select name="client">' not in own.text
    assert ids_of(a_view.get(INBOX, params={"client": world["B"]["client"]}).text) == ids_of(own.text)  # ignored
    assert ids_of(a_view.get(INBOX, params={"campaign": world["B"]["campaign"]}).text) == []
    message = a_view.get(f"{INBOX}/{mail['reply']}")
    assert message.status_code == 200 and "Sounds good" in message.text
    assert 'data-testid="mark"' not in message.text and 'data-testid="reclassify"' not in message.text
    page = f"{INBOX}/{mail['reply']}"
    for action, data in (("mark", {"verdict": "interested"}), ("reclassify", {"kind": "auto_reply"})):
        assert post_form(a_view, page, f"{page}/{action}", data).status_code == 403
        other = post_form(b_view, f"{INBOX}", f"{page}/{action}", data)
        assert other.status_code == 403
    assert verdicts(engine) == [] and kind_of(engine, mail["reply"]) == "human_reply"
    theirs = b_view.get(page)
    assert theirs.status_code == 404 and "Sounds good" not in theirs.text
    assert ids_of(b_view.get(INBOX).text) == [mail["b_reply"]]


def test_a_post_without_the_csrf_token_is_refused(app, acc, engine, mail):
    c = signed_in(app, acc.operator)
    answer = c.post(f"{INBOX}/{mail['reply']}/mark", data={"verdict": "interested"})
    assert answer.status_code == 403 and verdicts(engine) == []
    assert c.post(f"{INBOX}/{mail['reply']}/reclassify", data={"kind": "auto_reply", "csrf": "forged"}).status_code == 403
    assert kind_of(engine, mail["reply"]) == "human_reply"
    assert csrf_of(c.get(f"{INBOX}/{mail['reply']}").text)


def test_hostile_values_on_a_real_message_are_never_a_5xx_and_record_nothing(app, acc, engine, mail):
    c = signed_in(app, acc.operator)
    page = f"{INBOX}/{mail['unverified']}"
    token = csrf_of(c.get(page).text)
    for value in HOSTILE_VALUES:
        for action, data in (("mark", {"verdict": value, "note": value}), ("reclassify", {"kind": value})):
            answer = c.post(f"{page}/{action}", data={"csrf": token, **data})
            assert answer.status_code == 303, (action, value, answer.status_code)
        listing = c.get(INBOX, params=dict.fromkeys(("kind", "campaign", "mailbox", "client", "before"), value))
        assert listing.status_code == 200, (value, listing.status_code)
    assert verdicts(engine) == [] and kind_of(engine, mail["unverified"]) == "human_reply"
    noted = post_form(c, page, f"{page}/mark", {"verdict": "not_interested", "note": "a\x00b <script>\r\nX: 1"})
    assert noted.status_code == 303 and verdicts(engine)[0][2:] == ("not_interested", "ops@agency.test", "ab <script>\r\nX: 1")
    assert "ab &lt;script&gt;" in c.get(page).text
