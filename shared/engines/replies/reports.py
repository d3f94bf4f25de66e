"""Machine-readable mail reports: RFC 3464 delivery status notifications and RFC 5965 abuse reports.

Both arrive as `multipart/report` and are read with the standard `email` package only:

- DSN (`report-type=delivery-status`): the `message/delivery-status` part is one per-message
  header block (Reporting-MTA, ...) followed by one block per recipient (`Final-Recipient`,
  `Action: failed | delayed | delivered | relayed | expanded`, `Status: X.Y.Z`,
  `Diagnostic-Code`). The std parser already splits that part into one `Message` per block.
- ARF (`report-type=feedback-report`): the `message/feedback-report` part is one header block
  (`Feedback-Type`, `User-Agent`, `Version`, `Original-Rcpt-To`, `Original-Mail-From`, ...).

Either may carry the returned original as `message/rfc822` or `text/rfc822-headers`; its
`Message-ID` (ours) and `Return-Path` (our VERP address) tie the report back to one send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email import policy
from email.parser import HeaderParser

from shared.engines.replies.mime import addresses, header, header_values, normalize_address
from shared.engines.replies.reasons import enhanced_code, enhanced_codes, reason, severity

_ANGLE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
FAILURE_ACTIONS = frozenset({"failed", "delayed", "expired"})


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN."""

    recipient: str  # normalized address from Final-Recipient (or Original-Recipient)
    action: str  # lower-cased Action
    status: str | None  # "5.1.1", None when absent or unreadable
    diagnostic: str | None

    @property
    def severity(self) -> str | None:
        """"hard", "soft" or None (not a failure), by `reasons.severity`: the status code class decides.

        `failed`, `delayed` and `expired` (SendGrid's and some appliances' word for a message given up
        after its retry period; RFC 3464 has no such Action, but it is a failure) are failures.
        """
        if self.action not in FAILURE_ACTIONS:
            return None
        code = self.status or enhanced_code(self.diagnostic)
        return severity(code, self.diagnostic, action=self.action)

    @property
    def reason(self) -> str:
        """The vocabulary reason of this recipient's failure (`reasons.reason`)."""
        return reason(self.status or enhanced_code(self.diagnostic), self.diagnostic, action=self.action)


@dataclass(frozen=True)
class DeliveryReport:
    """A parsed RFC 3464 DSN."""

    reporting_mta: str | None
    recipients: tuple[RecipientStatus, ...]
    original_message_id: str | None
    original_return_path: str | None
    original_subject: str | None


@dataclass(frozen=True)
class FeedbackReport:
    """A parsed RFC 5965 ARF report."""

    feedback_type: str  # lower-cased: abuse, fraud, virus, other, not-spam, auth-failure, ...
    user_agent: str | None
    original_rcpt_to: tuple[str, ...]
    original_mail_from: str | None
    original_message_id: str | None
    original_return_path: str | None
    original_subject: str | None


def _report_type(msg: Message) -> str | None:
    try:
        if msg.get_content_type() != "multipart/report":
            return None
        return (msg.get_param("report-type") or "").lower() or None  # type: ignore[union-attr]
    except Exception:
        return None


def _parts(msg: Message, content_type: str) -> list[Message]:
    try:
        return [p for p in msg.walk() if p.get_content_type() == content_type]
    except Exception:
        return []


def _blocks(part: Message) -> list[Message]:
    """Header blocks of a message/delivery-status or message/feedback-report part."""
    try:
        payload = part.get_payload()
    except Exception:
        return []
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    if isinstance(payload, str):  # some MTAs send it as text: parse the blocks ourselves
        return [HeaderParser(policy=policy.compat32).parsestr(b) for b in re.split(r"\r?\n\r?\n", payload) if b.strip()]
    return []


def _typed_address(value: str) -> str:
    """`rfc822; Bob@Example.com` -> `bob@example.com`."""
    return normalize_address(value.split(";", 1)[-1])


def returned_original(msg: Message) -> Message | None:
    """The returned original's headers, from message/rfc822 or text/rfc822-headers, else None."""
    try:
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype == "message/rfc822":
                payload = part.get_payload()
                if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                    return payload[0]
            elif ctype == "text/rfc822-headers":
                text = part.get_payload(decode=True) or b""
                return HeaderParser(policy=policy.compat32).parsestr(text.decode("utf-8", "replace"))
    except Exception:
        return None
    return None


def _original_fields(msg: Message) -> tuple[str | None, str | None, str | None]:
    original = returned_original(msg)
    if original is None:
        return None, None, None
    found = _ANGLE_ID.search(header(original, "Message-ID"))
    return_path = addresses(original, "Return-Path")
    return (
        found.group(0) if found else None,
        return_path[0] if return_path else None,
        header(original, "Subject") or None,
    )


def parse_dsn(msg: Message) -> DeliveryReport | None:
    """The DSN's per-recipient results, or None when `msg` is not a delivery-status report."""
    # The status part decides, not the outer type (some MTAs wrap it in multipart/mixed).
    status_parts = _parts(msg, "message/delivery-status") or _parts(msg, "message/global-delivery-status")
    if not status_parts:
        return None
    blocks = _blocks(status_parts[0])
    per_message = blocks[0] if blocks else None
    recipients: list[RecipientStatus] = []
    for block in blocks:
        recipient = _typed_address(header(block, "Final-Recipient") or header(block, "Original-Recipient"))
        action = header(block, "Action").lower().split(" ")[0] if header(block, "Action") else ""
        if not recipient or not action:
            continue  # the per-message block, or a recipient block missing its required fields
        recipients.append(
            RecipientStatus(
                recipient=recipient,
                action=action,
                status=enhanced_code(header(block, "Status")),
                diagnostic=header(block, "Diagnostic-Code") or None,
            )
        )
    original_id, return_path, subject = _original_fields(msg)
    reporting = header(per_message, "Reporting-MTA") if per_message is not None else ""
    return DeliveryReport(
        reporting_mta=reporting.split(";", 1)[-1].strip() or None,
        recipients=tuple(recipients),
        original_message_id=original_id,
        original_return_path=return_path,
        original_subject=subject,
    )


def parse_arf(msg: Message) -> FeedbackReport | None:
    """The abuse report's fields, or None when `msg` is not an RFC 5965 feedback report."""
    # The report part decides, not the outer type: Hotmail/Outlook and some ESPs send the same
    # parts inside multipart/mixed. A feedback-report part without Feedback-Type is still a report
    # (RFC 5965 makes the field required; "abuse" is the type senders omit it for).
    parts = _parts(msg, "message/feedback-report")
    if not parts:
        return None
    blocks = _blocks(parts[0])
    if not blocks:
        return None
    block = blocks[0]
    feedback_type = header(block, "Feedback-Type").lower().strip() or "abuse"
    rcpts = tuple(dict.fromkeys(a for a in (normalize_address(v) for v in header_values(block, "Original-Rcpt-To")) if a))
    original_id, return_path, subject = _original_fields(msg)
    mail_from = normalize_address(header(block, "Original-Mail-From")) or None
    return FeedbackReport(
        feedback_type=feedback_type,
        user_agent=header(block, "User-Agent") or None,
        original_rcpt_to=rcpts,
        original_mail_from=mail_from,
        original_message_id=original_id,
        original_return_path=return_path or mail_from,
        original_subject=subject,
    )


def status_codes(text: str) -> list[str]:
    """Enhanced status codes (RFC 3463, `5.1.1`) found in free text, in order."""
    return enhanced_codes(text)
