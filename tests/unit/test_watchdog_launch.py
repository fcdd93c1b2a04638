"""The watchdog's launch: groups in priority order, each once the previous one is ready.

Against a fake supervisord, a fake clock and a real SQLite queue (tests/watchdog_rig.py);
nothing here sleeps for real or starts a process.
"""
from __future__ import annotations

import json

import pytest

from coffee_team.heartbeat import heartbeat_path
from coffee_team.watchdog import launch as watchdog_launch
from tests import fakes
from tests.watchdog_rig import FakeAgents, LAUNCH_ORDER
from tests.watchdog_rig import make_rig, rig  # noqa: F401 (fixtures)


# --- launch ----------------------------------------------------------------------------------

def ready_and_starts(rig):
    """("start", name) and ("ready", name) in the order they happened."""
    return [("start" if c[0] == "startProcess" else "ready", c[1]) for c in rig.rpc.calls
            if c[0] in ("startProcess", "ready")]


def test_launch_starts_each_group_only_once_the_previous_one_is_ready(rig):
    groups = rig.wd.launch_team()
    assert groups == LAUNCH_ORDER
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]
    assert all(c[2] is False for c in rig.rpc.method_calls("startProcess"))  # wait=False
    order = ready_and_starts(rig)
    for index, group in enumerate(LAUNCH_ORDER[1:], start=1):
        first_start = min(order.index(("start", n)) for n in group)
        for earlier in LAUNCH_ORDER[index - 1]:
            assert order.index(("ready", earlier)) < first_start, order
    for name in rig.team.names:  # nobody is ready before it was started
        assert order.index(("start", name)) < order.index(("ready", name))
    assert set(rig.rpc.states.values()) == {"RUNNING"}
    assert [e["agent"] for e in rig.events(kind="launched")] == rig.rpc.started()
    ready_events = rig.events(kind="group_ready")
    assert [e["detail"]["priority"] for e in ready_events] == [1, 2, 3, 4]
    assert ready_events[2]["detail"]["agents"] == ["assistant", "project_manager"]
    assert rig.agents.opened == rig.agents.closed == 1
    assert "not ready" not in rig.stderr.getvalue()


def test_launch_moves_on_as_soon_as_a_group_is_ready(rig):
    """A poke is answered at once: the whole boot takes one agent start-up per group, not
    start_seconds plus a poll per group."""
    t0 = rig.clock()
    rig.wd.launch_team()
    assert rig.clock() - t0 == pytest.approx(len(LAUNCH_ORDER) * FakeAgents.STEP)
    assert not rig.rpc.method_calls("getAllProcessInfo")  # no poll was needed
    assert not rig.rpc.method_calls("getProcessInfo")


def test_launch_finds_a_ready_agent_whose_poke_was_lost(rig):
    rig.agents.silent = {"code_developer"}  # writes its heartbeat, the poke never arrives
    rig.wd.launch_team()
    order = ready_and_starts(rig)
    assert order.index(("ready", "code_developer")) < order.index(("start", "assistant"))
    waited = {e["detail"]["priority"]: e["detail"]["waited"] for e in rig.events(kind="group_ready")}
    assert watchdog_launch.READY_RECHECK <= waited[2] <= watchdog_launch.READY_RECHECK + FakeAgents.STEP
    assert waited[1] == waited[3] == FakeAgents.STEP


def test_launch_ignores_a_heartbeat_left_by_an_earlier_instance(rig):
    path = heartbeat_path(rig.team.status_dir, "architect")
    path.write_text(json.dumps({"agent": "architect", "started_at": rig.clock() - 60,
                                "last_heartbeat": rig.clock() - 5}))
    rig.agents.never_ready = {"architect"}
    rig.wd.launch_team()
    assert rig.events(kind="group_not_ready")[-1]["detail"]["not_ready"] == ["architect"]


def test_launch_waits_a_bounded_time_for_an_agent_that_never_gets_ready(rig):
    rig.agents.never_ready = {"assistant"}  # RUNNING, but stuck before its first heartbeat
    t0 = rig.clock()
    rig.wd.launch_team()
    window = rig.team.settings.start_seconds + watchdog_launch.READY_TIMEOUT
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]  # the team still boots
    order = ready_and_starts(rig)
    assert ("ready", "assistant") not in order
    assert order.index(("ready", "project_manager")) < order.index(("start", "code_searcher"))
    assert rig.clock() - t0 == pytest.approx(window + 3 * FakeAgents.STEP)
    (timed_out,) = rig.events(kind="group_not_ready")
    assert timed_out["detail"] == {"priority": 3, "not_ready": ["assistant"],
                                   "waited": pytest.approx(window),
                                   "asked_at": pytest.approx(t0 + 2 * FakeAgents.STEP),
                                   "seen_at": pytest.approx(t0 + 2 * FakeAgents.STEP + window)}
    lines = [line for line in rig.stderr.getvalue().splitlines() if "not ready" in line]
    assert len(lines) == 1
    assert "priority 3 not ready after 16s: assistant" in lines[0]


def test_launch_times_a_group_from_its_spawn_not_from_the_request(rig):
    """supervisord forks a group's programs one after the other in its one thread: on a loaded
    machine fifty of them took 13 s. The window is the agents' own, from the group's spawn:
    a slow spawn alone never times a group out (its ready agents are not taken for stuck)."""
    window = rig.team.settings.start_seconds + watchdog_launch.READY_TIMEOUT
    multicall = rig.rpc.multicall

    def slow_spawn(calls):
        answers = multicall(calls)
        if calls[0]["methodName"] == "supervisor.startProcess":
            rig.clock.advance(window + 1)  # longer than the whole window
        return answers

    rig.rpc.multicall = slow_spawn
    rig.wd.launch_team()
    assert not rig.events(kind="group_not_ready")
    assert "not ready" not in rig.stderr.getvalue()
    ready = rig.events(kind="group_ready")
    assert [e["detail"]["priority"] for e in ready] == [1, 2, 3, 4]
    for e in ready:  # asked, then the spawn, then one agent start-up
        assert e["detail"]["waited"] == pytest.approx(window + 1 + FakeAgents.STEP)
        assert e["detail"]["seen_at"] - e["detail"]["asked_at"] == \
            pytest.approx(e["detail"]["waited"])
    order = ready_and_starts(rig)
    for index, group in enumerate(LAUNCH_ORDER[1:], start=1):  # the order still holds
        first_start = min(order.index(("start", n)) for n in group)
        assert all(order.index(("ready", n)) < first_start for n in LAUNCH_ORDER[index - 1])


def test_launch_waits_at_most_the_window_per_group_when_nothing_gets_ready(rig):
    rig.rpc.auto_settle = False  # nothing ever reaches RUNNING
    t0 = rig.clock()
    rig.wd.launch_team()
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]
    window = rig.team.settings.start_seconds + watchdog_launch.READY_TIMEOUT
    assert rig.clock() - t0 == pytest.approx(len(LAUNCH_ORDER) * window)
    assert rig.stderr.getvalue().count("not ready after") == 4
    # supervisord's states were re-read on the recheck cadence, not in a tight loop
    polls = [c for c in rig.rpc.method_calls("multicall")
             if c[1][0] == "supervisor.getProcessInfo"]
    assert polls and len(polls) <= len(LAUNCH_ORDER) * (window / watchdog_launch.READY_RECHECK + 1)
    # only the agents still awaited are asked about, never every program supervisord runs
    assert not rig.rpc.method_calls("getAllProcessInfo")
    assert {len(c[1]) for c in polls} <= {len(g) for g in LAUNCH_ORDER}


def test_launch_spawns_each_group_in_one_round_trip(rig):
    rig.wd.launch_team()
    multicalls = rig.rpc.method_calls("multicall")
    assert [c[1] for c in multicalls] == [["supervisor.startProcess"] * len(g)
                                          for g in LAUNCH_ORDER]


def test_launch_carries_on_when_supervisord_does_not_answer_a_group_start(rig):
    rig.rpc.fail("multicall", ConnectionRefusedError(111, "Connection refused"))
    t0 = rig.clock()
    rig.wd.launch_team()
    failed = rig.events(kind="start_failed")
    assert [e["agent"] for e in failed] == ["architect"]
    assert "Connection refused" in failed[0]["detail"]["error"]
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER[1:] for n in g]
    assert rig.clock() - t0 == pytest.approx((len(LAUNCH_ORDER) - 1) * FakeAgents.STEP)


def test_launch_via_supervisor_running_event(rig):
    rig.wd.handle(fakes.supervisor_running())
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]


def test_launch_members_of_one_group_start_together(rig):
    rig.wd.launch_team()
    order = ready_and_starts(rig)
    i = order.index(("start", "assistant"))
    assert order[i + 1] == ("start", "project_manager")  # no wait between members of one group


def test_launch_only_is_respected(make_rig):
    rig = make_rig(launch_only=("code_searcher", "architect"))
    assert rig.wd.launch_team() == [["architect"], ["code_searcher"]]
    assert rig.rpc.started() == ["architect", "code_searcher"]


def test_launch_skips_given_up_and_pending_restart_agents(rig):
    rig.queue.save_restart_state("code_developer", given_up=True, attempts=3)
    rig.queue.save_restart_state("assistant", attempts=1, next_restart_at=rig.clock() + 30)
    rig.wd.handle(fakes.supervisor_running())
    assert rig.rpc.started() == ["architect", "project_manager", "code_searcher"]


def test_launch_of_nothing_opens_no_ready_socket(make_rig):
    rig = make_rig(launch_only=("nobody",))
    assert rig.wd.launch_team() == []
    assert rig.agents.opened == 0


def test_launch_carries_on_after_already_started(rig):
    rig.rpc.set_state("code_developer", "RUNNING")
    rig.agents.announced["code_developer"] = 0
    rig.agents.never_ready = {"code_developer"}  # an instance from before: no new heartbeat
    rig.wd.launch_team()
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]  # all attempted
    failed = rig.events(kind="start_failed")
    assert [e["agent"] for e in failed] == ["code_developer"]
    assert "ALREADY_STARTED" in failed[0]["detail"]["error"]
    assert "start code_developer failed" in rig.stderr.getvalue()
    assert [e["agent"] for e in rig.events(kind="launched")] == \
        ["architect", "assistant", "project_manager", "code_searcher"]
    assert not rig.events(kind="group_not_ready")  # it already runs: nothing to wait for


def test_launch_does_not_wait_for_an_agent_that_failed_to_start(rig):
    original = rig.rpc.startProcess

    def start_then_fatal(name, wait=True):
        result = original(name, wait)
        if name == "architect":
            rig.rpc.set_state(name, "FATAL")
        return result

    rig.rpc.startProcess = start_then_fatal
    t0 = rig.clock()
    rig.wd.launch_team()
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]
    assert rig.rpc.started_while["code_developer"]["architect"] == "FATAL"
    assert "not ready" not in rig.stderr.getvalue()
    # FATAL is seen on the first recheck of supervisord's states
    assert rig.clock() - t0 <= watchdog_launch.READY_RECHECK + FakeAgents.STEP \
        + (len(LAUNCH_ORDER) - 1) * FakeAgents.STEP + 1e-9
