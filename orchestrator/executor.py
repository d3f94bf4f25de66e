"""Executors: where chunks of work items run. Local threads by default, Modal in production.

Both call the same engine function (`shared.engines.enrichment.enrich_chunk`), so what runs on
a laptop is what runs on Modal. The flow hands an executor a lazy iterable of chunks; claiming
happens as the executor pulls, so items stay PENDING until a worker is about to take them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from shared.engines.enrichment import enrich_chunk
from shared.settings import Settings, get_settings

ChunkResult = dict[str, Any] | BaseException


class Executor(Protocol):
    name: str

    def run(self, chunks: Iterable[list[int]]) -> Iterator[ChunkResult]:
        """Run every chunk; yield each chunk's report (or its exception) as it completes."""
        ...

    def spawn(self, chunks: Iterable[list[int]]) -> None:
        """Start every chunk and return at once; the caller watches Postgres for the outcome."""
        ...


def _enrich_chunk_report(item_ids: list[int]) -> dict[str, Any]:
    return enrich_chunk(item_ids).as_dict()


class LocalExecutor:
    """A bounded thread pool in this process; at most `workers` chunks in flight."""

    name = "local"

    def __init__(self, workers: int, fn: Callable[[list[int]], dict[str, Any]] = _enrich_chunk_report) -> None:
        self.workers = max(1, workers)
        self.fn = fn

    def run(self, chunks: Iterable[list[int]]) -> Iterator[ChunkResult]:
        source = iter(chunks)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="chunk") as pool:
            in_flight: set[Future[dict[str, Any]]] = set()
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < self.workers:
                    chunk = next(source, None)
                    if chunk is None:
                        exhausted = True
                    else:
                        in_flight.add(pool.submit(self.fn, chunk))
                if not in_flight:
                    return
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    exc = future.exception()
                    yield exc if exc is not None else future.result()

    def spawn(self, chunks: Iterable[list[int]]) -> None:
        # Locally "fire and forget" still has to run somewhere: run to completion.
        for _ in self.run(chunks):
            pass


class ModalExecutor:
    """`modal.Function.from_name(app, fn)` and its `.map` / `.spawn_map`; Modal scales the containers."""

    name = "modal"

    def __init__(self, app_name: str, function_name: str, function: Any | None = None) -> None:
        if function is None:
            import modal

            function = modal.Function.from_name(app_name, function_name)
        self.function = function

    def run(self, chunks: Iterable[list[int]]) -> Iterator[ChunkResult]:
        yield from self.function.map(chunks, order_outputs=False, return_exceptions=True)

    def spawn(self, chunks: Iterable[list[int]]) -> None:
        self.function.spawn_map(chunks)


def get_executor(settings: Settings | None = None, *, local_fn: Callable[[list[int]], dict[str, Any]] | None = None,
                 modal_function: tuple[str, str] | None = None) -> Executor:
    """The configured executor; `local_fn` and `modal_function` (app, function) pick another engine
    function than enrichment's (outreach's `send_chunk`), the same one on both sides."""
    settings = settings or get_settings()
    if settings.executor == "modal":
        app, fn = modal_function or (settings.modal_app_name, settings.modal_function_name)
        return ModalExecutor(app, fn)
    return LocalExecutor(settings.local_workers, local_fn or _enrich_chunk_report)
