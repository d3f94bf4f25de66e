"""The campaign forecast for the console: cached per campaign state, at most a few computed at once.

A forecast is a simulation (about 0.3 s of CPU for the demo campaign, seconds for 100,000 leads) and a viewer may open it, so:
- the result is cached under (campaign, `campaigns.forecast_state`): a digest of every row the
  forecast reads, so any change to the campaign, its leads, enrollments, mailboxes or sends makes
  a new key; an entry also expires after CACHE_SECONDS (the forecast starts from "now");
- at most MAX_CONCURRENT forecasts compute at once; a request waits up to WAIT_SECONDS for a slot
  and is then answered 503 with Retry-After (Busy). Once it has a slot it looks in the cache
  again, so requests for the same state queued behind one computation do not repeat it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from shared.errors import Busy

MAX_CONCURRENT = 2
WAIT_SECONDS = 5.0
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 256
RETRY_AFTER_SECONDS = 10


class Forecasts:
    """The cache and the bound; one per console."""

    def __init__(self, *, max_concurrent: int = MAX_CONCURRENT, wait_seconds: float = WAIT_SECONDS,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str], tuple[float, Any]] = OrderedDict()
        self.wait_seconds, self.cache_seconds = wait_seconds, cache_seconds
        self.computed = 0  # how many times `compute` ran (what the tests and a reader can check)

    def _cached(self, key: tuple[int, str]) -> tuple[bool, Any]:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or time.monotonic() - hit[0] > self.cache_seconds:
                return False, None
            self._cache.move_to_end(key)
            return True, hit[1]

    def get(self, campaign_id: int, state: str, compute: Callable[[], Any]) -> Any:
        """The forecast for this campaign state: from the cache, or computed in one of the slots."""
        key = (campaign_id, state)
        found, value = self._cached(key)
        if found:
            return value
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise Busy()
        try:
            found, value = self._cached(key)
            if found:
                return value
            value = compute()
            with self._lock:
                self.computed += 1
                self._cache[key] = (time.monotonic(), value)
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
            return value
        finally:
            self._slots.release()
