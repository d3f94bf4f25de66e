"""Message-IDs are deterministic per send and ours alone to make; VERP tokens round-trip and refuse forgeries."""

from __future__ import annotations

import uuid

import pytest

from shared.mailids import legacy_message_id, message_id, parse_verp, referenced_ids, unguessable, verp_address

KEY = "message-id-test-key"


def test_message_id_is_stable_per_send_and_distinct_across_sends() -> None:
    a = message_id(1, 2, 1, "Mail.Example.com", KEY)
    assert a == message_id(1, 2, 1, "mail.example.com", KEY)
    assert a.startswith("<") and a.endswith("@mail.example.com>")
    assert len({a, message_id(1, 2, 2, "mail.example.com", KEY), message_id(1, 3, 1, "mail.example.com", KEY),
                message_id(2, 2, 1, "mail.example.com", KEY)}) == 4


def test_message_id_needs_the_key_and_cannot_be_derived_from_the_public_namespace() -> None:
    """Issue 17: the uuid5 ids were computable by anyone from (campaign, lead, step)."""
    ours = message_id(7, 1001, 1, "mail.example.com", KEY)
    public = f"<{uuid.uuid5(uuid.UUID('8f0b5a9e-4d0c-5c43-9b8e-0d5f3e1a7c21'), '7/1001/1')}@mail.example.com>"
    assert ours != public and ours != message_id(7, 1001, 1, "mail.example.com", "another-key")
    assert legacy_message_id(7, 1001, 1, "mail.example.com") == public
    assert unguessable(ours) and unguessable(ours.upper())
    assert not unguessable(public) and not unguessable(None) and not unguessable("<abc@x>")
    with pytest.raises(ValueError):
        message_id(1, 1, 1, "example.com", "")


@pytest.mark.parametrize("domain", ["", "a@b", "x y", "bad\r\nhost", "<x>"])
def test_message_id_refuses_header_breaking_domains(domain: str) -> None:
    with pytest.raises(ValueError):
        message_id(1, 1, 1, domain, KEY)
    with pytest.raises(ValueError):
        legacy_message_id(1, 1, 1, domain)


def test_verp_round_trip_and_forgery() -> None:
    address = verp_address(42, "Example.com", "s3cret")
    assert address.startswith("bounces+42-") and address.endswith("@example.com")
    assert parse_verp(address, "s3cret") == 42
    assert parse_verp(f"<{address.upper()}>", "s3cret") == 42
    assert parse_verp(address, "other-secret") is None
    assert parse_verp(address.replace("+42-", "+43-"), "s3cret") is None
    assert parse_verp("bounces+42@example.com", "s3cret") is None
    assert parse_verp(None, "s3cret") is None
    with pytest.raises(ValueError):
        verp_address(0, "example.com", "s3cret")


def test_referenced_ids_keeps_order_and_drops_repeats() -> None:
    assert referenced_ids("<a@x>", "<b@y> <a@x>\r\n <c@z>", None) == ["<a@x>", "<b@y>", "<c@z>"]
    assert referenced_ids("no ids here") == []
