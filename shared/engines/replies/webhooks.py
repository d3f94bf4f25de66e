"""Verifying inbound-mail webhooks, framework-free: bytes and headers in, a parsed message or a typed error out.

The ASGI app reads the request, calls one of the `verify_*` functions and maps a `WebhookError`
to its `status` (the exception's message is safe to return: it never contains a secret). Order
of checks, the same for both schemes: size (413, before anything is parsed), authentication
(401), then the message (422). Nothing from the body is looked at before the signature passes.

Standard Webhooks (`verify_standard`), via the `standardwebhooks` package: headers
`webhook-id`, `webhook-timestamp` (5-minute tolerance, the package's), `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated list). The secret is the
usual `whsec_<base64>`. The signed body is JSON, UTF-8:

    {"raw_base64": "<base64 of the RFC 5322 message bytes>",   # or "raw": "<message as text>"
     "envelope_from": "<SMTP MAIL FROM>",                       # optional
     "envelope_to": ["<SMTP RCPT TO>", ...],                   # optional (VERP lives here)
     "spf": "pass",                                             # optional: the provider's SPF verdict on envelope_from
     "dkim": [{"domain": "<d= of a signature>", "result": "pass"}]}  # optional: its DKIM verdicts

`spf` and `dkim` are the receiving provider's own verdicts, signed with the rest of the body: a
reply whose From domain they pass for may stop or unsubscribe its lead (`trust.decide`; SPF
counts only with `envelope_from` in the From domain). A DKIM verdict without its domain proves
nothing (anyone can sign with their own domain), so it is refused.

Exactly one of `raw_base64` (exact bytes, for 8-bit mail in any charset) or `raw` (a string,
for 7-bit/UTF-8 mail) is required.

Mailgun routes (`verify_mailgun`), the "raw MIME" format: a route `forward()`s to a URL ending
in `mime`, and Mailgun POSTs form fields (`application/x-www-form-urlencoded`, or
`multipart/form-data` when there are attachments): `body-mime` (the full message), `sender`
(MAIL FROM), `recipient` (RCPT TO), `timestamp` (Unix seconds), `token` (random, 50 chars),
`signature` = hex HMAC-SHA256(HTTP webhook signing key, timestamp + token). We also refuse
timestamps more than 5 minutes off, as Mailgun recommends checking freshness. What this relies
on: Mailgun's "Receiving messages via HTTP through a forward() action" and "Securing webhooks"
pages as remembered and cross-checked against Rails Action Mailbox's Mailgun ingress (same
four fields, same HMAC); there is no network here to re-read them. Mailgun retries any answer
other than 200 or 406 for 8 hours, which suits 401 (a key rotation in progress) and 5xx.

Replays: a replayed request verifies again (the signature is valid); the `dedupe_key`
(the Message-ID, else a hash of the bytes, see `matching.dedupe_key`) is the same, so the caller
stores it once and answers 200 again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Literal
from urllib.parse import parse_qs

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.engines.replies.matching import dedupe_key
from shared.engines.replies.mime import header, parse_bytes, sender
from shared.engines.replies.trust import AuthResult
from shared.errors import BadSignature, BodyTooLarge, MalformedMessage, StaleTimestamp

MAX_BODY_BYTES = 25 * 1024 * 1024  # 25 MiB: the common provider limit on a received message
TOLERANCE_S = 5 * 60  # seconds a signed timestamp may be off, both schemes
Source = Literal["standard_webhooks", "mailgun"]


@dataclass(frozen=True)
class InboundMessage:
    """A verified received message, ready for matching and classification."""

    message: EmailMessage
    raw: bytes
    dedupe_key: str
    source: Source
    delivery_id: str  # webhook-id, or Mailgun's token: which request brought it, for logs
    envelope_from: str | None = None
    envelope_to: tuple[str, ...] = field(default=())
    auth: tuple[AuthResult, ...] = field(default=())  # the provider's signed SPF/DKIM verdicts


def check_size(length: int | str | None, max_bytes: int = MAX_BODY_BYTES) -> None:
    """Refuse by declared Content-Length before reading the body (a missing length is checked later)."""
    if length is None or length == "":
        return
    try:
        declared = int(length)
    except (TypeError, ValueError):
        raise MalformedMessage("Content-Length is not a number") from None
    if declared > max_bytes:
        raise BodyTooLarge(f"{declared} bytes, limit {max_bytes}")


def parse_message(raw: bytes) -> EmailMessage:
    """Parse raw MIME, refusing what cannot be a received message (raises MalformedMessage with the reason)."""
    if not raw.strip():
        raise MalformedMessage("the message is empty")
    head = raw.lstrip()[:1000]
    first_line = head.split(b"\n", 1)[0]
    if b":" not in first_line or first_line.split(b":", 1)[0].strip() == b"" or b" " in first_line.split(b":", 1)[0].strip():
        raise MalformedMessage("the message does not start with a header field")
    try:
        msg = parse_bytes(raw.lstrip())
    except Exception as exc:
        raise MalformedMessage(f"not parseable ({type(exc).__name__})") from None
    if not sender(msg):
        raise MalformedMessage("no From address")
    return msg


def _inbound(raw: bytes, source: Source, delivery_id: str, envelope_from: str | None, envelope_to: tuple[str, ...],
             auth: tuple[AuthResult, ...] = ()) -> InboundMessage:
    msg = parse_message(raw)
    return InboundMessage(msg, raw, dedupe_key(msg, raw), source, delivery_id, envelope_from or None, envelope_to,
                          auth)


def _provider_auth(payload: dict[str, object], envelope_from: str | None) -> tuple[AuthResult, ...]:
    """The payload's `spf` / `dkim` verdicts as AuthResults (shape in the module doc); MalformedMessage naming the field."""
    found: list[AuthResult] = []
    spf = payload.get("spf")
    if spf is not None:
        if not isinstance(spf, str):
            raise MalformedMessage("spf must be a string such as \"pass\"")
        if envelope_from and "@" in envelope_from:
            found.append(AuthResult("spf", spf.strip().lower(), envelope_from.strip().strip("<>").rpartition("@")[2]
                                    .lower(), "webhook spf"))
    dkim = payload.get("dkim")
    if dkim is not None:
        if not isinstance(dkim, list) or not all(
                isinstance(d, dict) and isinstance(d.get("domain"), str) and isinstance(d.get("result"), str)
                and d["domain"].strip() for d in dkim):
            raise MalformedMessage("dkim must be a list of {\"domain\": ..., \"result\": ...}")
        found.extend(AuthResult("dkim", d["result"].strip().lower(), d["domain"].strip().lower().rstrip("."),
                                "webhook dkim") for d in dkim)
    return tuple(found)


def verify_standard(body: bytes, headers: Mapping[str, str], secret: str, *, max_bytes: int = MAX_BODY_BYTES) -> InboundMessage:
    """Verify a Standard Webhooks request carrying one received message (body shape in the module doc)."""
    if len(body) > max_bytes:
        raise BodyTooLarge(f"{len(body)} bytes, limit {max_bytes}")
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSignature("the body is not UTF-8, so its signature cannot match") from None
    try:
        Webhook(secret).verify(text, lowered, json_parse=False)
    except WebhookVerificationError as exc:
        if "timestamp too" in str(exc):
            raise StaleTimestamp(str(exc)) from None
        raise BadSignature(str(exc)) from None
    except (ValueError, binascii.Error):  # a signature header that is not "v1,<base64>"
        raise BadSignature("unreadable webhook-signature header") from None
    try:
        payload = json.loads(text)
    except ValueError:
        raise MalformedMessage("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedMessage("the body is not a JSON object")
    raw = _raw_from_payload(payload)
    envelope_to = payload.get("envelope_to") or ()
    if isinstance(envelope_to, str):
        envelope_to = (envelope_to,)
    if not isinstance(envelope_to, (list, tuple)) or not all(isinstance(a, str) for a in envelope_to):
        raise MalformedMessage("envelope_to must be a list of addresses")
    envelope_from = payload.get("envelope_from")
    if envelope_from is not None and not isinstance(envelope_from, str):
        raise MalformedMessage("envelope_from must be a string")
    auth = _provider_auth(payload, envelope_from)
    return _inbound(raw, "standard_webhooks", lowered["webhook-id"], envelope_from, tuple(envelope_to), auth)


def _raw_from_payload(payload: dict[str, object]) -> bytes:
    has_b64, has_text = "raw_base64" in payload, "raw" in payload
    if has_b64 == has_text:
        raise MalformedMessage("exactly one of raw_base64 or raw is required")
    if has_b64:
        value = payload["raw_base64"]
        if not isinstance(value, str):
            raise MalformedMessage("raw_base64 must be a string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedMessage("raw_base64 is not base64") from None
    value = payload["raw"]
    if not isinstance(value, str):
        raise MalformedMessage("raw must be a string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # JSON can carry lone surrogates ("\\ud800")
        raise MalformedMessage("raw is not valid Unicode") from None


def _form_fields(body: bytes, content_type: str) -> dict[str, bytes]:
    """Form fields as bytes (the first value of each), urlencoded or multipart/form-data."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        try:
            parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False, encoding="utf-8", errors="surrogateescape")
        except UnicodeDecodeError:
            raise MalformedMessage("urlencoded form is not ASCII") from None
        return {k: v[0].encode("utf-8", "surrogateescape") for k, v in parsed.items() if v}
    if ctype == "multipart/form-data":
        envelope = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
        form = BytesParser(policy=policy.HTTP).parsebytes(envelope)
        if not form.is_multipart():
            raise MalformedMessage("multipart form without parts")
        fields: dict[str, bytes] = {}
        for part in form.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and name not in fields:
                fields[name] = part.get_payload(decode=True) or b""
        return fields
    raise MalformedMessage(f"unsupported content type {ctype or '(none)'}")


def verify_mailgun(
    body: bytes,
    content_type: str,
    signing_key: str,
    *,
    max_bytes: int = MAX_BODY_BYTES,
    now: float | None = None,
) -> InboundMessage:
    """Verify a Mailgun route POST (raw MIME format, fields in the module doc)."""
    if len(body) > max_bytes:
        raise BodyTooLarge(f"{len(body)} bytes, limit {max_bytes}")
    if not signing_key:
        raise BadSignature("no signing key configured")
    try:
        fields = _form_fields(body, content_type)
    except MalformedMessage as exc:
        raise BadSignature(f"no signature fields ({exc})") from None
    timestamp = fields.get("timestamp", b"").decode("ascii", "replace")
    token = fields.get("token", b"").decode("ascii", "replace")
    signature = fields.get("signature", b"").decode("ascii", "replace").lower()
    if not (timestamp and token and signature):
        raise BadSignature("timestamp, token or signature missing")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise BadSignature()
    try:
        age = (time.time() if now is None else now) - float(timestamp)
    except ValueError:
        raise BadSignature("timestamp is not a number") from None
    if abs(age) > TOLERANCE_S:
        raise StaleTimestamp(f"{int(age)} s off, tolerance {TOLERANCE_S} s")
    raw = fields.get("body-mime")
    if raw is None:
        raise MalformedMessage("no body-mime field (the route URL must end in 'mime')")
    envelope_to = tuple(a.strip() for a in fields.get("recipient", b"").decode("utf-8", "replace").split(",") if a.strip())
    envelope_from = fields.get("sender", b"").decode("utf-8", "replace").strip() or None
    return _inbound(raw, "mailgun", token, envelope_from, envelope_to)


def summary(inbound: InboundMessage) -> str:
    """One log-safe line about a verified message (no body, no secret)."""
    return f"{inbound.source} delivery {inbound.delivery_id}: {inbound.dedupe_key} from {sender(inbound.message)} subject {header(inbound.message, 'Subject')[:80]!r}"
