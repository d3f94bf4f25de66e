"""Match keys for received mail, our-own-mail filtering and the dedupe key."""

from __future__ import annotations

from shared.engines.replies import classify, dedupe_key, is_inbound, match_keys, parse_bytes
from shared.engines.replies.matching import MatchKey, normalize_subject
from shared.mailids import legacy_message_id, verp_address
from tests.unit.replies_samples import OUR_DOMAIN, STEP1_ID, STEP2_ID, VERP_SECRET, reply, rfc3464_dsn, rfc5965_arf, sample

OUR_ADDRESSES = {"alice@agency.example", "Bob.Rep@Agency.example"}
VERP_42 = verp_address(42, "agency.example", VERP_SECRET)


def _kinds(keys: list[MatchKey]) -> list[tuple]:
    return [(k.kind, k.message_id or k.message_pk or (k.sender, k.subject)) for k in keys]


def test_sample_ids_are_the_deterministic_ones() -> None:
    assert STEP1_ID == legacy_message_id(7, 1001, 1, OUR_DOMAIN) and STEP2_ID == legacy_message_id(7, 1001, 2, OUR_DOMAIN)


def test_reply_keys_parent_first_then_references_newest_first_then_sender_subject() -> None:
    keys = match_keys(sample("human_reply_quoting_footer.eml"), VERP_SECRET)
    assert _kinds(keys) == [
        ("message_id", STEP2_ID),
        ("message_id", STEP1_ID),
        ("sender_subject", ("henry@customer.example", "quick question about acme's hiring")),
    ]


def test_foreign_ids_dropped_when_our_domains_are_given() -> None:
    msg = reply("hi", headers={"References": f"<CAF=1@mail.gmail.com> {STEP1_ID}"})
    keys = match_keys(msg, VERP_SECRET, message_id_domains={OUR_DOMAIN})
    assert [k.message_id for k in keys if k.kind == "message_id"] == [STEP1_ID]


def test_dsn_keys_returned_original_then_verp_then_failed_recipient() -> None:
    for name, pk in [("gmail_dsn_failure.eml", 42), ("postfix_bounce.eml", 77), ("outlook_ndr.eml", 42), ("dsn_delayed.eml", 77)]:
        keys = match_keys(sample(name), VERP_SECRET)
        assert [k.kind for k in keys] == ["message_id", "verp", "sender_subject"], name
        assert keys[1].message_pk == pk
    postfix = match_keys(sample("postfix_bounce.eml"), VERP_SECRET)
    assert postfix[0].message_id == "<7a89849b-f28b-5b9c-a5e0-788664ba6140@mail.agency.example>"
    assert (postfix[2].sender, postfix[2].subject) == ("carol@old-company.example", "quick question about old co")


def test_verp_only_bounce_still_names_its_send() -> None:
    # A DSN that returns nothing of the original: the envelope recipient (webhook) carries the VERP.
    msg = parse_bytes(
        b"From: MAILER-DAEMON@mx.example\r\nTo: alice@agency.example\r\nSubject: failure\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B--\r\n"
    )
    keys = match_keys(msg, VERP_SECRET, envelope_to=[VERP_42])
    # No original returned, so no subject: the failed address itself is the fallback.
    assert _kinds(keys) == [("verp", 42), ("sender_subject", ("a@x.example", None))]


def test_forged_verp_is_ignored() -> None:
    forged = VERP_42.replace("bounces+42-", "bounces+43-")
    assert [k for k in match_keys(reply("hi"), VERP_SECRET, envelope_to=[forged]) if k.kind == "verp"] == []
    assert [k for k in match_keys(reply("hi"), "another-secret", envelope_to=[VERP_42]) if k.kind == "verp"] == []


def test_nonstandard_bounce_uses_inline_copy_and_failed_address() -> None:
    msg = sample("exim_bounce_plain.eml")
    keys = match_keys(msg, VERP_SECRET, classification=classify(msg))
    assert _kinds(keys) == [("message_id", STEP1_ID), ("verp", 42), ("sender_subject", ("bob@gone.example", None))]
    # Without the classification, the mailer-daemon's own address is never offered as a lead.
    assert all(k.sender != "mailer-daemon@mx1.hoster.example" for k in match_keys(msg, VERP_SECRET))


def test_complaint_keys() -> None:
    keys = match_keys(rfc5965_arf(), VERP_SECRET)
    assert _kinds(keys) == [("message_id", STEP1_ID), ("sender_subject", ("eve@customer.example", "quick question"))]
    real = match_keys(sample("arf_abuse.eml"), VERP_SECRET)
    assert [k.kind for k in real] == ["message_id", "verp", "sender_subject"]


def test_header_dropping_client_falls_back_to_sender_and_subject() -> None:
    raw = b"From: Lead <Lead@Customer.example>\r\nSubject: AW: RE: [EXTERNAL] Fwd: SV: Antw: Quick  question\r\n\r\nyes\r\n"
    assert _kinds(match_keys(parse_bytes(raw), VERP_SECRET)) == [("sender_subject", ("lead@customer.example", "quick question"))]


def test_normalize_subject() -> None:
    assert normalize_subject("Re: Re[2]: FW: Automatic reply: Hello   World") == "hello world"
    assert normalize_subject("Réponse automatique : Bonjour") == "bonjour"
    assert normalize_subject("Regarding our call") == "regarding our call"


def test_our_own_follow_up_is_not_inbound() -> None:
    ours_by_id = reply("Following up", sender="Alice Rep <alice@agency.example>")
    del ours_by_id["Message-ID"]
    ours_by_id["Message-ID"] = legacy_message_id(7, 1001, 2, OUR_DOMAIN)  # our step 2, threaded on step 1
    assert not is_inbound(ours_by_id, OUR_ADDRESSES, {OUR_DOMAIN})
    # Copied back from another of our mailboxes, id rewritten by the provider: still ours by From.
    copied = reply("Following up", sender="Bob <bob.rep@agency.example>")
    assert not is_inbound(copied, OUR_ADDRESSES, {OUR_DOMAIN})
    # Our id domain alone is enough (a mailbox not in the list, e.g. removed since).
    other = reply("Following up", sender="Carl <carl@agency.example>")
    del other["Message-ID"]
    other["Message-ID"] = legacy_message_id(7, 1001, 3, OUR_DOMAIN.upper())
    assert not is_inbound(other, OUR_ADDRESSES, {OUR_DOMAIN})
    assert is_inbound(sample("human_reply_quoting_footer.eml"), OUR_ADDRESSES, {OUR_DOMAIN})
    assert is_inbound(sample("gmail_dsn_failure.eml"), OUR_ADDRESSES, {OUR_DOMAIN})


def test_dedupe_key() -> None:
    raw = (b"From: a@b.example\r\nMessage-ID: <x1@b.example>\r\n\r\nhi\r\n")
    assert dedupe_key(parse_bytes(raw), raw) == "<x1@b.example>"
    assert dedupe_key(parse_bytes(raw + b"more"), raw + b"more") == "<x1@b.example>"
    bare = b"From: a@b.example\r\n\r\nhi\r\n"
    key = dedupe_key(parse_bytes(bare), bare)
    assert key.startswith("sha256:") and key == dedupe_key(parse_bytes(bare), bare)
    assert key != dedupe_key(parse_bytes(bare + b"!"), bare + b"!")
