"""Wall-clock steps against the watchdog (issue #26, finding 3), with an injected clock: a
fake supervisord, a real SQLite queue, and time that moves only when the test says so
(FakeClock.advance moves both clocks, jump the wall clock alone). Nothing sleeps.

Before: a jump forward of more than 2 × heartbeat_stale_after took every agent for hung and
restarted the team (plus a storm of notifications); a jump back turned hang detection off for
the size of the jump and stranded every task sent while the clock was ahead.
"""
from __future__ import annotations

import pytest

from coffee_team import events as kinds
from tests.watchdog_rig import BASE, Rig

HEALTH = dict(health_check_interval=30, heartbeat_stale_after=300, heartbeat_interval=30)
RUNNING = ("architect", "code_developer", "assistant")


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path, **HEALTH)
    for name in RUNNING:
        rig.rpc.set_state(name, "RUNNING")
    yield rig
    rig.close()


def beat(rig, names=RUNNING):
    """The agents write their heartbeat: stamped by the wall clock, like the real ones."""
    for name in names:
        rig.write_heartbeat(name, rig.clock())


def live(rig, seconds, frozen=()):
    """``seconds`` pass; every agent but the ``frozen`` ones beats every heartbeat_interval;
    the watchdog's loop runs every second (MAX_IDLE_WAIT)."""
    for second in range(int(seconds)):
        rig.clock.advance(1)
        if second % 30 == 0:
            beat(rig, [n for n in RUNNING if n not in frozen])
        rig.wd.on_timer()


def clock_steps(rig):
    return rig.events(kind=kinds.CLOCK_STEP)


def test_a_jump_forward_of_ten_minutes_restarts_nothing_and_warns_of_nothing(rig):
    live(rig, 400)
    rig.clock.jump(600)  # a laptop or VM resumed, an NTP step: 2 × stale_after is exceeded
    live(rig, 1200)
    assert rig.rpc.stopped() == [] and rig.rpc.started() == []
    assert rig.notifications() == []
    assert [e["detail"]["step"] for e in clock_steps(rig)] == [600.0]  # logged once
    assert rig.stderr.getvalue().count("wall clock stepped forward by 600.0s") == 1


def test_a_jump_back_does_not_turn_hang_detection_off(rig):
    """A SIGSTOPped agent writes no heartbeat: it is hung 2 × stale_after after its last one,
    on the monotonic clock, whatever the wall clock did meanwhile."""
    live(rig, 100)
    last_beat = rig.clock.monotonic() - 10  # the beat at second 90
    rig.clock.jump(-3600)
    live(rig, 1000, frozen=("code_developer",))
    assert rig.rpc.stopped() == ["code_developer"]  # only the frozen one
    [hung] = rig.events("code_developer", "hung")[:1]
    assert 600 < hung["detail"]["age"] <= 600 + 30  # found at the first check past 600 s
    stopped_at = [c for c in rig.rpc.calls if c[0] == "stopProcess"]
    assert stopped_at and rig.clock.monotonic() - last_beat >= 600
    assert [e["detail"]["step"] for e in clock_steps(rig)] == [-3600.0]


@pytest.mark.parametrize("jump", [-3600, 600])
def test_a_frozen_agent_is_found_hung_on_time_across_a_jump_either_way(rig, jump):
    live(rig, 91)  # last beat at second 90 for everyone
    rig.clock.jump(jump)
    found = None
    for second in range(1, 1000):
        live(rig, 1, frozen=("code_developer",))
        if rig.rpc.stopped():
            found = second
            break
    assert rig.rpc.stopped() == ["code_developer"]
    assert 600 - 1 <= found <= 600 + 30  # 2 × stale_after after its last beat, no sooner


def test_a_pending_restart_keeps_its_backoff_across_a_jump_either_way(rig):
    rig.crash("assistant")
    assert rig.due_in("assistant") == BASE
    rig.clock.advance(10)
    rig.clock.jump(3600)  # forward: the stored due time is an hour in the past
    rig.wd.on_timer()
    assert rig.rpc.started() == [] and rig.due_in("assistant") == pytest.approx(BASE - 10)
    rig.clock.advance(20)
    rig.clock.jump(-7200)  # back: by the old due time it would wait two hours more
    rig.wd.on_timer()
    assert rig.due_in("assistant") == pytest.approx(BASE - 30)
    rig.clock.advance(BASE - 30 - 0.5)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    rig.clock.advance(0.5)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["assistant"]  # 60 s after the crash, as the backoff said


def test_tasks_sent_while_the_clock_was_ahead_are_not_stranded_after_it_goes_back(rig):
    rig.clock.jump(7200)  # the clock runs two hours ahead...
    rig.wd.on_timer()
    sent = [rig.queue.send("cli", "code_developer", "t") for _ in range(3)]
    delayed = rig.queue.send("cli", "code_developer", "later", delay=60)
    rig.clock.advance(5)
    rig.clock.jump(-7200)  # ...until it is put right
    assert rig.queue.claim("code_developer") == []  # before the watchdog looks: stranded
    rig.wd.on_timer()
    assert sorted(t.id for t in rig.queue.claim("code_developer", 10)) == sent
    [late] = rig.queue.list_tasks(agent="code_developer", status="pending")
    assert late["id"] == delayed and late["run_after"] == pytest.approx(rig.clock() + 60)
    [back] = [e for e in clock_steps(rig) if e["detail"]["step"] < 0]
    assert back["detail"]["brought_back"] == 4


def test_a_watchdog_started_after_the_clock_went_back_brings_those_tasks_back(rig):
    rig.clock.jump(7200)
    task = rig.queue.send("cli", "code_developer", "t")
    rig.clock.jump(-7200)  # while no watchdog ran to see it
    rig.wd = rig.new_watchdog()
    rig.wd.run()  # stdin is empty: it serves nothing, but looks first
    assert [t.id for t in rig.queue.claim("code_developer")] == [task]


def test_a_jump_forward_escalates_nothing_by_itself(rig):
    rig.queue.escalate_after = 120.0
    task = rig.queue.send("cli", "code_developer", "t", priority=5)
    live(rig, 60)
    rig.clock.jump(3600)  # the task now looks an hour old
    live(rig, 119)
    assert rig.queue.get_task(task)["priority"] == 5
    assert rig.notifications("INFO") == []
    live(rig, 31)  # it did wait escalate_after since the jump: it moves up now
    assert rig.queue.get_task(task)["priority"] == 4


def test_a_step_seen_while_handling_an_event_is_applied_before_it(rig):
    """A crash handled right after a jump is stamped by the new clock: it is not moved again
    when the step's re-basing runs."""
    rig.clock.jump(3600)
    rig.crash("assistant")  # handle() looks at the clock first
    assert rig.due_in("assistant") == BASE
    rig.wd.on_timer()
    assert rig.due_in("assistant") == BASE
    assert len(clock_steps(rig)) == 1


def test_small_clock_corrections_are_not_steps(rig):
    for jump in (1.5, -1.5, 0.3):
        rig.clock.jump(jump)
        live(rig, 40)
    assert clock_steps(rig) == [] and "stepped" not in rig.stderr.getvalue()


def test_uptime_is_never_negative_after_the_clock_went_back(tmp_path):
    """supervisord stamps a process's start with the wall clock; the clock then went back a
    day (finding: "uptime -1d 22h")."""
    import os
    import time

    from coffee_team import status
    from tests.watchdog_rig import make_team
    team = make_team(tmp_path, {"a": {"priority": 1}, "b": {"priority": 2}})
    now = time.time()
    infos = [{"name": "a", "statename": "RUNNING", "pid": os.getpid(), "start": now + 86400},
             {"name": "b", "statename": "RUNNING", "pid": 2**22 + 7, "start": now + 86400}]
    data = status.collect(team, infos, os.getpid(), now=now)
    by_name = {a["name"]: a for a in data["agents"]}
    assert 0 < by_name["a"]["uptime_seconds"] < 86400  # from the kernel's start time
    assert by_name["b"]["uptime_seconds"] == 0  # not in the process table: supervisord's, capped
    assert data["uptime_seconds"] > 0
    assert status.uptime(now, now + 3600) == 0.0 and status.uptime(now, now - 90) == 90.0
