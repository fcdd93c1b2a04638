"""The watchdog listener against a fake supervisord, a fake clock and a real SQLite queue.

Superlance style: the protocol runs over StringIO, the RPC proxy is tests.fakes.FakeSupervisor,
and time only moves when a test (or the stand-in ready inbox the launch waits on) advances it.
Nothing here sleeps for real or starts a process.
"""
from __future__ import annotations

import io
import json
import re
import sqlite3
import xmlrpc.client
from types import SimpleNamespace

import pytest
from supervisor import events as sv_events
from supervisor.states import ProcessStates
from supervisor.xmlrpc import Faults

from coffee_team.heartbeat import heartbeat_path
from coffee_team.queue import MessageQueue
from coffee_team.team import parse_team
from coffee_team.watchdog import launch as watchdog_launch
from coffee_team.watchdog import listener as watchdog_module
from coffee_team.watchdog.health import Usage
from coffee_team.watchdog.protocol import ListenerProtocol
from coffee_team.watchdog.listener import Watchdog
from tests import fakes
from tests.fakes import FakeClock, FakeSampler, FakeSupervisor

AGENTS = {
    "architect": {"priority": 1},
    "code_developer": {"priority": 2},
    "assistant": {"priority": 3},
    "project_manager": {"priority": 3},
    "code_searcher": {"priority": 4},
}
LAUNCH_ORDER = [["architect"], ["code_developer"], ["assistant", "project_manager"],
                ["code_searcher"]]
NO_HEALTH = 10**6  # health_check_interval that keeps health checks out of restart tests
BASE = 60.0


def make_team(tmp_path, agents=None, **settings):
    team_doc = {"restart_backoff": BASE, "max_restart_attempts": 3, "restart_reset_after": 600,
                "health_check_interval": NO_HEALTH, "heartbeat_interval": 30,
                "heartbeat_stale_after": 300, "start_seconds": 1, **settings}
    team = parse_team({"team": team_doc, "agents": agents or AGENTS}, "test",
                      path=tmp_path / "data" / "team.yaml")
    team.status_dir.mkdir(parents=True, exist_ok=True)
    return team


class FakeAgents:
    """Stands in for heartbeat.ReadyInbox and for the agents behind it: ``wait`` lets time pass
    (started programs reach RUNNING) and each new instance that is RUNNING writes its first
    heartbeat and, unless it is ``silent``, pokes; ``never_ready`` ones do neither (stuck on
    a lock). Each readiness is recorded in ``rpc.calls`` as ("ready", name), so the order of
    starts and readiness can be read in one list."""

    STEP = 0.1  # seconds an agent takes to get ready here

    def __init__(self, rig):
        self.rig = rig
        self.announced: dict[str, int] = {}  # name -> its startProcess count when it got ready
        self.never_ready: set[str] = set()
        self.silent: set[str] = set()
        self.opened = self.closed = 0

    def __call__(self):
        self.opened += 1
        return self

    def wait(self, timeout):
        rpc = self.rig.rpc
        rpc.sleep(min(timeout, self.STEP))
        poked = set()
        for name, state in rpc.states.items():
            starts = rpc.started().count(name)
            if state != "RUNNING" or name in self.never_ready \
                    or self.announced.get(name, 0) >= starts:
                continue
            self.announced[name] = starts
            now = self.rig.clock()
            heartbeat_path(self.rig.team.status_dir, name).write_text(
                json.dumps({"agent": name, "started_at": now, "last_heartbeat": now}))
            rpc.calls.append(("ready", name))
            if name not in self.silent:
                poked.add(name)
        return poked

    def close(self):
        self.closed += 1


class Rig:
    """One watchdog wired to fakes; ``new_watchdog()`` simulates a restarted listener."""

    def __init__(self, tmp_path, agents=None, stdin="", launch_only=(), state="STOPPED",
                 max_queue_size=1000, **settings):
        self.tmp_path = tmp_path
        self.team = make_team(tmp_path, agents, **settings)
        self.clock = FakeClock()
        self.rpc = FakeSupervisor(self.team.names, state=state, clock=self.clock)
        self.db_path = str(tmp_path / "q.db")
        self.max_queue_size = max_queue_size
        self.launch_only = launch_only
        self.queues = []
        self.queue = self.open_queue()
        self.stdin_text = stdin
        self.agents = FakeAgents(self)
        self.wd = self.new_watchdog(stdin)

    def open_queue(self):
        queue = MessageQueue(self.db_path, agents=self.team.names,
                             handles={a.name: a.handles for a in self.team.agents},
                             max_queue_size=self.max_queue_size, clock=self.clock)
        self.queues.append(queue)
        return queue

    def new_watchdog(self, stdin="", queue=None):
        self.stdout, self.stderr = io.StringIO(), io.StringIO()
        protocol = ListenerProtocol(io.StringIO(stdin), self.stdout, self.stderr, clock=self.clock)
        wd = Watchdog(self.team, protocol, self.rpc, queue or self.queue, clock=self.clock,
                      launch_only=self.launch_only, ready_inbox=self.agents)
        wd.sampler = FakeSampler()
        return wd

    def close(self):
        for queue in self.queues:
            queue.close()

    # --- driving ---------------------------------------------------------------------------
    def bring_up(self, name, after=1.0):
        """The program is RUNNING and the watchdog saw the event."""
        self.clock.advance(after)
        self.rpc.set_state(name, "RUNNING")
        self.wd.handle(fakes.running(name, pid=self.rpc.pids[name]))

    def crash(self, name, expected=False):
        self.rpc.set_state(name, "EXITED")
        self.wd.handle(fakes.exited(name, expected=expected))

    def restart_state(self, name):
        return self.queue.restart_state(name)

    def due_in(self, name):
        due = self.restart_state(name)["next_restart_at"]
        return None if due is None else due - self.clock()

    def notifications(self, level=None):
        return [n for n in self.queue.notifications() if level is None or n["level"] == level]

    def events(self, name=None, kind=None):
        return [e for e in self.queue.events(agent=name, limit=10000)
                if kind is None or e["kind"] == kind]

    def tasks(self, agent=None):
        return self.queue.list_tasks(agent=agent, limit=1000)

    def write_heartbeat(self, name, at):
        path = heartbeat_path(self.team.status_dir, name)
        path.write_text(json.dumps({"agent": name, "last_heartbeat": at}))


@pytest.fixture
def make_rig(tmp_path):
    rigs = []

    def build(**kwargs):
        rig = Rig(tmp_path / f"r{len(rigs)}", **kwargs)
        rigs.append(rig)
        return rig

    yield build
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig):
    return make_rig()


# --- the fakes speak supervisord's formats ---------------------------------------------------

def test_event_text_matches_supervisors_own_exited_event():
    process = SimpleNamespace(config=SimpleNamespace(name="code_searcher"), pid=123,
                              group=SimpleNamespace(config=SimpleNamespace(name="code_searcher")))
    payload = sv_events.ProcessStateExitedEvent(process, ProcessStates.RUNNING,
                                                expected=False).payload()
    text = fakes.process_event_text("PROCESS_STATE_EXITED", "code_searcher", "RUNNING", serial=7,
                                    expected=0, pid=123)
    header = ("ver:3.0 server:supervisor serial:7 pool:watchdog poolserial:7 "
              f"eventname:PROCESS_STATE_EXITED len:{len(payload)}\n")
    assert text == header + payload
    assert payload == "processname:code_searcher groupname:code_searcher from_state:RUNNING " \
                      "expected:0 pid:123"
    event = fakes.parse(text)
    assert event.eventname == "PROCESS_STATE_EXITED"
    assert event.payload_headers["expected"] == "0"


def test_supervisor_running_event_has_an_empty_payload():
    text = fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING", serial=3)
    assert text.endswith("eventname:SUPERVISOR_STATE_CHANGE_RUNNING len:0\n")


def test_fake_supervisor_faults_like_supervisord():
    rpc = FakeSupervisor(["a"], state="RUNNING")
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.supervisor.startProcess("a", False)
    assert info.value.faultCode == Faults.ALREADY_STARTED == 60
    assert info.value.faultString == "ALREADY_STARTED: a"
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.supervisor.getProcessInfo("ghost")
    assert info.value.faultCode == Faults.BAD_NAME
    rpc.set_state("a", "EXITED")
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.supervisor.stopProcess("a", False)
    assert info.value.faultCode == Faults.NOT_RUNNING


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
                                   "waited": pytest.approx(window)}
    lines = [line for line in rig.stderr.getvalue().splitlines() if "not ready" in line]
    assert len(lines) == 1
    assert "priority 3 not ready after 16s: assistant" in lines[0]


def test_launch_waits_at_most_the_window_per_group_when_nothing_gets_ready(rig):
    rig.rpc.auto_settle = False  # nothing ever reaches RUNNING
    t0 = rig.clock()
    rig.wd.launch_team()
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]
    window = rig.team.settings.start_seconds + watchdog_launch.READY_TIMEOUT
    assert rig.clock() - t0 == pytest.approx(len(LAUNCH_ORDER) * window)
    assert rig.stderr.getvalue().count("not ready after") == 4
    # supervisord's states were re-read on the recheck cadence, not in a tight loop
    polls = len(rig.rpc.method_calls("getAllProcessInfo"))
    assert polls <= len(LAUNCH_ORDER) * (window / watchdog_launch.READY_RECHECK + 1)


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


# --- crash, backoff, give-up -----------------------------------------------------------------

def test_crash_schedules_restart_after_base_delay_without_starting_yet(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    state = rig.restart_state("code_searcher")
    assert state["attempts"] == 1 and state["given_up"] is False
    assert rig.due_in("code_searcher") == BASE
    assert rig.rpc.started() == []
    scheduled = rig.events("code_searcher", "restart_scheduled")
    assert [(e["detail"]["delay"], e["detail"]["attempt"]) for e in scheduled] == [(BASE, 1)]

    rig.clock.advance(BASE - 0.01)
    rig.wd.on_timer()
    assert rig.rpc.started() == []

    rig.clock.advance(0.01)
    rig.wd.on_timer()
    assert rig.rpc.method_calls("startProcess") == [("startProcess", "code_searcher", False)]
    assert rig.restart_state("code_searcher")["next_restart_at"] is None
    restarted = rig.events("code_searcher", "restarted")
    assert len(restarted) == 1 and restarted[0]["detail"]["attempt"] == 1

    rig.clock.advance(BASE * 10)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_searcher"]  # fired once


def crash_and_restart(rig, name, expected_delay):
    rig.crash(name)
    assert rig.due_in(name) == expected_delay
    rig.clock.advance(expected_delay)
    rig.wd.on_timer()
    assert rig.rpc.states[name] == "STARTING"
    rig.bring_up(name)


def test_backoff_doubles_then_gives_up_once_on_the_fourth_crash(rig):
    rig.bring_up("code_searcher")
    for delay in (BASE, 2 * BASE, 4 * BASE):
        crash_and_restart(rig, "code_searcher", delay)
    assert rig.rpc.started() == ["code_searcher"] * 3
    assert rig.notifications() == []

    rig.crash("code_searcher")
    state = rig.restart_state("code_searcher")
    assert state["given_up"] is True and state["next_restart_at"] is None

    critical = rig.notifications("CRITICAL")
    assert len(critical) == 1 and len(rig.notifications()) == 1
    note = critical[0]
    assert note["agent"] == "code_searcher" and note["sound"] is False
    assert note["title"] == "code_searcher given up"
    assert "max restarts (3)" in note["message"] and "NOT restarting" in note["message"]

    tasks = rig.tasks()
    assert len(tasks) == 1
    task = tasks[0]
    assert (task["sender"], task["recipient"], task["type"], task["priority"], task["status"]) == \
        ("watchdog", "project_manager", "agent_failed", 1, "pending")
    assert task["content"]["agent"] == "code_searcher"
    assert "max restarts" in task["content"]["reason"]
    assert len(rig.events("code_searcher", "given_up")) == 1

    # nothing more happens for this agent: no restarts, no repeated alarms
    rig.crash("code_searcher")
    rig.wd.handle(fakes.fatal("code_searcher"))
    rig.clock.advance(10**5)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_searcher"] * 3
    assert len(rig.notifications()) == 1 and len(rig.tasks()) == 1
    assert rig.wd.seconds_to_next_timer() == watchdog_module.MAX_IDLE_WAIT


def test_restart_attempt_numbers_and_delays_are_journaled(rig):
    rig.bring_up("code_searcher")
    for delay in (BASE, 2 * BASE, 4 * BASE):
        crash_and_restart(rig, "code_searcher", delay)
    scheduled = [(e["detail"]["attempt"], e["detail"]["delay"])
                 for e in rig.events("code_searcher", "restart_scheduled")]
    assert scheduled == [(1, BASE), (2, 2 * BASE), (3, 4 * BASE)]
    assert [e["detail"]["late_by"] for e in rig.events("code_searcher", "restarted")] == [0, 0, 0]


def test_max_restart_attempts_zero_gives_up_on_first_crash(make_rig):
    rig = make_rig(max_restart_attempts=0)
    rig.bring_up("architect")
    rig.crash("architect")
    assert rig.restart_state("architect")["given_up"] is True
    assert len(rig.notifications("CRITICAL")) == 1
    assert [t["type"] for t in rig.tasks("project_manager")] == ["agent_failed"]


@pytest.mark.parametrize("how", ["crashes", "fatal"])
def test_project_manager_given_up_gets_a_notification_but_no_task(make_rig, how):
    rig = make_rig(max_restart_attempts=0)
    if how == "crashes":
        rig.bring_up("project_manager")
        rig.crash("project_manager")
    else:
        rig.rpc.set_state("project_manager", "FATAL")
        rig.wd.handle(fakes.fatal("project_manager"))
    assert rig.restart_state("project_manager")["given_up"] is True
    critical = rig.notifications("CRITICAL")
    assert [(n["agent"], n["sound"]) for n in critical] == [("project_manager", False)]
    assert rig.tasks() == []


def test_team_without_project_manager_gives_up_with_notification_only(make_rig):
    agents = {k: v for k, v in AGENTS.items() if k != "project_manager"}
    rig = make_rig(agents=agents)
    rig.wd.handle(fakes.fatal("code_searcher"))
    assert len(rig.notifications("CRITICAL")) == 1
    assert rig.tasks() == []


def test_full_project_manager_queue_does_not_lose_the_notification(make_rig):
    rig = make_rig(max_queue_size=1)
    rig.queue.send("architect", "project_manager", "plan", {})
    rig.wd.handle(fakes.fatal("code_searcher"))
    assert len(rig.notifications("CRITICAL")) == 1
    assert [t["type"] for t in rig.tasks("project_manager")] == ["plan"]
    assert "agent_failed message not sent" in rig.stderr.getvalue()


def test_restart_delay_is_scheduled_from_the_crash_time_and_wakes_the_loop(make_rig):
    rig = make_rig(restart_backoff=0.5)
    rig.bring_up("architect")
    assert rig.wd.seconds_to_next_timer() == watchdog_module.MAX_IDLE_WAIT
    rig.crash("architect")
    assert rig.wd.seconds_to_next_timer() == 0.5
    rig.clock.advance(2)
    assert rig.wd.seconds_to_next_timer() == 0.0  # overdue: do not wait
    rig.wd.on_timer()
    assert rig.rpc.started() == ["architect"]
    assert rig.events("architect", "restarted")[0]["detail"]["late_by"] == 1.5


def test_two_agents_back_off_independently(rig):
    rig.bring_up("architect")
    rig.bring_up("code_searcher")
    crash_and_restart(rig, "architect", BASE)
    rig.crash("architect")                # 2nd crash: 2x
    rig.crash("code_searcher")            # 1st crash: 1x
    assert rig.due_in("architect") == 2 * BASE
    assert rig.due_in("code_searcher") == BASE
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["architect", "code_searcher"]
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["architect", "code_searcher", "architect"]


def test_running_again_before_the_due_time_cancels_the_pending_restart(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.bring_up("code_searcher", after=5)  # e.g. a human ran `supervisorctl start`
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    assert rig.restart_state("code_searcher")["attempts"] == 1  # the count still stands


# --- not crashes -----------------------------------------------------------------------------

def test_expected_exit_is_not_a_crash(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher", expected=True)
    state = rig.restart_state("code_searcher")
    assert state["attempts"] == 0 and state["next_restart_at"] is None
    assert rig.events("code_searcher", "crash") == []
    exited = rig.events("code_searcher", "exited")
    assert exited[0]["detail"]["expected"] is True
    rig.clock.advance(BASE * 10)
    rig.wd.on_timer()
    assert rig.rpc.started() == [] and rig.notifications() == []


def test_stopped_is_not_a_crash(rig):
    rig.bring_up("code_searcher")
    rig.rpc.set_state("code_searcher", "STOPPED")
    rig.wd.handle(fakes.stopped("code_searcher"))
    state = rig.restart_state("code_searcher")
    assert state["attempts"] == 0 and state["next_restart_at"] is None
    assert [e["kind"] for e in rig.events("code_searcher")] == ["running", "stopped"]
    rig.clock.advance(BASE * 10)
    rig.wd.on_timer()
    assert rig.rpc.started() == [] and rig.notifications() == []


def test_backoff_event_is_left_to_supervisord(rig):
    rig.rpc.set_state("code_searcher", "BACKOFF")
    rig.wd.handle(fakes.backoff("code_searcher"))
    assert rig.restart_state("code_searcher")["attempts"] == 0
    assert rig.rpc.method_calls("getProcessInfo") == []  # no requeue while supervisor retries
    assert [e["kind"] for e in rig.events("code_searcher")] == ["backoff"]


def test_exit_from_a_non_running_state_is_not_a_crash(rig):
    rig.rpc.set_state("code_searcher", "EXITED")
    rig.wd.handle(fakes.exited("code_searcher", from_state="STARTING"))
    assert rig.restart_state("code_searcher")["next_restart_at"] is None


@pytest.mark.parametrize("payload", [
    dict(processname="watchdog", groupname="watchdog"),          # the listener itself
    dict(processname="stranger", groupname="stranger"),          # not a team agent
    dict(processname="code_searcher", groupname="other_group"),  # same name, other group
])
def test_events_of_other_programs_are_ignored(rig, payload):
    rig.wd.handle(fakes.event("PROCESS_STATE_EXITED", **payload, from_state="RUNNING",
                              expected=0, pid=1))
    assert rig.rpc.calls == []
    assert rig.events() == []
    assert rig.restart_state("code_searcher")["attempts"] == 0


def test_other_event_types_are_ignored(rig):
    rig.wd.handle(fakes.event("TICK_5", when=1700000005))
    rig.wd.handle(fakes.event("SUPERVISOR_STATE_CHANGE_STOPPING"))
    assert rig.rpc.calls == [] and rig.events() == []


# --- FATAL -----------------------------------------------------------------------------------

def test_fatal_gives_up_at_once(rig):
    rig.rpc.set_state("code_developer", "FATAL")
    rig.wd.handle(fakes.fatal("code_developer"))
    state = rig.restart_state("code_developer")
    assert state["given_up"] is True and state["next_restart_at"] is None
    critical = rig.notifications("CRITICAL")
    assert len(critical) == 1 and critical[0]["sound"] is False
    assert "FATAL" in critical[0]["message"]
    assert [(t["type"], t["priority"]) for t in rig.tasks("project_manager")] == \
        [("agent_failed", 1)]
    rig.wd.handle(fakes.fatal("code_developer"))
    assert len(rig.notifications()) == 1 and len(rig.tasks()) == 1
    rig.clock.advance(10**5)
    rig.wd.on_timer()
    assert rig.rpc.started() == []


def test_fatal_during_a_pending_backoff_cancels_it(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.wd.handle(fakes.fatal("code_searcher"))
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    assert len(rig.notifications("CRITICAL")) == 1


# --- reset after a long enough run -----------------------------------------------------------

def test_crash_after_running_reset_after_seconds_starts_over_at_1x(rig):
    rig.bring_up("code_searcher")
    crash_and_restart(rig, "code_searcher", BASE)
    crash_and_restart(rig, "code_searcher", 2 * BASE)
    rig.clock.advance(rig.team.settings.restart_reset_after)  # ran exactly reset_after
    rig.crash("code_searcher")
    assert rig.due_in("code_searcher") == BASE
    assert rig.restart_state("code_searcher")["attempts"] == 1


def test_crash_just_before_reset_after_keeps_counting(rig):
    rig.bring_up("code_searcher")
    crash_and_restart(rig, "code_searcher", BASE)
    rig.clock.advance(rig.team.settings.restart_reset_after - 1.0)  # bring_up added 1 s
    rig.crash("code_searcher")
    assert rig.due_in("code_searcher") == 2 * BASE  # ran 599 s: not long enough


def test_an_agent_that_runs_long_between_crashes_is_never_given_up(rig):
    rig.bring_up("code_searcher")
    for _ in range(8):
        rig.clock.advance(rig.team.settings.restart_reset_after)
        crash_and_restart(rig, "code_searcher", BASE)
    assert rig.notifications() == []
    assert rig.restart_state("code_searcher")["given_up"] is False


# --- restart state survives the listener ----------------------------------------------------

def test_pending_restart_fires_from_a_new_watchdog_on_the_same_database(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    due_at = rig.restart_state("code_searcher")["next_restart_at"]

    # supervisord kills and respawns the listener: new process, new connection, new memory
    rig.queue.close()
    rig.queue = rig.open_queue()
    rig.wd = rig.new_watchdog()

    rig.clock.advance(BASE / 2)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    rig.clock.set(due_at)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_searcher"]

    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    assert rig.due_in("code_searcher") == 2 * BASE  # the count survived too


def test_given_up_survives_a_new_watchdog(rig):
    rig.wd.handle(fakes.fatal("code_searcher"))
    rig.queue.close()
    rig.queue = rig.open_queue()
    rig.wd = rig.new_watchdog()
    rig.wd.handle(fakes.supervisor_running())
    assert "code_searcher" not in rig.rpc.started()
    rig.crash("code_searcher")
    assert len(rig.notifications("CRITICAL")) == 1


def test_new_watchdog_launch_leaves_a_pending_restart_to_the_backoff(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.queue.close()
    rig.queue = rig.open_queue()
    rig.wd = rig.new_watchdog()
    rig.wd.handle(fakes.supervisor_running())
    assert "code_searcher" not in rig.rpc.started()
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started().count("code_searcher") == 1


# --- requeue ---------------------------------------------------------------------------------

def claimed_task(rig, agent="code_developer"):
    task_id = rig.queue.send("architect", agent, "implement_priority", {"n": 1})
    [task] = rig.queue.claim(agent)
    assert task.id == task_id
    return task_id


def task_status(rig, task_id):
    return {t["id"]: t["status"] for t in rig.tasks()}[task_id]


@pytest.mark.parametrize("dead_state, event", [
    ("EXITED", lambda n: fakes.exited(n)),
    ("EXITED", lambda n: fakes.exited(n, expected=True)),
    ("STOPPED", fakes.stopped),
    ("FATAL", fakes.fatal),
])
def test_dead_agents_in_progress_task_goes_back_to_pending(rig, dead_state, event):
    rig.bring_up("code_developer")
    task_id = claimed_task(rig)
    rig.rpc.set_state("code_developer", dead_state)
    rig.wd.handle(event("code_developer"))
    assert task_status(rig, task_id) == "pending"
    requeued = rig.events("code_developer", "requeued")
    assert [e["detail"]["count"] for e in requeued] == [1]
    assert "requeued 1 task(s) of code_developer" in rig.stderr.getvalue()


@pytest.mark.parametrize("live_state", ["RUNNING", "STARTING"])
def test_task_of_an_agent_already_back_up_is_not_requeued(rig, live_state):
    rig.bring_up("code_developer")
    task_id = claimed_task(rig)
    rig.rpc.set_state("code_developer", live_state)  # a new instance is up before we looked
    rig.wd.handle(fakes.exited("code_developer"))
    assert task_status(rig, task_id) == "in_progress"
    assert rig.events("code_developer", "requeued") == []
    assert rig.due_in("code_developer") == BASE  # the crash itself still counts


def test_requeue_only_touches_the_dead_agents_tasks(rig):
    mine = claimed_task(rig, "code_developer")
    theirs = claimed_task(rig, "architect")
    rig.crash("code_developer")
    assert task_status(rig, mine) == "pending"
    assert task_status(rig, theirs) == "in_progress"


def test_backoff_does_not_requeue(rig):
    task_id = claimed_task(rig)
    rig.rpc.set_state("code_developer", "BACKOFF")
    rig.wd.handle(fakes.backoff("code_developer"))
    assert task_status(rig, task_id) == "in_progress"


# --- health checks ---------------------------------------------------------------------------

HEALTH = dict(health_check_interval=30, heartbeat_stale_after=300, heartbeat_interval=30)


@pytest.fixture
def health_rig(make_rig):
    rig = make_rig(**HEALTH)
    rig.rpc.set_state("code_developer", "RUNNING")
    return rig


def check(rig):
    """Advance to the next health check and run the timers."""
    rig.clock.advance(rig.team.settings.health_check_interval)
    rig.wd.on_timer()


def warnings(rig):
    return [n["title"] for n in rig.notifications("WARNING")]


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
    rig.clock.advance(400 - 30)  # then silent: 400 s after that heartbeat, a new episode
    check(rig)
    assert warnings(rig)[1:] == ["⚠️ code_developer heartbeat stale (400s old)"]
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
    rig.write_heartbeat("code_developer", rig.clock() + 30 - 601)
    check(rig)                                   # hung: warn again and stop it
    assert warnings(rig) == ["⚠️ code_developer heartbeat stale (400s old)",
                             "⚠️ code_developer heartbeat stale (601s old)"]
    assert rig.rpc.method_calls("stopProcess") == [("stopProcess", "code_developer", False)]
    assert rig.restart_state("code_developer")["hang_restart"] is True
    hung = rig.events("code_developer", "hung")  # the status change and the action both log
    assert [e["detail"].get("age") for e in hung][:1] == [601.0]
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
    assert warnings(rig) == ["⚠️ code_developer heartbeat stale (10330s old)",
                             "⚠️ code_developer heartbeat stale (10630s old)"]


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


def test_a_heartbeat_is_read_at_once_when_the_clock_went_back(health_rig, monkeypatch):
    rig = health_rig
    rig.write_heartbeat("code_developer", rig.clock() + 30)
    check(rig)
    reads = count_heartbeat_reads(rig, monkeypatch)
    rig.clock.advance(-3600)
    rig.wd.on_timer()  # the health check too is due at once
    assert reads == [rig.clock()]


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


# --- the protocol loop -----------------------------------------------------------------------

TOKENS = re.compile(r"(READY\n|RESULT (\d+)\n(OK|FAIL))*")


def assert_only_tokens(stdout):
    assert TOKENS.fullmatch(stdout), repr(stdout)


def test_run_answers_each_event_and_exits_0_at_eof(make_rig):
    stdin = (fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING", serial=1)
             + fakes.process_event_text("PROCESS_STATE_EXITED", "code_searcher", "RUNNING",
                                        serial=2, expected=0))
    rig = make_rig()
    rig.wd = rig.new_watchdog(stdin)
    original_start = rig.rpc.startProcess

    def start_and_die(name, wait=True):  # code_searcher dies right after launch
        result = original_start(name, wait)
        if name == "code_searcher":
            rig.rpc.set_state(name, "EXITED")
        return result

    rig.rpc.startProcess = start_and_die
    assert rig.wd.run() == 0
    out = rig.stdout.getvalue()
    assert out == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
    assert_only_tokens(out)
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]
    assert rig.due_in("code_searcher") == BASE
    assert "stdin closed" in rig.stderr.getvalue()


def test_run_reports_ready_once_before_each_read(make_rig):
    rig = make_rig()
    reads = []

    def spy(timeout=None):
        out = rig.stdout.getvalue()
        reads.append(out.count("READY\n") - out.count("OK") - out.count("FAIL"))
        return original_read(timeout)

    stdin = "".join(fakes.event_text("TICK_5", serial=i, when=1700000000 + 5 * i)
                    for i in range(1, 4))
    rig.wd = rig.new_watchdog(stdin)
    original_read = rig.wd.protocol.read_event
    rig.wd.protocol.read_event = spy
    assert rig.wd.run() == 0
    assert reads == [1, 1, 1, 1]  # exactly one outstanding READY at every read (incl. EOF)
    assert rig.stdout.getvalue() == "READY\n" + "RESULT 2\nOKREADY\n" * 3


def test_malformed_event_gets_fail_and_the_loop_continues(make_rig):
    rig = make_rig()
    stdin = ("this is not a header\n"
             + fakes.process_event_text("PROCESS_STATE_EXITED", "architect", "RUNNING",
                                        expected=0))
    rig.rpc.set_state("architect", "EXITED")
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    out = rig.stdout.getvalue()
    assert out == "READY\nRESULT 4\nFAILREADY\nRESULT 2\nOKREADY\n"
    assert_only_tokens(out)
    assert "malformed event ignored" in rig.stderr.getvalue()
    assert rig.due_in("architect") == BASE


def test_truncated_last_event_gets_fail_then_eof(make_rig):
    rig = make_rig()
    text = fakes.process_event_text("PROCESS_STATE_EXITED", "architect", "RUNNING", expected=0)
    rig.wd = rig.new_watchdog(text[:-5])
    assert rig.wd.run() == 0
    assert rig.stdout.getvalue() == "READY\nRESULT 4\nFAILREADY\n"
    assert rig.restart_state("architect")["attempts"] == 0


def test_exception_while_handling_is_logged_and_still_answered_ok(make_rig, monkeypatch):
    rig = make_rig()
    stdin = (fakes.process_event_text("PROCESS_STATE_RUNNING", "architect", "STARTING", serial=1)
             + fakes.process_event_text("PROCESS_STATE_RUNNING", "code_developer", "STARTING",
                                        serial=2))
    real = rig.queue.record_event
    failures = [sqlite3.OperationalError("database is locked")]

    def record_event(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(rig.queue, "record_event", record_event)
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    out = rig.stdout.getvalue()
    assert out == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
    err = rig.stderr.getvalue()
    assert "error in PROCESS_STATE_RUNNING: OperationalError: database is locked" in err
    assert rig.restart_state("code_developer")["running_since"] == rig.clock()  # 2nd handled
    assert [e["agent"] for e in rig.events(kind="running")] == ["code_developer"]


def test_rpc_fault_while_handling_is_logged_and_still_answered_ok(make_rig):
    rig = make_rig()
    rig.rpc.set_state("architect", "EXITED")
    rig.rpc.fail("getProcessInfo", xmlrpc.client.Fault(Faults.FAILED, "FAILED: boom"))
    stdin = fakes.process_event_text("PROCESS_STATE_STOPPED", "architect", "STOPPING")
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    assert rig.stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    assert "FAILED: boom" in rig.stderr.getvalue()  # logged to stderr, never to stdout


def test_run_fires_due_restarts_between_events(make_rig):
    rig = make_rig()
    rig.queue.save_restart_state("architect", attempts=1, next_restart_at=rig.clock() - 1)
    rig.wd = rig.new_watchdog(fakes.event_text("TICK_5", when=1700000005))
    assert rig.wd.run() == 0
    assert rig.rpc.started() == ["architect"]
    assert_only_tokens(rig.stdout.getvalue())


def test_timer_errors_do_not_stop_the_loop(make_rig):
    rig = make_rig(health_check_interval=30)
    rig.rpc.set_state("architect", "RUNNING")
    rig.clock.advance(30)
    rig.rpc.fail("getAllProcessInfo", ConnectionRefusedError(111, "Connection refused"))
    rig.wd = rig.new_watchdog(fakes.event_text("TICK_5", when=1700000005))
    rig.clock.advance(30)
    assert rig.wd.run() == 0
    assert "error in timers: ConnectionRefusedError" in rig.stderr.getvalue()
    assert rig.stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"


# --- regressions: bugs found by these tests, now fixed -------------------------------------

def test_rpc_error_during_requeue_does_not_lose_the_crash(make_rig):
    rig = make_rig()
    rig.rpc.set_state("code_searcher", "EXITED")
    rig.rpc.fail("getProcessInfo", ConnectionRefusedError(111, "Connection refused"))
    stdin = fakes.process_event_text("PROCESS_STATE_EXITED", "code_searcher", "RUNNING",
                                     expected=0)
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    assert rig.due_in("code_searcher") == BASE


def test_unknown_program_does_not_abort_the_launch(make_rig):
    agents = {"ghost": {"priority": 0}, **AGENTS}
    rig = make_rig(agents=agents)
    del rig.rpc.states["ghost"]  # not in supervisord's config
    rig.wd = rig.new_watchdog(fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING"))
    assert rig.wd.run() == 0
    assert rig.rpc.started() == ["ghost"] + [n for g in LAUNCH_ORDER for n in g]


def test_transient_rpc_failure_at_restart_time_is_retried(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.rpc.fail("startProcess", ConnectionRefusedError(111, "Connection refused"))
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.states["code_searcher"] == "EXITED"  # the failed attempt
    rig.clock.advance(BASE * 8)
    rig.wd.on_timer()
    restarted = rig.rpc.states["code_searcher"] in ("STARTING", "RUNNING")
    assert restarted or rig.notifications("CRITICAL")


def test_transient_database_error_does_not_kill_the_loop(make_rig, monkeypatch):
    rig = make_rig()
    rig.wd = rig.new_watchdog(fakes.event_text("TICK_5", when=1700000005))
    real = rig.queue.restart_state
    outage = {"calls": 3}

    def flaky(agent):
        if outage["calls"]:
            outage["calls"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return real(agent)

    monkeypatch.setattr(rig.queue, "restart_state", flaky)
    assert rig.wd.run() == 0
    assert rig.stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"


def test_health_check_escalates_waiting_work(health_rig):
    rig = health_rig
    rig.queue.escalate_after = 60.0  # what MessageQueue.from_team takes from team.escalate_after
    task_id = rig.queue.send("cli", "code_developer", "t", priority=5)
    check(rig)  # 30 s: not yet
    assert rig.queue.get_task(task_id)["priority"] == 5
    check(rig)  # 60 s
    assert rig.queue.get_task(task_id)["priority"] == 4
    assert [n["title"] for n in rig.notifications("INFO")] == [
        f"task {task_id} (t) escalated"]
