"""Reading bounces the way real servers send them: RFC 3464 first, then provider JSON, then each MTA's own format.

`analyze(msg)` returns a `Bounce` (kind, reason, status, recipients, the rule that fired and the
diagnostic) or None when the message is not a bounce. Order, first that applies wins:

1. RFC 3464: `multipart/report; report-type=delivery-status` (or any message/delivery-status
   part): per recipient Action failed | delayed | expired; severity by `reasons.severity` (the
   enhanced status code decides), reason by `reasons.reason`.
2. Provider notifications carried in mail: Amazon SES (raw or inside an SNS envelope) and SendGrid
   event JSON (`event: bounce | dropped | deferred | blocked`).
3. Non-standard bounces, recognized by their sender (`MAILER-DAEMON`, `postmaster`, a null
   Return-Path, `MAILER-DAEMON <>` with no address), by an MTA's own wording (the `MTAS` table:
   Postfix, Exim, qmail, Sendmail, Exchange/Office 365, Gmail, Yahoo, Notes, DragonFly, Courier,
   Japanese carriers, Amazon SES's mail form, ...), or by a bounce subject together with failure
   wording. Addresses come from flufl.bounce, then from the MTA's text, then from the returned
   original's To; the status code and reason from the text.
4. A bounce forwarded by a person (`Fwd: Returned mail ...` with a bounce quoted in it) is read
   as the bounce it quotes, with the forwarder in the evidence: it is never a human reply.

A bounce whose reason cannot be read is still a bounce (`reason` "unknown", hard): it stops the
sequence and counts for the shield. Complaints (ARF, JMRP, SES/SendGrid complaint events) are
read by `complaint(msg)`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from email.message import Message

from flufl.bounce import all_failures

from shared.engines.replies.mime import addresses, all_text, header, normalize_address, part_text, sender
from shared.engines.replies.reasons import enhanced_code, reason, reason_for_text, severity, smtp_code
from shared.engines.replies.reports import DeliveryReport, parse_arf, parse_dsn, returned_original

log = logging.getLogger(__name__)

BOUNCE_LOCALS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "mailer_daemon", "bounce",
                 "bounces", "mdaemon", "mail-delivery-system"}
BOUNCE_DISPLAY_NAMES = re.compile(r"^\s*\"?(?:mailer[- _]?daemon|mail delivery (?:system|subsystem|service)|"
                                  r"postmaster|mail administrator|mail delivery)\b", re.IGNORECASE)
MAX_TEXT = 200_000

# Per-MTA signatures: (name, how its bounce text or headers start, where its diagnostic sits).
# Sources: the MTAs' own templates (Postfix bounce(8) templates, Exim's "Mail delivery failed",
# qmail-send's "Hi. This is the qmail-send program", sendmail's transcript), and the lhost
# tables of Sisimai and flufl.bounce for the rest.
MTAS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(p, re.IGNORECASE | re.MULTILINE)) for name, p in (
    ("postfix", r"This is the mail system at host|X-Postfix|Undelivered Mail Returned to Sender"),
    ("exim", r"This message was created automatically by mail delivery software|Mail delivery failed: returning message"
             r"|A message that you sent could not be delivered to one or more of its|X-Failed-Recipients"),
    ("qmail", r"Hi\. This is the qmail-send program|I'm afraid I wasn't able to deliver your message|"
              r"I wasn't able to deliver your message to the following addresses"),
    ("sendmail", r"The original message was received at|-----\s*Transcript of session follows\s*-----|"
                 r"Returned mail: see transcript|-----\s*The following addresses had permanent fatal errors"),
    ("exchange", r"Delivery has failed to these recipients or groups|Your message to .{1,200} couldn't be delivered|"
                 r"Diagnostic information for administrators|Remote Server returned '|Undeliverable:|"
                 r"The following recipient\(s\) cannot be reached|Your message did not reach some or all"),
    ("gmail", r"Delivery to the following recipient failed permanently|The response from the remote server was|"
              r"Address not found|Your message wasn't delivered to|Delivery Status Notification \(Failure\)|"
              r"Message not delivered|There was a temporary problem delivering your message"),
    ("yahoo", r"Sorry, we were unable to deliver your message to the following address|"
              r"Message from yahoo\.com\.|This message was created automatically by mail delivery software"),
    ("notes", r"DELIVERY FAILURE:|Your message\s+Subject:.{0,200}was not delivered to|Lotus Domino|"
              r"was not delivered to:\s"),
    ("dragonfly", r"This is the DragonFly Mail Agent|There was an error delivering your mail to"),
    ("courier", r"This is a delivery status notification from|Courier mail server"),
    ("mdaemon", r"The following addresses had delivery problems|MDaemon"),
    ("japan_carrier", r"ezweb\.ne\.jp|docomo\.ne\.jp|softbank\.ne\.jp|i\.softbank\.jp|au\.com|biglobe|"
                      r"The user\(s\) account is disabled|Your mail sent on .{1,80} could not be delivered|"
                      r"-----\s*Non-delivered information\s*-----|Unknown user:"),
    ("amazon_ses", r"An error occurred while trying to deliver the mail to the following recipients"),
    ("generic", r"could not be delivered|undeliverable|delivery (?:has )?failed|permanent(?:ly)? fail|"
                r"delivery to the following recipients? failed|user unknown|unable to deliver|"
                r"message was not delivered|returned mail|failure notice|delivery status notification|"
                r"failed to deliver|couldn't be delivered|non-delivery|not delivered"),
))

BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|returned to sender|delivery (?:status notification|failure|failed|problem|notification)|"
    r"mail delivery failed|failure notice|delivery failure|non-?delivery|not delivered|could not be delivered|"
    r"mail system error|warning: could not send|delayed mail|delivery delayed|message delayed|"
    r"returned message|nicht zustellbar|unzustellbar|non remis|non distribuable|no se puede entregar|"
    r"onbestelbaar|unable to deliver|mail failure|rejected",
    re.IGNORECASE,
)
FORWARD_SUBJECT = re.compile(r"^\s*(?:\[?fwd?\]?|fw|wg|tr|rv|doorst)\s*:", re.IGNORECASE)
# Where an MTA names the failed address: "<bob@x>: ...", "  bob@x\n    host said", "To: bob@x".
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_FAILED_LINE = re.compile(r"^[ \t]*<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+)>?:?\s*$|^[ \t]*<([^<>@\s]+@[^<>\s]+)>[:\s]",
                          re.MULTILINE)
_DELAY = re.compile(r"has not yet been delivered|has been delayed|still being retried|will (?:continue to )?(?:try|retry)|"
                    r"delivery (?:is )?delayed|temporary problem|not been delivered yet", re.IGNORECASE)
_DIAGNOSTIC_LINE = re.compile(r"^.*\b[45]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\b)?.*$|^.*\b[45]\.\d{1,3}\.\d{1,3}\b.*$",
                              re.MULTILINE)


@dataclass(frozen=True)
class Bounce:
    """One bounce's verdict with its evidence."""

    kind: str  # "hard_bounce" | "soft_bounce" | "auto_reply" (a DSN reporting only success)
    evidence: str
    reason: str | None
    rule: str  # which rule fired: "rfc3464", "provider:ses", "mta:exim", "sender", "forwarded:mta:..."
    recipients: tuple[str, ...] = field(default=())
    status: str | None = None
    diagnostic: str | None = None


@dataclass(frozen=True)
class Complaint:
    """One complaint (or feedback notice) with its evidence."""

    feedback_type: str
    evidence: str
    rule: str
    recipients: tuple[str, ...] = field(default=())


def _local(address: str) -> str:
    return address.split("@", 1)[0] if "@" in address else ""


def daemon_sender(msg: Message) -> bool:
    """From mailer-daemon/postmaster, or `MAILER-DAEMON <>` with no address (the display name says who wrote it)."""
    if _local(sender(msg)) in BOUNCE_LOCALS:
        return True
    # "Mail Delivery System <noreply@...>": the display name says who wrote it, whatever the address.
    return bool(BOUNCE_DISPLAY_NAMES.match(header(msg, "From") or ""))


def _text(msg: Message) -> str:
    return all_text(msg)[:MAX_TEXT]


def which_mta(msg: Message, text: str) -> str | None:
    """The first MTA of the `MTAS` table whose wording (or telltale header) the message carries."""
    heads = "\n".join(f"{k}: {v}" for k, v in _items(msg))
    for name, pattern in MTAS:
        if pattern.search(text) or (name != "generic" and pattern.search(heads)):
            return name
    return None


def _items(msg: Message) -> list[tuple[str, str]]:
    try:
        return [(k, str(v)) for k, v in msg.items()]
    except Exception:
        return []


# -- RFC 3464 ---------------------------------------------------------------------------------


def _from_dsn(report: DeliveryReport) -> Bounce | None:
    failures = [(r, r.severity) for r in report.recipients if r.severity is not None]
    hard = [r for r, s in failures if s == "hard"]
    soft = [r for r, s in failures if s == "soft"]
    chosen, kind = (hard, "hard_bounce") if hard else (soft, "soft_bounce")
    if not chosen:
        return None
    first = chosen[0]
    code = first.status or enhanced_code(first.diagnostic)
    what = f"DSN Status {first.status}" if first.status else f"DSN Action {first.action}"
    if first.action in {"delayed", "expired"}:
        what = f"DSN Action {first.action}{f' Status {first.status}' if first.status else ''}"
    more = f" (+{len(chosen) - 1} more)" if len(chosen) > 1 else ""
    return Bounce(kind, f"{what} for {first.recipient}{more}", first.reason, "rfc3464",
                  tuple(r.recipient for r in chosen), code, first.diagnostic)


# -- providers --------------------------------------------------------------------------------


def _json_bodies(msg: Message) -> list[object]:
    found = []
    try:
        parts = [p for p in msg.walk() if p.get_content_maintype() in {"text", "application"}
                 and p.get_content_subtype() in {"plain", "json"}]
    except Exception:
        return []
    for part in parts:
        try:
            payload = part.get_payload(decode=True) or b""
            text = payload.decode(part.get_content_charset() or "utf-8", "replace").strip()
        except Exception:
            continue
        if not text[:1] in {"{", "["}:
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("Message"), str):  # an SNS envelope
            try:
                data = json.loads(data["Message"])
            except ValueError:
                continue
        found.append(data)
    return found


def _ses_bounce(data: dict) -> Bounce | None:
    if str(data.get("notificationType") or data.get("eventType") or "").lower() != "bounce":
        return None
    bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
    rows = [r for r in bounce.get("bouncedRecipients") or [] if isinstance(r, dict)]
    recipients = tuple(a for a in (normalize_address(r.get("emailAddress")) for r in rows) if a)
    first = rows[0] if rows else {}
    diagnostic = str(first.get("diagnosticCode") or "") or None
    code = enhanced_code(str(first.get("status") or "")) or enhanced_code(diagnostic)
    bounce_type = str(bounce.get("bounceType") or "")
    sub_type = str(bounce.get("bounceSubType") or "")
    action = {"permanent": "failed", "transient": "delayed"}.get(bounce_type.lower())
    why = reason(code, f"{diagnostic or ''} {sub_type}", action=action)
    if sub_type.lower() in {"mailboxfull"}:
        why = "mailbox_full"
    elif sub_type.lower() in {"suppressed", "onaccountsuppressionlist"}:
        why = "blocked"
    elif sub_type.lower() == "nosuchuser" or (why in {"rejected", "unknown"} and sub_type.lower() == "general" and not code):
        why = "user_unknown" if sub_type.lower() == "nosuchuser" else why
    level = severity(code, diagnostic, action=action, reason_name=why)
    kind = "hard_bounce" if level == "hard" else "soft_bounce"
    evidence = f"Amazon SES bounceType {bounce_type or '?'}/{sub_type or '?'}{f' Status {code}' if code else ''}"
    if recipients:
        evidence += f" for {recipients[0]}"
    return Bounce(kind, evidence, why, "provider:ses", recipients, code, diagnostic)


def _sendgrid_bounce(events: list) -> Bounce | None:
    for event in events:
        if not isinstance(event, dict):
            continue
        name = str(event.get("event") or "").lower()
        if name not in {"bounce", "dropped", "deferred", "blocked"}:
            continue
        address = normalize_address(event.get("email"))
        diagnostic = str(event.get("reason") or event.get("response") or "") or None
        code = enhanced_code(str(event.get("status") or "")) or enhanced_code(diagnostic)
        action = "delayed" if name == "deferred" else "failed"
        why = reason(code, diagnostic, action=action)
        if str(event.get("type") or "").lower() == "blocked" and why in {"rejected", "unknown", "policy"}:
            why = "blocked"
        level = severity(code, diagnostic, action=action, reason_name=why)
        kind = "hard_bounce" if level == "hard" else "soft_bounce"
        evidence = f"SendGrid event {name}{f' Status {code}' if code else ''}{f' for {address}' if address else ''}"
        return Bounce(kind, evidence, why, "provider:sendgrid", (address,) if address else (), code, diagnostic)
    return None


def _provider(msg: Message) -> Bounce | None:
    for data in _json_bodies(msg):
        if isinstance(data, dict):
            found = _ses_bounce(data)
            if found is not None:
                return found
        if isinstance(data, list) or (isinstance(data, dict) and "event" in data):
            found = _sendgrid_bounce(data if isinstance(data, list) else [data])
            if found is not None:
                return found
    return None


def _provider_complaint(msg: Message) -> Complaint | None:
    for data in _json_bodies(msg):
        if isinstance(data, dict) and str(data.get("notificationType") or data.get("eventType") or "").lower() == "complaint":
            complaint = data.get("complaint") if isinstance(data.get("complaint"), dict) else {}
            rows = [r for r in complaint.get("complainedRecipients") or [] if isinstance(r, dict)]
            recipients = tuple(a for a in (normalize_address(r.get("emailAddress")) for r in rows) if a)
            kind = str(complaint.get("complaintFeedbackType") or "abuse").lower()
            return Complaint(kind, f"Amazon SES complaint ({kind})", "provider:ses", recipients)
        events = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        for event in events:
            if isinstance(event, dict) and str(event.get("event") or "").lower() == "spamreport":
                address = normalize_address(event.get("email"))
                return Complaint("abuse", "SendGrid event spamreport", "provider:sendgrid", (address,) if address else ())
    return None


# -- complaints -------------------------------------------------------------------------------

_FEEDBACK_TEXT = re.compile(r"^Feedback-Type:[ \t]*([A-Za-z-]+)", re.MULTILINE | re.IGNORECASE)
_RCPT_TEXT = re.compile(r"^Original-Rcpt-To:[ \t]*<?([^>\s]+)>?", re.MULTILINE | re.IGNORECASE)
_JMRP = re.compile(r"This is an email abuse report|email abuse report for an email message|"
                   r"X-HmXmrOriginalRecipient|complaint about a message|reported this (?:message|email) as spam",
                   re.IGNORECASE)


def complaint(msg: Message) -> Complaint | None:
    """An RFC 5965 report (also inside multipart/mixed), a Microsoft JMRP report, or a provider's complaint event."""
    report = parse_arf(msg)
    if report is not None:
        recipients = report.original_rcpt_to or _original_to(msg)
        return Complaint(report.feedback_type, f"ARF Feedback-Type: {report.feedback_type}", "rfc5965", recipients)
    original = returned_original(msg)
    if original is not None:
        # The report sent as text/plain instead of message/feedback-report (some feedback loops).
        typed = _FEEDBACK_TEXT.search("\n".join(_own_text(msg))[:20_000])
        if typed:
            kind = typed.group(1).lower()
            rcpts = tuple(a for a in (normalize_address(x) for x in _RCPT_TEXT.findall("\n".join(_own_text(msg)))) if a)
            return Complaint(kind, f"ARF Feedback-Type: {kind} (report as text)", "rfc5965-text", rcpts or _original_to(msg))
        heads = "\n".join(f"{k}: {v}" for k, v in _items(original))
        body = _text(msg)[:20_000]
        if _JMRP.search(body) or "x-hmxmroriginalrecipient" in heads.lower():
            recipients = tuple(addresses(original, "X-HmXmrOriginalRecipient")) or _original_to(msg)
            return Complaint("abuse", "Microsoft JMRP abuse report (multipart/mixed)", "jmrp", recipients)
    return _provider_complaint(msg)


def _original_to(msg: Message) -> tuple[str, ...]:
    original = returned_original(msg)
    return tuple(addresses(original, "To")) if original is not None else ()


# -- non-standard bounces ---------------------------------------------------------------------


def _flufl(msg: Message) -> tuple[list[str], list[str]]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd input must not make classify raise
        log.warning("flufl.bounce failed on a message; reading the text only")
        return [], []
    hard = sorted(a for a in (normalize_address(x) for x in permanent) if a)
    soft = sorted(a for a in (normalize_address(x) for x in temporary) if a and a not in hard)
    return hard, soft


def _text_recipients(msg: Message, text: str) -> tuple[str, ...]:
    own = {sender(msg), *addresses(msg, "To", "Cc", "Return-Path", "Delivered-To", "X-Original-To")}
    found = [normalize_address(x) for x in addresses(msg, "X-Failed-Recipients")]
    for match in _FAILED_LINE.finditer(text):
        found.append(normalize_address(match.group(1) or match.group(2)))
    if not found:
        found = list(_original_to(msg))
    return tuple(dict.fromkeys(a for a in found if a and a not in own and _local(a) not in BOUNCE_LOCALS))


def _diagnostic(text: str, original_at: int) -> str | None:
    head = text[:original_at] if original_at > 0 else text
    found = _DIAGNOSTIC_LINE.search(head)
    return found.group(0).strip()[:500] if found else None


def _own_text(part: Message, depth: int = 0) -> list[str]:
    """Text parts of the bounce itself, not of the returned original (message/rfc822 is not descended)."""
    if depth > 20:
        return []
    try:
        if part.is_multipart():
            return [t for p in part.get_payload() if isinstance(p, Message) for t in _own_text(p, depth + 1)]
        if part.get_content_maintype() == "text" and part.get_content_type() != "text/rfc822-headers":
            return [part_text(part)]
        if part.get_content_type() in {"message/delivery-status", "message/global-delivery-status"}:
            return [str(b) for b in part.get_payload() or [] if isinstance(b, Message)]
    except Exception:
        return []
    return []


def _report_text(msg: Message) -> str:
    """The bounce's own text without the returned original (whose words must not decide the reason)."""
    text = "\n".join(_own_text(msg))[:MAX_TEXT]
    marker = re.search(r"^-{3,}\s*(?:Original message|Below this line is a copy|This is a copy of the message|"
                       r"Undelivered message|Unsent message below|Returned message|"
                       r"original message follows)|^Original message follows", text, re.IGNORECASE | re.MULTILINE)
    return text[: marker.start()] if marker else text


def _nonstandard(msg: Message, *, rule_prefix: str = "") -> Bounce | None:
    text = _report_text(msg)
    mta = which_mta(msg, text)
    subject = header(msg, "Subject")
    # A null Return-Path alone is not enough: RFC 3834 asks auto-responders to send with one too.
    daemon = daemon_sender(msg)
    null_path = header(msg, "Return-Path").strip() in {"<>", "< >"}
    bounce_subject = bool(BOUNCE_SUBJECT.search(subject))
    # Generic failure wording counts only from an automaton (null path, Auto-Submitted): a person
    # writing "Re: delivery problems ... could not be delivered" is a human reply.
    automated = null_path or header(msg, "Auto-Submitted").split(";")[0].strip().lower() not in {"", "no"}
    if not (daemon or (mta and mta != "generic") or (mta == "generic" and automated)
            or (null_path and bounce_subject)):
        return None
    hard_rcpts, soft_rcpts = _flufl(msg)
    diagnostic = _diagnostic(text, -1)
    code = enhanced_code(diagnostic) or enhanced_code(text)
    recipients = tuple(hard_rcpts or soft_rcpts) or _text_recipients(msg, text)
    why = reason(code, text, action=None)
    if why == "unknown" and (smtp_code(diagnostic) or hard_rcpts):
        why = "rejected"
    # Without a code flufl.bounce's permanent/temporary split is a guess (it calls most failures
    # permanent): a delay notice is soft, then the reason's own default decides, then flufl.bounce.
    if code or smtp_code(diagnostic):
        level = severity(code, diagnostic)
    elif _DELAY.search(text):
        level = "soft"
    elif why not in {"rejected", "unknown"}:
        level = severity(None, None, reason_name=why)
    elif soft_rcpts and not hard_rcpts:
        level = "soft"
    else:
        level = "hard"
    kind = "hard_bounce" if level == "hard" else "soft_bounce"
    if not daemon and FORWARD_SUBJECT.match(subject):
        rule_prefix = "forwarded:"
    rule = f"{rule_prefix}mta:{mta}" if mta else f"{rule_prefix}sender"
    who = sender(msg) or "null sender"
    if rule_prefix == "forwarded:":
        who = f"{who} (forwarded by a person)"
    if recipients:
        evidence = f"bounce from {who}: {code or ('permanent failure' if level == 'hard' else 'temporary failure')} for {recipients[0]}"
    elif code:
        evidence = f"bounce from {who}: status {code}"
    else:
        evidence = f"bounce from {who}: reason unknown"
    return Bounce(kind, evidence, why, rule, recipients, code, diagnostic)


def _forwarded(msg: Message) -> Bounce | None:
    """A person forwarding a bounce: read the bounce they quote, never a human reply."""
    subject = header(msg, "Subject")
    if not FORWARD_SUBJECT.match(subject) or not BOUNCE_SUBJECT.search(subject):
        return None
    for part in msg.walk() if msg.is_multipart() else ():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner is not msg:
                found = analyze(inner, forwarded=True)
                if found is not None and found.kind != "auto_reply":
                    return Bounce(found.kind, f"{found.evidence} (forwarded by {sender(msg) or 'someone'})",
                                  found.reason, f"forwarded:{found.rule}", found.recipients, found.status, found.diagnostic)
    text = _text(msg)
    mta = which_mta(msg, text)
    if mta is None:
        return None
    code = enhanced_code(text)
    why = reason(code, text)
    level = severity(code, _diagnostic(text, -1), reason_name=why)
    recipients = _text_recipients(msg, text)
    evidence = (f"bounce forwarded by {sender(msg) or 'someone'}: {code or why}"
                f"{f' for {recipients[0]}' if recipients else ''}")
    return Bounce("hard_bounce" if level == "hard" else "soft_bounce", evidence, why, f"forwarded:mta:{mta}",
                  recipients, code, _diagnostic(text, -1))


def analyze(msg: Message, *, forwarded: bool = False) -> Bounce | None:
    """The bounce verdict for `msg`, or None when it is not a bounce (see the module docstring for the order)."""
    report = parse_dsn(msg)
    if report is not None:
        found = _from_dsn(report)
        if found is not None and found.reason in {"rejected", "unknown"}:
            # The code and Diagnostic-Code said nothing precise: the DSN's human-readable part may (Notes, Yahoo).
            better = reason_for_text(_report_text(msg))
            if better:
                found = replace(found, reason=better)
        if found is not None:
            return found
        if report.recipients:
            actions = ", ".join(sorted({r.action for r in report.recipients}))
            return Bounce("auto_reply", f"DSN Action {actions} (no failure)", None, "rfc3464",
                          tuple(r.recipient for r in report.recipients))
    provider = _provider(msg)
    if provider is not None:
        return provider
    if report is not None:  # a delivery-status report we could not read: a bounce all the same
        return _nonstandard(msg) or Bounce("hard_bounce", "DSN without readable recipients", "unknown", "rfc3464")
    found = _nonstandard(msg)
    if found is not None:
        return found
    return None if forwarded else _forwarded(msg)
