"""Message-IDs are deterministic per send; VERP tokens round-trip and refuse forgeries."""

from __future__ import annotations

import pytest

from shared.mailids import message_id, parse_verp, referenced_ids, verp_address


def test_message_id_is_stable_per_send_and_distinct_across_sends() -> None:
    a = message_id(1, 2, 1, "Mail.Example.com")
    assert a == message_id(1, 2, 1, "mail.example.com")
    assert a.startswith("<") and a.endswith("@mail.example.com>")
    assert len({a, message_id(1, 2, 2, "mail.example.com"), message_id(1, 3, 1, "mail.example.com"),
                message_id(2, 2, 1, "mail.example.com")}) == 4


@pytest.mark.parametrize("domain", ["", "a@b", "x y", "bad\r\nhost", "<x>"])
def test_message_id_refuses_header_breaking_domains(domain: str) -> None:
    with pytest.raises(ValueError):
        message_id(1, 1, 1, domain)


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
