"""Outreach's pure parts: timezone resolution, DST-correct windows and delays, the scheduler's policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.engines.outreach.capacity import MailboxLimits, effective_cap
from shared.engines.outreach.scheduler import Candidate, MailboxState, due_sends
from shared.engines.outreach.timezones import Window, add_delay, is_open, next_open, resolve

ALL_DAYS = Window(frozenset(range(1, 8)), 9, 17)


def test_timezone_sources_in_order_and_ambiguity_falls_back_with_a_note():
    assert resolve(explicit="Asia/Tokyo", phone="+49 30 123456", country="DE", fallback="UTC").source == "explicit"
    assert resolve(explicit=None, phone="+49 30 123456", country=None, fallback="UTC").timezone == "Europe/Berlin"
    by_country = resolve(explicit=None, phone=None, country="de", fallback="UTC")
    assert (by_country.timezone, by_country.source) == ("Europe/Berlin", "country")
    ambiguous = resolve(explicit=None, phone="+1 800 555 1234", country="US", fallback="America/Chicago")
    assert (ambiguous.timezone, ambiguous.source) == ("America/Chicago", "fallback")
    assert "ambiguous" in (ambiguous.note or "")


def test_window_holds_across_the_spring_forward_change():
    # New York springs forward on Sunday 2026-03-08: 9:00 local is 14:00 UTC before, 13:00 UTC after.
    tz = "America/New_York"
    assert not is_open(datetime(2026, 3, 7, 13, 30, tzinfo=UTC), tz, ALL_DAYS)  # 8:30 EST
    assert is_open(datetime(2026, 3, 7, 14, 0, tzinfo=UTC), tz, ALL_DAYS)
    assert is_open(datetime(2026, 3, 9, 13, 0, tzinfo=UTC), tz, ALL_DAYS)  # 9:00 EDT
    assert not is_open(datetime(2026, 3, 9, 21, 0, tzinfo=UTC), tz, ALL_DAYS)  # 17:00 EDT
    assert next_open(datetime(2026, 3, 7, 23, 0, tzinfo=UTC), tz, ALL_DAYS) == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_a_window_opening_inside_the_dst_gap_opens_when_the_clock_jumps():
    tz = "America/New_York"
    night = Window(frozenset(range(1, 8)), 2, 4)  # 02:00 does not exist on 2026-03-08
    opens = next_open(datetime(2026, 3, 8, 5, 0, tzinfo=UTC), tz, night)
    assert opens == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT


def test_business_day_delays_keep_local_time_across_dst_and_weekends():
    tz = "Europe/Berlin"
    friday = datetime(2026, 10, 23, 8, 0, tzinfo=UTC)  # 10:00 CEST
    monday = add_delay(friday, 1, "business_days", tz)  # clocks went back on Sunday 25th
    assert monday == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)  # 10:00 CET
    assert add_delay(friday, 2, "days", tz) == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)


def test_ramp_cap_grows_per_day_up_to_the_ceiling_and_the_smallest_limit_wins():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    limits = MailboxLimits(40, 10, 5, 30, start, 600, 0)
    assert [effective_cap(limits, start + timedelta(days=d)) for d in (0, 1, 3, 10)] == [10, 15, 25, 30]
    assert effective_cap(MailboxLimits(20, 10, 5, None, start, 0, 0), start + timedelta(days=10)) == 20


def _box(i, *, last=None, client=1, gap=0, cap=50):
    limits = MailboxLimits(cap, None, 0, None, datetime(2026, 1, 1, tzinfo=UTC), gap, 0)
    return MailboxState(i, client, limits, True, 0, last, None)


def test_scheduler_rotates_by_longest_idle_and_follow_ups_keep_their_mailbox():
    now = datetime(2026, 11, 23, 10, tzinfo=UTC)
    boxes = [_box(1, last=now - timedelta(minutes=5), gap=60), _box(2, last=now - timedelta(hours=2), gap=60),
             _box(3, gap=60)]
    cands = [Candidate(1, 1, 7, 101, 1, now, "UTC", None), Candidate(2, 1, 7, 102, 2, now, "UTC", 1),
             Candidate(3, 1, 7, 103, 1, now, "UTC", None), Candidate(4, 1, 7, 104, 1, now, "UTC", None)]
    plan = due_sends(now, cands, {7: ALL_DAYS}, boxes)
    got = {s.lead_id: s.mailbox_id for s in plan.sends}
    assert got[102] == 1  # follow-up: step 1's mailbox, planned first
    assert got[101] == 3 and got[103] == 2  # never used, then longest idle
    assert 104 not in got and plan.waiting_mailbox == 1  # every mailbox is inside its gap now


def test_scheduler_waits_outside_the_leads_window():
    now = datetime(2026, 11, 23, 20, tzinfo=UTC)  # 20:00 UTC = 15:00 in New York, 05:00 in Tokyo
    cands = [Candidate(1, 1, 7, 1, 1, now, "America/New_York", None), Candidate(2, 1, 7, 2, 1, now, "Asia/Tokyo", None)]
    plan = due_sends(now, cands, {7: ALL_DAYS}, [_box(1)])
    assert [s.lead_id for s in plan.sends] == [1] and plan.waiting_window == 1
