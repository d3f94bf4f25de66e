"""Executors: where chunks of work items run. Local threads by default, Modal in production.

Both call the same engine function (`shared.engines.enrichment.enrich_chunk`), so what runs on
a laptop is what runs on Modal. The flow hands an executor a lazy iterable of chunks; claiming
happens as the executor pulls, and both pull only while fewer chunks than their capacity are in
flight (local: its threads; Modal: max_containers x inputs per container), so items stay PENDING
until a worker is about to take them. Not Modal's `.map`: it pulls up to 1,000 inputs ahead
(modal/parallel_map.py MAX_INPUTS_OUTSTANDING_DEFAULT), far past what the containers take, and
those chunks would wait QUEUED past the queue timeout and be recovered while still queued on Modal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Protocol

from shared.engines.enrichment import enrich_chunk
from shared.errors import ExecutorUnavailable
from shared.settings import Settings, get_settings

ChunkResult = dict[str, Any] | BaseException

# The Modal App's configuration check (modal_apps/enrichment.py defines it beside enrich_chunk).
MODAL_CHECK_FUNCTION = "check_config"
ENGINE_LOGGER = "shared"


class Executor(Protocol):
    name: str

    def preflight(self) -> None:
        """Fail now, naming the missing setting, if chunks could not run; call before claiming anything."""
        ...

    def run(self, chunks: Iterable[list[int]]) -> Iterator[ChunkResult]:
        """Run every chunk; yield each chunk's report (or its exception) as it completes."""
        ...

    def spawn(self, chunks: Iterable[list[int]]) -> None:
        """Start every chunk and return at once; the caller watches Postgres for the outcome."""
        ...


def _enrich_chunk_report(item_ids: list[int]) -> dict[str, Any]:
    return enrich_chunk(item_ids).as_dict()


@contextmanager
def engine_logs_to_prefect() -> Iterator[None]:
    """Inside a flow run, let the engine's INFO lines from our worker threads reach the Prefect UI.

    With PREFECT_LOGGING_EXTRA_LOGGERS=shared, Prefect attaches its API handler to the `shared`
    logger, but (1) that logger inherits the root's WARNING, so INFO lines never reach it, and
    (2) the handler files a record under the flow run found in the *current context*, which our
    thread pool (and the engine's per-lead threads) do not carry: the record is dropped with a
    warning. So for the duration of the run: `shared` logs at INFO, and records reaching Prefect's
    handlers on it are stamped with this flow run's id. Outside a flow run this does nothing.
    """
    from prefect.context import FlowRunContext
    from prefect.logging.handlers import APILogHandler

    flow_run = getattr(FlowRunContext.get(), "flow_run", None)
    if flow_run is None:
        yield
        return
    run_id = flow_run.id

    def stamp(record: logging.LogRecord) -> bool:
        if getattr(record, "flow_run_id", None) is None:
            record.flow_run_id = run_id
        return True

    logger = logging.getLogger(ENGINE_LOGGER)
    handlers = [h for h in logger.handlers if isinstance(h, APILogHandler)]
    previous_level = logger.level
    if handlers and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.addFilter(stamp)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(stamp)
        logger.setLevel(previous_level)


def bounded(chunks: Iterable[list[int]], window: int, call: Callable[[list[int]], Any]) -> Iterator[ChunkResult]:
    """`call` each chunk from a pool of `window` threads, pulling (claiming) the next chunk only when
    one finishes: never more than `window` chunks claimed and not done. Yields each result (or the
    exception it raised) in completion order."""
    source = iter(chunks)
    with ThreadPoolExecutor(window, thread_name_prefix="chunk") as pool:
        in_flight: set[Future[Any]] = set()
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < window:
                chunk = next(source, None)
                if chunk is None:
                    exhausted = True
                else:
                    in_flight.add(pool.submit(call, chunk))
            if not in_flight:
                return
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                exc = future.exception()
                yield exc if exc is not None else future.result()


class LocalExecutor:
    """A bounded thread pool in this process; at most `workers` chunks in flight."""

    name = "local"

    def __init__(self, workers: int, fn: Callable[[list[int]], dict[str, Any]] = _enrich_chunk_report,
                 check: Callable[[], object] | None = None) -> None:
        self.workers = max(1, workers)
        self.fn = fn
        self.check = check  # the engine's own settings check; None: the enrichment providers'

    def preflight(self) -> None:
        """The engine's configuration in this process's environment (enrichment: raises ProviderConfigError)."""
        if self.check is not None:
            self.check()
            return
        from shared.integrations.providers import preflight

        preflight()

    def run(self, chunks: Iterable[list[int]]) -> Iterator[ChunkResult]:
        with engine_logs_to_prefect():
            yield from bounded(chunks, self.workers, self.fn)

    def spawn(self, chunks: Iterable[list[int]]) -> None:
        # Locally "fire and forget" still has to run somewhere: run to completion.
        for _ in self.run(chunks):
            pass


class ModalExecutor:
    """`modal.Function.from_name(app, fn)`, called with `.remote` from a window of `window` threads.

    `window` is what the deployed function can run at once (MODAL_MAX_CONTAINERS x
    MODAL_INPUTS_PER_CONTAINER): each `.remote` call holds one chunk from claim to result, so a
    chunk is claimed only when a container is about to be free for it.
    """

    name = "modal"

    def __init__(self, app_name: str, function_name: str, function: Any | None = None,
                 check: Any | None = None, window: int | None = None) -> None:
        if window is None:
            settings = get_settings()
            window = settings.modal_max_containers * settings.modal_inputs_per_container
        self.window = max(1, window)
        self.app_name = app_name
        if function is None:
            import modal

            function = modal.Function.from_name(app_name, function_name)
        self.function = function
        self.check = check  # looked up on first preflight()

    def preflight(self) -> None:
        """Run the App's `check_config` in the workers' own image and Secrets.

        Raises what the containers would (ProviderConfigError naming the missing setting, e.g. a
        PROVIDER_ORDER in the Secret that names apollo while APOLLO_API_KEY is empty), or
        ExecutorUnavailable when the App is not deployed, before the flow claims a single item.
        """
        import modal
        from modal.exception import NotFoundError

        if self.check is None:
            self.check = modal.Function.from_name(self.app_name, MODAL_CHECK_FUNCTION)
        try:
            self.check.remote()
        except NotFoundError as exc:
            raise ExecutorUnavailable(
                f"Modal function {self.app_name}/{MODAL_CHECK_FUNCTION} not found ({exc}): "
                f"deploy the workers with `modal deploy -m {_deploy_module(self.app_name)}`"
            ) from None

    def run(self, chunks: Iterable[list[int]]) -> Iterator[ChunkResult]:
        yield from bounded(chunks, self.window, self.function.remote)

    def spawn(self, chunks: Iterable[list[int]]) -> None:
        """Claim the first window's chunks, start them and return; a background thread keeps the same
        window for the rest (not `.spawn_map`, which would claim every chunk now)."""
        import itertools
        import threading

        source = iter(chunks)
        first = list(itertools.islice(source, self.window))  # claimed before returning: the caller sees them in flight

        def drain() -> None:
            for result in bounded(itertools.chain(first, source), self.window, self.function.remote):
                if isinstance(result, BaseException):
                    logging.getLogger(__name__).warning("%s chunk failed: %r", self.app_name, result)

        threading.Thread(target=drain, name=f"{self.app_name}-spawn", daemon=True).start()


def _deploy_module(app_name: str) -> str:
    """The module whose `modal deploy -m` creates the App named `app_name` in these settings."""
    return "modal_apps.outreach" if app_name == get_settings().modal_outreach_app_name else "modal_apps.enrichment"


def get_executor(settings: Settings | None = None, *, local_fn: Callable[[list[int]], dict[str, Any]] | None = None,
                 modal_function: tuple[str, str] | None = None,
                 local_check: Callable[[], object] | None = None) -> Executor:
    """The configured executor; `local_fn` and `modal_function` (app, function) pick another engine
    function than enrichment's (outreach's `send_chunk`), the same one on both sides, and
    `local_check` its settings check (Modal runs the App's own `check_config`)."""
    settings = settings or get_settings()
    if settings.executor == "modal":
        app, fn = modal_function or (settings.modal_app_name, settings.modal_function_name)
        return ModalExecutor(app, fn, window=settings.modal_max_containers * settings.modal_inputs_per_container)
    return LocalExecutor(settings.local_workers, local_fn or _enrich_chunk_report, local_check)
