"""memory_limit_mb in the agent (agent/memguard.py): the sampling rule and the guard, with a
fake process tree and a fake clock; nothing allocates and nothing sleeps."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffee_team.agent.memguard import MemoryGuard
from coffee_team.agent.pulse import Activity
from coffee_team.liveness import (ALLOC_BURST_MB_S, MEMORY_OVERSHOOT, MEMORY_SAMPLE_MAX,
                                  MEMORY_SAMPLE_MIN, memory_exceeded, memory_next_sample)
from coffee_team.proctable import Proc, ProcessTable
from tests.clock import FakeClock

MB = 2**20


def test_the_failed_task_says_memory():
    assert memory_exceeded(200.0, 200) is None
    assert memory_exceeded(300.4, 200) == "memory limit 200 MB exceeded: 301 MB"
    assert memory_exceeded(200.001, 200) == "memory limit 200 MB exceeded: 201 MB"


def test_sampling_is_sparse_far_below_the_limit_and_dense_close_to_it():
    assert memory_next_sample(40, 0, 100_000) == MEMORY_SAMPLE_MAX
    assert memory_next_sample(40, 0, 200) == pytest.approx(260 / ALLOC_BURST_MB_S / 2)
    assert memory_next_sample(270, 0, 200) == pytest.approx(30 / ALLOC_BURST_MB_S / 2)
    assert memory_next_sample(299.9, 0, 200) == MEMORY_SAMPLE_MIN
    assert memory_next_sample(100, 2 * ALLOC_BURST_MB_S, 200) == pytest.approx(
        200 / (2 * ALLOC_BURST_MB_S) / 2)  # measured faster than the burst: by that


@settings(max_examples=1000, deadline=None)
@given(limit=st.integers(64, 100_000), base=st.floats(0, 0.99), rate=st.floats(1, 1.0),
       start_gap=st.floats(0, 1))
def test_a_tree_growing_at_up_to_the_burst_rate_is_stopped_below_the_bar(limit, base, rate,
                                                                        start_gap):
    """Exhaustive over limits, starting sizes, growth rates up to ALLOC_BURST_MB_S and when
    the growth starts relative to a reading: the reading that finds the tree over the limit
    finds it below MEMORY_OVERSHOOT × the limit."""
    rate *= ALLOC_BURST_MB_S
    base_mb = base * limit
    t, growth, before = 0.0, 0.0, None

    def rss(at: float) -> float:  # flat until start_gap, then growing at rate
        return base_mb + rate * max(0.0, at - start_gap)
    while True:
        now = rss(t)
        if memory_exceeded(now, limit):
            assert now < MEMORY_OVERSHOOT * limit
            return
        if before is not None:
            growth = max(0.0, now - before[1]) / (t - before[0])
        before = (t, now)
        t += memory_next_sample(now, growth, limit)
        assert t < 3600, "never stopped"


class Host:
    name = "ann"

    def __init__(self, clock):
        self.activity = Activity(clock, clock.monotonic)
        self.runner = None
        self.aborts = []

    def abort(self, task_id, reason, message):
        self.aborts.append((task_id, reason, message))
        self.activity.end("idle")  # the main thread stops the handler and ends the task


def rig(limit_mb, grow_mb_s, start_mb=40.0):
    """A guard over a fake tree (the agent, pid 10, and its handler, pid 11) whose RSS grows
    at ``grow_mb_s`` with the fake clock; returns (host, guard, clock, readings)."""
    clock = FakeClock()
    host = Host(clock)
    t0 = clock.monotonic()
    readings = []
    table = ProcessTable({10: Proc(1, 0, 0, 0), 11: Proc(10, 0, 0, 0), 12: Proc(1, 0, 0, 0)})

    def read_rss(pids):
        assert sorted(pids) == [10, 11]  # the tree only: not the unrelated pid 12
        mb = start_mb + grow_mb_s * (clock.monotonic() - t0)
        readings.append(mb)
        return int(mb * MB)
    guard = MemoryGuard(host, limit_mb, read_table=lambda: table, read_rss=read_rss,
                        mono=clock.monotonic, pid=10, wait=clock.advance)
    return host, guard, clock, readings


def test_a_handler_allocating_past_the_limit_is_stopped_with_the_reason():
    host, guard, clock, readings = rig(200, grow_mb_s=1000)
    host.activity.begin(7, "work")
    guard.watch(host.activity.task)
    [(task_id, reason, message)] = host.aborts
    assert (task_id, reason) == (7, "memory")
    assert message == f"memory limit 200 MB exceeded: {math.ceil(readings[-1])} MB"
    assert 200 < readings[-1] < 300 and guard.peak_mb == pytest.approx(readings[-1])
    assert len(readings) < 100  # not a busy loop


def test_a_task_under_its_limit_is_left_alone_and_read_a_few_times_a_second():
    host, guard, clock, readings = rig(4000, grow_mb_s=0)
    host.activity.begin(7, "work")
    end_at = clock.monotonic() + 10
    guard.wait = lambda s: clock.advance(s) >= 0 and clock.monotonic() >= end_at and \
        host.activity.end("idle")
    guard.watch(host.activity.task)
    assert host.aborts == [] and 5 <= len(readings) <= 40


def test_an_agent_over_its_limit_between_tasks_does_not_fail_the_next_task(capfd):
    host, guard, clock, readings = rig(200, grow_mb_s=0, start_mb=250)
    guard.idle_mb = 250.0  # read when its last task ended (e.g. a Python handler's leftovers)
    host.activity.begin(7, "work")
    end_at = clock.monotonic() + 5
    guard.wait = lambda s: clock.advance(s) >= 0 and clock.monotonic() >= end_at and \
        host.activity.end("idle")
    guard.watch(host.activity.task)
    assert host.aborts == [] and readings == []  # the watchdog's restart deals with it
    assert "over memory_limit_mb (250 MB) before task 7 began" in capfd.readouterr().err


def test_a_late_first_reading_still_stops_the_handler():
    """The guard thread may first run when the handler already passed the limit (a busy
    machine): that is the handler's doing, not the agent's."""
    host, guard, clock, readings = rig(200, grow_mb_s=0, start_mb=250)
    guard.idle_mb = 40.0
    host.activity.begin(7, "work")
    guard.watch(host.activity.task)
    assert host.aborts == [(7, "memory", "memory limit 200 MB exceeded: 250 MB")]
