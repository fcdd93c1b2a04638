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


def test_a_jump_forward_of_ten_minutes_restarts_no_agent(project, tmp_path):
    before = boot(project, tmp_path / "offset")
    (tmp_path / "offset").write_text("600")
    steps = wait_until(lambda: journal(project, "clock_step"), 10, 0.2, "the step's event")
    time.sleep(3 * 4)  # three times what makes an agent hung
    assert pids(project) == before
    assert journal(project, "hung") == [] and journal(project, "stale") == []
    with MessageQueue.from_team(project.team) as q:
        assert q.notifications() == []
    assert [round(e["detail"]["step"]) for e in journal(project, "clock_step")] == [600]
    assert steps[0]["agent"] is None


def test_a_jump_back_leaves_hang_detection_on(project, tmp_path):
    before = boot(project, tmp_path / "offset")
    (tmp_path / "offset").write_text("-3600")
    wait_until(lambda: journal(project, "clock_step"), 10, 0.2, "the step's event")
    os.kill(before["bob"], signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        wait_until(lambda: pids(project)["bob"] != before["bob"], 30, 0.2,
                   "the frozen agent to be restarted")
        took = time.monotonic() - frozen_at
    finally:
        with_suppressed_kill(before["bob"], signal.SIGCONT)
    [hung] = [e for e in journal(project, "hung") if e["agent"] == "bob"][:1]
    print(f"frozen agent found hung {hung['detail']['age']}s after its last beat, "
          f"restarted {took:.1f}s after SIGSTOP")
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
