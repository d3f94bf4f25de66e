"""Email address rules shared by import and enrichment: normalize, or say why not.

`normalize_email` is email-validator's answer, found faster for the common shape: a plain ASCII
local part (the validator's own dot-atom rule) at an ASCII host name. Such an address is valid
exactly when its domain is, and a file holds few domains, so the domain is validated once per
domain (cached) and the address is never split and scanned character by character again. Any
other shape (quoted, internationalized, too long, bracketed) goes through the validator whole.
tests/unit/test_emails.py checks that both ways give the same address or the same error.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, EMAIL_MAX_LENGTH

_ASCII_HOST = re.compile(r"[A-Za-z0-9.\-]+\Z")

from shared.errors import InvalidEmail


@lru_cache(maxsize=65536)
def normalize_email(raw: str) -> str:
    """Trimmed, syntax-checked, lower-cased address (domain IDNA-normalized); no DNS lookups."""
    candidate = (raw or "").strip().strip("<>").strip()
    if not candidate:
        raise InvalidEmail("email is empty")
    local, at, domain = candidate.partition("@")
    if at and len(candidate) <= EMAIL_MAX_LENGTH and DOT_ATOM_TEXT.match(local) and _ASCII_HOST.match(domain):
        return f"{local}@{_domain(domain)}".lower()
    return validated(candidate).normalized.lower()


@lru_cache(maxsize=16384)
def _domain(domain: str) -> str:
    """The validator's normalized domain, with its own error when the domain is not valid."""
    return validated(f"a@{domain}").domain


def validated(address: str) -> ValidatedEmail:
    """email-validator's full check, syntax only (no DNS), its error as an InvalidEmail."""
    try:
        return validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc

