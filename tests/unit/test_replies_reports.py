"""RFC 3464 DSN and RFC 5965 ARF parsing with the std email package."""

from __future__ import annotations

from shared.engines.replies.reports import RecipientStatus, parse_arf, parse_dsn, returned_original, status_codes
from tests.unit.replies_samples import STEP1_ID, reply, rfc3464_dsn, rfc5965_arf, sample


def test_dsn_per_recipient_blocks_and_returned_original() -> None:
    msg = rfc3464_dsn(
        [("a@x.example", "failed", "5.1.1"), ("b@x.example", "delayed", "4.4.7"), ("c@x.example", "delivered", "2.0.0")],
        return_path="bounces+42-0e00728ff5a4@agency.example",
    )
    report = parse_dsn(msg)
    assert report is not None
    assert report.reporting_mta == "mx.example.net"
    assert [(r.recipient, r.action, r.status) for r in report.recipients] == [
        ("a@x.example", "failed", "5.1.1"), ("b@x.example", "delayed", "4.4.7"), ("c@x.example", "delivered", "2.0.0"),
    ]
    assert [r.severity for r in report.recipients] == ["hard", "soft", None]
    assert report.recipients[0].diagnostic == "smtp; 550 5.1.1 mailbox problem"
    assert report.original_message_id == STEP1_ID
    assert report.original_return_path == "bounces+42-0e00728ff5a4@agency.example"
    assert report.original_subject == "Quick question"


def test_dsn_with_text_rfc822_headers() -> None:
    report = parse_dsn(rfc3464_dsn([("a@x.example", "failed", "5.7.1")], headers_only=True))
    assert report is not None and report.original_message_id == STEP1_ID


def test_real_world_dsns() -> None:
    outlook = parse_dsn(sample("outlook_ndr.eml"))
    assert outlook is not None
    assert [(r.recipient, r.status) for r in outlook.recipients] == [("j.smith@contoso.com", "5.1.10")]
    assert outlook.original_message_id == "<852b26b4-276d-58ac-917f-3eeb6d75d36a@mail.agency.example>"
    postfix = parse_dsn(sample("postfix_bounce.eml"))
    assert postfix is not None and postfix.recipients[0].diagnostic.startswith("smtp; 550 5.1.1 <carol@old-company.example>: Recipient address rejected")
    gmail = parse_dsn(sample("gmail_dsn_failure.eml"))
    assert gmail is not None and gmail.original_message_id == STEP1_ID


def test_severity_rules() -> None:
    assert RecipientStatus("a@b", "failed", "5.0.0", None).severity == "hard"
    assert RecipientStatus("a@b", "failed", None, None).severity == "hard"
    assert RecipientStatus("a@b", "failed", "4.2.2", None).severity == "soft"
    assert RecipientStatus("a@b", "delayed", None, None).severity == "soft"
    assert RecipientStatus("a@b", "relayed", "2.0.0", None).severity is None


def test_arf_fields() -> None:
    report = parse_arf(rfc5965_arf("fraud", rcpt="Eve@Customer.example"))
    assert report is not None
    assert (report.feedback_type, report.user_agent, report.original_rcpt_to) == ("fraud", "SomeGenerator/1.0", ("eve@customer.example",))
    assert report.original_mail_from == "alice@agency.example"
    assert report.original_message_id == STEP1_ID
    real = parse_arf(sample("arf_abuse.eml"))
    assert real is not None and real.original_return_path == "bounces+42-0e00728ff5a4@agency.example"


def test_not_reports() -> None:
    human = reply("hello")
    assert parse_dsn(human) is None and parse_arf(human) is None and returned_original(human) is None
    assert parse_arf(rfc3464_dsn([("a@x.example", "failed", "5.1.1")])) is None
    assert parse_dsn(rfc5965_arf()) is None


def test_status_codes_in_text() -> None:
    assert status_codes("550 5.1.1 <a@b>: unknown; then 4.4.7 later, not 1.2.3 or 5.1") == ["5.1.1", "4.4.7"]
