"""Connections: resolve the database URL, build one engine per URL, hand out transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url

from shared import embedded
from shared.settings import get_settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """Accept the URL shapes users paste (postgres://, postgresql://) and pick our driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def database_url() -> str:
    """DATABASE_URL when set, otherwise the embedded server (started on first use)."""
    settings = get_settings()
    if settings.database_url is not None:
        return normalize_url(settings.database_url.get_secret_value())
    return embedded.start(settings.data_dir)


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def get_engine(url: str | None = None) -> Engine:
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            settings = get_settings()
            engine = create_engine(
                url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_pre_ping=True,
                future=True,
            )
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    with (engine or get_engine()).begin() as conn:
        yield conn
