"""Pure rules of the state machine: no database."""

from __future__ import annotations

import pytest

from shared.errors import IllegalTransition
from shared.status import TERMINAL, TRANSITIONS, BatchStatus, ItemStatus, batch_outcome, can_move, check_outcome, recovery_target
from shared.workitems import Outcome


def test_happy_path_is_legal():
    path = [ItemStatus.PENDING, ItemStatus.QUEUED, ItemStatus.IN_PROGRESS, ItemStatus.DONE]
    assert all(can_move(a, b) for a, b in zip(path, path[1:]))


def test_terminal_states_never_move():
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()


@pytest.mark.parametrize("source,target", [
    (ItemStatus.PENDING, ItemStatus.DONE),
    (ItemStatus.PENDING, ItemStatus.IN_PROGRESS),
    (ItemStatus.QUEUED, ItemStatus.DONE),
    (ItemStatus.DONE, ItemStatus.PENDING),
])
def test_skipping_steps_is_illegal(source, target):
    assert not can_move(source, target)


def test_skipped_needs_a_reason_and_failed_an_error():
    with pytest.raises(IllegalTransition, match="skip reason"):
        Outcome(1, 1, ItemStatus.SKIPPED)
    with pytest.raises(IllegalTransition, match="last error"):
        Outcome(1, 1, ItemStatus.FAILED)
    with pytest.raises(IllegalTransition, match="terminal"):
        check_outcome(ItemStatus.QUEUED, error=None, skip_reason=None)
    with pytest.raises(IllegalTransition, match="neither"):
        Outcome(1, 1, ItemStatus.DONE, error="boom")
    assert Outcome(1, 1, ItemStatus.SKIPPED, skip_reason="unsubscribed").skip_reason == "unsubscribed"


def test_recovery_respects_max_attempts():
    assert recovery_target(0, 3) is ItemStatus.PENDING
    assert recovery_target(2, 3) is ItemStatus.PENDING
    assert recovery_target(3, 3) is ItemStatus.FAILED


def test_batch_outcome():
    assert batch_outcome({"DONE": 3, "QUEUED": 1}) is None
    assert batch_outcome({"DONE": 3, "SKIPPED": 2}) is BatchStatus.COMPLETED
    assert batch_outcome({"DONE": 3, "FAILED": 1}) is BatchStatus.COMPLETED_WITH_ERRORS
    assert batch_outcome({}) is BatchStatus.COMPLETED
