"""Email address rules shared by import and enrichment: normalize, or say why not."""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from shared.errors import InvalidEmail


@lru_cache(maxsize=65536)
def normalize_email(raw: str) -> str:
    """Trimmed, syntax-checked, lower-cased address (domain IDNA-normalized); no DNS lookups."""
    candidate = (raw or "").strip().strip("<>").strip()
    if not candidate:
        raise InvalidEmail("email is empty")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    return result.normalized.lower()


def domain_of(email: str) -> str:
    return email.rsplit("@", 1)[-1]
