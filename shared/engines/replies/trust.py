"""Whether a matched received message may act on the lead: verified, or stored and shown as unverified.

Pure. Spoofing a From address takes nothing, a signed webhook only proves the provider received
the mail, and a legacy uuid5 Message-ID can be computed by anyone, so none of those alone lets a
message stop, unsubscribe, suppress or bounce a lead. What does (issue 17):

- **bounces and complaints** (hard, soft, ARF): matched through our signed VERP address, or by a
  keyed Message-ID only we can produce (`mailids.unguessable`), quoted in the returned original.
- **replies** (human, auto-reply, opt-out): the same two, or authentication results that pass
  for the From domain: DMARC `pass` with `header.from` the From domain, DKIM `pass` with
  `header.d` the From domain or a parent of it, or SPF `pass` with `smtp.mailfrom` in it. They
  come from the topmost `Authentication-Results` header (RFC 8601) whose authserv-id is one of
  TRUSTED_AUTHSERV_IDS (the receiving service adds it above anything the sender wrote, and removes
  forged ones claiming its id, RFC 8601 §5), or from the provider's own signed verdicts in the
  webhook (`AuthResult`s the caller passes).

Everything else is stored with its match and class, shown as unverified, and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from email.message import Message

from shared.engines.replies.mime import header_values
from shared.mailids import unguessable

BOUNCE_KINDS = frozenset({"hard_bounce", "soft_bounce", "complaint"})
_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9][a-z0-9_-]*)\s*=\s*([a-z]+)", re.IGNORECASE)
_PROP = re.compile(r"\b(smtp|header|body|policy)\.([a-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.IGNORECASE)


@dataclass(frozen=True)
class AuthResult:
    """One method's verdict: `dkim pass example.com` (the domain it speaks for: header.d, smtp.mailfrom, header.from)."""

    method: str
    result: str
    domain: str
    source: str  # where it was read, for people: "Authentication-Results mx.example" or "webhook"


@dataclass(frozen=True)
class Trust:
    verified: bool
    why: str


def _domain_of(value: str) -> str:
    value = value.strip().strip('"').strip("<>").lower().rstrip(".")
    return value.rpartition("@")[2]


def parse_authentication_results(msg: Message, authserv_ids: Collection[str]) -> list[AuthResult]:
    """The results of the topmost Authentication-Results header whose authserv-id is trusted; [] otherwise."""
    wanted = {a.lower() for a in authserv_ids}
    if not wanted:
        return []
    for value in header_values(msg, "Authentication-Results"):
        text = " ".join(_COMMENT.sub(" ", value).split())
        head, _, rest = text.partition(";")
        authserv = (head.split() or [""])[0].lower()
        if authserv not in wanted:
            continue
        results = []
        for part in rest.split(";"):
            found = _RESULT.match(part)
            if found is None:
                continue
            method, result = found.group(1).lower(), found.group(2).lower()
            props = {f"{p.group(1).lower()}.{p.group(2).lower()}": p.group(3) for p in _PROP.finditer(part)}
            subject = {"dkim": props.get("header.d") or props.get("header.i"),
                       "spf": props.get("smtp.mailfrom"),  # not smtp.helo: the sender names its HELO
                       "dmarc": props.get("header.from")}.get(method)
            if subject:
                results.append(AuthResult(method, result, _domain_of(subject), f"Authentication-Results {authserv}"))
        return results
    return []


def _aligned(method: str, domain: str, from_domain: str) -> bool:
    """Relaxed alignment as far as it is safe without a public-suffix lookup: the domain or a parent of it."""
    if not domain or not from_domain:
        return False
    if method == "dmarc":
        return domain == from_domain
    return from_domain == domain or from_domain.endswith("." + domain) and "." in domain


def decide(kind: str, match_by: str, matched_message_id: str | None, from_address: str,
           results: Iterable[AuthResult]) -> Trust:
    """May this matched message act? (`match_by`: message_id | verp | sender_subject.)"""
    if match_by == "verp":
        return Trust(True, "came back to our signed VERP address")
    if match_by == "message_id" and unguessable(matched_message_id):
        return Trust(True, f"quotes our keyed Message-ID {matched_message_id}")
    legacy = " (a legacy Message-ID anyone can compute)" if match_by == "message_id" else ""
    if kind in BOUNCE_KINDS:
        return Trust(False, "unverified: a report that neither came back to our signed VERP address nor quotes a "
                            f"Message-ID only we can produce{legacy}")
    from_domain = _domain_of(from_address)
    for r in results:
        if r.result == "pass" and _aligned(r.method, r.domain, from_domain):
            return Trust(True, f"{r.source}: {r.method}=pass for {r.domain}")
    seen = ", ".join(f"{r.method}={r.result} ({r.domain})" for r in results) or "no trusted authentication results"
    return Trust(False, f"unverified: the sender {from_address or '(none)'} is not authenticated ({seen}) and the "
                        f"message quotes no Message-ID only we can produce{legacy}")
