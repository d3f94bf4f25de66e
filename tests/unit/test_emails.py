"""normalize_email's fast path (plain local part, domain validated once per domain) answers exactly as email-validator does."""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.emails import normalize_email
from shared.errors import InvalidEmail

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
# Pieces that make the validator's rules bite: dots, hyphens, digits, case, IDN, specials, long labels.
local_parts = st.one_of(
    st.text(alphabet=ATEXT + ".", min_size=0, max_size=70),
    st.text(alphabet=ATEXT + '."@ ()<>[]\\,;:ü', min_size=0, max_size=20),
    st.sampled_from(["Postmaster", "ABUSE", "jane.doe", ".jane", "jane.", "ja..ne", '"j a"', "jürgen"]),
)
labels = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=0, max_size=70),
    st.sampled_from(["com", "COM", "de", "xn--bcher-kva", "bücher", "localhost", "test", "local", "invalid",
                     "example", "onion", "123", "a-", "-a", "_x", "co", "uk"]),
)
domains = st.lists(labels, min_size=1, max_size=5).map(".".join) | st.sampled_from(
    ["[127.0.0.1]", "acme.com.", ".acme.com", "acme..com", "ACME.COM", "x" * 250 + ".com"])


def reference(address: str) -> tuple[str | None, str | None]:
    candidate = address.strip().strip("<>").strip()
    if not candidate:
        return None, "email is empty"
    try:
        return validate_email(candidate, check_deliverability=False).normalized.lower(), None
    except EmailNotValidError as exc:
        return None, str(exc)


def ours(address: str) -> tuple[str | None, str | None]:
    try:
        return normalize_email(address), None
    except InvalidEmail as exc:
        return None, str(exc)


@settings(max_examples=3000, deadline=None)
@given(local_parts, domains)
def test_same_answer_as_email_validator(local, domain):
    address = f"{local}@{domain}"
    assert ours(address) == reference(address)


@pytest.mark.parametrize("address", [
    " Jane.Doe@ACME.com ", "<jane@acme.com>", "jane@acme", "jane@bücher.de", "POSTMASTER@acme.com",
    "a" * 64 + "@" + "b" * 63 + ".com", "a" * 200 + "@" + "b" * 60 + ".com", "jane@-acme.com", "jane@acme-.com",
    "jane@acme.com@evil.com", "jane@[10.0.0.1]", "jane@localhost", "jane@site.test", "j..d@acme.com",
    "jane@acme.c", "jane@123.com", "", "@acme.com", "jane@",
])
def test_known_shapes(address):
    assert ours(address) == reference(address)
