"""Who is due (pure): given `now`, the sends to make — next step, delay elapsed, window open in the
lead's timezone, a mailbox under its cap and past its gap. Nothing here reads a clock or sleeps.

The same function drives the outreach flow (real `now`), the demo and the tests (a simulated clock)
and the forecast (an in-memory simulation), so what the forecast promises is what runs.
Policy, as the peers do it: follow-ups go before first steps; a follow-up leaves from the mailbox
that sent step 1; a first step goes to the client's mailbox with the largest share of its cap
left (its cap now minus what it sent in the rolling 24 h, over that cap), ties to the most room,
then the longest idle, then the lowest id, so a client's sends spread over its mailboxes in
proportion to their caps instead of filling one first.
`explain` is the same decision per lead, with what holds each one back and until when: the
`outbound outreach due` view, never a second copy of these rules.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.engines.outreach.capacity import MailboxLimits, effective_cap
from shared.engines.outreach.timezones import Window, is_open, next_open


@dataclass(slots=True)
class Candidate:
    """An active enrollment whose next step's delay has elapsed (the database already filtered that)."""

    enrollment_id: int
    client_id: int
    campaign_id: int
    lead_id: int
    step: int
    due_at: datetime
    timezone: str
    mailbox_id: int | None  # set once step 1 went out


@dataclass(slots=True)
class MailboxState:
    """A mailbox as the scheduler plans with it; `sent_24h` and `next_send_at` move as it plans."""

    id: int
    client_id: int
    limits: MailboxLimits
    active: bool
    sent_24h: int
    last_sent_at: datetime | None
    next_send_at: datetime | None
    sends_in_window: list[datetime] = field(default_factory=list)  # planned/recorded send times, rolling
    retry_at: datetime | None = None  # backing off after SMTP failures until then
    reason: str | None = None  # why it is paused, or its server's last error

    def free_at(self, now: datetime) -> bool:
        return (self.next_send_at is None or self.next_send_at <= now) and not self.backing_off(now)

    def backing_off(self, now: datetime) -> bool:
        return self.retry_at is not None and self.retry_at > now

    def room(self, now: datetime) -> int:
        return effective_cap(self.limits, now) - self.sent_24h


@dataclass(frozen=True, slots=True)
class Send:
    enrollment_id: int
    client_id: int
    campaign_id: int
    lead_id: int
    step: int
    mailbox_id: int


@dataclass(slots=True)
class Plan:
    sends: list[Send]
    waiting_window: int = 0  # due, but outside the lead's window
    waiting_mailbox: int = 0  # due and in window, but no mailbox has room or is past its gap


# What holds a lead back (Decision.hold); None: it is sent now.
DELAY, WINDOW, PAUSED, BACKING_OFF, CAP, GAP, NO_MAILBOX = (
    "delay not passed", "window closed", "mailbox paused", "mailbox backing off", "cap reached", "gap",
    "no mailbox")


@dataclass(frozen=True, slots=True)
class Decision:
    """The scheduler's answer for one candidate at `now`: a send, or what holds it and until when."""

    candidate: Candidate
    send: Send | None
    hold: str | None = None
    mailbox_id: int | None = None  # the mailbox it goes (or would go) from
    until: datetime | None = None  # when the hold ends, if known (None: paused, or no mailbox)


def due_sends(now: datetime, candidates: Iterable[Candidate], windows: Mapping[int, Window],
              mailboxes: Sequence[MailboxState]) -> Plan:
    """The sends to make at `now`; each planned send takes its mailbox's slot in `mailboxes`."""
    plan = Plan([])
    for d in _decide(now, candidates, windows, mailboxes):
        if d.send is not None:
            plan.sends.append(d.send)
        elif d.hold == WINDOW:
            plan.waiting_window += 1
        elif d.hold != DELAY:
            plan.waiting_mailbox += 1
    return plan


def explain(now: datetime, candidates: Iterable[Candidate], windows: Mapping[int, Window],
            mailboxes: Sequence[MailboxState]) -> list[Decision]:
    """`due_sends`' decision for every candidate (due or not), each hold with when it ends.

    Works on a copy of `mailboxes`: the caller's states are left as they were."""
    out = []
    for d in _decide(now, candidates, windows, copy.deepcopy(list(mailboxes))):
        c, window = d.candidate, windows.get(d.candidate.campaign_id)
        if d.hold == DELAY and window is not None:
            d = Decision(c, None, DELAY, d.mailbox_id, next_open(c.due_at, c.timezone, window))
        elif d.hold == WINDOW and window is not None:
            d = Decision(c, None, WINDOW, d.mailbox_id, next_open(now, c.timezone, window))
        out.append(d)
    return out


def _decide(now: datetime, candidates: Iterable[Candidate], windows: Mapping[int, Window],
            mailboxes: Sequence[MailboxState]) -> Iterator[Decision]:
    by_id = {m.id: m for m in mailboxes}
    by_client: dict[int, list[MailboxState]] = {}
    for m in mailboxes:
        by_client.setdefault(m.client_id, []).append(m)
    # Thousands of candidates share a few (campaign, time zone) pairs: each window is checked once.
    open_now: dict[tuple[int, str], bool] = {}
    usable_by_client: dict[int, list[MailboxState]] = {}
    # Follow-ups first (a started conversation matters more than a new one), then oldest due first.
    for c in sorted(candidates, key=lambda c: (c.step == 1, c.due_at, c.enrollment_id)):
        if c.due_at > now:
            yield Decision(c, None, DELAY, c.mailbox_id, c.due_at)
            continue
        window = windows.get(c.campaign_id)
        key = (c.campaign_id, c.timezone)
        if key not in open_now:
            open_now[key] = window is not None and is_open(now, c.timezone, window)
        if not open_now[key]:
            yield Decision(c, None, WINDOW, c.mailbox_id)
            continue
        if c.mailbox_id is not None:
            box = by_id.get(c.mailbox_id)
            picked = box if box is not None and can_send(box, now) else None
        else:
            usable = usable_by_client.get(c.client_id)
            if usable is None:  # a client's usable mailboxes change only when one takes a slot
                usable = usable_by_client[c.client_id] = [m for m in by_client.get(c.client_id, ()) if can_send(m, now)]
            picked = min(usable, key=lambda m: rotation_key(m, now), default=None)
        if picked is None:
            yield _held_by_mailbox(c, now, by_id, by_client)
            continue
        take_slot(picked, now)
        usable_by_client.pop(picked.client_id, None)
        yield Decision(c, Send(c.enrollment_id, c.client_id, c.campaign_id, c.lead_id, c.step, picked.id),
                       mailbox_id=picked.id, until=now)


def rotation_key(m: MailboxState, now: datetime) -> tuple[float, int, bool, datetime, int]:
    """The largest share of its cap left first (so each mailbox is used in proportion to its cap: a
    ramping one still gets its share of warm-up sends); then the most room; then never used before
    used, longest idle first; then the lowest id."""
    cap = effective_cap(m.limits, now)
    room = cap - m.sent_24h
    # A float is exact enough: equal shares divide to the same double, and caps are far below 2**26.
    return -(room / cap) if cap > 0 else 0.0, -room, m.last_sent_at is not None, m.last_sent_at or now, m.id


def _mailbox_hold(m: MailboxState, now: datetime) -> tuple[str, datetime | None]:
    if not m.active:
        return PAUSED, None
    if m.backing_off(now):
        return BACKING_OFF, m.retry_at
    if m.room(now) <= 0:
        return CAP, min(m.sends_in_window) + timedelta(hours=24) if m.sends_in_window else None
    return GAP, m.next_send_at


def _held_by_mailbox(c: Candidate, now: datetime, by_id: Mapping[int, MailboxState],
                     by_client: Mapping[int, list[MailboxState]]) -> Decision:
    """Why no mailbox can take `c` now: its own (a follow-up), else the client's mailbox that frees first."""
    boxes = [by_id[c.mailbox_id]] if c.mailbox_id is not None and c.mailbox_id in by_id else \
        [] if c.mailbox_id is not None else by_client.get(c.client_id, [])
    holds = sorted(((*_mailbox_hold(m, now), m.id) for m in boxes),
                   key=lambda h: (h[1] is None, h[1] or now, h[2]))
    if not holds:
        return Decision(c, None, NO_MAILBOX, c.mailbox_id)
    hold, until, box = holds[0]
    return Decision(c, None, hold, box, until)


def can_send(m: MailboxState, now: datetime) -> bool:
    """Can `m` take a send at `now`: active, past its gap and back-off, under its cap."""
    return m.active and m.free_at(now) and m.room(now) > 0


def take_slot(m: MailboxState, now: datetime, jitter_seconds: float = 0.0) -> None:
    """What a reservation does to a mailbox (the database does the same in one guarded UPDATE)."""
    m.sent_24h += 1
    m.last_sent_at = now
    m.next_send_at = now + timedelta(seconds=m.limits.min_gap_seconds + jitter_seconds)
    m.sends_in_window.append(now)


def next_wake(now: datetime, candidates: Iterable[Candidate], windows: Mapping[int, Window],
              mailboxes: Sequence[MailboxState], *, horizon: datetime) -> datetime | None:
    """The earliest moment after `now` (and before `horizon`) when something could become sendable.

    A simulated clock jumps there; on the real clock the next scheduled pass (or `outbound outreach run --until`) comes back.
    """
    times = mailbox_wakes(now, mailboxes)
    opens: dict[tuple[datetime, str, int], datetime] = {}  # many candidates share a time, zone and campaign
    for c in candidates:
        window = windows.get(c.campaign_id)
        if window is None:
            continue
        key = (max(now, c.due_at), c.timezone, c.campaign_id)
        if key not in opens:
            opens[key] = next_open(key[0], c.timezone, window)
        at = opens[key]
        if at > now:
            times.append(at)
    later = [t for t in times if now < t <= horizon]
    return min(later) if later else None


def mailbox_wakes(now: datetime, mailboxes: Iterable[MailboxState]) -> list[datetime]:
    """When each mailbox's state next changes on its own: its gap ends, its back-off ends, or (at its
    cap) its oldest send in the rolling 24 h ages out. `next_wake`'s mailbox part."""
    times: list[datetime] = []
    for m in mailboxes:
        if m.active and m.next_send_at is not None and m.next_send_at > now:
            times.append(m.next_send_at)
        if m.active and m.backing_off(now):
            times.append(m.retry_at)  # type: ignore[arg-type]  (backing_off: not None)
        # A rolling-24 h slot frees when the oldest send in the window turns 24 h old.
        if m.sends_in_window and m.room(now) <= 0:
            times.append(min(m.sends_in_window) + timedelta(hours=24))
    return times


def roll_window(m: MailboxState, now: datetime) -> None:
    """Drop sends older than 24 h from the planning count (the database counts `messages` instead)."""
    cutoff = now - timedelta(hours=24)
    kept = [t for t in m.sends_in_window if t > cutoff]
    m.sent_24h -= len(m.sends_in_window) - len(kept)
    m.sends_in_window = kept
