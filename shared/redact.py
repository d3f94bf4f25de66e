"""One place that strips secret values from text before it is logged or stored (errors, last_error, logs).

Secrets are every `SecretStr` setting (API keys, the database URL and its password) plus values
registered at run time (`register()`, e.g. a provider token not in settings). An exception's repr
escapes characters (`'\\u200b'`, `'\\xe9'`), so each secret is also removed in its escaped spellings:
a `UnicodeEncodeError('ascii', '<the whole key>', …)` logged with %r must not carry the key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from shared.errors import RedactedError
from shared.settings import Settings, get_settings

REDACTED = "***"
MIN_SECRET_CHARS = 4  # shorter "secrets" would shred ordinary words; no real key is this short

_registered: set[str] = set()
_lock = threading.Lock()


def register(*values: str | None) -> None:
    """Treat these values as secrets from now on (in this process)."""
    with _lock:
        _registered.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)


def secrets_of(settings: Settings) -> set[str]:
    """Every secret value a Settings holds: SecretStr fields, and the password inside DATABASE_URL."""
    found: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if hasattr(value, "get_secret_value"):
            raw = value.get_secret_value()
            if isinstance(raw, str) and raw:
                found.add(raw)
                if "://" in raw:
                    try:
                        password = urlsplit(raw).password
                    except ValueError:
                        password = None
                    if password:
                        found.add(password)
    return found


def _spellings(secret: str) -> Iterable[str]:
    yield secret
    yield repr(secret)[1:-1]
    yield ascii(secret)[1:-1]
    yield json.dumps(secret)[1:-1]
    yield quote(secret, safe="")


def redact(text: str, settings: Settings | None = None, extra: Iterable[str] = ()) -> str:
    """`text` with every known secret (in any of its escaped spellings) replaced by ***."""
    try:
        settings = settings or get_settings()
        values = secrets_of(settings)
    except Exception:  # settings that cannot even load still must not stop an error from being reported
        values = set()
    with _lock:
        values |= _registered
    values |= {v for v in extra if v}
    # Longest first, so a key containing another secret is removed whole.
    spellings = {s for v in values if len(v) >= MIN_SECRET_CHARS for s in _spellings(v) if s}
    for secret in sorted(spellings, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def describe(exc: BaseException, settings: Settings | None = None) -> str:
    """'TypeName: message' for an exception, redacted; the repr of its args is covered too."""
    return redact(f"{type(exc).__name__}: {exc}", settings)


def scrubbed(exc: BaseException, settings: Settings | None = None) -> BaseException:
    """`exc` itself when neither its str nor its repr carries a secret, else a RedactedError to raise instead."""
    plain = f"{exc!s} {exc!r}"
    if redact(plain, settings) == plain:
        return exc
    return RedactedError(describe(exc, settings))
