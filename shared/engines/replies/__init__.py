"""Replies and bounces, the database-free core: classify, parse reports, match to sends, verify webhooks.

The pieces the replies flow and the webhook endpoint compose:
- `classify.classify(msg) -> Classification` (kind, evidence, recipients, status, reason, rule, diagnostic)
- `bounces.analyze(msg)` / `bounces.complaint(msg)` (the one bounce and complaint reader) and `reasons` (reason vocabulary, hard/soft)
- `reports.parse_dsn(msg)` / `reports.parse_arf(msg)` (RFC 3464 / RFC 5965)
- `matching.match_keys(msg, verp_secret, ...)`, `matching.is_inbound(...)`, `matching.dedupe_key(...)`
- `webhooks.verify_standard(...)` / `webhooks.verify_mailgun(...)` -> `InboundMessage`
- `mime.parse_bytes(raw)` to parse what IMAP returns.
"""

from __future__ import annotations

from shared.engines.replies.classify import Classification, classify
from shared.engines.replies.matching import MatchKey, dedupe_key, is_inbound, match_keys
from shared.engines.replies.mime import parse_bytes

__all__ = ["Classification", "MatchKey", "classify", "dedupe_key", "is_inbound", "match_keys", "parse_bytes"]
