"""memory_limit_mb in the agent (agent/memguard.py): the sampling rule and the guard, with a
fake process tree and a fake clock; the cap of an in-process handler with fake rlimits
(test_memory_cap.py holds the real one); nothing allocates and nothing sleeps."""
from __future__ import annotations

import errno
import math
import resource

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffee_team.agent.memguard import MemoryGuard, out_of_memory
from coffee_team.agent.pulse import Activity
from coffee_team.errors import HandlerError
from coffee_team.handlers import CallableRunner, Interrupted
from coffee_team.liveness import (ALLOC_BURST_MB_S, MEMORY_CAP_FLOOR_MB, MEMORY_CAP_SHARE,
                                  MEMORY_OVERSHOOT, MEMORY_SAMPLE_MAX, MEMORY_SAMPLE_MIN,
                                  memory_data_cap, memory_exceeded, memory_next_sample,
                                  memory_refused)
from coffee_team.proctable import LiveTable, Proc, ProcessTable
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


# --- the cap of an in-process (Python) handler ---------------------------------------------
def test_the_cap_lets_writable_memory_grow_to_1_4_times_the_limit_less_the_tree():
    assert memory_data_cap(data_mb=300, rss_mb=60, limit_mb=200) == 300 + 280 - 60
    assert memory_data_cap(300, 200, 200) == 300 + 80  # at the limit: 0.4 × it still
    assert memory_data_cap(300, 200.5, 200) is None  # over it before the task: no cap
    assert memory_data_cap(300, 29, 30) == 300 + MEMORY_CAP_FLOOR_MB  # 1.4 × 30 − 29 is less


@settings(max_examples=500, deadline=None)
@given(limit=st.integers(16, 100_000), rss=st.floats(0, 1), data=st.floats(0, 10))
def test_the_cap_never_refuses_below_the_limit_nor_lets_the_tree_pass_the_bar(limit, rss, data):
    """VmData grows at least as fast as the RSS a handler adds: with the cap reached, the tree
    is over the limit (never refused under it) and under MEMORY_CAP_SHARE × the limit."""
    rss_mb, data_mb = rss * limit, data * limit
    cap = memory_data_cap(data_mb, rss_mb, limit)
    room = cap - data_mb  # what the handler may add
    assert rss_mb + room > limit
    assert rss_mb + room <= max(MEMORY_CAP_SHARE * limit, rss_mb + MEMORY_CAP_FLOOR_MB) + 1e-6
    assert MEMORY_CAP_SHARE * limit < MEMORY_OVERSHOOT * limit


def test_a_refused_allocation_says_memory():
    assert memory_refused(277.2, 200) == "memory limit 200 MB exceeded: 278 MB"
    assert memory_refused(120, 200) == ("memory limit 200 MB: an allocation was refused with "
                                        "the tree at 120 MB (a Python handler may map 1.4 × "
                                        "the limit)")


def test_out_of_memory_is_found_behind_the_handlers_own_errors():
    assert out_of_memory(MemoryError())
    assert out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert not out_of_memory(OSError(errno.ENOENT, "gone")) and not out_of_memory(None)
    try:
        try:
            raise MemoryError()
        except MemoryError:
            raise ValueError("could not parse") from None  # the context stays
    except ValueError as exc:
        assert out_of_memory(exc)
    wrapped = HandlerError("MemoryError: ")
    wrapped.__cause__ = MemoryError()
    assert out_of_memory(wrapped)
    loop = ValueError("a")
    loop.__context__ = KeyError("b")
    loop.__context__.__context__ = loop
    assert not out_of_memory(loop)


class Limits:
    """RLIMIT_DATA and VmData, faked: what the guard sets, and a tree of ``rss_mb``."""

    def __init__(self, soft=resource.RLIM_INFINITY, hard=resource.RLIM_INFINITY, rss_mb=60.0):
        self.now = (soft, hard)
        self.set: list[tuple[int, int]] = []
        self.rss_mb = rss_mb

    def guard(self, limit_mb=200):
        host = Host(FakeClock())

        def set_limit(soft, hard):
            self.now = (soft, hard)
            self.set.append((soft, hard))
        return MemoryGuard(host, limit_mb,
                           read_rss=lambda pids: int(self.rss_mb * MB) if pids else 0,
                           read_data=lambda: 300 * MB, get_limit=lambda: self.now,
                           set_limit=set_limit, read_peak=self.read_peak)

    def read_peak(self, reset):
        self.peak_mb = self.rss_mb if reset else max(self.peak_mb, self.rss_mb)
        return None if reset else int(self.peak_mb * MB)


def test_the_cap_holds_while_the_handler_runs_and_is_lifted_after():
    limits = Limits()
    guard = limits.guard()
    seen = []
    assert guard.run_in_process(lambda task, ctx: seen.append(limits.now) or "ok", {}, None) \
        == "ok"
    assert seen == [((300 + 280 - 60) * MB, resource.RLIM_INFINITY)]
    assert limits.now == (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def test_a_refused_allocation_fails_the_task_for_memory_and_lifts_the_cap():
    limits = Limits()
    guard = limits.guard()

    def grow(task, ctx):
        limits.rss_mb = 277.2  # what it had taken when the kernel said no
        raise MemoryError()
    with pytest.raises(Interrupted) as caught:
        guard.run_in_process(CallableRunner(grow), {}, None)  # its HandlerError around it
    assert (caught.value.reason, str(caught.value)) == \
        ("memory", "memory limit 200 MB exceeded: 278 MB")
    assert caught.value.__context__ is None  # the handler's frames (its memory) not kept
    assert limits.now == (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def test_a_refusal_says_the_peak_when_the_memory_was_freed_before_the_agent_saw_it():
    """Under the cap Python may fail to allocate the traceback itself: the handler's frames,
    and all they held, are freed before its MemoryError reaches the agent."""
    limits = Limits()

    def grow(task, ctx):
        limits.rss_mb = 281.0
        limits.read_peak(False)  # the kernel's high-water mark follows the RSS
        limits.rss_mb = 70.0  # freed on the way out
        raise MemoryError()
    with pytest.raises(Interrupted, match="^memory limit 200 MB exceeded: 281 MB$"):
        limits.guard().run_in_process(grow, {}, None)


@pytest.mark.parametrize("error", [HandlerError("bad input"), ValueError("bug"),
                                   Interrupted("timeout", "timed out after 5s"),
                                   Interrupted("memory", "memory limit 200 MB exceeded: 230 MB")])
def test_other_failures_pass_through_with_the_cap_lifted(error):
    limits = Limits()

    def fail(task, ctx):
        raise error
    with pytest.raises(type(error)) as caught:
        limits.guard().run_in_process(fail, {}, None)
    assert caught.value is error
    assert limits.now == (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def test_no_cap_over_the_limit_already_nor_above_the_agents_own_ulimit():
    over = Limits(rss_mb=250)  # a Python handler's leftovers: the watchdog's restart
    assert over.guard().run_in_process(lambda task, ctx: "ok", {}, None) == "ok"
    assert over.set == []

    def refused(task, ctx):
        raise MemoryError()
    with pytest.raises(MemoryError):  # not the cap's doing: the handler's own error
        over.guard().run_in_process(refused, {}, None)
    own = Limits(soft=400 * MB, hard=400 * MB)  # ulimit -d lower than the cap
    assert own.guard().run_in_process(lambda task, ctx: "ok", {}, None) == "ok"
    assert own.set == []


def test_a_release_again_after_the_lift_changes_nothing():
    limits = Limits()
    guard = limits.guard()
    guard.run_in_process(lambda task, ctx: None, {}, None)
    guard.release()  # _run_handler's finally, after run_in_process's own
    assert len(limits.set) == 2  # the cap and its lift, once


def test_the_sampler_refused_memory_under_the_cap_carries_on():
    host, guard, clock, readings = rig(200, grow_mb_s=1000)
    real, refusals = guard.read_rss, [1]

    def read_rss(pids):
        if refusals:
            refusals.pop()
            raise MemoryError()
        return real(pids)
    guard.read_rss = read_rss
    abort = host.abort
    host.abort = lambda *args: (abort(*args), guard._halt.set())  # then the loop ends
    host.activity.begin(7, "work")
    guard.began.set()
    guard.run()  # the thread's loop, on this thread
    assert refusals == [] and readings
    assert [(task_id, reason) for task_id, reason, _ in host.aborts] == [(7, "memory")]


def test_the_live_table_reads_only_the_processes_new_since_its_last_pass():
    listed = [1, 10, 11, 12]
    parents = {1: 0, 10: 1, 11: 10, 12: 1, 13: 11, 14: 13}
    reads: list[int] = []

    def parent_of(pid):
        reads.append(pid)
        return parents.get(pid)
    table = LiveTable(list_pids=lambda: listed, parent_of=parent_of)
    assert table.read().tree(10) == [10, 11] and sorted(reads) == [1, 10, 11, 12]
    reads.clear()
    listed[:] = [1, 10, 11, 13, 14, 99]  # 12 gone; 13 and 14 new under 11; 99 gone already
    assert sorted(table.read().tree(10)) == [10, 11, 13, 14]
    assert sorted(reads) == [13, 14, 99]  # not 1, 10, 11 again
    assert 12 not in table.parents and 99 not in table.parents
