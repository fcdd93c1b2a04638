"""Wall-clock steps under a real supervisord (issue #26, finding 3): real agents, and a watchdog
whose wall clock alone is stepped through its test hook (COFFEE_TEST_CLOCK_OFFSET_FILE: a file
of seconds added to time.time in the watchdog process only, read at every call; see
watchdog/clocksteps.wall_clock). Stepping the machine's clock would need root and would
disturb every other test running beside this one.

Seen from the watchdog, its clock stepping is the agents' clocks stepping the other way: their
heartbeat stamps jump by the same amount, which is what used to fool it.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, wait_until

pytestmark = pytest.mark.slow

AGENTS = {name: {"priority": priority, "handler": "coffee_team.agent.demo:handle",
                 "check_interval": 3600}
          for name, priority in (("ann", 1), ("bob", 2), ("cy", 2))}


def boot(project, offset_file):
    offset_file.write_text("0")
    project.write_team(AGENTS, heartbeat_stale_after=2)  # hung after 4 s of silence
    boot_supervisord(project, env={"COFFEE_TEST_CLOCK_OFFSET_FILE": str(offset_file)})
    project.wait_states("RUNNING", timeout=40)
    time.sleep(2)  # a few health checks with every heartbeat seen
    return {i["name"]: i["pid"] for i in project.rpc().supervisor.getAllProcessInfo()}


def journal(project, kind):
    with MessageQueue.from_team(project.team) as q:
        return [e for e in q.events(limit=10000) if e["kind"] == kind]


def pids(project):
    return {i["name"]: i["pid"] for i in project.rpc().supervisor.getAllProcessInfo()}


def send_work(project, count=30):
    with MessageQueue.from_team(project.team) as q:
        return [q.send("cli", ("ann", "bob", "cy")[i % 3], "work", {"n": i}) for i in range(count)]


def outcome(project, ids):
    """(lost, completed more than once): each task done once, none left behind."""
    with MessageQueue.from_team(project.team) as q:
        rows = {t["id"]: t for t in q.list_tasks(limit=10000) if t["id"] in ids}
    return (sum(1 for i in ids if rows.get(i, {}).get("status") != "completed"),
            sum(1 for i in ids if rows.get(i, {}).get("attempts", 0) > 1))


def test_a_jump_forward_of_ten_minutes_restarts_no_agent(project, tmp_path, reliability):
    before = boot(project, tmp_path / "offset")
    ids = send_work(project)
    (tmp_path / "offset").write_text("600")
    steps = wait_until(lambda: journal(project, "clock_step"), 10, 0.2, "the step's event")
    ids += send_work(project)
    # twice what makes an agent hung: a watchdog the step fools finds every heartbeat 600 s
    # old at its first check after it
    time.sleep(2 * 4)
    lost, twice = outcome(project, ids)
    reliability("wall clock jumps forward 10 min", f"{len(ids)} tasks, 3 agents",
                "the watchdog's wall clock +600 s (2 × stale_after is 4 s)", lost, str(twice),
                f"no agent restarted, no stale or hung warning in 8 s; the step logged once "
                f"(clock_step {steps[0]['detail']['step']:+.0f} s)")
    assert (lost, twice) == (0, 0)
    assert pids(project) == before
    assert journal(project, "hung") == [] and journal(project, "stale") == []
    with MessageQueue.from_team(project.team) as q:
        assert q.notifications() == []
    assert [round(e["detail"]["step"]) for e in journal(project, "clock_step")] == [600]
    assert steps[0]["agent"] is None


def test_a_jump_back_leaves_hang_detection_on(project, tmp_path, reliability):
    before = boot(project, tmp_path / "offset")
    (tmp_path / "offset").write_text("-3600")
    wait_until(lambda: journal(project, "clock_step"), 10, 0.2, "the step's event")
    ids = send_work(project)
    wait_until(lambda: outcome(project, ids)[0] == 0, 20, 0.2, "the work before the freeze")
    os.kill(before["bob"], signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        wait_until(lambda: pids(project)["bob"] != before["bob"], 30, 0.2,
                   "the frozen agent to be restarted")
        took = time.monotonic() - frozen_at
    finally:
        with_suppressed_kill(before["bob"], signal.SIGCONT)
    [hung] = [e for e in journal(project, "hung") if e["agent"] == "bob"][:1]
    print(f"frozen agent found hung at {hung['detail']['age']}s of silence, "
          f"restarted {took:.1f}s after SIGSTOP")
    ids += send_work(project)  # bob's share waits for its new instance
    wait_until(lambda: outcome(project, ids)[0] == 0, 30, 0.2, "every task done")
    lost, twice = outcome(project, ids)
    reliability("wall clock jumps back 1 h, then an agent is frozen",
                f"{len(ids)} tasks, 3 agents",
                "the watchdog's wall clock -3600 s; SIGSTOP of 1 agent", lost, str(twice),
                f"frozen agent found hung at {hung['detail']['age']}s of heartbeat silence "
                f"(2 × stale_after = 4 s), restarted {took:.1f}s after SIGSTOP; the others "
                f"kept their PIDs")
    assert 4 <= hung["detail"]["age"] <= 4 + 2 + 1  # 2 × stale_after (+ beat and check cadence)
    now = pids(project)
    assert now["ann"] == before["ann"] and now["cy"] == before["cy"]
    assert [e["agent"] for e in journal(project, "hung")] == ["bob"]
    assert [round(e["detail"]["step"]) for e in journal(project, "clock_step")] == [-3600]


def with_suppressed_kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
