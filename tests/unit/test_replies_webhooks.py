"""Inbound webhook verification: Standard Webhooks and Mailgun routes, forged/stale/oversized/malformed/replayed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from shared.engines.replies import classify
from shared.engines.replies.webhooks import check_size, verify_mailgun, verify_standard
from shared.errors import BadSignature, BodyTooLarge, MalformedMessage, StaleTimestamp
from tests.unit.replies_samples import MAIL_DIR

SECRET = "whsec_" + base64.b64encode(b"a-32-byte-test-secret-for-hooks!").decode()
MAILGUN_KEY = "key-test-signing-0123456789"
RAW = (MAIL_DIR / "unsubscribe_request.eml").read_bytes()


def _signed(body: bytes, *, msg_id: str = "msg_2Kq", when: datetime | None = None, secret: str = SECRET) -> dict[str, str]:
    when = when or datetime.now(tz=timezone.utc)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {"Webhook-Id": msg_id, "Webhook-Timestamp": str(int(when.timestamp())), "Webhook-Signature": signature}


def _payload(raw: bytes = RAW, **extra) -> bytes:
    return json.dumps({"raw_base64": base64.b64encode(raw).decode(), **extra}).encode()


def test_standard_webhook_accepted() -> None:
    body = _payload(envelope_from="lead@customer.example", envelope_to=["alice@agency.example"])
    inbound = verify_standard(body, _signed(body), SECRET)
    assert inbound.raw == RAW
    assert inbound.dedupe_key == "<jack-reply-1@customer.example>"
    assert (inbound.source, inbound.delivery_id) == ("standard_webhooks", "msg_2Kq")
    assert inbound.envelope_to == ("alice@agency.example",) and inbound.envelope_from == "lead@customer.example"
    assert classify(inbound.message).kind == "unsubscribe_request"


def test_standard_webhook_raw_text_form() -> None:
    body = json.dumps({"raw": RAW.decode()}).encode()
    assert verify_standard(body, _signed(body), SECRET).dedupe_key == "<jack-reply-1@customer.example>"


def test_forged_and_missing_signatures_are_401() -> None:
    body = _payload()
    forged = _signed(body, secret="whsec_" + base64.b64encode(b"someone-else-entirely-0123456789").decode())
    tampered = _signed(body)
    for headers, payload in [
        (forged, body),
        (tampered, body.replace(b"raw_base64", b"raw_base64 ")),
        ({k: v for k, v in _signed(body).items() if k != "Webhook-Signature"}, body),
        ({**_signed(body), "Webhook-Signature": "garbage-without-comma"}, body),
        ({**_signed(body), "Webhook-Signature": "v1,!!notbase64!!"}, body),
        (_signed(body), b"\xff\xfe" + body),
    ]:
        with pytest.raises(BadSignature) as caught:
            verify_standard(payload, headers, SECRET)
        assert caught.value.status == 401
        assert "whsec_" not in str(caught.value)


def test_stale_and_future_timestamps_are_401() -> None:
    body = _payload()
    for skew in (timedelta(minutes=-6), timedelta(minutes=6)):
        with pytest.raises(StaleTimestamp) as caught:
            verify_standard(body, _signed(body, when=datetime.now(tz=timezone.utc) + skew), SECRET)
        assert caught.value.status == 401
    # Inside the 5-minute tolerance.
    verify_standard(body, _signed(body, when=datetime.now(tz=timezone.utc) - timedelta(minutes=4)), SECRET)


def test_oversized_body_is_413_before_anything_is_parsed() -> None:
    body = _payload(RAW + b"x" * 5000)
    with pytest.raises(BodyTooLarge) as caught:
        verify_standard(body, {}, SECRET, max_bytes=4096)  # no headers at all: size is checked first
    assert caught.value.status == 413
    with pytest.raises(BodyTooLarge):
        check_size("26214401")
    check_size(None)
    check_size("100")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "the body is not JSON"),
        (b"[1, 2]", "the body is not a JSON object"),
        (b"{}", "exactly one of raw_base64 or raw is required"),
        (json.dumps({"raw": "x", "raw_base64": "eA=="}).encode(), "exactly one of raw_base64 or raw is required"),
        (json.dumps({"raw_base64": "%%%"}).encode(), "raw_base64 is not base64"),
        (json.dumps({"raw": ""}).encode(), "the message is empty"),
        (json.dumps({"raw": "just some text\nwith no headers"}).encode(), "the message does not start with a header field"),
        (json.dumps({"raw": "Subject: hi\r\n\r\nno sender"}).encode(), "no From address"),
        (json.dumps({"raw": "From: not an address\r\n\r\nbody"}).encode(), "no From address"),
        (json.dumps({"raw": RAW.decode(), "envelope_to": [1]}).encode(), "envelope_to must be a list of addresses"),
    ],
)
def test_malformed_is_422_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        verify_standard(payload, _signed(payload), SECRET)
    assert caught.value.status == 422
    assert str(caught.value) == f"The webhook does not carry a usable RFC 5322 message: {reason}"


def test_replayed_webhook_has_the_same_dedupe_key() -> None:
    body = _payload()
    headers = _signed(body, msg_id="msg_same")
    first, again = verify_standard(body, headers, SECRET), verify_standard(body, headers, SECRET)
    assert first.dedupe_key == again.dedupe_key
    # The same message redelivered under a new webhook-id, or via Mailgun, dedupes the same way.
    other = verify_standard(body, _signed(body, msg_id="msg_other"), SECRET)
    assert other.dedupe_key == first.dedupe_key
    assert _mailgun_verified().dedupe_key == first.dedupe_key


def _mailgun_fields(*, key: str = MAILGUN_KEY, timestamp: int | None = None, token: str = "t" * 50, raw: bytes = RAW) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": ts, "token": token, "signature": signature, "recipient": "alice@agency.example",
            "sender": "jack@customer.example", "body-mime": raw.decode()}


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "----mgboundary7MA4YWxkTrZu0gW"
    chunks = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _mailgun_verified():
    body = urlencode(_mailgun_fields()).encode()
    return verify_mailgun(body, "application/x-www-form-urlencoded", MAILGUN_KEY)


def test_mailgun_urlencoded_and_multipart() -> None:
    inbound = _mailgun_verified()
    assert inbound.raw.replace(b"\r\n", b"\n") == RAW.replace(b"\r\n", b"\n")
    assert (inbound.source, inbound.envelope_to, inbound.envelope_from) == ("mailgun", ("alice@agency.example",), "jack@customer.example")
    body, ctype = _multipart(_mailgun_fields())
    assert verify_mailgun(body, ctype, MAILGUN_KEY).dedupe_key == "<jack-reply-1@customer.example>"


def test_mailgun_refusals() -> None:
    forged = urlencode(_mailgun_fields(key="key-someone-else")).encode()
    with pytest.raises(BadSignature):
        verify_mailgun(forged, "application/x-www-form-urlencoded", MAILGUN_KEY)
    missing = urlencode({k: v for k, v in _mailgun_fields().items() if k != "signature"}).encode()
    with pytest.raises(BadSignature):
        verify_mailgun(missing, "application/x-www-form-urlencoded", MAILGUN_KEY)
    with pytest.raises(BadSignature):
        verify_mailgun(b"{}", "application/json", MAILGUN_KEY)
    stale = urlencode(_mailgun_fields(timestamp=int(time.time()) - 600)).encode()
    with pytest.raises(StaleTimestamp):
        verify_mailgun(stale, "application/x-www-form-urlencoded", MAILGUN_KEY)
    with pytest.raises(BodyTooLarge):
        verify_mailgun(b"x" * 2048, "application/x-www-form-urlencoded", MAILGUN_KEY, max_bytes=1024)
    parsed_format = {k: v for k, v in _mailgun_fields().items() if k != "body-mime"}
    with pytest.raises(MalformedMessage, match="the route URL must end in 'mime'"):
        verify_mailgun(urlencode(parsed_format).encode(), "application/x-www-form-urlencoded", MAILGUN_KEY)
    # The simulated clock: a request signed at t is fresh at t + 299 s and stale at t + 301 s.
    fields = _mailgun_fields(timestamp=1_800_000_000)
    body = urlencode(fields).encode()
    verify_mailgun(body, "application/x-www-form-urlencoded", MAILGUN_KEY, now=1_800_000_299)
    with pytest.raises(StaleTimestamp):
        verify_mailgun(body, "application/x-www-form-urlencoded", MAILGUN_KEY, now=1_800_000_301)


def test_mailgun_keeps_8bit_bytes_exact() -> None:
    raw = b"From: a@b.example\r\nMessage-ID: <8bit@b.example>\r\nContent-Type: text/plain; charset=latin-1\r\n\r\nGr\xfc\xdfe\r\n"
    fields = {k: v for k, v in _mailgun_fields().items() if k != "body-mime"}
    body = (urlencode(fields) + "&body-mime=" + "".join(f"%{b:02X}" for b in raw)).encode()
    inbound = verify_mailgun(body, "application/x-www-form-urlencoded", MAILGUN_KEY)
    assert inbound.raw == raw


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=500), st.binary(max_size=500).map(lambda b: base64.b64encode(b).decode())))
def test_signed_garbage_is_422_or_a_message_never_a_crash(value: str) -> None:
    for body in (json.dumps({"raw": value}).encode(), json.dumps({"raw_base64": value}).encode()):
        try:
            inbound = verify_standard(body, _signed(body), SECRET)
        except MalformedMessage as exc:
            assert exc.status == 422
        else:
            assert inbound.dedupe_key


def test_lone_surrogate_in_raw_is_422() -> None:
    body = b'{"raw": "From: a@b.example\\r\\n\\r\\n\\ud800"}'
    with pytest.raises(MalformedMessage, match="raw is not valid Unicode"):
        verify_standard(body, _signed(body), SECRET)
