"""The bounce reason vocabulary: each reason's meaning, its status codes and text patterns, hard vs soft and the action.

One place decides severity (`severity`): the enhanced status code (RFC 3463) wherever one is
present, 5.x.x hard and 4.x.x soft, including 5.2.2 "mailbox full" (the code class is what the
server said; the reason keeps the nuance). Without an enhanced code the SMTP reply code decides
(5xx / 4xx), then the DSN Action (`delayed` and `expired` soft, `failed` hard), then the reason's
own default. Reasons follow the established parsers' vocabularies (Sisimai's reason names,
Haraka/bounce-handler's code tables), trimmed to what changes what we do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Severity = Literal["hard", "soft"]


@dataclass(frozen=True)
class Reason:
    """One reason of the vocabulary."""

    name: str
    meaning: str
    default: Severity  # when neither an enhanced code, an SMTP code nor the DSN Action says


# Action per severity (what `ingest.process` does): one fact, named here for the docs and the evidence.
ACTIONS: dict[str, str] = {
    "hard": "suppress the address, stop its sequences, count for the bounce shield",
    "soft": "keep the lead; retry later; repeated soft bounces become hard",
    "complaint": "suppress the address for the client, stop its sequences, count for the complaint shield",
}

REASONS: dict[str, Reason] = {r.name: r for r in (
    Reason("user_unknown", "the mailbox does not exist", "hard"),
    Reason("host_unknown", "the domain does not exist or has no mail server", "hard"),
    Reason("mailbox_disabled", "the mailbox exists but is disabled, suspended or moved", "hard"),
    Reason("mailbox_full", "the mailbox is over quota", "soft"),
    Reason("message_too_big", "the message exceeds the recipient's size limit", "soft"),
    Reason("blocked", "our IP or domain is blocked (blocklist, reputation)", "hard"),
    Reason("spam", "the message was rejected as spam or for its content", "hard"),
    Reason("policy", "refused by a policy: authentication (SPF/DKIM/DMARC), relaying, access", "hard"),
    Reason("throttled", "too many messages or connections: try later", "soft"),
    Reason("expired", "delivery was retried until the queue lifetime ran out", "soft"),
    Reason("network", "the recipient's server could not be reached", "soft"),
    Reason("system", "a fault at the recipient's server", "soft"),
    Reason("rejected", "refused without a more precise reason", "hard"),
    Reason("unknown", "a bounce whose reason could not be read (still a bounce: it stops the sequence)", "hard"),
)}

# Enhanced status codes (RFC 3463 and the IANA registry) -> reason; the first match of the
# longest prefix wins, so "5.1.1" beats "5.1".
_CODE_REASONS: tuple[tuple[str, str], ...] = (
    ("x.1.1", "user_unknown"), ("x.1.0", "user_unknown"), ("x.1.3", "user_unknown"), ("x.1.10", "user_unknown"),
    ("x.1.6", "mailbox_disabled"), ("x.2.1", "mailbox_disabled"),
    ("x.1.2", "host_unknown"), ("x.4.4", "host_unknown"),
    ("x.2.2", "mailbox_full"), ("x.3.1", "system"),
    ("x.2.3", "message_too_big"), ("x.3.4", "message_too_big"),
    ("x.4.7", "expired"),
    ("x.4.1", "network"), ("x.4.2", "network"), ("x.4.0", "network"),
    ("x.7.26", "policy"), ("x.7.25", "policy"), ("x.7.23", "policy"), ("x.7.27", "policy"),
    ("x.7.1", "policy"), ("x.7.0", "policy"), ("x.7.", "policy"),
    ("x.4.5", "throttled"), ("x.4.6", "throttled"), ("x.2.4", "system"),
    ("x.3.", "system"), ("x.5.", "rejected"), ("x.0.0", "rejected"),
)

# Text patterns per reason, read from Diagnostic-Code and bounce bodies. Order matters: the more
# specific reasons first (a "550 5.7.1 listed at Spamhaus" is blocked, not generic policy).
TEXT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(p, re.IGNORECASE)) for name, p in (
    ("blocked", r"spamhaus|spamcop|barracuda|\brbl\b|\bdnsbl\b|blacklist|blocklist|block ?list|\b(?:is|are|was|been|currently) listed\b|listed (?:at|on|by)\b|"
                r"poor reputation|bad reputation|ip reputation|sender reputation|\bbanned\b|client host .{0,80}blocked|"
                r"access denied.{0,40}banned|\bblocked\b|\[?TS0[1-4]\]?|service unavailable.{0,30}client host"),
    ("throttled", r"unusual rate|too many (?:messages|connections|recipients)|rate limit|rate-limited|try (?:again )?later|"
                  r"throttl|temporarily deferred|exceeded (?:the )?(?:rate|sending)|greylist|graylist|slow down"),
    ("spam", r"\bspam\b|junk mail|content (?:rejected|filter)|message content|unsolicited|looks suspicious|"
             r"virus|malware|phishing"),
    ("mailbox_full", r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:the )?(?:storage|quota)|"
                     r"insufficient (?:system )?storage|mailbox size limit|disk quota|user is over|"
                     r"out of storage|inbox is full|messages in recipient's mailbox exceeded|full mailbox|mailfolder is full"),
    ("mailbox_disabled", r"account (?:is )?(?:disabled|inactive|suspended|locked|expired)|mailbox (?:is )?(?:disabled|"
                         r"inactive|suspended)|user (?:account )?(?:is )?(?:disabled|suspended|inactive)|"
                         r"no longer (?:active|in use|with)|has been disabled|deactivated"),
    ("user_unknown", r"user (?:is )?unknown|unknown user|no such (?:user|mailbox|recipient|address|account)|"
                     r"user not found|recipient not found|address not found|mailbox not found|"
                     r"(?:mailbox|user|recipient|address) (?:does not|doesn't) exist|"
                     r"does not exist|invalid (?:recipient|mailbox|address|user)|unknown (?:recipient|local part|"
                     r"mailbox|address)|recipient address rejected|not our customer|no mailbox here|"
                     r"undeliverable address|not listed in (?:domino|public name|the directory)|user doesn't have a|no such person|"
                     r"recipient unknown|address rejected|bad destination mailbox|not a valid mailbox|"
                     r"couldn't be found|could not be found|resolver\.adr\.recipnotfound|"
                     r"mailbox unavailable|user unknown in|this user doesn't have"),
    ("host_unknown", r"host (?:or domain name )?not found|domain (?:not found|does not exist|name not found)|"
                     r"unrouteable (?:mail )?domain|unrouteable address|dns lookup fail|no mail exchangers|couldn't find any host|no mx|name service error|host unknown|unknown host|"
                     r"nxdomain|no such domain|domain .{0,40}not exist|all relevant mx records|"
                     r"no valid hosts|mail domain .{0,40}(?:invalid|unknown)"),
    ("message_too_big", r"message (?:is )?too (?:big|large)|size (?:limit )?exceed|exceeds (?:the )?(?:maximum|"
                        r"size)|message size|too large"),
    ("policy", r"\bdmarc\b|\bspf\b|\bdkim\b|relay(?:ing)? (?:access )?denied|not permitted to relay|"
               r"unable to relay|relay not permitted|authentication (?:required|failed)|"
               r"sender (?:address )?rejected|policy|not authorized|access denied|prohibited|unauthenticated"),
    ("expired", r"retry (?:timeout|time) exceeded|timeout exceeded|queue lifetime|expired|gave up|"
                r"could not be delivered (?:for|within) \d+|too long in (?:the )?queue|delivery time expired|"
                r"queue too long|not going to try again"),
    ("network", r"connection (?:refused|timed out|reset)|timed out|network is unreachable|no route to host|"
                r"lost connection|could not connect|connect to .{0,80}failed"),
    ("system", r"system (?:error|failure)|internal (?:server )?error|local error|temporary (?:local )?problem|"
               r"mail system (?:is )?(?:full|down)"),
))

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP = re.compile(r"(?<![\d.])([45])[0-5]\d(?=[ -]|$)")


def enhanced_code(text: str | None) -> str | None:
    """The first RFC 3463 code (`5.1.1`) in `text`, or None."""
    found = _ENHANCED.search(text or "")
    return found.group(0) if found else None


def enhanced_codes(text: str | None) -> list[str]:
    """Every RFC 3463 code in `text`, in order."""
    return [m.group(0) for m in _ENHANCED.finditer(text or "")]


def smtp_code(text: str | None) -> str | None:
    """The first SMTP reply code (`550`) in `text`, or None."""
    found = _SMTP.search(text or "")
    return found.group(0) if found else None


def reason_for_code(code: str | None) -> str | None:
    """The vocabulary reason of an enhanced status code, or None when the code says nothing more precise."""
    if not code:
        return None
    generic = "x." + code.split(".", 1)[1]
    for prefix, reason in _CODE_REASONS:
        if generic == prefix or (prefix.endswith(".") and generic.startswith(prefix)):
            return reason
    return None


def reason_for_text(text: str | None) -> str | None:
    """The vocabulary reason a diagnostic's wording names, or None."""
    if not text:
        return None
    for name, pattern in TEXT_PATTERNS:
        if pattern.search(text):
            return name
    return None


def reason(code: str | None, diagnostic: str | None, *, action: str | None = None) -> str:
    """The reason for one failure: wording first (more specific than the code class), then the code, then the Action."""
    found = reason_for_text(diagnostic)
    by_code = reason_for_code(code)
    # A precise code (5.1.1, 5.2.2) is not overridden by a generic phrase; a generic one (5.0.0, 5.7.1) is.
    if by_code in {"user_unknown", "host_unknown", "mailbox_full", "message_too_big", "expired", "mailbox_disabled"}:
        if found not in {"blocked", "spam"}:
            return by_code
    if found:
        return found
    if by_code:
        return by_code
    if action == "expired":
        return "expired"
    return "rejected" if code or smtp_code(diagnostic) else "unknown"


def severity(code: str | None, diagnostic: str | None = None, *, action: str | None = None,
             reason_name: str | None = None) -> Severity:
    """Hard or soft: the enhanced code decides wherever present, then the SMTP code, the Action, the reason's default."""
    if code:
        return "hard" if code.startswith("5.") else "soft"
    if (smtp := smtp_code(diagnostic)) is not None:
        return "hard" if smtp.startswith("5") else "soft"
    if action in {"delayed", "expired"}:
        return "soft"
    if action == "failed":
        return "hard"
    return REASONS[reason_name].default if reason_name in REASONS else "hard"
