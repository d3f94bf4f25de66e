"""What lets a matched message act: signed tokens of ours, or authentication results for its From domain."""

from __future__ import annotations

from shared.engines.replies.mime import parse_bytes
from shared.engines.replies.trust import AuthResult, decide, parse_authentication_results
from shared.mailids import legacy_message_id, message_id

KEYED = message_id(1, 2, 1, "agency.example", "k")
LEGACY = legacy_message_id(1, 2, 1, "agency.example")


def _msg(*results: str) -> object:
    head = "".join(f"Authentication-Results: {r}\r\n" for r in results)
    return parse_bytes(f"{head}From: Ann <ann@lead.example>\r\nSubject: Re: hi\r\n\r\nremove me\r\n".encode())


def test_only_the_topmost_header_of_a_trusted_receiver_counts() -> None:
    forged_below = _msg("mx.inbound.test; dkim=fail header.d=lead.example",
                        "mx.inbound.test; dkim=pass header.d=lead.example")
    assert [(r.method, r.result) for r in parse_authentication_results(forged_below, ["mx.inbound.test"])] == [
        ("dkim", "fail")]
    untrusted = _msg("attacker.example; dmarc=pass header.from=lead.example")
    assert parse_authentication_results(untrusted, ["mx.inbound.test"]) == []
    assert parse_authentication_results(untrusted, []) == []
    gmail = _msg("mx.google.com; dkim=pass header.i=@lead.example header.s=s1 header.b=abc; "
                 "spf=pass (google.com: domain of ann@lead.example designates 1.2.3.4) smtp.mailfrom=ann@lead.example; "
                 "dmarc=pass (p=REJECT) header.from=lead.example")
    assert [(r.method, r.result, r.domain) for r in parse_authentication_results(gmail, ["MX.google.com"])] == [
        ("dkim", "pass", "lead.example"), ("spf", "pass", "lead.example"), ("dmarc", "pass", "lead.example")]


def test_decide() -> None:
    passes = [AuthResult("dkim", "pass", "lead.example", "AR")]
    assert decide("hard_bounce", "verp", None, "x@evil.example", []).verified
    assert decide("hard_bounce", "message_id", KEYED, "mailer-daemon@evil.example", []).verified
    assert not decide("hard_bounce", "message_id", LEGACY, "mailer-daemon@evil.example", []).verified
    assert not decide("hard_bounce", "sender_subject", None, "mailer-daemon@lead.example", passes).verified
    assert decide("unsubscribe_request", "message_id", KEYED, "ann@lead.example", []).verified
    assert decide("unsubscribe_request", "sender_subject", None, "ann@lead.example", passes).verified
    assert decide("human_reply", "sender_subject", None, "ann@eu.lead.example", passes).verified  # parent domain
    for domain in ("notlead.example", "example", "eu.lead.example"):
        other = [AuthResult("dkim", "pass", domain, "AR")]
        assert not decide("human_reply", "sender_subject", None, "ann@lead.example", other).verified, domain
    assert not decide("human_reply", "sender_subject", None, "ann@lead.example",
                      [AuthResult("dkim", "fail", "lead.example", "AR")]).verified
    assert not decide("human_reply", "message_id", LEGACY, "ann@lead.example", []).verified
