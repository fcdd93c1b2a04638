"""Liveness is not progress: the pure rules (liveness.py) and the heartbeat thread's decisions
(pulse.Pulse.check) driven by an injected clock; no thread runs and nothing sleeps."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from coffee_team.liveness import (IDLE, STATES, STOPPING, WORKING, Stall, due, lease_renew_every,
                                  main_loop_alive, stall_check)
from coffee_team.agent.pulse import Activity, Pulse

T0 = 1_700_000_000.0
EPS = 1e-6


# --- main_loop_alive: hang vs working -------------------------------------------------------

@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("silent, limit", [(0, 3), (3, 3), (3 + EPS, 3), (7200, 3), (1, 0.5)])
def test_working_is_never_a_hang_and_otherwise_the_loop_must_tick(state, silent, limit):
    alive = main_loop_alive(state, T0, T0 + silent, limit)
    assert alive is (state == WORKING or silent <= limit)


def test_unknown_state_is_a_bug_not_a_verdict():
    with pytest.raises(ValueError, match="unknown agent state 'busy'"):
        main_loop_alive("busy", T0, T0, 3)


# --- due, lease renewal -----------------------------------------------------------------------

@pytest.mark.parametrize("last, now, every, expected", [
    (None, T0, 5, True), (T0, T0, 5, False), (T0, T0 + 5 - EPS, 5, False), (T0, T0 + 5, 5, True),
    (T0, T0 + 500, 5, True), (T0 + 1, T0, 5, False)])
def test_due(last, now, every, expected):
    assert due(last, now, every) is expected


@pytest.mark.parametrize("lease, every", [(3, 1.0), (300, 100.0), (7.5, 2.5)])
def test_lease_is_renewed_a_third_of_the_way_through(lease, every):
    assert lease_renew_every(lease) == every


@pytest.mark.parametrize("lease", [2.9, 0, -1, float("nan")])
def test_lease_too_short_to_renew_is_refused(lease):
    with pytest.raises(ValueError, match="lease_seconds must be at least 3"):
        lease_renew_every(lease)


# --- stall_check ------------------------------------------------------------------------------

@pytest.mark.parametrize("silent, warned_for, expected", [
    (0, None, Stall(False, False, 0)),
    (10, None, Stall(False, False, 10)),            # exactly stall_after: not yet
    (10.5, None, Stall(True, True, 10.5)),          # first sight: warn
    (60, T0, Stall(True, False, 60)),               # the same stall: no second warning
    (60, T0 - 100, Stall(True, True, 60)),          # output came, then a new silence: warn
    (5, T0, Stall(False, False, 5)),
])
def test_stall_check(silent, warned_for, expected):
    assert stall_check(T0, T0 + silent, 10, warned_for) == expected


def test_no_stall_after_means_no_stall_detection():
    assert stall_check(T0, T0 + 10**6, None, None) == Stall(False, False, 10**6)


def test_clock_going_back_is_no_negative_silence():
    assert stall_check(T0, T0 - 5, 10, None) == Stall(False, False, 0.0)


def test_one_warning_per_stall_over_a_whole_run():
    """Silence, output, silence: exactly two warnings, each when its silence passes 10 s."""
    outputs = [T0, T0 + 30]  # the handler printed at T0 and at T0 + 30
    warned_for, warnings = None, []
    for second in range(60):
        now = T0 + second
        last = max(t for t in outputs if t <= now)
        stall = stall_check(last, now, 10, warned_for)
        if stall.warn:
            warned_for = last
            warnings.append(second)
    assert warnings == [11, 41]


# --- Pulse.check: the heartbeat thread's decisions, one tick at a time ----------------------

class FakeQueue:
    def __init__(self):
        self.held = True
        self.calls = []
        self.fail = False
        self.stale = None  # what check_file() reports

    def check_file(self):
        return self.stale

    def renew_lease(self, task_id, agent, seconds):
        self.calls.append(("renew", task_id, seconds))
        if self.fail:
            raise OSError("database is locked")
        return self.held

    def holds_task(self, task_id, agent):
        self.calls.append(("holds", task_id))
        if self.fail:
            raise OSError("database is locked")
        return self.held

    def awaits_person(self, agent):
        """No tool call of the run waits for a person (tests/unit/test_agent_abort.py has one
        that does)."""
        return False


class FakeHost:
    name = "ann"
    db_errors = (OSError,)

    def __init__(self):
        self.now = T0          # the monotonic clock; the wall clock is it plus wall_offset
        self.wall_offset = 0.0  # a test steps the wall clock alone by changing it
        self.clock = lambda: self.now + self.wall_offset
        self.mono = lambda: self.now
        self.activity = Activity(self.clock, self.mono)
        self.activity.state = IDLE
        self.queue = FakeQueue()
        self.beats, self.aborts, self.stalls, self.problems = [], [], [], []
        self.disk_full = False

    def write_status(self):
        if self.disk_full:
            return False
        self.beats.append(self.now)
        return True

    def abort(self, task_id, reason, message):
        self.aborts.append((task_id, reason, message))

    def warn_stall(self, task, silent_for, action):
        self.stalls.append((task["id"], round(silent_for), action))

    def problem(self, what, message):
        self.problems.append(what)

    def recovered(self, what):
        pass


def run(host, pulse, seconds, step=1.0):
    for _ in range(int(seconds / step)):
        host.now += step
        pulse.check(host.now)


def make(stall_after=None, on_stall="warn", lease=30.0):
    host = FakeHost()
    return host, Pulse(host, heartbeat_interval=2, lease_seconds=lease, loop_limit=3,
                       stall_after=stall_after, on_stall=on_stall)


def test_beats_while_a_task_runs_for_two_hours_and_keeps_its_lease():
    host, pulse = make()
    host.activity.begin(42, "build")
    run(host, pulse, 7200)
    assert len(host.beats) == 3600  # every heartbeat_interval, the main thread busy throughout
    renewals = [c for c in host.queue.calls if c[0] == "renew"]
    # every lease/3 from the first look (the claim set a full lease a moment before)
    assert len(renewals) == 719 and all(c == ("renew", 42, 30.0) for c in renewals)
    assert len(host.queue.calls) == 7200  # a cheap read in every other second: cancel seen in 1 s
    assert host.aborts == [] and host.stalls == []


def test_a_heartbeat_the_disk_refused_is_written_as_soon_as_it_can_be():
    host, pulse = make()  # heartbeat_interval 2 s
    host.activity.begin(42, "build")
    run(host, pulse, 4)
    host.disk_full = True
    run(host, pulse, 5)
    host.disk_full = False
    freed_at = host.now
    run(host, pulse, 1)
    assert host.beats[-1] == freed_at + 1  # at the next check, not a whole interval later


def test_nothing_is_written_to_a_deleted_database_file():
    host, pulse = make(lease=3.0)
    host.activity.begin(42, "build")
    host.queue.stale = SimpleNamespace(deleted=True)
    run(host, pulse, 5)
    assert host.queue.calls == []  # no lease renewal, no read: the file is gone
    host.queue.stale = None
    run(host, pulse, 1)
    assert host.queue.calls


def test_a_stuck_main_loop_gets_no_heartbeat_and_a_ticking_one_does():
    host, pulse = make()
    run(host, pulse, 2)
    assert host.beats == [T0 + 1]  # first check beats at once, then every 2 s
    run(host, pulse, 10)  # idle, and the loop never ticked since T0: stuck after 3 s
    assert host.beats == [T0 + 1, T0 + 3] and host.problems == ["main loop"]
    host.activity.tick()
    run(host, pulse, 1)
    assert host.beats[-1] == host.now and host.queue.calls == []  # idle: no lease to keep


def idle_beat(host, pulse, now):
    """The main loop's call before an idle wait, at ``now``."""
    host.now = now
    return pulse.idle_beat(now)


def test_idle_the_main_loop_beats_once_per_interval_and_shows_going_idle_within_a_second():
    host, pulse = make()  # heartbeat_interval 2 s
    assert idle_beat(host, pulse, T0) == 2.0 and host.beats == [T0]  # the first beat at once
    assert idle_beat(host, pulse, T0 + 0.5) == 1.5 and host.beats == [T0]  # the loop woke early
    assert idle_beat(host, pulse, T0 + 2) == 2.0 and host.beats == [T0, T0 + 2]
    host.activity.begin(5, "t")  # a short task: the pulse thread never checked
    host.activity.end(IDLE)
    host.activity.state = STOPPING
    assert idle_beat(host, pulse, T0 + 2.25) == 0.75 and host.beats == [T0, T0 + 2]  # at most 1/s
    assert idle_beat(host, pulse, T0 + 3) == 2.0 and host.beats[-1] == T0 + 3  # shows the change


def test_idle_a_heartbeat_the_disk_refused_is_tried_again_within_a_second():
    host, pulse = make()
    host.disk_full = True
    assert idle_beat(host, pulse, T0) == 1.0 and host.beats == []
    host.disk_full = False
    assert idle_beat(host, pulse, T0 + 1) == 2.0 and host.beats == [T0 + 1]


def test_an_idle_heartbeat_thread_sleeps_until_stopped():
    host, pulse = make()
    host.queue.backend = SimpleNamespace(close=lambda: host.queue.calls.append("closed"))
    pulse.start()
    pulse.stop()  # wakes the sleeping thread (else the join would time out, 10 s)
    assert not pulse.is_alive() and host.queue.calls == ["closed"] and host.beats == []


def test_a_task_that_is_no_longer_ours_is_aborted_within_a_second():
    host, pulse = make()
    host.activity.begin(7, "t")
    run(host, pulse, 5)
    host.queue.held = False  # e.g. `task cancel` set it cancelled
    run(host, pulse, 1)
    assert host.aborts == [(7, "cancelled", "task 7 is no longer in progress for ann "
                                            "(cancelled or requeued)")]


def test_database_trouble_does_not_abort_the_task():
    host, pulse = make()
    host.activity.begin(7, "t")
    host.queue.fail = True
    run(host, pulse, 20)
    assert host.aborts == [] and "lease" in host.problems


def test_periodic_runs_hold_no_lease():
    host, pulse = make()
    host.activity.begin(None, "periodic")
    run(host, pulse, 60)
    assert host.queue.calls == [] and len(host.beats) == 30


@pytest.mark.parametrize("on_stall", ["warn", "cancel"])
def test_one_warning_per_stall_and_cancel_if_asked(on_stall):
    host, pulse = make(stall_after=5, on_stall=on_stall)
    host.activity.begin(9, "t")
    run(host, pulse, 20)          # silent: one stall, warned once
    host.activity.touch("halfway")  # progress ends it
    run(host, pulse, 4)
    assert host.stalls == [(9, 6, on_stall)]
    run(host, pulse, 10)          # silent again: a new stall
    assert host.stalls == [(9, 6, on_stall), (9, 6, on_stall)]
    expected = [(9, "stalled", "stalled: no output for 5 s")] * 2 if on_stall == "cancel" else []
    assert host.aborts == expected


def test_a_new_task_starts_with_a_fresh_lease_and_no_stall():
    host, pulse = make(stall_after=5)
    host.activity.begin(1, "t")
    run(host, pulse, 12)
    host.activity.end(IDLE)
    host.activity.tick()
    host.activity.begin(2, "t")
    host.queue.calls.clear()
    run(host, pulse, 4)
    assert host.queue.calls == [("holds", 2)] * 4  # task 2's claim set its lease: reads only
    assert host.stalls == [(1, 6, "warn")]


def test_activity_fields_are_what_the_heartbeat_file_shows():
    host = FakeHost()
    a = host.activity
    assert a.fields() == {"state": IDLE, "current_task": None, "task_id": None,
                          "task_started_at": None, "last_output_at": None, "progress": None}
    a.begin(42, "build", 600)
    host.now += 3
    a.touch("compiling")
    assert a.fields() == {"state": WORKING, "current_task": {"id": 42, "type": "build",
                                                             "started_at": T0,
                                                             "deadline": T0 + 600},
                          "task_id": 42, "task_started_at": T0, "last_output_at": T0 + 3,
                          "progress": "compiling"}
    a.end(STOPPING)
    assert a.fields()["state"] == STOPPING and a.fields()["task_id"] is None


def test_every_state_combination_is_decided():
    """Exhaustive over states × (ticked recently or not) × (task or not)."""
    for state, ticked, has_task in itertools.product(sorted(STATES), (True, False), (True, False)):
        host, pulse = make()
        host.activity.state = state
        host.activity.task = {"id": 5, "type": "t", "started_at": T0} if has_task else None
        host.now = T0 + (1 if ticked else 10)
        pulse.check(host.now)
        assert bool(host.beats) is (state == WORKING or ticked)
        assert bool(host.queue.calls) is (state == WORKING and has_task)


def test_a_new_task_shows_at_the_next_check_not_the_next_beat():
    host, pulse = make()  # heartbeat_interval 2
    run(host, pulse, 1)
    host.activity.begin(5, "t")
    run(host, pulse, 1)  # not due for 2 s, but the file must say "working on #5" now
    run(host, pulse, 1)  # nothing changed and not due: no write
    host.activity.end(IDLE)
    host.activity.tick()
    run(host, pulse, 1)
    assert host.beats == [T0 + 1, T0 + 2, T0 + 4]


def test_a_new_step_shows_at_the_next_check_and_steps_cost_at_most_a_write_a_second():
    host, pulse = make()
    pulse.heartbeat_interval = 30  # the default: beats far apart
    host.activity.begin(5, "t")
    run(host, pulse, 1)                     # the new task: written
    host.activity.touch("Bash: pytest -q")  # a step: written at the next check
    run(host, pulse, 1)
    host.activity.touch()                   # output without a new step: nothing to show
    run(host, pulse, 1)
    for step in range(10):                  # ten steps within one second: one write
        host.activity.touch(f"Edit: file{step}.py")
    run(host, pulse, 1)
    run(host, pulse, 1)                     # nothing changed and not due: no write
    assert host.beats == [T0 + 1, T0 + 2, T0 + 4]

# --- wall-clock steps: every cadence and silence is on the monotonic clock --------------------

@pytest.mark.parametrize("jump", [-3600.0, 3600.0])
def test_a_wall_clock_step_changes_no_cadence_and_renews_the_lease_at_once(jump):
    host, pulse = make(stall_after=30)  # heartbeat_interval 2 s, lease 30 s (renew every 10)
    host.activity.begin(42, "build")
    run(host, pulse, 4)
    host.activity.touch()
    renewals = lambda: [c for c in host.queue.calls if c[0] == "renew"]  # noqa: E731
    assert renewals() == []
    host.wall_offset = jump  # the wall clock steps; the monotonic clock (host.now) does not
    run(host, pulse, 1)
    assert len(renewals()) == 1  # the lease's expiry, in wall time, moved: renewed now
    run(host, pulse, 25)
    assert len(renewals()) == 3  # then every 10 s again
    assert host.beats == [T0 + n for n in range(1, 30, 2)]  # every 2 s throughout
    assert host.stalls == [] and host.problems == [] and host.aborts == []


@pytest.mark.parametrize("jump", [-3600.0, 3600.0])
def test_an_idle_agent_beats_on_its_interval_across_a_wall_clock_step(jump):
    host, pulse = make()  # heartbeat_interval 2 s
    assert idle_beat(host, pulse, T0) == 2.0
    host.wall_offset = jump
    assert idle_beat(host, pulse, T0 + 1) == 1.0 and host.beats == [T0]
    assert idle_beat(host, pulse, T0 + 2) == 2.0 and host.beats == [T0, T0 + 2]


def test_a_stuck_main_loop_is_found_on_the_monotonic_clock_only():
    host, pulse = make()  # loop_limit 3 s
    host.activity.begin(1, "t")
    host.activity.end(IDLE)
    host.wall_offset = 3600.0  # a jump forward does not make the loop look stuck
    run(host, pulse, 2)
    assert host.problems == []
    host.wall_offset = -3600.0  # nor does a jump back hide a stuck one
    run(host, pulse, 5)
    assert host.problems == ["main loop"]


def test_the_heartbeat_threads_take_a_refused_allocation_as_a_pause():
    """While a Python handler runs under its memory cap (agent/memguard.py) any thread may get
    a MemoryError: the heartbeat and lease threads try again instead of dying (the real cap:
    tests/unit/test_memory_cap.py). Real threads at a 10 ms interval, for a few tenths."""
    import threading
    import time
    host = FakeHost()
    host.clock, host.mono = time.time, time.monotonic
    host.queue.backend = SimpleNamespace(close=lambda: None)
    refusals = {"beat": 1, "lease": 1}

    def refuse(what, then):
        def call(*args):
            if refusals[what]:
                refusals[what] -= 1
                raise MemoryError()
            return then(*args)
        return call
    host.write_status = refuse("beat", host.write_status)
    host.queue.holds_task = refuse("lease", host.queue.holds_task)
    pulse = Pulse(host, heartbeat_interval=0.01, lease_seconds=30, loop_limit=3,
                  stall_after=None, on_stall="warn")
    host.activity.begin(42, "build")
    pulse.start()
    try:
        deadline = time.monotonic() + 5
        while (len(host.beats) < 3 or len(host.queue.calls) < 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pulse.is_alive() and pulse.beats.is_alive()
    finally:
        pulse.stop()
    assert refusals == {"beat": 0, "lease": 0}
    assert len(host.beats) >= 3 and len(host.queue.calls) >= 3  # after the refusal: carried on
