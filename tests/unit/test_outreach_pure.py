"""Outreach's pure parts: timezone resolution, DST-correct windows and delays, the scheduler's policy."""

from __future__ import annotations

from collections import Counter

from datetime import UTC, datetime, timedelta

from shared.engines.outreach.capacity import MailboxLimits, effective_cap, ramp_days
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
    # The ramp's day (what the console shows): whole days since it started, none without a ramp.
    assert [ramp_days(limits, start + timedelta(days=d, hours=23)) for d in (0, 1, 3)] == [0, 1, 3]
    assert ramp_days(limits, start - timedelta(days=2)) == 0
    assert ramp_days(MailboxLimits(40, None, 0, None, start, 0, 0), start + timedelta(days=5)) is None


def test_a_step_that_cannot_render_is_a_template_problem_in_the_activation_reports_words():
    from shared.engines.outreach.templates import StepTemplate, dry_render, lead_context, render_step
    from shared.errors import TemplateProblem

    step = StepTemplate(2, "Hi {{ first_name }}", "About {{ company_name }} {{ ''.__class__.__mro__ }}")
    lead = {"id": 7, "email": "ann@x.test", "first_name": "Ann", "company_name": None}
    try:
        render_step(step, lead_context(lead))
        raise AssertionError("rendered without company_name")
    except TemplateProblem as exc:
        assert str(exc) == "step 2 needs {{ company_name }}"
    assert dry_render([lead], [step]) == ["lead 7 ann@x.test: step 2 needs {{ company_name }}"]
    unsafe = StepTemplate(1, "x", "{{ ''.__class__.__mro__ }}")  # the sandbox refuses: a problem, not a crash
    try:
        render_step(unsafe, lead_context(lead))
        raise AssertionError("the sandbox let it through")
    except TemplateProblem as exc:
        assert str(exc).startswith("step 1: SecurityError")
    assert render_step(StepTemplate(1, "Hi {{ first_name }}\n", "Hello."), lead_context(lead)).subject == "Hi Ann"


def test_the_shields_rates_as_percentages_and_its_verdict_use_the_same_figures():
    from shared.engines.replies.shield import Rates, Thresholds, verdict

    assert Rates(0, 0, 0).hard_bounce_pct is None and Rates(0, 0, 0).complaint_pct is None
    r = Rates(50, 2, 1)
    assert (r.hard_bounce_pct, r.complaint_pct) == (4.0, 2.0)
    assert verdict(r, Thresholds()) == ("bounce shield: hard-bounce rate 4.0 % (2 of 50 sends in 7 days) is above 2 %")
    assert verdict(Rates(50, 1, 0), Thresholds()) is None  # 2.0 % is not above 2 %


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


def test_first_steps_spread_in_proportion_to_each_mailboxs_cap():
    """A warm mailbox (cap 45) and a ramping one (cap 15): 20 first steps split 15:5, not 20:0 (most
    absolute room would fill the warm one first and leave the ramping one without warm-up sends)."""
    now = datetime(2026, 11, 23, 10, tzinfo=UTC)
    cands = [Candidate(i, 1, 7, 100 + i, 1, now, "UTC", None) for i in range(20)]
    plan = due_sends(now, cands, {7: ALL_DAYS}, [_box(1, cap=45), _box(2, cap=15)])
    assert Counter(s.mailbox_id for s in plan.sends) == {1: 15, 2: 5}


def test_scheduler_waits_outside_the_leads_window():
    now = datetime(2026, 11, 23, 20, tzinfo=UTC)  # 20:00 UTC = 15:00 in New York, 05:00 in Tokyo
    cands = [Candidate(1, 1, 7, 1, 1, now, "America/New_York", None), Candidate(2, 1, 7, 2, 1, now, "Asia/Tokyo", None)]
    plan = due_sends(now, cands, {7: ALL_DAYS}, [_box(1)])
    assert [s.lead_id for s in plan.sends] == [1] and plan.waiting_window == 1
