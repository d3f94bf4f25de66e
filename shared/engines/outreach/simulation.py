"""The forecast's simulation: a campaign's sends from `Inputs.now` on, on a simulated clock.

`simulate_per_lead` is the reference: `scheduler.due_sends` over every lead at every wake-up
`scheduler.next_wake` names, until every lead has had its last step (seconds of CPU on thousands
of leads, most of it re-sorting leads that cannot send). `simulate`, what `forecast` uses, wakes
at exactly the same instants (they matter: a ramp's new day, say, is no wake-up of its own) and
makes the same decisions with the same scheduler functions, but keeps due leads in heaps per
(follow-up or first step, mailbox, zone) and waiting ones in buckets per (due time, zone), and
recomputes a zone's window only when it opens or closes; so a wake-up costs what the mailboxes
that can send and the open zones amount to, not the number of leads. Both return the same
`Forecast`; tests compare them on random campaigns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from heapq import heapify, heappop, heappush
from typing import Any

from shared.engines.outreach import scheduler, timezones
from shared.engines.outreach.scheduler import Candidate, MailboxState
from shared.engines.outreach.timezones import Window

HORIZON_DAYS = 365  # a sequence that has not finished in a year is reported as such


@dataclass(slots=True)
class Forecast:
    leads: int
    steps: int
    per_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day (UTC) → mailbox → sends
    caps: dict[str, int] = field(default_factory=dict)  # mailbox → daily cap (before ramp)
    last_send_at: datetime | None = None
    unfinished: int = 0  # leads not done within the horizon (no mailbox, say)
    enrichment_leads: int = 0
    enrichment_credits_max: int = 0
    credit_balance: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"leads": self.leads, "steps": self.steps, "per_day": self.per_day, "caps": self.caps,
                "last_send_at": self.last_send_at.isoformat() if self.last_send_at else None,
                "unfinished": self.unfinished, "enrichment_leads": self.enrichment_leads,
                "enrichment_credits_max": self.enrichment_credits_max, "credit_balance": self.credit_balance}


@dataclass(slots=True)
class Inputs:
    """What a simulation starts from (both simulations mutate the candidates and mailboxes)."""

    now: datetime
    window: Window
    steps: list[dict[str, Any]]  # step, delay_amount, delay_unit; in order
    candidates: list[Candidate]
    mailboxes: list[MailboxState]
    names: dict[int, str]  # mailbox id → from address

    def empty_result(self) -> Forecast:
        return Forecast(leads=len(self.candidates), steps=len(self.steps),
                        caps={self.names[m.id]: m.limits.daily_cap for m in self.mailboxes})


def in_order(per_day: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Days in order, each day's mailboxes by address: one order whichever simulation counted."""
    return {day: dict(sorted(per_day[day].items())) for day in sorted(per_day)}


def simulate_per_lead(sim: Inputs) -> Forecast:
    """The reference: `scheduler.due_sends` over every lead at every wake-up until all are done."""
    result = sim.empty_result()
    cands, boxes = sim.candidates, sim.mailboxes
    campaign_id = cands[0].campaign_id if cands else 0
    by_step = {s["step"]: s for s in sim.steps}
    windows = {campaign_id: sim.window}
    clock, horizon = sim.now, sim.now + timedelta(days=HORIZON_DAYS)
    while cands:
        for m in boxes:
            scheduler.roll_window(m, clock)
        plan = scheduler.due_sends(clock, cands, windows, boxes)
        sent = {s.enrollment_id: s for s in plan.sends}
        kept = []
        for c in cands:
            s = sent.get(c.enrollment_id)
            if s is None:
                kept.append(c)
                continue
            day = clock.date().isoformat()
            result.per_day.setdefault(day, {}).setdefault(sim.names[s.mailbox_id], 0)
            result.per_day[day][sim.names[s.mailbox_id]] += 1
            result.last_send_at = clock
            nxt = by_step.get(c.step + 1)
            if nxt is not None:
                c.step, c.mailbox_id = c.step + 1, s.mailbox_id
                c.due_at = timezones.add_delay(clock, nxt["delay_amount"], nxt["delay_unit"], c.timezone)
                kept.append(c)
        cands = kept
        wake = scheduler.next_wake(clock, cands, windows, boxes, horizon=horizon)
        if wake is None:
            break
        clock = wake
    result.unfinished = len(cands)
    result.per_day = in_order(result.per_day)
    return result


def simulate(sim: Inputs) -> Forecast:
    """The same answer as `simulate_per_lead`, in time that grows with the sends, not leads × wake-ups."""
    run = _Run(sim)
    clock = sim.now
    while run.left:
        run.release(clock)
        run.roll(clock)
        run.record(clock, run.sends(clock))
        run.release(clock)  # a next step due at once waits for the next wake-up, as in the reference
        wake = run.next_wake(clock)
        if wake is None:
            break
        clock = wake
    run.result.unfinished = run.left
    run.result.per_day = in_order(run.result.per_day)
    return run.result


FOLLOW_UP, FIRST_STEP = 0, 1  # the scheduler's order: follow-ups before first steps


class _Run:
    """One simulation's state: leads waiting for their delay, leads due (grouped), zone windows."""

    def __init__(self, sim: Inputs) -> None:
        self.sim, self.result = sim, sim.empty_result()
        self.by_step = {s["step"]: s for s in sim.steps}
        self.boxes = sim.mailboxes
        for m in self.boxes:  # kept in time order (sends are appended in order): the oldest is [0]
            m.sends_in_window.sort()
        self.horizon = sim.now + timedelta(days=HORIZON_DAYS)
        # Leads waiting for their delay, by (due, zone); the heaps hold each key once.
        self.buckets: dict[tuple[datetime, str], list[tuple[int, int, int | None]]] = {}  # (enrollment, step, box)
        self.waiting: list[tuple[datetime, str]] = []
        self.first_opens: list[tuple[datetime, datetime]] = []  # (the window first opens, due) per key
        # Leads due: phase → mailbox (None: the rotation picks) → zone → heap of (due, enrollment, step).
        self.groups: tuple[dict[int | None, dict[str, list[tuple[datetime, int, int]]]], ...] = ({}, {})
        self.due_in_zone: dict[str, int] = {}  # zone → leads due (whatever holds them)
        # Per zone with due leads: is the window open, (closed) when it opens; `changes` says until
        # when that holds (a zone without due leads is dropped at its next change, asked again once due).
        self.open: dict[str, bool] = {}
        self.opens: dict[str, datetime] = {}
        self.changes = [(sim.now, tz) for tz in {c.timezone for c in sim.candidates}]
        self.tracked = {tz for _, tz in self.changes}
        self._summary: tuple[bool, list[datetime]] | None = None  # zone_summary's, until a zone changes
        self.left = len(sim.candidates)
        for c in sim.candidates:
            self.wait(c.due_at, c.enrollment_id, c.step, c.timezone, c.mailbox_id)

    def wait(self, due: datetime, enrollment: int, step: int, tz: str, box: int | None) -> None:
        """A lead's next step waits for `due` (a new key also notes when the window first opens)."""
        bucket = self.buckets.get((due, tz))
        if bucket is None:
            bucket = self.buckets[(due, tz)] = []
            heappush(self.waiting, (due, tz))
            heappush(self.first_opens, (timezones.next_open(due, tz, self.sim.window), due))
        bucket.append((enrollment, step, box))

    def release(self, clock: datetime) -> None:
        """Leads whose delay has passed join their group of due leads."""
        while self.waiting and self.waiting[0][0] <= clock:
            due, tz = heappop(self.waiting)
            bucket = self.buckets.pop((due, tz))
            for enrollment, step, box in bucket:
                by_zone = self.groups[FIRST_STEP if step == 1 else FOLLOW_UP].setdefault(box, {})
                heappush(by_zone.setdefault(tz, []), (due, enrollment, step))
            if tz not in self.due_in_zone:
                self._summary = None
                if tz not in self.tracked:
                    self.tracked.add(tz)
                    heappush(self.changes, (clock, tz))
            self.due_in_zone[tz] = self.due_in_zone.get(tz, 0) + len(bucket)

    def roll(self, clock: datetime) -> None:
        """`scheduler.roll_window`, for the mailboxes whose oldest send has left the rolling 24 h."""
        cutoff = clock - timedelta(hours=24)
        for m in self.boxes:
            if m.sends_in_window and m.sends_in_window[0] <= cutoff:
                scheduler.roll_window(m, clock)

    def refresh_zones(self, clock: datetime) -> None:
        """`is_open` and `next_open` per zone at `clock`, recomputed only when the window has opened
        or closed since: closed, nothing changes until it opens; open, nothing until it closes."""
        stale = []
        while self.changes and self.changes[0][0] <= clock:
            stale.append(heappop(self.changes)[1])
        window = self.sim.window
        if stale:
            self._summary = None
        for tz in stale:
            if tz not in self.due_in_zone:
                self.tracked.discard(tz)
                continue
            self.open[tz] = timezones.is_open(clock, tz, window)
            if self.open[tz]:
                heappush(self.changes, (timezones.window_close(clock, tz, window), tz))
            else:
                self.opens[tz] = timezones.next_open(clock, tz, window)
                heappush(self.changes, (self.opens[tz], tz))

    def zone_summary(self, clock: datetime) -> tuple[bool, list[datetime]]:
        """Over the zones with due leads (after `refresh_zones`): is one open, and the earliest
        opening of the closed ones (as a list: none, or one). Kept until a zone changes."""
        if self._summary is None:
            opens = [self.opens[tz] for tz in self.due_in_zone if not self.open[tz]]
            later = [t for t in opens if t > clock]
            self._summary = (len(opens) < len(self.due_in_zone), [min(later)] if later else [])
        return self._summary

    def sends(self, clock: datetime) -> list[tuple[int, int, str, int]]:
        """(enrollment, step, zone, mailbox) of each send at `clock`, decided as `scheduler.due_sends` does."""
        if not self.due_in_zone:
            return []
        # The mailboxes that can send, in order; only a send changes a mailbox's answer at `clock`.
        live = {m.id: m for m in self.boxes if scheduler.can_send(m, clock)}
        if not live:
            return []
        self.refresh_zones(clock)
        if not self.zone_summary(clock)[0]:
            return []
        sent: list[tuple[int, int, str, int]] = []
        ready: list[int | None] = [*live]
        ready.append(None)
        for phase in (FOLLOW_UP, FIRST_STEP):
            self._phase(phase, clock, ready, live, sent)
        return sent

    def _phase(self, phase: int, clock: datetime, ready: list[int | None], live: dict[int, MailboxState],
               sent: list[tuple[int, int, str, int]]) -> None:
        """Due leads of one phase in (due, enrollment) order, each from its own mailbox (None: the
        rotation's pick among `live`, the mailboxes that can send) while it can; the rest stay due."""
        is_open, by_box = self.open, self.groups[phase]
        heads = [(g[0][0], g[0][1], box, tz, g) for box in ready if box in by_box
                 for tz, g in by_box[box].items() if g and is_open[tz]]
        heapify(heads)
        while heads and live:
            _, _, box, tz, g = heappop(heads)
            if box is None:
                m = min(live.values(), key=lambda m: scheduler.rotation_key(m, clock))
            elif box in live:
                m = live[box]
            else:
                continue
            _, enrollment, step = heappop(g)
            scheduler.take_slot(m, clock)
            if not scheduler.can_send(m, clock):
                del live[m.id]
            sent.append((enrollment, step, tz, m.id))
            self._left_zone(tz)
            if g:
                heappush(heads, (g[0][0], g[0][1], box, tz, g))

    def _left_zone(self, tz: str) -> None:
        self.due_in_zone[tz] -= 1
        if not self.due_in_zone[tz]:
            del self.due_in_zone[tz]
            self._summary = None

    def record(self, clock: datetime, sent: list[tuple[int, int, str, int]]) -> None:
        """Count the sends and schedule each lead's next step from the mailbox that sent this one."""
        if not sent:
            return
        counts = self.result.per_day.setdefault(clock.date().isoformat(), {})
        self.result.last_send_at = clock
        due_at: dict[tuple[int, str], datetime] = {}
        for enrollment, step, tz, box in sent:
            name = self.sim.names[box]
            counts[name] = counts.get(name, 0) + 1
            nxt = self.by_step.get(step + 1)
            if nxt is None:
                self.left -= 1
                continue
            due = due_at.get((step, tz))
            if due is None:
                due = due_at[(step, tz)] = timezones.add_delay(clock, nxt["delay_amount"], nxt["delay_unit"], tz)
            self.wait(due, enrollment, step + 1, tz, box)

    def next_wake(self, clock: datetime) -> datetime | None:
        """`scheduler.next_wake`'s answer: the mailboxes' own changes, the first window opening of a
        waiting lead, and the next opening in each zone with due leads whose window is closed."""
        times = scheduler.mailbox_wakes(clock, self.boxes)
        while self.first_opens and self.first_opens[0][1] <= clock:  # due now: counted with its zone below
            heappop(self.first_opens)
        if self.first_opens:
            times.append(self.first_opens[0][0])
        if self.due_in_zone:
            self.refresh_zones(clock)
            times.extend(self.zone_summary(clock)[1])
        later = [t for t in times if clock < t <= self.horizon]
        return min(later) if later else None
