"""The fast forecast simulation gives exactly the reference's answer on random campaigns.

Random windows (DST zones, quarter-hour offsets, windows opening in a DST gap), steps and delays,
mailboxes with caps, ramps, gaps, back-offs and earlier sends, leads at any step, bound to a
mailbox, to a missing one or to none: every field of the `Forecast`, in the same order.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.engines.outreach.capacity import MailboxLimits
from shared.engines.outreach.scheduler import Candidate, MailboxState
from shared.engines.outreach.simulation import Inputs, simulate, simulate_per_lead
from shared.engines.outreach.timezones import Window

ZONES = ("UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham", "America/Sao_Paulo")
GAPS = (0, 0, 60, 600, 900, 1200, 3600, 7200)
MISSING_MAILBOX = 999


def _when(rng: random.Random, around: datetime, days: float) -> datetime:
    return around + timedelta(seconds=rng.randint(int(-days * 86400), int(days * 86400)))


def _window(rng: random.Random) -> Window:
    start = rng.choice([0, 2, 3, 8, 9, 9, 13, 22])
    return Window(frozenset(rng.sample(range(1, 8), rng.randint(1, 7))), start, rng.randint(start + 1, 24))


def _mailbox(rng: random.Random, box_id: int, now: datetime) -> MailboxState:
    ramp = rng.random() < 0.4
    limits = MailboxLimits(rng.randint(0, 6), rng.randint(0, 3) if ramp else None, rng.randint(0, 2),
                           rng.choice([None, 2, 4]), _when(rng, now, 3), rng.choice(GAPS), 0)
    sent = sorted(_when(rng, now - timedelta(hours=12), 0.5) for _ in range(rng.randint(0, 3)))
    last = sent[-1] if sent else (_when(rng, now, 2) if rng.random() < 0.2 else None)
    return MailboxState(box_id, 1, limits, active=rng.random() < 0.9, sent_24h=len(sent), last_sent_at=last,
                        next_send_at=_when(rng, now, 0.2) if rng.random() < 0.3 else None,
                        sends_in_window=rng.sample(sent, len(sent)),
                        retry_at=_when(rng, now, 1) if rng.random() < 0.15 else None)


def _lead(rng: random.Random, i: int, now: datetime, steps: int, zones: list[str], boxes: list[int]) -> Candidate:
    step = 1 if rng.random() < 0.6 else rng.randint(1, steps)
    box = None if step == 1 and rng.random() < 0.9 else rng.choice([*boxes, None, MISSING_MAILBOX])
    due = now if rng.random() < 0.3 else _when(rng, now + timedelta(days=1), 2)
    return Candidate(rng.choice([-1, 1]) * (i + 1), 1, 7, i, step, due, rng.choice(zones), box)


def random_inputs(seed: int) -> Inputs:
    rng = random.Random(seed)
    now = datetime(2026, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
                   rng.randint(0, 59), tzinfo=UTC)
    steps = [{"step": n, "delay_amount": rng.randint(0, 3), "delay_unit": rng.choice(["days", "business_days"])}
             for n in range(1, rng.randint(1, 4) + 1)]
    boxes = [_mailbox(rng, box_id, now) for box_id in range(1, rng.randint(0, 4) + 1)]
    zones = rng.sample(ZONES, rng.randint(1, 5))
    leads = [_lead(rng, i, now, len(steps), zones, [m.id for m in boxes]) for i in range(rng.randint(0, 40))]
    return Inputs(now, _window(rng), steps, leads, boxes, {m.id: f"box{m.id}@x.test" for m in boxes})


@pytest.mark.parametrize("seed", range(60))
def test_the_fast_simulation_gives_exactly_the_reference_answer(seed):
    sim = random_inputs(seed)
    expected = simulate_per_lead(copy.deepcopy(sim))
    got = simulate(copy.deepcopy(sim))
    assert got == expected
    assert json.dumps(got.as_dict()) == json.dumps(expected.as_dict())  # the same order too
