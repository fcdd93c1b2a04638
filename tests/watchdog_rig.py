"""The watchdog listener's test rig: a fake supervisord, a fake clock and a real SQLite queue.

Superlance style: the protocol runs over StringIO, the RPC proxy is tests.fakes.FakeSupervisor,
and time only moves when a test (or the stand-in ready inbox the launch waits on) advances it.
Nothing here sleeps for real or starts a process.
"""
from __future__ import annotations

import io
import json

import pytest

from coffee_team.heartbeat import heartbeat_path
from coffee_team.queue import MessageQueue
from coffee_team.team import parse_team
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
                      mono=self.clock.monotonic, launch_only=self.launch_only, ready_inbox=self.agents)
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
