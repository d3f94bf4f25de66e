"""The bounce corpus (tests/data/bounces, see its README) classified file by file, and the issue 18 figures over it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from shared.engines.replies import classify, parse_bytes
from shared.engines.replies.reasons import REASONS, enhanced_code, severity

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces"
MANIFEST = list(csv.DictReader((CORPUS / "manifest.csv").open(encoding="utf-8")))
BOUNCES = ("hard_bounce", "soft_bounce")


def _verdict(name: str):
    return classify(parse_bytes((CORPUS / name).read_bytes()))


def test_manifest_names_every_file_once_and_covers_the_issue() -> None:
    files = sorted(p.name for p in CORPUS.glob("*.eml"))
    assert files == sorted(r["file"] for r in MANIFEST)
    kinds = [r["kind"] for r in MANIFEST]
    assert sum(k in BOUNCES for k in kinds) >= 60 and kinds.count("complaint") >= 15
    assert sum(k not in (*BOUNCES, "complaint") for k in kinds) >= 20  # non-bounces, for false positives
    assert {r["reason"] for r in MANIFEST if r["kind"] in BOUNCES} <= set(REASONS)


@pytest.mark.parametrize("row", MANIFEST, ids=[r["file"] for r in MANIFEST])
def test_each_file(row) -> None:
    verdict = _verdict(row["file"])
    assert verdict.kind == row["kind"], verdict.evidence
    if row["kind"] in (*BOUNCES, "complaint"):
        assert verdict.reason == row["reason"], verdict.evidence
        assert verdict.evidence and verdict.rule  # every decision keeps which rule fired and why


def test_issue_figures() -> None:
    """>= 97 % of bounces recognized, none taken for a human reply, >= 14/15 complaints, no false bounces,
    hard/soft agreeing with the enhanced status code wherever one is present."""
    results = [(r, _verdict(r["file"])) for r in MANIFEST]
    bounces = [(r, v) for r, v in results if r["kind"] in BOUNCES]
    recognized = sum(v.kind in BOUNCES for _, v in bounces)
    as_human = sum(v.kind == "human_reply" for _, v in bounces)
    complaints = [(r, v) for r, v in results if r["kind"] == "complaint"]
    caught = sum(v.kind == "complaint" for _, v in complaints)
    false_bounces = [r["file"] for r, v in results if r["kind"] not in BOUNCES and v.kind in BOUNCES]
    coded = [(r, v) for r, v in bounces if v.status and enhanced_code(v.status)]
    disagree = [r["file"] for r, v in coded if (v.kind == "hard_bounce") != (severity(v.status) == "hard")]
    print(f"\nbounces recognized {recognized}/{len(bounces)} ({100 * recognized / len(bounces):.1f} %), "
          f"as human reply {as_human}, complaints {caught}/{len(complaints)}, false bounces {len(false_bounces)}, "
          f"hard/soft vs code disagreements {len(disagree)}/{len(coded)}")
    assert recognized / len(bounces) >= 0.97
    assert as_human == 0
    assert caught >= len(complaints) - len(complaints) // 15
    assert false_bounces == []
    assert disagree == [] and len(coded) >= 40
    assert all(v.status[0] == ("5" if v.kind == "hard_bounce" else "4") for _, v in coded)


def test_mailer_daemon_with_empty_address_and_unreadable_body_is_a_bounce_not_an_auto_reply() -> None:
    raw = (b"From: MAILER-DAEMON <>\r\nTo: sales@bounces.test\r\nSubject: failure notice\r\n"
           b"Auto-Submitted: auto-replied\r\n\r\nYour message could not be delivered.\r\n")
    verdict = classify(parse_bytes(raw))
    assert (verdict.kind, verdict.evidence, verdict.reason) == ("hard_bounce", "bounce from null sender: reason unknown", "unknown")


def test_real_postfix_captures_name_the_recipient() -> None:
    for name, status in (("postfix_local_user_unknown.eml", "5.1.1"), ("postfix_local_mailbox_full.eml", "5.2.2")):
        verdict = _verdict(name)
        assert (verdict.kind, verdict.status, verdict.rule) == ("hard_bounce", status, "rfc3464")
        assert verdict.recipients and verdict.recipients[0].endswith("@bounces.test")
