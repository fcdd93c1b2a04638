"""Issue 26 (partitions): waiting for the database is no hang. The agent's heartbeat is
written apart from every database call (pulse.Pulse's beats thread); the rules are pure
(liveness.py), driven by an injected clock."""
from __future__ import annotations

import threading
import time

import pytest

from coffee_team.agent.pulse import Activity, Pulse
from coffee_team.liveness import (DB_WAIT_SHOWN, IDLE, STATES, WORKING, database_wait,
                                  main_loop_alive)
from tests.unit.test_liveness import T0, FakeHost, make


@pytest.mark.parametrize("state", sorted(STATES))
def test_a_main_loop_in_a_database_call_is_alive_however_long(state):
    assert main_loop_alive(state, T0, T0 + 10**6, 3, db_since=T0 + 1)
    assert main_loop_alive(state, T0, T0 + 10, 3) is (state == WORKING)  # as before


def test_database_wait_shows_after_a_second_or_on_trouble():
    assert not database_wait(None, False, T0)
    assert not database_wait(T0, False, T0 + DB_WAIT_SHOWN - 0.01)
    assert database_wait(T0, False, T0 + DB_WAIT_SHOWN)
    assert database_wait(None, True, T0)


def test_activity_keeps_the_first_try_of_a_retried_call():
    now = [T0]
    activity = Activity(lambda: now[0] + 0.5, lambda: now[0])
    activity.database_call(True)
    now[0] += 5
    activity.database_call(True)  # a retry: the wait began at the first try
    assert (activity.db_since, activity.db_since_wall) == (T0, T0 + 0.5)
    activity.database_call(False)
    assert activity.db_since is None and activity.tick_at == T0 + 5  # the loop went on


def test_an_idle_main_loop_stuck_in_a_database_call_keeps_its_heartbeat():
    host, pulse = make()  # heartbeat_interval 2, loop_limit 3
    host.activity.state = IDLE
    host.activity.database_call(True)  # from T0, e.g. a claim across a partition
    for second in range(1, 100):
        pulse.idle_beat(T0 + second)
        host.now = T0 + second
    assert len(host.beats) == 50 and "main loop" not in host.problems
    host.activity.database_call(False)
    host.now += 10  # out of the call, then silent past loop_limit: stuck after all
    pulse.idle_beat(host.now)
    assert "main loop" in host.problems


class BlockingQueue:
    """A database that does not answer: every call waits until ``heal``."""

    def __init__(self):
        self.healed = threading.Event()
        self.calls = 0
        self.stale = None
        self.backend = type("B", (), {"close": lambda self: None})()

    def check_file(self):
        return None

    def renew_lease(self, *args):
        self.calls += 1
        self.healed.wait(10)
        return True

    holds_task = renew_lease

    def awaits_person(self, agent):
        return False


def test_the_heartbeat_thread_beats_while_the_lease_thread_waits_for_the_database():
    """Threads, on the real clock: the lease renewal blocks for good; the beats go on."""
    host = FakeHost()
    host.clock, host.mono = time.time, time.monotonic
    host.activity = Activity(time.time, time.monotonic)
    host.queue = BlockingQueue()
    beats: list[float] = []
    host.write_status = lambda: beats.append(time.monotonic()) or True
    pulse = Pulse(host, heartbeat_interval=0.05, lease_seconds=30, loop_limit=3,
                  stall_after=None, on_stall="warn")
    host.activity.begin(7, "t")
    pulse.start()
    try:
        deadline = time.monotonic() + 5
        while host.queue.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        blocked_at = time.monotonic()
        while len([b for b in beats if b > blocked_at]) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert host.queue.calls == 1  # the lease thread is stuck in its call
        assert len([b for b in beats if b > blocked_at]) >= 3  # and the heartbeat is not
    finally:
        host.queue.healed.set()
        pulse.stop()


# --- an agent that starts while the database does not answer (agent/startbeat.py) ----------

def test_a_starting_beat_is_alive_but_not_ready():
    from coffee_team.agent.startbeat import starting_beat
    from coffee_team.heartbeat import last_beat
    from coffee_team.watchdog.policy import started_since
    beat = starting_beat("ann", 123, T0, T0 + 5)
    assert last_beat(beat) == T0 + 5  # the watchdog sees it beat: no hang
    assert not started_since(beat, T0 - 1)  # the boot and --started wait for the real one
    assert (beat["state"], beat["waiting_for"], beat["waiting_since"]) == \
        ("starting", "database", T0)


def test_a_start_that_does_not_wait_writes_no_starting_beat(tmp_path):
    from types import SimpleNamespace
    from coffee_team.agent.startbeat import StartupBeat
    team = SimpleNamespace(status_dir=tmp_path, settings=SimpleNamespace(heartbeat_interval=1))
    with StartupBeat(team, "ann"):
        pass  # the lock and the queue came at once
    assert list(tmp_path.iterdir()) == []
