"""Received mail for replies tests, built to the RFCs: replies, auto-replies, RFC 3464 DSNs, RFC 5965 ARF reports."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from standardwebhooks.webhooks import Webhook

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"replies-test-webhook-secret-32b!").decode()


def reply(*, frm: str, to: str, subject: str, in_reply_to: str | None, body: str = "Sounds good, let's talk.",
          headers: dict[str, str] | None = None, message_id: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or f"<{uuid.uuid4()}@lead-mail.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg.as_bytes()


def german_out_of_office(*, frm: str, to: str, subject: str, in_reply_to: str) -> bytes:
    return reply(frm=frm, to=to, subject=f"Abwesenheitsnotiz: {subject}", in_reply_to=in_reply_to,
                 body="Ich bin bis zum 30.11. nicht im Büro und habe keinen Zugriff auf meine E-Mails.",
                 headers={"Auto-Submitted": "auto-replied"})


def dsn(*, recipient: str, original_message_id: str, original_subject: str, to: str, status: str = "5.1.1",
        mta: str = "mx.lead-mail.example") -> bytes:
    """A Postfix-shaped RFC 3464 report: text part, message/delivery-status, returned headers."""
    action = "failed" if status.startswith("5") else "delayed"
    boundary = f"dsn-{uuid.uuid4().hex}"
    smtp_code = "550" if status.startswith("5") else "451"
    raw = (
        f"Return-Path: <>\r\nFrom: MAILER-DAEMON@smtp.agency.example (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <{uuid.uuid4()}@smtp.agency.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"<{recipient}>: host {mta} said: {smtp_code} {status} mailbox problem\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; smtp.agency.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; {mta}\r\n"
        f"Diagnostic-Code: smtp; {smtp_code} {status} mailbox problem\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Rep <{to}>\r\nTo: {recipient}\r\nSubject: {original_subject}\r\nMessage-ID: {original_message_id}\r\n\r\n"
        f"--{boundary}--\r\n"
    )
    return raw.encode()


def standard_webhook(raw: bytes, *, secret: str = WEBHOOK_SECRET, webhook_id: str | None = None,
                     at: datetime | None = None, envelope_to: list[str] | None = None,
                     extra: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a Standard Webhooks request carrying `raw` (`extra`: more payload fields)."""
    body = json.dumps({"raw_base64": base64.b64encode(raw).decode(), "envelope_to": envelope_to or [], **(extra or {})})
    wid = webhook_id or f"msg_{uuid.uuid4().hex}"
    when = at or datetime.now(UTC)
    sig = Webhook(secret).sign(wid, when, body)
    return body.encode(), {"webhook-id": wid, "webhook-timestamp": str(int(when.timestamp())),
                           "webhook-signature": sig, "content-type": "application/json"}


def mailgun_form(raw: bytes, key: str, *, timestamp: float | None = None) -> dict[str, str]:
    import hashlib
    import hmac

    ts = str(int(timestamp if timestamp is not None else time.time()))
    token = uuid.uuid4().hex + uuid.uuid4().hex[:18]
    sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": ts, "token": token, "signature": sig, "body-mime": raw.decode("utf-8", "replace"),
            "recipient": "rep1@acme.test", "sender": "x@example.com"}


def arf(*, recipient: str, return_path: str, original_subject: str, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 feedback report whose returned original carries only our VERP Return-Path (no Message-ID)."""
    boundary = f"arf-{uuid.uuid4().hex}"
    return (
        f"From: <abusedesk@mail-provider.example>\r\nTo: <fbl@acme.test>\r\nSubject: FW: {original_subject}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <{uuid.uuid4()}@mail-provider.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"{boundary}\"\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is an email abuse report.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: {feedback_type}\r\n"
        f"User-Agent: SomeGenerator/1.0\r\nVersion: 1\r\nOriginal-Mail-From: <{return_path}>\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        f"Return-Path: <{return_path}>\r\nFrom: Rep <rep1@acme.test>\r\nTo: <{recipient}>\r\n"
        f"Subject: {original_subject}\r\n\r\nHi.\r\n\r\n--{boundary}--\r\n"
    ).encode()
