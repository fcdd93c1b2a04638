"""A paused supervisord and watchdog under a real supervisord: SIGSTOP for longer than
2 × heartbeat_stale_after, then SIGCONT. The agents beat all along; the watchdog, held in
getAllProcessInfo by the stopped supervisord or stopped itself, must not call them hung on a
silence it did not watch (it did: "hung (heartbeat stopped)" and a restart, with heartbeats
0.6 s old). A SIGSTOPped agent is still found hung afterwards, within the usual time.
The rule: policy.unwatched/unpaused, tests/unit/test_watchdog_pause.py."""
from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from coffee_team.heartbeat import last_beat, read_heartbeat
from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, wait_until

pytestmark = pytest.mark.slow

AGENTS = {name: {"priority": priority, "handler": "coffee_team.agent.demo:handle",
                 "check_interval": 3600}
          for name, priority in (("ann", 1), ("bob", 2), ("cy", 2))}
STALE_AFTER = 2  # hung after 4 s of silence
# Each pause: longer than that (a watchdog that counts the pause as silence calls the agents
# hung: checked by making policy.unwatched return 0), and than the cadence (1 s) +
# policy.PAUSE_SLACK (2 s) that makes a late look a pause. Not longer: three of them are most
# of the module's time in CI.
PAUSE = 5.5


def boot(project):
    project.write_team(AGENTS, heartbeat_stale_after=STALE_AFTER, stop_wait_seconds=1)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    time.sleep(2)  # a few health checks with every heartbeat seen
    return pids(project)


def pids(project):
    return {i["name"]: i["pid"] for i in project.rpc().supervisor.getAllProcessInfo()}


def journal(project, *kinds):
    with MessageQueue.from_team(project.team) as q:
        return [e for e in q.events(limit=10000) if e["kind"] in kinds]


def heartbeat_ages(project):
    now = time.time()
    return {name: round(now - (last_beat(read_heartbeat(project.team.status_dir, name)) or 0), 1)
            for name in AGENTS}


def kill(pid, sig):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def pause(supervisord, watchdog=None, resume_watchdog_first=True):
    """supervisord stopped; the watchdog, if given, 2 s later (by then its health check
    waits on supervisord's answer); PAUSE s later both go on, 1 s apart."""
    kill(supervisord, signal.SIGSTOP)
    try:
        if watchdog:
            time.sleep(2)
            kill(watchdog, signal.SIGSTOP)
        time.sleep(PAUSE)
    finally:
        order = [watchdog, supervisord] if resume_watchdog_first else [supervisord, watchdog]
        for pid in filter(None, order):
            kill(pid, signal.SIGCONT)
            time.sleep(1)


def test_a_paused_supervisord_and_watchdog_restart_nothing(project, reliability):
    before = boot(project)
    supervisord, watchdog = project.supervisord_pid(), before["watchdog"]
    oldest = 0.0
    # each way once (the unit tests in test_watchdog_pause.py hold the rule to every case)
    cycles = [dict(), dict(watchdog=watchdog),
              dict(watchdog=watchdog, resume_watchdog_first=False)]
    for cycle in cycles:
        pause(supervisord, **cycle)
        oldest = max(oldest, *heartbeat_ages(project).values())
        time.sleep(2)  # the checks after it: the one due at once, and the usual ones
    time.sleep(2 * STALE_AFTER)
    wrong = journal(project, "hung", "stale", "crash", "stopped", "exited", "restarted")
    paused = journal(project, "watchdog_paused")
    assert [(e["agent"], e["kind"]) for e in wrong] == [], wrong
    seconds = sorted(e["detail"]["seconds"] for e in paused) or [0]
    reliability("supervisord and its watchdog SIGSTOPped", "3 idle agents",
                f"{len(cycles)} pauses of {PAUSE}-{PAUSE + 3} s (2 × stale_after is "
                f"{2 * STALE_AFTER} s): supervisord alone, and with the watchdog", 0, "0",
                f"no agent restarted, no stale or hung warning; each pause logged once "
                f"(watchdog_paused {seconds[0]:.0f}-{seconds[-1]:.0f} s); heartbeats at most "
                f"{oldest:.1f} s old after SIGCONT")
    assert pids(project) == before
    with MessageQueue.from_team(project.team) as q:
        assert q.notifications() == []
    assert len(paused) == len(cycles), paused
    assert all(PAUSE - 1 <= s <= PAUSE + 5 for s in seconds), seconds
    assert all(e["agent"] is None for e in paused)


def test_an_agent_frozen_across_the_pause_is_still_found_hung_in_the_usual_time(project,
                                                                           reliability):
    before = boot(project)
    supervisord, watchdog = project.supervisord_pid(), before["watchdog"]
    kill(before["bob"], signal.SIGSTOP)
    try:
        pause(supervisord, watchdog=watchdog)
        resumed = time.monotonic()
        wait_until(lambda: pids(project)["bob"] != before["bob"], 30, 0.2,
                   "the frozen agent to be restarted")
        took = time.monotonic() - resumed
    finally:
        kill(before["bob"], signal.SIGCONT)
    [hung] = [e for e in journal(project, "hung") if e["agent"] == "bob"]
    reliability("an agent frozen across a paused supervisord and watchdog", "3 idle agents",
                f"SIGSTOP of 1 agent, then of supervisord and the watchdog for {PAUSE + 3} s",
                0, "0", f"the frozen agent found hung at {hung['detail']['age']}s of watched "
                f"silence (2 × stale_after = {2 * STALE_AFTER} s), restarted {took:.1f}s after "
                f"SIGCONT; the others kept their PIDs")
    assert 2 * STALE_AFTER <= hung["detail"]["age"] <= 2 * STALE_AFTER + 2  # (rounded)
    print(f"hung at {hung['detail']['age']}s of watched silence, restarted {took:.1f}s after SIGCONT")
    assert took <= 2 * STALE_AFTER + 1 + 1 + 4  # + the stop (1 s), the backoff (1 s), slack
    now = pids(project)
    assert (now["ann"], now["cy"], now["watchdog"]) == (before["ann"], before["cy"], watchdog)
    assert [e["agent"] for e in journal(project, "hung")] == ["bob"]
    assert len(journal(project, "watchdog_paused")) == 1
