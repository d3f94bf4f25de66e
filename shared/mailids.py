"""Identifiers we put on outgoing mail so replies and bounces find their way back to one send.

Two ids, both deterministic and both unforgeable without our secrets, so nothing has to be
remembered in process memory and nothing a stranger writes can pass for one:

- `message_id(campaign_id, lead_id, step, domain, secret)`: the RFC 5322 Message-ID of one
  (campaign, lead, step) send, `<32 hex of HMAC-SHA256@domain>` under MESSAGE_ID_SECRET. The same
  send always gets the same id, so a retried send, the Sent-folder reconciler and a reply's
  In-Reply-To/References all agree on it; without the secret nobody can compute another lead's.
  The id is stored on the `messages` row and received mail is matched by looking it up there, so
  sends made before these ids (`legacy_message_id`, a uuid5 anyone can derive) keep matching.
  `unguessable(mid)` tells the two forms apart: only the keyed form proves the sender saw our mail.
- `verp_address(message_pk, domain, secret)`: the envelope sender (Return-Path)
  `bounces+<pk>-<mac>@domain`. A bounce that quotes nothing of the original still names its send;
  the HMAC makes the token unforgeable, so a stranger cannot bounce someone else's send.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

# The namespace of the uuid5 ids sent before the keyed ones: public, so those ids prove nothing.
LEGACY_MESSAGE_ID_NAMESPACE = uuid.UUID("8f0b5a9e-4d0c-5c43-9b8e-0d5f3e1a7c21")
VERP_LOCAL = "bounces"
MAC_HEX_CHARS = 12
MESSAGE_ID_MAC_HEX_CHARS = 32  # 128 bits of HMAC-SHA256: not guessable, short enough for any MTA

_VERP = re.compile(rf"^{VERP_LOCAL}\+(\d+)-([0-9a-f]{{{MAC_HEX_CHARS}}})@", re.IGNORECASE)
_ANGLE_ID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_KEYED_ID = re.compile(rf"^<[0-9a-f]{{{MESSAGE_ID_MAC_HEX_CHARS}}}@[^<>@\s]+>$")


def _check_domain(domain: str) -> str:
    if not domain or any(c in domain for c in "<>@ \r\n"):
        raise ValueError(f"message id domain must be a bare host name, got {domain!r}")
    return domain.lower()


def message_id(campaign_id: int, lead_id: int, step: int, domain: str, secret: str) -> str:
    """`<hmac(campaign/lead/step)@domain>`: one id per send, the same on every try, ours alone to make."""
    if not secret:
        raise ValueError("a Message-ID secret is required")
    host = _check_domain(domain)
    mac = hmac.new(secret.encode(), f"message-id:{campaign_id}/{lead_id}/{step}".encode(), hashlib.sha256)
    return f"<{mac.hexdigest()[:MESSAGE_ID_MAC_HEX_CHARS]}@{host}>"


def legacy_message_id(campaign_id: int, lead_id: int, step: int, domain: str) -> str:
    """The uuid5 id sends had before keyed ids: anyone can compute it, so it matches but never proves."""
    left = uuid.uuid5(LEGACY_MESSAGE_ID_NAMESPACE, f"{campaign_id}/{lead_id}/{step}")
    return f"<{left}@{_check_domain(domain)}>"


def unguessable(mid: str | None) -> bool:
    """Is this one of our keyed Message-IDs (not a legacy uuid5 one)? Quoting it shows the mail was seen."""
    return bool(mid) and _KEYED_ID.match(mid.strip().lower()) is not None


def _mac(message_pk: int, secret: str) -> str:
    if not secret:
        raise ValueError("a VERP secret is required")
    digest = hmac.new(secret.encode(), f"verp:{message_pk}".encode(), hashlib.sha256).hexdigest()
    return digest[:MAC_HEX_CHARS]


def verp_address(message_pk: int, domain: str, secret: str) -> str:
    """The envelope sender for one send: `bounces+<pk>-<mac>@domain`."""
    if message_pk < 1:
        raise ValueError(f"message_pk must be positive, got {message_pk}")
    return f"{VERP_LOCAL}+{message_pk}-{_mac(message_pk, secret)}@{domain.lower()}"


def parse_verp(address: str | None, secret: str) -> int | None:
    """The send's primary key from a VERP address, or None when absent or forged."""
    if not address:
        return None
    found = _VERP.match(address.strip().strip("<>"))
    if found is None:
        return None
    pk = int(found.group(1))
    if pk < 1 or not hmac.compare_digest(found.group(2).lower(), _mac(pk, secret)):
        return None
    return pk


def referenced_ids(*headers: str | None) -> list[str]:
    """Every `<id@host>` in In-Reply-To / References values, newest reference last, without repeats."""
    seen: dict[str, None] = {}
    for value in headers:
        for found in _ANGLE_ID.findall(value or ""):
            seen.setdefault(f"<{found}>", None)
    return list(seen)
