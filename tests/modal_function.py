"""A Modal Function stand-in with Modal's capacity and input buffering, running the real chunk function in threads.

Capacity: `containers` x `inputs_per_container` inputs run at once; the rest wait, as inputs
queue on Modal for a free container. Buffering as modal 1.6.4's client does it
(modal/parallel_map.py): `.map` pulls from its input iterator eagerly, up to
MAX_INPUTS_OUTSTANDING_DEFAULT (1,000) inputs not yet answered, whatever the capacity;
`.spawn_map` pulls every input at once; `.remote` is one input, answered when it has run.
`started` records, for each input, when a container took it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modal.parallel_map import MAX_INPUTS_OUTSTANDING_DEFAULT


class ModalFunction:
    def __init__(self, fn: Callable[[Any], Any], containers: int, inputs_per_container: int = 1,
                 overhead_seconds: float = 0.0, on_start: Callable[[Any], None] | None = None) -> None:
        self.fn = fn
        self.capacity = containers * inputs_per_container
        self._slots = threading.BoundedSemaphore(self.capacity)
        self.overhead_seconds = overhead_seconds  # a container's own time per input (scheduling, I/O)
        self.on_start = on_start
        self.calls: list[str] = []
        self.started: list[tuple[float, Any]] = []
        self.pulled = 0  # inputs taken from the caller's iterator
        self._lock = threading.Lock()

    def _in_container(self, item: Any) -> Any:
        with self._slots:
            with self._lock:
                self.started.append((time.monotonic(), item))
            if self.on_start is not None:
                self.on_start(item)
            time.sleep(self.overhead_seconds)
            return self.fn(item)

    def remote(self, item: Any) -> Any:
        with self._lock:
            self.pulled += 1
        return self._in_container(item)

    def map(self, inputs: Iterable[Any], order_outputs: bool = True, return_exceptions: bool = False) -> Iterator[Any]:
        self.calls.append(f"map(order_outputs={order_outputs}, return_exceptions={return_exceptions})")
        outstanding = threading.BoundedSemaphore(MAX_INPUTS_OUTSTANDING_DEFAULT)
        outputs: queue.Queue[tuple[int, BaseException | None, Any] | None] = queue.Queue()
        pool = ThreadPoolExecutor(self.capacity)
        total = [0]

        def pump() -> None:  # Modal's feed_queue: pulls while fewer than 1,000 inputs await an answer
            for index, item in enumerate(inputs):
                outstanding.acquire()
                with self._lock:
                    self.pulled += 1
                total[0] = index + 1

                def run(item: Any = item, index: int = index) -> None:
                    try:
                        outputs.put((index, None, self._in_container(item)))
                    except BaseException as exc:  # noqa: BLE001 - Modal reports it as the output
                        outputs.put((index, exc, None))
                pool.submit(run)
            outputs.put(None)

        threading.Thread(target=pump, daemon=True).start()
        done, received, fed = 0, {}, False
        try:
            while not fed or done < total[0]:
                got = outputs.get()
                if got is None:
                    fed = True
                    continue
                outstanding.release()
                done += 1
                index, exc, value = got
                if exc is not None and not return_exceptions:
                    raise exc
                received[index] = exc if exc is not None else value
                if not order_outputs:
                    yield received.pop(index)
            for index in sorted(received):
                yield received[index]
        finally:
            pool.shutdown(wait=True)

    def spawn_map(self, inputs: Iterable[Any]) -> None:
        self.calls.append("spawn_map")
        items = list(inputs)  # Modal's spawn_map sends every input up front
        with self._lock:
            self.pulled += len(items)
        pool = ThreadPoolExecutor(self.capacity)
        for item in items:
            pool.submit(self._in_container, item)
        pool.shutdown(wait=False)


class RemoteCall:
    """`modal.Function.from_name(...)` for a one-shot call such as `check_config` (Modal is unreachable from
    tests): `.remote()` runs the deployed function's real body here, which is what Modal would run in the container."""

    def __init__(self, body: Callable[..., Any]) -> None:
        self.body = body
        self.calls = 0

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.body(*args, **kwargs)
