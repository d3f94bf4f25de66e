"""IMAP reply recovery and Sent-folder lookups against a real pymap server."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from shared.engines.replies import classify, dedupe_key, is_inbound, match_keys, parse_bytes
from shared.engines.replies.webhooks import verify_standard
from shared.errors import ImapError
from shared.mailids import legacy_message_id
from shared.integrations.imap import Cursor, fetch_new, find_message_ids, sent_folder
from tests.email_servers import ImapServer, imap_server  # noqa: F401  (pytest fixture)
from tests.unit.replies_samples import MAIL_DIR, OUR_DOMAIN, STEP1_ID, STEP2_ID, VERP_SECRET


def _mail(n: int, message_id: str | None = None, sender: str = "lead@customer.example") -> bytes:
    mid = message_id or f"<reply-{n}@customer.example>"
    return (
        f"From: Lead <{sender}>\r\nTo: rep@agency.example\r\nSubject: Re: hello {n}\r\n"
        f"Message-ID: {mid}\r\nIn-Reply-To: <step1-{n}@agency.example>\r\n\r\nreply number {n}\r\n"
    ).encode()


def test_first_fetch_reads_everything_then_only_new_uids(imap_server: ImapServer) -> None:
    settings = imap_server.settings()
    for n in range(3):
        imap_server.append("INBOX", _mail(n))

    first = fetch_new(settings, "INBOX", None)
    assert first.rescanned and not first.more
    assert [parse_bytes(m.raw)["Message-ID"] for m in first.messages] == [f"<reply-{n}@customer.example>" for n in range(3)]
    assert first.cursor.last_uid == first.messages[-1].uid

    # Nothing new: UID N:* would still name the last message; it must not come back.
    again = fetch_new(settings, "INBOX", first.cursor)
    assert again.messages == [] and not again.rescanned
    assert again.cursor == first.cursor

    new_uid = imap_server.append("INBOX", _mail(3))
    third = fetch_new(settings, "INBOX", again.cursor)
    assert [m.uid for m in third.messages] == [new_uid]
    assert b"reply number 3" in third.messages[0].raw
    assert third.cursor == Cursor(first.cursor.uidvalidity, new_uid)


def test_fetching_never_marks_messages_seen(imap_server: ImapServer) -> None:
    for n in range(2):
        imap_server.append("INBOX", _mail(n))
    assert all("\\Seen" not in flags for flags in imap_server.flags("INBOX").values())

    result = fetch_new(imap_server.settings(), "INBOX", None)

    assert len(result.messages) == 2
    after = imap_server.flags("INBOX")
    assert set(after) == {m.uid for m in result.messages}
    assert all("\\Seen" not in flags for flags in after.values()), after


def test_already_seen_flag_is_reported_and_left_alone(imap_server: ImapServer) -> None:
    uid = imap_server.append("INBOX", _mail(0), flags=["\\Seen"])
    result = fetch_new(imap_server.settings(), "INBOX", None)
    assert "\\Seen" in result.messages[0].flags
    assert "\\Seen" in imap_server.flags("INBOX")[uid]


def test_uidvalidity_change_means_full_rescan(imap_server: ImapServer) -> None:
    settings = imap_server.settings()
    for n in range(2):
        imap_server.append("INBOX", _mail(n))
    before = fetch_new(settings, "INBOX", None)

    imap_server.restart()  # new UIDVALIDITY; the mailbox is rebuilt with the same mail
    for n in range(2):
        imap_server.append("INBOX", _mail(n))
    imap_server.append("INBOX", _mail(2))

    after = fetch_new(settings, "INBOX", before.cursor)
    assert after.rescanned
    assert after.cursor.uidvalidity != before.cursor.uidvalidity
    # Every message is returned again, including ones whose old UIDs were below the stale cursor;
    # the caller deduplicates on Message-ID.
    ids = [parse_bytes(m.raw)["Message-ID"] for m in after.messages]
    assert ids == [f"<reply-{n}@customer.example>" for n in range(3)]


def test_limit_pages_through_with_the_cursor(imap_server: ImapServer) -> None:
    settings = imap_server.settings()
    uids = [imap_server.append("INBOX", _mail(n)) for n in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        page = fetch_new(settings, "INBOX", cursor, limit=2)
        seen += [m.uid for m in page.messages]
        cursor = page.cursor
        if not page.more:
            break
    assert seen == uids


def test_find_message_ids_in_sent(imap_server: ImapServer) -> None:
    ours = [f"<0b6c2a4e-58a1-5d7e-9c3b-00000000000{n}@mail.agency.example>" for n in range(3)]
    for n, mid in enumerate(ours[:2]):
        imap_server.append("Sent", _mail(n, message_id=mid, sender="rep@agency.example"), flags=["\\Seen"])
    # A lookalike id containing one of ours as a substring must not count (HEADER search is substring).
    imap_server.append("Sent", _mail(9, message_id="<x" + ours[2][1:], sender="rep@agency.example"))
    # The same id in INBOX is not in Sent.
    imap_server.append("INBOX", _mail(8, message_id=ours[2]))

    settings = imap_server.settings()
    found = find_message_ids(settings, "Sent", [*ours, "<never-sent@mail.agency.example>"])
    assert found == set(ours[:2])
    assert find_message_ids(settings, "Sent", []) == set()
    assert sent_folder(settings) == "Sent"


def test_bad_password_is_an_error_without_the_password(imap_server: ImapServer) -> None:
    settings = imap_server.settings(password="s3cret-wrong-pw")
    with pytest.raises(ImapError) as caught:
        fetch_new(settings, "INBOX", None)
    assert "login failed" in str(caught.value)
    assert "s3cret-wrong-pw" not in str(caught.value) and "s3cret-wrong-pw" not in repr(settings)


def test_missing_folder_names_it(imap_server: ImapServer) -> None:
    with pytest.raises(ImapError, match="'Archive'"):
        fetch_new(imap_server.settings(), "Archive", None)


def test_recovery_pipeline_on_a_real_inbox(imap_server: ImapServer) -> None:
    """What reply recovery will do per message: fetch, drop our own mail, classify, match; same keys as the webhook."""
    ours = {"alice@agency.example"}
    follow_up = (
        f"From: Alice Rep <alice@agency.example>\r\nTo: henry@customer.example\r\nSubject: Re: Quick question\r\n"
        f"Message-ID: {STEP2_ID}\r\nIn-Reply-To: {STEP1_ID}\r\nReferences: {STEP1_ID}\r\n\r\nJust following up.\r\n"
    ).encode()
    assert STEP2_ID == legacy_message_id(7, 1001, 2, OUR_DOMAIN)
    imap_server.append("Sent", follow_up, flags=["\\Seen"])
    samples = ["human_reply_quoting_footer.eml", "exchange_oof.eml", "postfix_bounce.eml", "unsubscribe_request.eml"]
    for name in samples:
        imap_server.append("INBOX", (MAIL_DIR / name).read_bytes())
    imap_server.append("INBOX", follow_up)  # our follow-up copied back (a BCC-to-self, a sync)

    settings = imap_server.settings()
    verdicts = []
    for fetched in fetch_new(settings, "INBOX", None).messages:
        msg = parse_bytes(fetched.raw)
        if not is_inbound(msg, ours, {OUR_DOMAIN}):
            continue
        verdict = classify(msg)
        verdicts.append((verdict.kind, match_keys(msg, VERP_SECRET, classification=verdict)[0]))
    assert [(kind, key.kind, key.message_id) for kind, key in verdicts] == [
        ("human_reply", "message_id", STEP2_ID),
        ("auto_reply", "message_id", "<852b26b4-276d-58ac-917f-3eeb6d75d36a@mail.agency.example>"),
        ("hard_bounce", "message_id", "<7a89849b-f28b-5b9c-a5e0-788664ba6140@mail.agency.example>"),
        ("unsubscribe_request", "message_id", STEP1_ID),
    ]
    sent = fetch_new(settings, "Sent", None).messages
    assert [is_inbound(parse_bytes(m.raw), ours, {OUR_DOMAIN}) for m in sent] == [False]

    # The webhook and IMAP agree on identity, so a recovery run sees what the webhook stored.
    raw = (MAIL_DIR / "human_reply_quoting_footer.eml").read_bytes()
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = json.dumps({"raw_base64": base64.b64encode(raw).decode()}).encode()
    now = datetime.now(tz=timezone.utc)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(secret).sign("msg_1", now, body.decode())}
    via_webhook = verify_standard(body, headers, secret)
    via_imap = next(m for m in fetch_new(settings, "INBOX", None).messages if b"Henry" in m.raw)
    assert via_webhook.dedupe_key == dedupe_key(parse_bytes(via_imap.raw), via_imap.raw) == "<CAKx1=abc123@mail.gmail.com>"
