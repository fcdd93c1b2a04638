"""The watchdog's health checks (stale heartbeats, hangs, CPU and memory) and its periodic
cleanup of finished tasks.

Against a fake supervisord, a fake clock and a real SQLite queue (tests/watchdog_rig.py);
nothing here sleeps for real or starts a process.
"""
from __future__ import annotations

import pytest

from coffee_team.heartbeat import heartbeat_path
from coffee_team.watchdog import listener as watchdog_module
from coffee_team.watchdog.health import Usage
from tests import fakes
from tests.fakes import FakeSampler
from tests.watchdog_rig import AGENTS, BASE, check, HEALTH, warnings
from tests.watchdog_rig import health_rig, make_rig, rig  # noqa: F401 (fixtures)


# --- health checks ---------------------------------------------------------------------------

def test_health_check_runs_every_interval(health_rig):
    rig = health_rig
    rig.clock.advance(29.9)
    rig.wd.on_timer()
    assert rig.rpc.method_calls("getAllProcessInfo") == []
    rig.clock.advance(0.1)
    rig.wd.on_timer()
    assert len(rig.rpc.method_calls("getAllProcessInfo")) == 1
    rig.wd.on_timer()
    assert len(rig.rpc.method_calls("getAllProcessInfo")) == 1


def test_fresh_heartbeat_is_quiet(health_rig):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30 - 300)  # exactly stale_after old
    check(rig)
    assert rig.notifications() == []


def test_stale_heartbeat_warns_once_per_episode(health_rig):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30 - 347)
    check(rig)
    assert warnings(rig) == ["⚠️ code_developer heartbeat stale (347s old)"]
    note = rig.notifications()[0]
    assert note["agent"] == "code_developer" and note["sound"] is False
    assert note["message"] == note["title"]
    assert [e["detail"]["age"] for e in rig.events("code_developer", "stale")] == [347.0]

    check(rig)  # 377 s: still the same episode
    check(rig)
    assert len(warnings(rig)) == 1

    rig.write_heartbeat("code_developer", rig.clock() + 30)  # recovered
    check(rig)
    assert len(warnings(rig)) == 1
    for _ in range(11):  # then silent, the watchdog looking every 30 s: a new episode at
        check(rig)       # the first check past stale_after (a look after a longer wait
    #                      counts no silence: tests/unit/test_watchdog_pause.py)
    assert warnings(rig)[1:] == ["⚠️ code_developer heartbeat stale (330s old)"]
    assert rig.rpc.stopped() == []


def test_missing_status_file_warns_once(health_rig):
    rig = health_rig
    check(rig)
    check(rig)
    assert warnings(rig) == ["❌ code_developer status file not found"]
    assert len(rig.events("code_developer", "missing")) == 1


@pytest.mark.parametrize("content", ["{not json", "{}", '{"last_heartbeat": "soon"}'])
def test_unreadable_status_file_counts_as_missing(health_rig, content):
    rig = health_rig
    heartbeat_path(rig.team.status_dir, "code_developer").write_text(content)
    check(rig)
    assert warnings(rig) == ["❌ code_developer status file not found"]


def test_only_running_agents_are_checked(health_rig):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock())
    for name in ("architect", "assistant"):
        rig.rpc.set_state(name, "STARTING" if name == "architect" else "EXITED")
    check(rig)
    assert rig.notifications() == []  # no status files, but none of them is RUNNING


def test_hung_agent_is_stopped_and_restarted_through_the_backoff(health_rig):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30 - 400)
    check(rig)                                   # stale: warn, keep running
    assert rig.rpc.stopped() == []
    for _ in range(6):                           # 430 ... 580 s: still stale
        check(rig)
    assert rig.rpc.stopped() == []
    check(rig)                                   # 610 s: hung: warn again and stop it
    assert warnings(rig) == ["⚠️ code_developer heartbeat stale (400s old)",
                             "⚠️ code_developer heartbeat stale (610s old)"]
    assert rig.rpc.method_calls("stopProcess") == [("stopProcess", "code_developer", False)]
    assert rig.restart_state("code_developer")["hang_restart"] is True
    hung = rig.events("code_developer", "hung")  # the status change and the action both log
    assert [e["detail"].get("age") for e in hung][:1] == [610.0]
    assert "code_developer hung" in rig.stderr.getvalue()
    assert rig.rpc.started() == []               # no restart before STOPPED

    rig.rpc.settle()                             # STOPPING -> STOPPED
    rig.wd.handle(fakes.stopped("code_developer"))
    state = rig.restart_state("code_developer")
    assert state["hang_restart"] is False and state["attempts"] == 1
    assert rig.due_in("code_developer") == BASE
    crash = rig.events("code_developer", "crash")
    assert crash[0]["detail"]["reason"] == "hung (heartbeat stopped)"

    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_developer"]
    assert len(rig.rpc.stopped()) == 1


def test_a_restarted_agent_is_not_hung_for_its_predecessors_heartbeat(health_rig):
    """The heartbeat file outlives its process. Under kill -9 an agent can die again before
    its first beat (while importing): its next instance was taken for hung at once, stopped,
    restarted, and so on. A new instance is judged from its own start."""
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() - 10_000)  # the killed instance's last
    rig.rpc.set_state("code_developer", "STOPPED")
    rig.rpc.set_state("code_developer", "RUNNING", started_at=int(rig.clock()))
    started = rig.clock()
    while not rig.rpc.stopped():
        check(rig)
        assert rig.clock() - started < 1000, "a silent new instance must still be found hung"
    # never beat since its start: hung after 2 x stale_after (600 s), no sooner
    assert rig.clock() - started > 600
    assert warnings(rig) == ["⚠️ code_developer heartbeat stale (330s old)",
                             "⚠️ code_developer heartbeat stale (630s old)"]  # its own silence


def test_hung_on_first_sight_is_stopped_at_once(health_rig):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30 - 10_000)
    check(rig)
    assert rig.rpc.stopped() == ["code_developer"]
    assert len(warnings(rig)) == 1


def test_hung_agent_is_left_alone_when_restart_on_hang_is_false(make_rig):
    agents = {**AGENTS, "code_developer": {"priority": 2, "restart_on_hang": False}}
    rig = make_rig(agents=agents, **HEALTH)
    rig.rpc.set_state("code_developer", "RUNNING")
    rig.write_heartbeat("code_developer", rig.clock() + 30 - 700)
    check(rig)
    check(rig)
    assert warnings(rig) == ["⚠️ code_developer heartbeat stale (700s old)"]
    assert rig.rpc.stopped() == []
    assert rig.restart_state("code_developer")["hang_restart"] is False


def test_a_user_stop_is_not_mistaken_for_a_hang_restart(health_rig):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30)
    check(rig)
    rig.rpc.set_state("code_developer", "STOPPED")
    rig.wd.handle(fakes.stopped("code_developer"))
    assert rig.restart_state("code_developer")["next_restart_at"] is None


def test_high_cpu_and_memory_warn(health_rig):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30)
    pid = rig.rpc.pids["code_developer"]
    rig.wd.sampler = FakeSampler({pid: Usage(cpu_percent=95.0, rss_mb=300.0)})
    check(rig)
    assert warnings(rig) == ["⚠️ code_developer high CPU usage (95.0%)",
                             "⚠️ code_developer high memory usage (300MB)"]
    assert rig.wd.sampler.sampled == [[pid]]  # one pass for every running agent
    assert rig.rpc.stopped() == []


def test_memory_limit_restarts_after_two_checks_in_a_row(make_rig):
    agents = {**AGENTS, "code_developer": {"priority": 2, "memory_limit_mb": 100,
                                           "rss_warn_mb": 1000}}
    rig = make_rig(agents=agents, **HEALTH)
    rig.rpc.set_state("code_developer", "RUNNING")
    pid = rig.rpc.pids["code_developer"]
    rig.wd.sampler = FakeSampler({pid: Usage(cpu_percent=1.0, rss_mb=150.0)})
    for _ in range(2):
        rig.write_heartbeat("code_developer", rig.clock() + 30)
        check(rig)
    assert rig.rpc.stopped() == ["code_developer"]
    assert len(rig.events("code_developer", "memory_limit")) == 1
    rig.rpc.settle()
    rig.wd.handle(fakes.stopped("code_developer"))
    assert rig.rpc.started() == ["code_developer"]  # at once, not through the backoff
    assert rig.restart_state("code_developer")["attempts"] == 0
    assert rig.events("code_developer", "restarted")[0]["detail"]["reason"] == "memory_limit"


def count_heartbeat_reads(rig, monkeypatch):
    reads = []
    real = rig.wd.heartbeat_files.read
    monkeypatch.setattr(rig.wd.heartbeat_files, "read",
                        lambda d, name: reads.append(rig.clock()) or real(d, name))
    return reads


def test_a_fresh_heartbeat_is_read_again_only_once_it_could_be_stale(health_rig, monkeypatch):
    rig = health_rig
    reads = count_heartbeat_reads(rig, monkeypatch)
    beat = rig.clock() + 30
    rig.write_heartbeat("code_developer", beat)  # then the agent falls silent (SIGSTOP)
    stale_at = hung_at = None
    for _ in range(25):
        check(rig)
        if stale_at is None and warnings(rig):
            stale_at = rig.clock() - beat
        if rig.rpc.stopped():
            hung_at = rig.clock() - beat
            break
    # found as soon as a check reading every heartbeat every time would: the first check
    # past stale_after, and the first past twice that
    assert (stale_at, hung_at) == (330, 630)
    assert [t - beat for t in reads] == [0, 300, 330, 360, 390, 420, 450, 480, 510, 540, 570,
                                         600, 630]


def test_a_wall_clock_step_moves_no_health_check_and_no_heartbeat_read(health_rig,
                                                                      monkeypatch):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30)
    check(rig)
    reads = count_heartbeat_reads(rig, monkeypatch)
    for jump in (-3600, 7200):
        rig.clock.jump(jump)
        rig.wd.on_timer()
    assert reads == [] and len(rig.rpc.method_calls("getAllProcessInfo")) == 1
    rig.clock.advance(30)
    rig.wd.on_timer()  # the next check is due 30 s later on the monotonic clock, as planned
    assert len(rig.rpc.method_calls("getAllProcessInfo")) == 2


def test_one_sampler_pass_covers_every_running_agent(health_rig):
    rig = health_rig
    rig.rpc.set_state("architect", "RUNNING")
    rig.rpc.set_state("assistant", "EXITED")
    check(rig)
    check(rig)
    pids = sorted(rig.rpc.pids[name] for name in ("architect", "code_developer"))
    assert [sorted(one) for one in rig.wd.sampler.sampled] == [pids, pids]


def test_idle_timers_read_restart_states_only_to_refresh(rig, monkeypatch):
    reads = []
    real = rig.queue.restart_states
    monkeypatch.setattr(rig.queue, "restart_states",
                        lambda names: reads.append(rig.clock()) or real(names))
    start = rig.clock()
    for _ in range(61):
        rig.wd.on_timer()
        rig.wd.seconds_to_next_timer()
        rig.clock.advance(1)
    refresh = watchdog_module.RESTART_STATES_REFRESH
    assert [t - start for t in reads] == [0, refresh, 2 * refresh]


def test_a_scheduled_restart_wakes_the_timers_without_reading_states(make_rig, monkeypatch):
    rig = make_rig(restart_backoff=20)  # due before the refresh
    rig.wd.on_timer()
    rig.bring_up("code_searcher")
    reads = []
    real = rig.queue.restart_states
    monkeypatch.setattr(rig.queue, "restart_states",
                        lambda names: reads.append(rig.clock()) or real(names))
    rig.crash("code_searcher")
    for _ in range(19):
        rig.clock.advance(1)
        rig.wd.on_timer()
    assert reads == [] and rig.rpc.started() == []
    rig.clock.advance(1)
    rig.wd.on_timer()  # due: read once, then restart
    assert len(reads) == 1 and rig.rpc.started() == ["code_searcher"]


def test_a_restart_cleared_by_the_user_is_not_issued(rig):
    rig.wd.on_timer()
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.queue.save_restart_state("code_searcher", attempts=0, next_restart_at=None)  # restart
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    assert rig.wd.seconds_to_next_timer() == watchdog_module.MAX_IDLE_WAIT


# --- periodic cleanup of finished tasks ------------------------------------------------------

def test_timers_remove_old_finished_tasks_hourly(rig, monkeypatch):
    old = rig.queue.send("architect", "code_developer", "implement_priority", {})
    rig.queue.claim("code_developer")
    rig.queue.mark_completed(old, {"ok": True})
    pending = rig.queue.send("architect", "code_developer", "implement_priority", {})
    retention = rig.team.settings.cleanup_interval_hours * 3600
    rig.clock.advance(retention + 1)
    rig.wd.on_timer()  # the first timer tick cleans up at once
    assert [t["id"] for t in rig.tasks()] == [pending]
    assert "cleanup: removed 1 finished task(s)" in rig.stderr.getvalue()

    calls = []
    monkeypatch.setattr(rig.queue, "cleanup", lambda older: calls.append(older) or 0)
    rig.clock.advance(watchdog_module.CLEANUP_EVERY - 1)
    rig.wd.on_timer()
    assert calls == []
    rig.clock.advance(1)
    rig.wd.on_timer()
    assert calls == [retention]
