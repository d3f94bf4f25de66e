"""Identifiers we put on outgoing mail so replies and bounces find their way back to one send.

Two ids, both deterministic or verifiable, so nothing has to be remembered in process memory:

- `message_id(campaign_id, lead_id, step, domain)`: the RFC 5322 Message-ID of one
  (campaign, lead, step) send, `<uuid5@domain>`. The same send always gets the same id, so a
  retried send, the Sent-folder reconciler and a reply's In-Reply-To/References all agree on it.
- `verp_address(message_pk, domain, secret)`: the envelope sender (Return-Path)
  `bounces+<pk>-<mac>@domain`. A bounce that quotes nothing of the original still names its send;
  the HMAC makes the token unforgeable, so a stranger cannot bounce someone else's send.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

# Fixed forever: changing it would orphan every reply to mail already sent.
MESSAGE_ID_NAMESPACE = uuid.UUID("8f0b5a9e-4d0c-5c43-9b8e-0d5f3e1a7c21")
VERP_LOCAL = "bounces"
MAC_HEX_CHARS = 12

_VERP = re.compile(rf"^{VERP_LOCAL}\+(\d+)-([0-9a-f]{{{MAC_HEX_CHARS}}})@", re.IGNORECASE)
_ANGLE_ID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def message_id(campaign_id: int, lead_id: int, step: int, domain: str) -> str:
    """`<uuid5(campaign/lead/step)@domain>`: one id per send, the same on every try."""
    if not domain or any(c in domain for c in "<>@ \r\n"):
        raise ValueError(f"message id domain must be a bare host name, got {domain!r}")
    left = uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{campaign_id}/{lead_id}/{step}")
    return f"<{left}@{domain.lower()}>"


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
