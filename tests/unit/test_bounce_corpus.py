"""Real Postfix DSNs captured locally (tests/data/bounces/README.md) are classified as the bounces they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.engines.replies import classify, parse_bytes

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces"


@pytest.mark.parametrize(("name", "kind", "status"), [
    ("postfix_local_user_unknown.eml", "hard_bounce", "5.1.1"),
    ("postfix_local_mailbox_full.eml", "hard_bounce", "5.2.2"),
])
def test_real_postfix_dsn(name, kind, status) -> None:
    verdict = classify(parse_bytes((CORPUS / name).read_bytes()))
    assert (verdict.kind, verdict.status) == (kind, status)
    assert verdict.recipients and verdict.recipients[0].endswith("@bounces.test")


def test_mailer_daemon_with_empty_address_and_unreadable_body_is_a_bounce_not_an_auto_reply() -> None:
    raw = (b"From: MAILER-DAEMON <>\r\nTo: sales@bounces.test\r\nSubject: failure notice\r\n"
           b"Auto-Submitted: auto-replied\r\n\r\nYour message could not be delivered.\r\n")
    verdict = classify(parse_bytes(raw))
    assert (verdict.kind, verdict.evidence) == ("hard_bounce", "bounce from null sender: reason unknown")
