"""The one rule for "is the holder of this batch or lease provably gone?", with the reason in words.

Every holder (an orchestrator running a batch, a worker holding work items) is named by a token,
`host:pid:start:machine:session`, written into `batches.runner_id` and `work_items.worker_id`:

- `host`, `pid`: where it runs (also what an operator reads);
- `start`: the process's start time in clock ticks (/proc/PID/stat), so a reused PID is not
  taken for the holder;
- `machine`: the kernel boot id and PID namespace: "same host" means the same kernel and the
  same PID namespace, so two containers that happen to share a hostname are not confused;
- `session`: 1 when the holder's own database sessions are visible in `pg_stat_activity` under
  its `application_name` (a direct connection; behind a transaction pooler they are not).

`judge` applies, in this order:
1. same machine and its PID is dead (or a zombie, or a different process now): gone at once;
2. its named database session is gone and it has missed a couple of beats: gone (a live holder
   whose connection dropped reconnects on its next beat, so the grace covers a Postgres restart);
3. its heartbeat is older than `stale_seconds`: gone;
4. it has missed beats but is not stale yet: silent (wait `wait_seconds`, then judge again);
5. otherwise: alive.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, text

# A holder that missed this many beats (heartbeats, or lease renewals for workers) and whose
# database session is gone is dead; one beat late is normal jitter.
MISSED_BEATS_FOR_SESSION_PROOF = 2.5
# A worker that holds items renews them (every third of its lease); with no beat interval known,
# its items must be untouched this long before a vanished session counts as proof.
WORKER_SESSION_GRACE_SECONDS = 30.0
# A holder silent for more than this many beats (but not stale yet) is reported as silent.
MISSED_BEATS_FOR_SILENCE = 2.5

_TOKEN = re.compile(r"(?P<host>[^\s:\[\]]+):(?P<pid>\d+):(?P<start>\d*):(?P<machine>[0-9a-f]*):(?P<session>[01])")


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    pid: int
    start: int | None  # clock ticks since boot at which the process started (Linux), None elsewhere
    machine: str | None  # boot id + PID namespace, None when unknown
    session: bool  # its sessions are visible in pg_stat_activity under `session_name`

    def token(self) -> str:
        return f"{self.host}:{self.pid}:{self.start or ''}:{self.machine or ''}:{int(self.session)}"

    @property
    def session_name(self) -> str:
        return session_name(self.host, self.pid, self.start)

    def same_machine(self, other: Holder) -> bool:
        return self.host == other.host and self.machine is not None and self.machine == other.machine

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def parse(holder: str | None) -> Holder | None:
    """The holder named in a runner id or worker id (None when it carries no token: an older row)."""
    if not holder:
        return None
    m = _TOKEN.search(holder)
    if m is None:
        return None
    return Holder(m["host"], int(m["pid"]), int(m["start"]) if m["start"] else None, m["machine"] or None,
                  m["session"] == "1")


def shown(holder: str | None) -> str:
    """A runner id as an operator reads it: without the token's machine fields."""
    if not holder:
        return "nobody"
    return re.sub(r"\s*\[[^\]]*\]$", "", holder)


def session_name(host: str, pid: int, start: int | None) -> str:
    """The `application_name` of a process's database sessions (at most 63 bytes, as Postgres keeps)."""
    return f"outbound:{host[:30]}:{pid}:{start or 0}"[:63]


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3, the state, first); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None if unknown or gone."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[0][:1] if fields else None


@functools.cache
def _machine() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip().replace("-", "")
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot[:16]}{ns:x}"


_session_visible: dict[int, bool] = {}


def me(conn: Connection | None = None) -> Holder:
    """This process. With `conn`, whether our sessions are visible by name is checked (once per process)."""
    pid = os.getpid()
    if conn is not None and pid not in _session_visible:
        _session_visible[pid] = own_session_visible(conn)
    return Holder(socket.gethostname(), pid, _proc_start(pid), _machine(), _session_visible.get(pid, False))


def my_session_name() -> str:
    """The `application_name` this process's engines connect with (shared.db.connect_args)."""
    pid = os.getpid()
    return session_name(socket.gethostname(), pid, _proc_start(pid))


def pid_gone(holder: Holder) -> bool:
    """On this machine: its PID no longer runs it (exited, killed, a zombie, or reused by another process)."""
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # someone else's process: it exists
    if _proc_state(holder.pid) in ("Z", "X", None) and os.path.exists("/proc"):
        return True
    start = _proc_start(holder.pid)
    return holder.start is not None and start is not None and start != holder.start


# -- the database side ----------------------------------------------------------------------------

def own_session_visible(conn: Connection) -> bool:
    """Does this very session show in pg_stat_activity under our name (a direct connection)?"""
    name = conn.execute(text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")).scalar()
    return name == my_session_name()


def live_sessions(conn: Connection, names: Iterable[str]) -> set[str]:
    """Which of these application_names have a session now (application_name is visible to every role)."""
    wanted = sorted(set(names))
    if not wanted:
        return set()
    rows = conn.execute(text("SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name = ANY(:n)"),
                        {"n": wanted})
    return {r[0] for r in rows}


# -- the rule ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Verdict:
    """`state`: 'gone' (take over now), 'silent' (missed beats; judge again in `wait_seconds`) or 'alive'."""

    state: str
    reason: str
    wait_seconds: float = 0.0

    @property
    def gone(self) -> bool:
        return self.state == "gone"

    @property
    def alive(self) -> bool:
        return self.state == "alive"


def judge(holder: str | None, heartbeat_age: float | None, *, beat_seconds: float | None, stale_seconds: float | None,
          sessions: Collection[str] | None = None, here: Holder | None = None,
          session_grace_seconds: float | None = None) -> Verdict:
    """Is `holder` (a runner or worker id) provably gone? See the module docstring for the rule.

    `heartbeat_age`: seconds since its last sign of life (None: it never gave one). `sessions`:
    the application_names alive now (`live_sessions`), None when not looked up. `beat_seconds`
    and `stale_seconds` None (workers, whose leases expire on their own): only proofs count.
    """
    if not holder:
        return Verdict("gone", "nobody holds it")
    h = parse(holder)
    here = here or me()
    age = "no sign of life yet" if heartbeat_age is None else f"last sign of life {heartbeat_age:.0f} s ago"
    if h is not None and h.same_machine(here) and pid_gone(h):
        return Verdict("gone", f"{h.describe()} is gone (this host, the process no longer runs)")
    grace = session_grace_seconds if session_grace_seconds is not None else (
        MISSED_BEATS_FOR_SESSION_PROOF * beat_seconds if beat_seconds else WORKER_SESSION_GRACE_SECONDS)
    if (h is not None and h.session and sessions is not None and h.session_name not in sessions
            and (heartbeat_age is None or heartbeat_age > grace)):
        return Verdict("gone", f"{h.describe()} has no database session left ({age})")
    if stale_seconds is None:
        return Verdict("alive", f"{h.describe() if h else shown(holder)} is not provably gone ({age})")
    if heartbeat_age is None or heartbeat_age >= stale_seconds:
        return Verdict("gone", f"its heartbeat is stale ({age}; stale after {stale_seconds:.0f} s)")
    who = h.describe() if h else shown(holder)
    if beat_seconds and heartbeat_age > MISSED_BEATS_FOR_SILENCE * beat_seconds:
        return Verdict("silent", f"{who} has missed its heartbeats ({age}); taken over when it is "
                                 f"{stale_seconds:.0f} s old", max(0.0, stale_seconds - heartbeat_age))
    extra = ", its process runs on this host" if h is not None and h.same_machine(here) else ""
    return Verdict("alive", f"{who} is alive (heartbeat {heartbeat_age:.0f} s ago{extra})")


def judge_here(conn: Connection, holder: str | None, heartbeat_age: float | None, *, beat_seconds: float | None,
               stale_seconds: float | None, session_grace_seconds: float | None = None) -> Verdict:
    """`judge` with the sessions read from this database now."""
    h = parse(holder)
    sessions = live_sessions(conn, [h.session_name]) if h is not None and h.session else None
    return judge(holder, heartbeat_age, beat_seconds=beat_seconds, stale_seconds=stale_seconds, sessions=sessions,
                 session_grace_seconds=session_grace_seconds)
