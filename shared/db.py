"""Connections: resolve the database URL, build one engine per URL, hand out transactions.

`transaction(engine, role=who)` is the one way into a transaction. With a role it runs in that
user's database role, the tenant boundary Postgres enforces: a viewer's transaction runs as
`outbound_tenant` with `outbound.client_id` set to the viewer's client (both transaction-local:
`SET LOCAL ROLE` and `set_config(..., true)`, so they end with the transaction and are safe behind
a transaction pooler); 0004's policies then hide every other client's rows and its grants refuse
every write. An operator's runs as `outbound_operator`, which sees and may change every client's
rows of the secured tables and nothing else (not the enrichment cache, not the launch secret, not
console users' password hashes). Without a role it runs as the application.

Also the one place that decides which errors are transient (`is_transient`): a dropped database
connection, a restarting server, a serialization conflict; and, for mail servers, a 4xx reply, a
refused or timed-out connection (while AUTH not offered, 5xx and a failed TLS handshake are not).
Prefect task retries, the statement-level retries inside long-running loops (`retrying`) and the
per-mailbox SMTP backoff all ask it, and nothing else is ever retried.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import psycopg2
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from shared import embedded, liveness
from shared.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_engines: dict[str, Engine] = {}
_lock = threading.Lock()

# Connection guards. All of them are libpq connect parameters or per-transaction settings, never
# session state: Supabase's pooler in transaction mode (port 6543) hands each transaction to any
# server connection, and PgBouncer/Supavisor in that mode do not forward the `options` startup
# parameter, so `-c statement_timeout=...` at connect time would be refused or silently lost.
CONNECT_TIMEOUT_SECONDS = 10
KEEPALIVES_IDLE_SECONDS = 20  # TCP keepalive probes start after this much silence...
KEEPALIVES_INTERVAL_SECONDS = 5  # ...one every this many seconds...
KEEPALIVES_COUNT = 3  # ...and the connection is dead after this many unanswered
TCP_USER_TIMEOUT_MS = 30_000  # unacknowledged data for this long: the peer is gone (black hole)
# Set with SET LOCAL at the start of every transaction (so it holds behind a transaction pooler);
# generous, since it only exists to turn a wedged statement into an error.
STATEMENT_TIMEOUT_MS = 120_000

# SQLSTATEs worth retrying: the connection or the server went away, or a conflict that a second try
# resolves. Classes by prefix, single codes in full.
_TRANSIENT_SQLSTATE_PREFIXES = ("08",)  # connection_exception
_TRANSIENT_SQLSTATES = frozenset({
    "57P01",  # admin_shutdown (pg_ctl stop/restart, pg_terminate_backend)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (starting up, shutting down)
    "57014",  # query_canceled (our own statement timeout)
    "53300",  # too_many_connections
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
})


def connect_args() -> dict[str, Any]:
    """libpq parameters for every connection: fail fast on connect, notice a dead peer."""
    return {
        # Names this process's sessions in pg_stat_activity: shared.liveness's "its session is gone" proof.
        "application_name": liveness.my_session_name(),
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE_SECONDS,
        "keepalives_interval": KEEPALIVES_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVES_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }


def is_transient(exc: BaseException | None) -> bool:
    """True when `exc` (or what it wraps) is a database or mail-server error a later try can get past.

    Lost connections, a restarting server, statement timeouts, serialization failures and
    deadlocks; an SMTP 4xx reply, a refused, dropped or timed-out mail connection. Never NotFound,
    bad input, constraint violations, programming errors, an SMTP 5xx, AUTH/STARTTLS not offered
    or a failed TLS handshake.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
            return True
        if isinstance(exc, psycopg2.InterfaceError):  # "connection already closed"
            return True
        if isinstance(exc, smtplib.SMTPResponseException):  # a mail server's answer: 4xx is "not now"
            return 400 <= exc.smtp_code < 500
        if isinstance(exc, (smtplib.SMTPNotSupportedError, ssl.SSLError)):
            return False  # AUTH or STARTTLS not offered, a TLS handshake refused: the same next time
        if isinstance(exc, (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError)):
            return True  # a mail server refused, dropped or stopped answering the connection
        if isinstance(exc, psycopg2.Error):
            code = exc.pgcode
            if code is None:
                # No SQLSTATE: libpq itself failed (refused, reset, server closed the connection),
                # which psycopg2 reports as OperationalError or, mid-query, as a bare DatabaseError.
                return isinstance(exc, psycopg2.OperationalError) or type(exc) is psycopg2.DatabaseError
            return code in _TRANSIENT_SQLSTATES or code.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
        exc = exc.orig if isinstance(exc, sa_exc.DBAPIError) else (exc.__cause__ or exc.__context__)
    return False


def retry_transient_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's `retry_condition_fn`: retry a task only when it failed on a transient database error."""
    return is_transient(state.data if isinstance(state.data, BaseException) else None)


# Statement-level retries inside loops that must not die on one dropped connection (claims, polls,
# heartbeats): about a minute and a half in all, enough for a database restart.
RETRY_PAUSES_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0)


def retrying(fn: Callable[[], T], *, what: str, pauses: tuple[float, ...] = RETRY_PAUSES_SECONDS) -> T:
    """Call `fn`, trying again after each pause while it fails with a transient database error."""
    for pause in (*pauses, None):
        try:
            return fn()
        except Exception as exc:
            if pause is None or not is_transient(exc):
                raise
            log.warning("%s: transient database error, retrying in %.1fs: %s", what, pause,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            time.sleep(pause)
    raise AssertionError("unreachable")


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
                connect_args=connect_args(),
            )
            event.listen(engine, "begin", _set_local_timeouts)
            _engines[url] = engine
        return engine


def _set_local_timeouts(conn: Connection) -> None:
    # psycopg2 opens the transaction on this first statement, so SET LOCAL lasts exactly as long as it.
    with conn.connection.dbapi_connection.cursor() as cur:
        cur.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


TENANT_ROLE = "outbound_tenant"
OPERATOR_ROLE = "outbound_operator"


class Role(Protocol):
    """Who a transaction runs as (a console user): an operator, or a viewer of one client."""

    @property
    def email(self) -> str: ...
    @property
    def is_operator(self) -> bool: ...
    @property
    def client_id(self) -> int | None: ...


def enter_role(conn: Connection, who: Role) -> None:
    """Switch the current transaction to `who`'s database role (and client)."""
    if who.is_operator:
        conn.execute(text(f"SET LOCAL ROLE {OPERATOR_ROLE}"))
        return
    if who.client_id is None:  # the table's CHECK makes this impossible; refuse rather than see nothing silently
        raise PermissionError(f"viewer {who.email} has no client")
    conn.execute(text(f"SET LOCAL ROLE {TENANT_ROLE}"))
    conn.execute(text("SELECT set_config('outbound.client_id', :c, true)"), {"c": str(who.client_id)})


@contextmanager
def transaction(engine: Engine | None = None, *, role: Role | None = None) -> Iterator[Connection]:
    """One transaction (in `role`'s database role when given): committed when the block ends, rolled back when it raises."""
    with (engine or get_engine()).begin() as conn:
        if role is not None:
            enter_role(conn, role)
        yield conn
