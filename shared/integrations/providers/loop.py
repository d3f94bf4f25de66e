"""One background event loop per process for provider calls, and the per-provider cap on calls in flight.

Chunk threads (the local executor's, or Modal's inputs) submit a whole provider round to this loop
with `submit()` and wait on the returned future, renewing their leases meanwhile. The loop owns every
provider's connection pool (aiohttp sessions are bound to the loop that created them) and one
`asyncio.Semaphore` per provider: PROVIDER_CONCURRENCY calls in flight per process, across all chunks.
A thread per call under the GIL topped out near 450 calls/s; one loop waiting on sockets does not.

Synchronous providers that still need waiting on (tests' slow stand-ins) run on the loop's own thread
pool via `asyncio.to_thread`, under the same cap.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

SYNC_PROVIDER_THREADS = 64  # threads for synchronous providers run from the loop (asyncio.to_thread)


class ProviderLoop:
    """An event loop running forever in a daemon thread; `submit()` is safe from any other thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(SYNC_PROVIDER_THREADS, thread_name_prefix="provider-sync"))
        self._gates: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._closables: weakref.WeakSet[Any] = weakref.WeakSet()  # HTTP sessions to close at exit
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="provider-loop", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule `coro` on the loop; cancelling the returned future cancels the coroutine."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("ProviderLoop.submit() called from the loop's own thread (would deadlock)")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for its result (for callers outside the engine: tests, scripts)."""
        return self.submit(coro).result(timeout)

    def gate(self, provider: str, cap: int) -> asyncio.Semaphore:
        """The process-wide cap on `provider`'s calls in flight. Call from coroutines running on this loop."""
        key = (provider, max(1, int(cap)))
        gate = self._gates.get(key)
        if gate is None:  # only the loop thread gets here, so no lock is needed
            gate = self._gates[key] = asyncio.Semaphore(key[1])
        return gate


    def track(self, closable: Any) -> None:
        """Close `closable` (an object with `async close()`, e.g. an aiohttp session) when the process exits."""
        self._closables.add(closable)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close what was tracked and stop the loop: sessions left to the garbage collector log errors."""

        async def close_all() -> None:
            await asyncio.gather(*(c.close() for c in list(self._closables)), return_exceptions=True)

        if self.loop.is_running():
            try:
                self.submit(close_all()).result(timeout)
            except Exception:  # exiting anyway
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)


_loop: ProviderLoop | None = None
_loop_pid: int | None = None
_lock = threading.Lock()


def provider_loop() -> ProviderLoop:
    """This process's provider loop, started on first use (and again in a forked child, which has no threads)."""
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop, _loop_pid = ProviderLoop(), os.getpid()
        return _loop


@atexit.register
def _shutdown() -> None:
    if _loop is not None and _loop_pid == os.getpid():
        _loop.shutdown()
