"""The state machine against real Postgres, under real concurrency (threads with their own connections)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, InternalError

from shared import workitems
from shared.status import ItemStatus
from shared.workitems import Outcome
from tests import factories

pytestmark = pytest.mark.integration


def _setup(engine, n=10, max_attempts=3):
    with engine.begin() as conn:
        c = factories.client(conn)
        leads = factories.leads(conn, c, n)
        b = factories.batch(conn, c, leads, max_attempts=max_attempts)
    return b


def test_full_path_records_history(engine):
    b = _setup(engine, 1)
    with engine.begin() as conn:
        [claimed] = workitems.claim(conn, b, 10)
        started, lost = workitems.start(conn, [claimed.id], worker_id="w1", lease_seconds=60)
        assert lost == [] and started[0].attempt == 1
        moved = workitems.finish(conn, [Outcome(claimed.id, 1, ItemStatus.DONE)])
        assert moved.moved == [claimed.id]
        assert workitems.history(conn, claimed.id) == [
            ("PENDING", "QUEUED", 0, None),
            ("QUEUED", "IN_PROGRESS", 1, "w1"),
            ("IN_PROGRESS", "DONE", 1, None),
        ]


def test_concurrent_claimers_never_share_an_item(engine):
    n = 3000
    b = _setup(engine, n)
    got: list[list[int]] = []
    barrier = threading.Barrier(8)

    def claimer() -> list[int]:
        mine: list[int] = []
        barrier.wait()
        while True:
            with engine.begin() as conn:
                chunk = workitems.claim(conn, b, 37)
            if not chunk:
                return mine
            mine.extend(c.id for c in chunk)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: claimer(), range(8)))
    flat = [i for part in got for i in part]
    assert len(flat) == n and len(set(flat)) == n
    assert sum(1 for part in got if part) > 1, "the claimers did not actually run concurrently"
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"QUEUED": n}


def test_start_and_finish_report_rows_moved_by_someone_else(engine):
    b = _setup(engine, 2)
    with engine.begin() as conn:
        ids = [c.id for c in workitems.claim(conn, b, 2)]
        started, lost = workitems.start(conn, ids, worker_id="a", lease_seconds=60)
        assert lost == []
        again, lost_again = workitems.start(conn, ids, worker_id="b", lease_seconds=60)
        assert again == [] and lost_again == ids
        first = workitems.finish(conn, [Outcome(ids[0], 1, ItemStatus.SKIPPED, skip_reason="unsubscribed")])
        second = workitems.finish(conn, [Outcome(ids[0], 1, ItemStatus.DONE)])
        assert first.moved == [ids[0]] and second.lost == [ids[0]]
        row = conn.execute(text("SELECT status, skip_reason FROM work_items WHERE id = :i"), {"i": ids[0]}).one()
        assert tuple(row) == ("SKIPPED", "unsubscribed")


def test_stale_worker_cannot_finish_a_recovered_and_rerun_item(engine):
    b = _setup(engine, 1)
    with engine.begin() as conn:
        [c] = workitems.claim(conn, b, 1)
        [stale], _ = workitems.start(conn, [c.id], worker_id="stale", lease_seconds=60)
        factories.expire(conn, [c.id])
        rec = workitems.recover(conn, queue_timeout_seconds=600, batch_id=b)
        assert rec.requeued == [c.id] and rec.abandoned == [(c.id, 1)]
        workitems.claim(conn, b, 1)
        [fresh], _ = workitems.start(conn, [c.id], worker_id="fresh", lease_seconds=60)
        assert fresh.attempt == 2
        late = workitems.finish(conn, [Outcome(c.id, stale.attempt, ItemStatus.DONE)])
        assert late.lost == [c.id]
        assert conn.execute(text("SELECT status FROM work_items WHERE id = :i"), {"i": c.id}).scalar() == "IN_PROGRESS"
        ok = workitems.finish(conn, [Outcome(c.id, fresh.attempt, ItemStatus.DONE)])
        assert ok.moved == [c.id]


def test_stale_finish_races_fresh_finish_from_two_connections(engine):
    """The fenced UPDATE, not Python, decides: run both finishes at once, many times."""
    b = _setup(engine, 200)
    with engine.begin() as conn:
        ids = [c.id for c in workitems.claim(conn, b, 200)]
        workitems.start(conn, ids, worker_id="stale", lease_seconds=60)
        factories.expire(conn, ids)
        workitems.recover(conn, queue_timeout_seconds=600, batch_id=b)
        workitems.claim(conn, b, 200)
        workitems.start(conn, ids, worker_id="fresh", lease_seconds=60)
    barrier = threading.Barrier(2)

    def finish(attempt: int, status: ItemStatus) -> list[int]:
        barrier.wait()
        with engine.begin() as conn:
            outcomes = [Outcome(i, attempt, status, error="x" if status is ItemStatus.FAILED else None) for i in ids]
            return workitems.finish(conn, outcomes).moved

    with ThreadPoolExecutor(2) as pool:
        stale = pool.submit(finish, 1, ItemStatus.FAILED)
        fresh = pool.submit(finish, 2, ItemStatus.DONE)
    assert stale.result() == [] and sorted(fresh.result()) == ids
    with engine.begin() as conn:
        assert workitems.counts(conn, b) == {"DONE": 200}


def test_recovery_respects_max_attempts(engine):
    b = _setup(engine, 1, max_attempts=2)
    with engine.begin() as conn:
        for attempt in (1, 2):
            [c] = workitems.claim(conn, b, 1)
            workitems.start(conn, [c.id], worker_id=f"w{attempt}", lease_seconds=60)
            factories.expire(conn, [c.id])
            rec = workitems.recover(conn, queue_timeout_seconds=600, batch_id=b)
        assert rec.failed == [c.id] and rec.requeued == []
        assert workitems.claim(conn, b, 1) == []
        row = conn.execute(text("SELECT status, attempts, last_error FROM work_items WHERE id = :i"),
                           {"i": c.id}).one()
        assert row.status == "FAILED" and row.attempts == 2 and "lease expired" in row.last_error


def test_queued_past_timeout_goes_back_to_pending_without_using_an_attempt(engine):
    b = _setup(engine, 3)
    with engine.begin() as conn:
        ids = [c.id for c in workitems.claim(conn, b, 3)]
        assert workitems.recover(conn, queue_timeout_seconds=600, batch_id=b).requeued == []
        factories.expire(conn, ids)
        rec = workitems.recover(conn, queue_timeout_seconds=600, batch_id=b)
        assert rec.requeued == ids and rec.abandoned == []
        assert conn.execute(text("SELECT max(attempts) FROM work_items")).scalar() == 0


def test_database_refuses_illegal_rows(engine):
    b = _setup(engine, 1)
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(text("UPDATE work_items SET status = 'SKIPPED' WHERE batch_id = :b"), {"b": b})
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(text("UPDATE work_items SET status = 'BOGUS' WHERE batch_id = :b"), {"b": b})
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            c = conn.execute(text("SELECT client_id FROM batches WHERE id = :b"), {"b": b}).scalar()
            conn.execute(text("INSERT INTO leads (client_id, email) VALUES (:c, 'person1@example.com')"), {"c": c})


def test_history_is_append_only(engine):
    b = _setup(engine, 1)
    with engine.begin() as conn:
        workitems.claim(conn, b, 1)
    with pytest.raises(InternalError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE status_history SET detail = 'rewritten'"))
    with pytest.raises(InternalError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM status_history"))


def test_claim_uses_the_partial_pending_index(engine):
    b = _setup(engine, 10)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(
            text("EXPLAIN SELECT id FROM work_items WHERE batch_id = :b AND status = 'PENDING' ORDER BY id LIMIT 50"),
            {"b": b}).scalars())
    assert "ix_work_items_pending" in plan


def test_extend_lease_only_for_the_attempt_that_holds_the_item(engine):
    b = _setup(engine, 2)
    with engine.begin() as conn:
        ids = [c.id for c in workitems.claim(conn, b, 2)]
        workitems.start(conn, ids, worker_id="w", lease_seconds=1)
        renewed = workitems.extend_lease(conn, [(ids[0], 1), (ids[1], 2)], lease_seconds=600)
        assert renewed.moved == [ids[0]] and renewed.lost == [ids[1]]
        left = conn.execute(text("SELECT lease_until > now() + interval '5 minutes' FROM work_items WHERE id = :i"),
                            {"i": ids[0]}).scalar()
        assert left is True
