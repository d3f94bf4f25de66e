"""The lead story's pure parts: one time order with a stable tie-break, header masking, LIKE escaping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shared.engines.leads.story import KIND_ORDER, Entry, _like, mask_headers, merge, sort_key

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_merge_orders_by_time_across_sources():
    sent = Entry(T0 + timedelta(minutes=5), "message", "Step 1 sent", 1)
    started = Entry(T0 + timedelta(minutes=1), "transition", "QUEUED → IN_PROGRESS", 7)
    reply = Entry(T0 + timedelta(hours=2), "inbound", "human reply", 3)
    queued = Entry(T0, "transition", "PENDING → QUEUED", 6)
    assert merge([sent, reply], [started, queued]) == [queued, started, sent, reply]


def test_same_time_orders_cause_before_effect_then_by_row_id():
    at = T0
    done = Entry(at, "transition", "IN_PROGRESS → DONE", 12)
    also = Entry(at, "transition", "IN_PROGRESS → DONE", 11)
    charge = Entry(at, "credit", "reserve -1", 1)
    call = Entry(at, "provider", "sandbox: hit", 99)
    suppressed = Entry(at, "suppression", "email", 1)
    bounce = Entry(at, "inbound", "hard bounce", 50)
    assert merge([suppressed, charge, bounce], [done, call, also]) == [also, done, call, charge, bounce, suppressed]


def test_an_entry_without_a_time_goes_last_and_is_kept():
    timeless = Entry(None, "lead", "?", 0)
    late = Entry(T0 + timedelta(days=400), "message", "x", 1)
    assert merge([timeless, late]) == [late, timeless]


entries = st.builds(
    Entry,
    at=st.one_of(st.none(), st.integers(0, 5).map(lambda m: T0 + timedelta(minutes=m))),
    kind=st.sampled_from(KIND_ORDER),
    title=st.text(max_size=3),
    seq=st.integers(0, 20),
)


@given(st.lists(entries, max_size=30))
def test_merge_is_sorted_and_independent_of_input_order_and_grouping(items):
    merged = merge(items)
    assert sorted(merged, key=sort_key) == merged and len(merged) == len(items)
    shuffled = items[:]
    random.Random(len(items)).shuffle(shuffled)
    half = len(shuffled) // 2
    again = merge(shuffled[:half], shuffled[half:])
    assert [sort_key(e) for e in again] == [sort_key(e) for e in merged]


def test_stored_headers_come_in_reading_order_and_the_unsubscribe_token_is_masked():
    stored = {"X-Other": "1", "Message-ID": "<1.2.3@acme.test>", "From": "Rep <rep@acme.test>",
              "List-Unsubscribe": "<https://unsub.example.test/u/NDI.abc-DEF_123>, <mailto:u@acme.test?subject=unsubscribe>",
              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    shown = mask_headers(stored)
    assert [k for k, _ in shown] == ["From", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "X-Other"]
    unsub = dict(shown)["List-Unsubscribe"]
    assert "NDI.abc-DEF_123" not in unsub and unsub.startswith("<https://unsub.example.test/u/…>")
    assert "mailto:u@acme.test" in unsub
    assert mask_headers(None) == ()


def test_when_shows_milliseconds_in_utc():
    at = datetime(2026, 11, 23, 11, 0, 1, 234567, tzinfo=timezone(timedelta(hours=1)))
    assert Entry(at, "lead", "x", 0).when() == "2026-11-23 10:00:01.234 UTC"
    assert Entry(None, "lead", "x", 0).when() == ""


def test_search_pattern_matches_wildcards_literally():
    assert _like("50%_off\\") == "%50\\%\\_off\\\\%"
