"""Sample received mail for the replies tests: files in tests/data/mail plus messages built to the RFCs."""

from __future__ import annotations

from email.message import EmailMessage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.message import Message
from pathlib import Path

from shared.engines.replies import parse_bytes

MAIL_DIR = Path(__file__).resolve().parent.parent / "data" / "mail"
VERP_SECRET = "test-verp-secret"  # the secret the VERP addresses in tests/data/mail were signed with
OUR_DOMAIN = "mail.agency.example"
STEP1_ID = "<2fea40f8-8cff-56b5-bc63-ff3307015b42@mail.agency.example>"  # legacy_message_id(7, 1001, 1, OUR_DOMAIN): sent before keyed ids
STEP2_ID = "<5773f831-ec5f-5c57-ac56-7328ba604e73@mail.agency.example>"  # legacy_message_id(7, 1001, 2, OUR_DOMAIN): sent before keyed ids


def sample(name: str) -> EmailMessage:
    return parse_bytes((MAIL_DIR / name).read_bytes())


def reply(body: str, *, subject: str = "Re: Quick question", headers: dict[str, str] | None = None,
          sender: str = "Lead <lead@customer.example>") -> EmailMessage:
    """A plain-text reply to our step 1, as bytes then parsed (the way it arrives)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Alice Rep <alice@agency.example>"
    msg["Subject"] = subject
    msg["Message-ID"] = "<reply-1@customer.example>"
    msg["In-Reply-To"] = STEP1_ID
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return parse_bytes(msg.as_bytes())


def _original(rcpt: str, return_path: str | None = None) -> Message:
    original = MIMEText("Hi, quick question.\n\nUnsubscribe: https://agency.example/u/TOKEN\n")
    if return_path:
        original["Return-Path"] = f"<{return_path}>"
    original["From"] = "Alice Rep <alice@agency.example>"
    original["To"] = rcpt
    original["Subject"] = "Quick question"
    original["Message-ID"] = STEP1_ID
    return original


def rfc3464_dsn(recipients: list[tuple[str, str, str]], *, return_path: str | None = None,
                headers_only: bool = False) -> EmailMessage:
    """A DSN built as RFC 3464 §2 describes: (address, action, status) per recipient."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = return_path or "alice@agency.example"
    report["Subject"] = "Delivery Status Notification"
    report["Message-ID"] = "<dsn-1@mx.example.net>"
    report.attach(MIMEText("Your message could not be delivered to some recipients.\n"))
    status_part = Message()
    status_part["Content-Type"] = "message/delivery-status"
    per_message = Message()  # the generator writes each block as a header block, blank line between
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_message["Arrival-Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    status_part.attach(per_message)
    for address, action, status in recipients:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {address}"
        block["Action"] = action
        block["Status"] = status
        block["Diagnostic-Code"] = f"smtp; {status[0]}50 {status} mailbox problem"
        status_part.attach(block)
    report.attach(status_part)
    original = _original(recipients[0][0], return_path)
    if headers_only:
        headers = Message()
        headers["Content-Type"] = "text/rfc822-headers"
        headers.set_payload("".join(f"{k}: {v}\n" for k, v in original.items()))
        report.attach(headers)
    else:
        report.attach(MIMEMessage(original))
    return parse_bytes(report.as_bytes())


def rfc5965_arf(feedback_type: str = "abuse", rcpt: str = "eve@customer.example") -> EmailMessage:
    """An ARF report as in RFC 5965 §2 (example in Appendix B)."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "<abusedesk@example.com>"
    report["To"] = "<fbl@agency.example>"
    report["Subject"] = "FW: Quick question"
    report["Message-ID"] = "<arf-1@example.com>"
    report.attach(MIMEText("This is an email abuse report for a message received from IP 192.0.2.1.\n"))
    feedback = Message()
    feedback["Content-Type"] = "message/feedback-report"
    feedback.set_payload(
        f"Feedback-Type: {feedback_type}\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n"
        f"Original-Mail-From: <alice@agency.example>\nOriginal-Rcpt-To: <{rcpt}>\n"
        "Arrival-Date: Mon, 23 Nov 2026 11:59:00 +0000\nSource-IP: 192.0.2.1\n"
    )
    report.attach(feedback)
    report.attach(MIMEMessage(_original(rcpt)))
    return parse_bytes(report.as_bytes())
