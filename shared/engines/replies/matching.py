"""Which of our sends a received message answers: ordered match keys, inbound filter, dedupe key.

Pure: the caller tries the keys against Postgres in order and stops at the first hit, re-checking
the tenant there (a key from outside names a candidate, it proves nothing by itself).

1. `message_id`: Message-IDs named by the message, looked up among those stored on our sends
   (keyed ones, `shared.mailids.message_id`, and the legacy uuid5 ones of older sends): In-Reply-To first (the direct parent), then References newest first, then, for a
   DSN or ARF report, the returned original's Message-ID.
2. `verp`: the send's primary key from a signed VERP address (`shared.mailids.parse_verp`), looked
   for in the envelope recipient given by the caller (webhook), the delivery headers an IMAP
   server adds (Delivered-To, X-Original-To, Envelope-To), To/Cc (MTAs address a bounce to the
   envelope sender), Return-Path, and the returned original's Return-Path.
3. `sender_subject`: for clients that drop both: the sender's address plus the subject without
   reply/forward/auto-reply prefixes. For a report, the failed or complaining recipient(s) plus
   the returned original's subject instead (the report's own sender is a mailer-daemon).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from email.message import Message

from shared.engines.replies.classify import AUTO_SUBJECT_PREFIXES, BOUNCE_LOCALS, Classification
from shared.engines.replies.mime import addresses, all_text, header, header_values, normalize_address, sender
from shared.engines.replies.reports import parse_arf, parse_dsn
from shared.mailids import parse_verp, referenced_ids
from shared.status import MatchKind


REPLY_PREFIXES: tuple[str, ...] = (
    "re", "fwd", "fw", "aw", "wg", "sv", "vs", "antw", "antwort", "tr", "rv", "res", "enc", "odp", "r",
)
_REPLY_PREFIX = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:(?:" + "|".join(REPLY_PREFIXES) + r")(?:\[\d+\]|\(\d+\))?\s*:|"
    + "|".join(re.escape(p.rstrip(":")) + r"\s*:" for p in AUTO_SUBJECT_PREFIXES)
    + r")\s*",
    re.IGNORECASE,
)
_LEADING_TAG = re.compile(r"^\s*\[[^\]]{0,40}\]\s*")  # "[EXTERNAL]" and friends
_WS = re.compile(r"\s+")
_ANGLE_ID = re.compile(r"<[^<>\s]+@([^<>\s]+)>")
_INLINE_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+@[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
VERP_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc", "Return-Path")


@dataclass(frozen=True)
class MatchKey:
    """One way to find the send; exactly the fields of its kind are set."""

    kind: MatchKind
    message_id: str | None = None  # "<uuid@domain>" for kind message_id
    message_pk: int | None = None  # messages.id for kind verp
    sender: str | None = None  # normalized address for kind sender_subject
    subject: str | None = None  # normalized subject for kind sender_subject; None: any send to `sender`


def normalize_subject(subject: str) -> str:
    """`"RE: AW: [EXT] Fwd:  Quick  Question"` -> `"quick question"`."""
    text = _WS.sub(" ", subject or "").strip()
    while True:
        stripped = _REPLY_PREFIX.sub("", text, count=1)
        stripped = _LEADING_TAG.sub("", stripped, count=1) if stripped == text else stripped
        if stripped == text:
            return text.casefold()
        text = stripped


def _message_ids(msg: Message, original_id: str | None, domains: Collection[str] | None) -> list[str]:
    direct = referenced_ids(header(msg, "In-Reply-To"))
    chain = list(reversed(referenced_ids(" ".join(header_values(msg, "References")))))
    ids = list(dict.fromkeys([*direct, *chain, *([original_id] if original_id else [])]))
    if domains is None:
        return ids
    wanted = {d.lower() for d in domains}
    return [i for i in ids if (m := _ANGLE_ID.fullmatch(i)) and m.group(1).lower() in wanted]


def verp_pk(msg: Message, secret: str, envelope_to: Iterable[str] = (), original_return_path: str | None = None) -> int | None:
    """The send's primary key from the first valid VERP address, or None."""
    candidates = [*envelope_to, *addresses(msg, *VERP_HEADERS)]
    if original_return_path:
        candidates.append(original_return_path)
    for candidate in candidates:
        pk = parse_verp(normalize_address(candidate) or candidate, secret)
        if pk is not None:
            return pk
    return None


def _inline_original_id(msg: Message) -> str | None:
    """A non-MIME bounce (Exim, qmail) pastes the original below its text: take its Message-ID line."""
    found = _INLINE_MESSAGE_ID.search(all_text(msg))
    return found.group(1) if found else None


def match_keys(
    msg: Message,
    verp_secret: str,
    *,
    envelope_to: Iterable[str] = (),
    message_id_domains: Collection[str] | None = None,
    classification: Classification | None = None,
) -> list[MatchKey]:
    """The keys to try against the database, strongest first.

    `envelope_to`: the SMTP RCPT TO the provider reports (webhooks), if any.
    `message_id_domains`: the domains our Message-IDs use; other ids are left out when given.
    `classification`: pass `classify(msg)` when at hand: for a non-standard bounce its failed
    recipients become `sender_subject` keys with `subject=None` (the address itself failed, whatever
    was sent to it), instead of the mailer-daemon's own address, which is never a lead.
    """
    dsn, arf = parse_dsn(msg), parse_arf(msg)
    report = dsn or arf
    original_id = report.original_message_id if report else None
    bounce_like = classification is not None and classification.kind in ("hard_bounce", "soft_bounce", "complaint")
    if report is None and (bounce_like or _local(sender(msg)) in BOUNCE_LOCALS):
        original_id = _inline_original_id(msg)
    original_rp = report.original_return_path if report else None
    keys = [MatchKey("message_id", message_id=i) for i in _message_ids(msg, original_id, message_id_domains)]
    pk = verp_pk(msg, verp_secret, envelope_to, original_rp)
    if pk is not None:
        keys.append(MatchKey("verp", message_pk=pk))
    if dsn is not None:
        people = [r.recipient for r in dsn.recipients if r.action in ("failed", "delayed")]
        subject = dsn.original_subject
    elif arf is not None:
        people, subject = list(arf.original_rcpt_to), arf.original_subject
    elif bounce_like:
        assert classification is not None
        people, subject = list(classification.recipients), None
    elif _local(sender(msg)) in BOUNCE_LOCALS:
        people, subject = [], None
    else:
        people, subject = [sender(msg)], header(msg, "Subject")
    normalized = normalize_subject(subject) if subject is not None else None
    keys.extend(MatchKey("sender_subject", sender=p, subject=normalized) for p in dict.fromkeys(people) if p)
    return keys


def _local(address: str) -> str:
    return address.split("@", 1)[0]


def is_inbound(msg: Message, our_addresses: Collection[str], our_message_id_domains: Collection[str]) -> bool:
    """False for our own mail seen again (Sent folder, a copy sent back, a BCC to ourselves).

    A message is ours when its own Message-ID uses one of our Message-ID domains or its From is
    one of our mailboxes. Our threaded follow-up carries In-Reply-To/References to our step 1
    exactly like the lead's answer does, so without this check it would be taken for a reply
    (Warmbly #549).
    """
    own = _ANGLE_ID.search(header(msg, "Message-ID"))
    if own and own.group(1).lower() in {d.lower() for d in our_message_id_domains}:
        return False
    ours = {normalize_address(a) for a in our_addresses}
    return sender(msg) not in ours


def dedupe_key(msg: Message, raw: bytes) -> str:
    """A stable identity for one received message, the same whether a webhook or IMAP brought it.

    The Message-ID when the message has one (`<id@host>`), else a content hash of the raw bytes
    (`sha256:<hex>`): providers and IMAP hand over the same bytes for a message without one.
    """
    found = re.search(r"<[^<>\s]+@[^<>\s]+>", header(msg, "Message-ID"))
    if found:
        return found.group(0)
    return "sha256:" + hashlib.sha256(raw).hexdigest()
