"""Short work-item leases kept alive by a small renewer thread while their worker works them.

A worker that dies stops renewing, so its items' leases run out within `SEND_LEASE_SECONDS`
(and a rerun on the same host, or one that sees the worker's database session gone, takes them at
once: `shared.liveness`, `workitems.gone_workers`). A live worker renews every third of the lease
(two chances before it runs out); a renewal that meets a database error is skipped and tried again
at the next tick; an item that is no longer held by the attempt (recovered meanwhile) is `lost`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from sqlalchemy import Engine

from shared import workitems
from shared.db import transaction

log = logging.getLogger(__name__)

# Send items: a lease this short is renewed while the chunk works (a chunk sends one message after
# another, seconds each), so a dead sender's items are free within half a minute at worst.
SEND_LEASE_SECONDS = 30.0
RENEWALS_PER_LEASE = 3


class Renewer:
    """Renew the leases of `held` (item id, attempt) every `lease_seconds / 3` until closed.

    `drop(item_id)` once the item is finished (or given up): it is no longer renewed.
    """

    def __init__(self, engine: Engine, held: Iterable[tuple[int, int]], *, lease_seconds: float,
                 interval: float | None = None) -> None:
        self.engine, self.lease_seconds = engine, lease_seconds
        self.interval = interval if interval is not None else max(0.05, lease_seconds / RENEWALS_PER_LEASE)
        self._held = dict(held)
        self.lost: set[int] = set()
        self.renewals = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewer", daemon=True)

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)

    def drop(self, item_id: int) -> None:
        with self._lock:
            self._held.pop(item_id, None)

    def renew(self) -> None:
        with self._lock:
            held = list(self._held.items())
        if not held:
            return
        with transaction(self.engine) as conn:
            moved = workitems.extend_lease(conn, held, lease_seconds=self.lease_seconds)
        self.renewals += 1
        if moved.lost:
            with self._lock:
                for item_id in moved.lost:
                    self._held.pop(item_id, None)
                    self.lost.add(item_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - one missed renewal is not fatal; the lease has two more
                log.warning("lease renewal failed (tried again in %.0f s): %s", self.interval,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
