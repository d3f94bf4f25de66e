"""Credits on real Postgres: never negative under concurrent charges, each key applied once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared import workitems
from shared.engines.clients import billing
from shared.engines.clients.billing import Reservation
from tests import factories

pytestmark = pytest.mark.integration


def _in_progress(engine, n, credits):
    with engine.begin() as conn:
        c = factories.client(conn, credits=credits)
        b = factories.batch(conn, c, factories.leads(conn, c, n))
        ids = [x.id for x in workitems.claim(conn, b, n)]
        workitems.start(conn, ids, worker_id="w", lease_seconds=600)
    return c, ids


def test_balance_never_negative_under_concurrent_charges(engine):
    client_id, ids = _in_progress(engine, 120, credits=100)
    barrier = threading.Barrier(12)

    def charge(item_id: int) -> Reservation:
        with engine.begin() as conn:
            return billing.reserve(conn, client_id=client_id, item_id=item_id, attempt=1, provider="p", cost=3)

    def worker(part):
        barrier.wait()
        return [charge(i) for i in part]

    with ThreadPoolExecutor(12) as pool:
        results = [r for part in pool.map(worker, [ids[k::12] for k in range(12)]) for r in part]
    assert results.count(Reservation.RESERVED) == 33
    # The other 87 are not refused: the 33 reservations are still in flight and a miss would refund them.
    assert results.count(Reservation.DEFERRED) == 120 - 33
    with engine.begin() as conn:
        assert billing.balance(conn, client_id) == 1
        ledger = conn.execute(text("SELECT coalesce(sum(delta), 0) FROM credit_ledger "
                                   "WHERE client_id = :c AND kind <> 'topup'"), {"c": client_id}).scalar()
        assert ledger == -99
    reserved = [i for i, r in zip([i for k in range(12) for i in ids[k::12]], results) if r is Reservation.RESERVED]
    with engine.begin() as conn:  # the calls end as hits: their charges are kept, nothing is in flight any more
        workitems.finish(conn, [workitems.Outcome(i, 1, "DONE") for i in reserved])
        again = billing.reserve_many(conn, client_id=client_id, provider="p", cost=3,
                                     held=[(i, 1) for i in ids if i not in reserved])
    assert set(again.values()) == {Reservation.NO_CREDITS}


def test_short_balance_defers_while_anything_is_in_flight(engine):
    client_id, ids = _in_progress(engine, 10, credits=5)
    with engine.begin() as conn:
        first = billing.reserve_many(conn, client_id=client_id, provider="p", cost=2, held=[(i, 1) for i in ids[:3]])
        # Two granted; the third waits: if either call misses, its refund pays for it.
        assert [first[i] for i in ids[:3]] == [Reservation.RESERVED, Reservation.RESERVED, Reservation.DEFERRED]
        rest = billing.reserve_many(conn, client_id=client_id, provider="p", cost=2, held=[(i, 1) for i in ids[3:]])
        assert [rest[i] for i in ids[3:]] == [Reservation.DEFERRED] * 7
        billing.refund(conn, [(ids[0], 1)], note="miss")
        retry = billing.reserve_many(conn, client_id=client_id, provider="p", cost=2, held=[(ids[3], 1)])
        assert retry == {ids[3]: Reservation.RESERVED}
        assert billing.balance(conn, client_id) == 1
        workitems.finish(conn, [workitems.Outcome(i, 1, "DONE") for i in (ids[1], ids[3])])  # kept: gone for good
        final = billing.reserve_many(conn, client_id=client_id, provider="p", cost=2, held=[(ids[4], 1)])
        assert final == {ids[4]: Reservation.NO_CREDITS}


def test_same_reservation_from_many_threads_charges_once(engine):
    client_id, [item] = _in_progress(engine, 1, credits=50)
    barrier = threading.Barrier(10)

    def go(_):
        barrier.wait()
        with engine.begin() as conn:
            return billing.reserve(conn, client_id=client_id, item_id=item, attempt=1, provider="p", cost=5)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(go, range(10)))
    assert results.count(Reservation.RESERVED) == 1
    assert results.count(Reservation.ALREADY_RESERVED) == 9
    with engine.begin() as conn:
        assert billing.balance(conn, client_id) == 45


def test_refund_happens_once_and_restores_the_balance(engine):
    client_id, [item] = _in_progress(engine, 1, credits=10)
    with engine.begin() as conn:
        assert billing.reserve(conn, client_id=client_id, item_id=item, attempt=1, provider="p", cost=4) is Reservation.RESERVED
    barrier = threading.Barrier(6)

    def go(_):
        barrier.wait()
        with engine.begin() as conn:
            return billing.refund(conn, [(item, 1)], note="miss")

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(go, range(6))) == [0, 0, 0, 0, 0, 4]
    with engine.begin() as conn:
        assert billing.balance(conn, client_id) == 10


def test_fenced_or_inactive_reservations_take_nothing(engine):
    client_id, [item] = _in_progress(engine, 1, credits=10)
    with engine.begin() as conn:
        assert billing.reserve(conn, client_id=client_id, item_id=item, attempt=2, provider="p", cost=1) is Reservation.FENCED
        conn.execute(text("UPDATE clients SET subscription_status = 'cancelled'"))
        assert billing.reserve(conn, client_id=client_id, item_id=item, attempt=1, provider="p", cost=1) is Reservation.INACTIVE
        assert billing.balance(conn, client_id) == 10
        assert conn.execute(text("SELECT count(*) FROM credit_ledger WHERE kind <> 'topup'")).scalar() == 0


def test_topup_is_idempotent_and_balance_check_is_in_the_database(engine):
    with engine.begin() as conn:
        c = factories.client(conn, credits=0)
        assert billing.add_credits(conn, c, 25, key="stripe:evt_1") is True
        assert billing.add_credits(conn, c, 25, key="stripe:evt_1") is False
        assert billing.balance(conn, c) == 25
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(text("UPDATE clients SET credit_balance = -1 WHERE id = :c"), {"c": c})
