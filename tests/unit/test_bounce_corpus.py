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
