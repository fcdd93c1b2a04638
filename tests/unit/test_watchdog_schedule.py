"""What the watchdog reads, and when: the pure scheduling rules (policy.heartbeat_next_look,
is_due, restart_states_due), the one-pass tree sampler (health.py) and the heartbeat file
cache (heartbeat.HeartbeatFiles). No process is started and nothing sleeps: tables and clocks
are passed in."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffee_team import heartbeat
from coffee_team.heartbeat import HeartbeatFiles, write_heartbeat
from coffee_team.proctable import Proc, ProcessTable
from coffee_team.watchdog.health import TreeSampler, Usage, cpu_seconds_since
from coffee_team.restarts import RestartState, due_restarts, is_due, on_cleared, on_stop_requested, restart_states_due
from coffee_team.watchdog.policy import FRESH, HEARTBEAT_STATUSES, heartbeat_counted_from, heartbeat_next_look, heartbeat_status

T0 = 1_700_000_000.0
STALE = 300.0
EPS = 1e-6


# --- heartbeat_next_look / is_due -------------------------------------------------

def test_a_fresh_heartbeat_is_next_looked_at_when_it_could_turn_stale():
    assert heartbeat_next_look(T0, FRESH, STALE) == T0 + STALE


@pytest.mark.parametrize("status", sorted(HEARTBEAT_STATUSES - {FRESH}))
def test_any_other_status_is_looked_at_every_check(status):
    assert heartbeat_next_look(T0 - 1000, status, STALE) is None
    assert heartbeat_next_look(None, status, STALE) is None


@pytest.mark.parametrize("now, due", [
    (T0 - STALE - EPS, True),  # further away than a heartbeat lasts: the clock went back
    (T0 - STALE, False),
    (T0 - 1, False),
    (T0 - EPS, False),
    (T0, True),
    (T0 + 1000, True),
])
def test_is_due_boundaries(now, due):
    assert is_due(T0, now, STALE) is due


def test_is_due_when_planned_for_every_chance():
    assert is_due(None, T0, STALE) is True


@settings(max_examples=500, deadline=None)
@given(age=st.floats(-100, 1000), later=st.floats(0, 2000), stale_after=st.floats(1, 600),
       disk_full_ago=st.none() | st.floats(-100, 2000), frozen=st.booleans())
def test_a_skipped_look_never_misses_a_change(age, later, stale_after, disk_full_ago, frozen):
    """Whatever the disk and the process do, a check that skips the heartbeat (not due)
    would have found it fresh anyway: skipping changes no status and no latency."""
    last, looked_at = T0 - age, T0
    disk_full_at = None if disk_full_ago is None else T0 - disk_full_ago

    def status(now):
        return heartbeat_status(heartbeat_counted_from(last, disk_full_at, frozen), now,
                                stale_after)

    next_look = heartbeat_next_look(last, status(looked_at), stale_after)
    now = looked_at + later
    if not is_due(next_look, now, stale_after):
        assert status(now) == FRESH


# --- restart_states_due ------------------------------------------------------------------

PENDING = {"a": RestartState(attempts=1, next_restart_at=T0 + 10),
           "b": RestartState(attempts=3, next_restart_at=T0 - 50, given_up=True),
           "c": RestartState(running_since=T0 - 100)}


@pytest.mark.parametrize("since_read, now, due", [
    (None, T0, True),               # never read
    (0, T0, False),
    (10 - EPS, T0 + 10 - EPS, False),
    (10, T0 + 10, True),            # a's restart is due: read before acting on it
    (29.5, T0 + 0.5, False),
    (30, T0, True),                 # the refresh (on the monotonic clock)
])
def test_restart_states_due_boundaries(since_read, now, due):
    assert restart_states_due(since_read, PENDING, now, refresh_every=30) is due


STATE = st.builds(RestartState, attempts=st.integers(0, 5),
                  next_restart_at=st.none() | st.floats(T0 - 100, T0 + 100),
                  given_up=st.booleans())


@settings(max_examples=300, deadline=None)
@given(known=st.dictionaries(st.sampled_from("abcdef"), STATE, max_size=6),
       cleared=st.sets(st.sampled_from("abcdef")), stopped=st.sets(st.sampled_from("abcdef")),
       since_read=st.floats(0, 100), later=st.floats(-100, 100))
def test_no_restart_is_due_unseen_when_others_clear_or_stop(known, cleared, stopped,
                                                            since_read, later):
    """The other writers (coffee-team restart/stop, apply) only clear pending restarts, so
    when the remembered states say nothing is due, the stored ones do not either."""
    stored = {name: on_cleared(s) if name in cleared else on_stop_requested(s)
              if name in stopped else s for name, s in known.items()}
    now = T0 + later
    if not restart_states_due(since_read, known, now, refresh_every=30):
        assert due_restarts(stored, now) == []


# --- cpu_seconds_since / TreeSampler -----------------------------------------------------

def proc(ppid, cpu, rss_mb=10, started=T0 - 1000):
    return Proc(ppid=ppid, cpu_seconds=cpu, rss=rss_mb << 20, started=started)


@pytest.mark.parametrize("before, now_proc, used", [
    (proc(1, 5.0), proc(1, 7.5), 2.5),                                # seen then: its growth
    (proc(1, 5.0), proc(1, 3.0, started=T0 + 1), 3.0),                # pid reused since: whole
    (proc(1, 5.0), proc(1, 3.0, started=T0 - 5), 0.0),                # pid reused, unseen start
    (None, proc(1, 4.0, started=T0), 4.0),                            # started at the pass
    (None, proc(1, 4.0, started=T0 - EPS), 0.0),                      # first sight: no baseline
])
def test_cpu_seconds_since(before, now_proc, used):
    seen = {} if before is None else {42: before}
    assert cpu_seconds_since(seen, T0, {42: now_proc}) == pytest.approx(used)


class Tables:
    """read_table and clock (wall and monotonic alike) for a TreeSampler: each pass takes the
    next table."""

    def __init__(self, *passes):
        self.passes = list(passes)
        self.now = T0

    def read(self):
        self.now += 10
        return ProcessTable(self.passes.pop(0))

    def clock(self):
        return self.now


def test_sampler_reads_the_table_once_for_every_tree_and_measures_cpu_between_passes():
    tables = Tables({1: proc(0, 0), 100: proc(1, 2.0), 101: proc(100, 1.0, rss_mb=5),
                     200: proc(1, 8.0)},
                    {1: proc(0, 0), 100: proc(1, 3.0), 101: proc(100, 2.0, rss_mb=5),
                     200: proc(1, 8.5)})
    sampler = TreeSampler(tables.read, tables.clock, tables.clock)
    first = sampler.sample([100, 200])
    assert first == {100: Usage(0.0, 15.0), 200: Usage(0.0, 10.0)}  # no earlier pass yet
    assert sampler.sample([100, 200]) == {100: Usage(20.0, 15.0), 200: Usage(5.0, 10.0)}
    assert tables.passes == []


def test_sampler_leaves_out_gone_trees_and_forgets_them():
    restarted = proc(1, 0.5, started=T0 + 15)  # the agent's new process, started since
    tables = Tables({100: proc(1, 2.0), 101: proc(100, 1.0), 200: proc(1, 8.0)},
                    {300: restarted, 200: proc(1, 8.0)},
                    {300: proc(1, 1.5, started=T0 + 15), 200: proc(1, 9.0)})
    sampler = TreeSampler(tables.read, tables.clock, tables.clock)
    sampler.sample([100, 200])
    assert sampler.sample([100, 200, 300]) == {200: Usage(0.0, 10.0), 300: Usage(5.0, 10.0)}
    assert sampler.tracked() == {200, 300}  # 100 and its child are not kept
    assert sampler.sample([200, 300])[300].cpu_percent == 10.0


def test_sampler_on_the_real_process_table():
    usage = TreeSampler().sample([os.getpid(), 2**22 + 7])
    assert list(usage) == [os.getpid()]
    assert usage[os.getpid()].rss_mb > 1


# --- HeartbeatFiles ----------------------------------------------------------------------

def test_heartbeat_file_is_parsed_again_only_when_replaced(tmp_path, monkeypatch):
    parsed = []
    real = heartbeat.read_heartbeat
    monkeypatch.setattr(heartbeat, "read_heartbeat",
                        lambda d, a: parsed.append(a) or real(d, a))
    files = HeartbeatFiles()
    assert files.read(tmp_path, "ann") == {}  # missing: nothing to parse
    write_heartbeat(tmp_path, "ann", {"last_heartbeat": T0})
    assert [files.read(tmp_path, "ann") for _ in range(3)] == [{"last_heartbeat": T0}] * 3
    assert parsed == ["ann"]
    write_heartbeat(tmp_path, "ann", {"last_heartbeat": T0 + 30})
    assert files.read(tmp_path, "ann") == {"last_heartbeat": T0 + 30}
    assert parsed == ["ann", "ann"]
    (tmp_path / "ann_status.json").unlink()
    assert files.read(tmp_path, "ann") == {}


def test_heartbeat_files_forget_agents_that_left(tmp_path, monkeypatch):
    parsed = []
    real = heartbeat.read_heartbeat
    monkeypatch.setattr(heartbeat, "read_heartbeat",
                        lambda d, a: parsed.append(a) or real(d, a))
    files = HeartbeatFiles()
    for name in ("ann", "bob"):
        write_heartbeat(tmp_path, name, {"last_heartbeat": T0})
        files.read(tmp_path, name)
    files.forget(["bob"])
    files.read(tmp_path, "ann")
    files.read(tmp_path, "bob")
    assert parsed == ["ann", "bob", "ann"]  # ann was forgotten, so it is parsed again
