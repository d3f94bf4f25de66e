"""shared.liveness.judge against real processes: a dead PID, a zombie, a reused PID, another machine, sessions, staleness."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from shared import liveness

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")

BEAT, STALE = 3.0, 20.0


def _holder_of(proc: subprocess.Popen[bytes], *, session: bool = False) -> liveness.Holder:
    here = liveness.me()
    return liveness.Holder(here.host, proc.pid, liveness._proc_start(proc.pid), here.machine, session)


def _judge(holder: liveness.Holder | str, age: float | None, **kw: object) -> liveness.Verdict:
    token = holder if isinstance(holder, str) else f"flow run x on h pid 1 [{holder.token()}]"
    return liveness.judge(token, age, beat_seconds=BEAT, stale_seconds=STALE, **kw)  # type: ignore[arg-type]


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_token_round_trips_through_a_runner_id():
    me = liveness.me()
    runner = f"flow run abc on {me.host} pid {me.pid} [{me.token()}]"
    assert liveness.parse(runner) == me
    assert liveness.shown(runner) == f"flow run abc on {me.host} pid {me.pid}"
    assert liveness.parse("flow run elsewhere") is None  # an older row: no proofs, staleness only


def test_a_live_process_with_a_fresh_heartbeat_is_alive(sleeper):
    verdict = _judge(_holder_of(sleeper), 1.0)
    assert verdict.alive and "its process runs on this host" in verdict.reason


def test_a_killed_process_on_this_host_is_gone_at_once_whatever_its_heartbeat(sleeper):
    holder = _holder_of(sleeper)
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    verdict = _judge(holder, 0.5)
    assert verdict.gone and f"pid {sleeper.pid}" in verdict.reason and "no longer runs" in verdict.reason


def test_a_killed_but_unreaped_process_is_gone(sleeper):
    holder = _holder_of(sleeper)
    os.kill(sleeper.pid, signal.SIGKILL)
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # dead, still a zombie (not reaped)
    assert liveness._proc_state(sleeper.pid) == "Z"
    assert _judge(holder, 0.5).gone


def test_a_reused_pid_is_not_taken_for_the_holder(sleeper):
    reused = dataclasses.replace(_holder_of(sleeper), start=1)  # same PID, a process started at another time
    assert _judge(reused, 0.5).gone


def test_another_machine_is_never_judged_by_its_pid():
    other = liveness.Holder("elsewhere", 999_999_999, 5, "0123abcd", False)
    assert _judge(other, 1.0).alive  # PID 999999999 does not exist here, which proves nothing about elsewhere
    silent = _judge(other, 10.0)
    assert silent.state == "silent" and silent.wait_seconds == pytest.approx(10.0)
    assert _judge(other, STALE + 0.1).gone and "stale" in _judge(other, STALE + 0.1).reason


def test_a_vanished_session_proves_a_remote_holder_gone_after_missed_beats():
    other = liveness.Holder("elsewhere", 42, 5, "0123abcd", True)
    # Its session is in the list: alive. Gone from it, but within two beats (a reconnect after a
    # Postgres restart): still alive. Gone and silent for 2.5 beats: gone, long before staleness.
    assert _judge(other, 9.0, sessions={other.session_name}).state == "silent"
    assert _judge(other, 1.0, sessions=set()).alive
    verdict = _judge(other, 8.0, sessions=set())
    assert verdict.gone and "no database session" in verdict.reason
    # A holder behind a pooler (session flag 0) is never judged by sessions.
    pooled = dataclasses.replace(other, session=False)
    assert _judge(pooled, 8.0, sessions=set()).state == "silent"


def test_workers_are_judged_by_proofs_only(sleeper):
    holder = _holder_of(sleeper)
    assert liveness.judge(holder.token(), 3600.0, beat_seconds=None, stale_seconds=None).alive  # its lease decides
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    assert liveness.judge(holder.token(), 0.0, beat_seconds=None, stale_seconds=None).gone


def test_nobody_and_never_beat_are_free():
    assert _judge("", None).gone
    assert _judge(liveness.Holder("elsewhere", 1, 1, "ab", False), None).gone
