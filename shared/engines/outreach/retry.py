"""When to try a send or a mailbox again (pure): the deferral and mailbox backoff schedules.

A 4xx answer defers the message: it is tried again after 5 min, 15 min, 1 h, 4 h, 12 h, then it
fails with the server's words (about 17 h of trying, as MTAs give a message a day or more). The
mailbox's own server failing (connection, TLS, AUTH, 421) backs the mailbox off; a failure that
`shared.db.is_transient` calls permanent pauses it after PAUSE_AFTER tries in a row.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.settings import HOURS, MINUTES

DEFERRAL_BACKOFF_SECONDS = (5 * MINUTES, 15 * MINUTES, 1 * HOURS, 4 * HOURS, 12 * HOURS)
MAILBOX_BACKOFF_SECONDS = (1 * MINUTES, 5 * MINUTES, 15 * MINUTES, 1 * HOURS, 4 * HOURS)
PAUSE_AFTER = 3  # permanent mailbox failures in a row (one per backoff step) before the mailbox is paused


def deferral_retry_at(deferrals: int, now: datetime) -> datetime | None:
    """When a message deferred `deferrals` times (this one included) is tried again; None: give up."""
    if deferrals < 1 or deferrals > len(DEFERRAL_BACKOFF_SECONDS):
        return None
    return now + timedelta(seconds=DEFERRAL_BACKOFF_SECONDS[deferrals - 1])


def mailbox_retry_at(failures: int, now: datetime) -> datetime:
    """When a mailbox that failed `failures` times in a row may be tried again (the last step repeats)."""
    step = MAILBOX_BACKOFF_SECONDS[min(max(failures, 1), len(MAILBOX_BACKOFF_SECONDS)) - 1]
    return now + timedelta(seconds=step)


def should_pause(failures: int, *, transient: bool) -> bool:
    """Pause the mailbox: a permanent problem seen PAUSE_AFTER times in a row. Transient ones only back off."""
    return not transient and failures >= PAUSE_AFTER
