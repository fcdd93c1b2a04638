"""The rig for agent.Agent's loop in-process (test_agent_loop.py and its topic files).

The agent runs its real ``run()`` (signal handlers, loop, shutdown) on a real MessageQueue in a
throwaway SQLite file, seen through ``ScriptedQueue``: it can inject database errors, and its
``wait()`` never blocks (an idle agent is told to stop, as supervisord would).  Time is fake:
the agent gets a FakeClock through its ``clock`` argument, and its retry pauses go through a
stand-in for the ``time`` module that records them instead of sleeping.  Handlers are plain
functions run by the real ``handlers.CallableRunner``.  No test sleeps more than a few ms.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from coffee_team.agent import runtime as agent_module
from coffee_team.agent.runtime import Agent
from coffee_team.handlers import CallableRunner, HandlerContext
from coffee_team.queue import MessageQueue
from coffee_team.team import Team
from coffee_team.heartbeat import heartbeat_path
from tests.clock import FakeClock
from tests.fast_team import real_time_clock, temp_root, write_team


AGENTS = {
    "worker": {"priority": 1, "handles": ["job"], "check_interval": 3600,
               "options": {"flavour": "plain"}},
    "reviewer": {"priority": 2, "handles": ["review"]},
}

LOCKED = sqlite3.OperationalError("database is locked")
RUNAWAY = 200  # more pauses or idle waits than any test needs: the loop would never end


class FakeTime:
    """Stands in for the ``time`` module inside coffee_team.agent.runtime: ``sleep()`` records the
    pause and moves the fake clock instead of blocking (``on_sleep`` runs after it);
    everything else is the real module."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) > RUNAWAY:  # fail the test rather than spin forever
            raise AssertionError(f"the agent retried {RUNAWAY} times and would go on")
        self.clock.advance(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class ScriptedQueue:
    """The agent's view of a real MessageQueue, plus the trouble a test scripts.

    ``fail(method, exc, times)``: the next ``times`` calls raise ``exc`` instead of reaching
    the database (``times=None``: every call).  ``before(method, hook)``: ``hook()`` runs as
    each call starts; ``after(method, hook)``: ``hook(result)`` runs after each real call
    (e.g. a signal arriving inside the operation).  ``wait()`` never blocks: it records its
    timeout and returns ``when_idle()``.
    """

    def __init__(self, real: MessageQueue):
        self.real = real
        self.calls: list[str] = []
        self.wait_timeouts: list[float] = []
        self.when_idle: Callable[[], bool] = lambda: False
        self._failures: dict[str, list] = {}
        self._hooks: dict[str, Callable[[Any], None]] = {}
        self._before: dict[str, Callable[[], None]] = {}

    def fail(self, method: str, exc: BaseException, times: int | None = 1) -> None:
        self._failures[method] = [exc, times]

    def before(self, method: str, hook: Callable[[], None]) -> None:
        self._before[method] = hook

    def after(self, method: str, hook: Callable[[Any], None]) -> None:
        self._hooks[method] = hook

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if method in self._before:
            self._before[method]()
        failure = self._failures.get(method)
        if failure:
            exc, times = failure
            if times is not None:
                failure[1] -= 1
                if failure[1] <= 0:
                    del self._failures[method]
            raise exc

    def wait(self, agent: str, timeout: float) -> bool:
        self._enter("wait")
        self.wait_timeouts.append(timeout)
        if len(self.wait_timeouts) > RUNAWAY:  # fail the test rather than spin forever
            raise AssertionError(f"the agent waited {RUNAWAY} times and would go on")
        return self.when_idle()

    def __getattr__(self, method: str) -> Any:
        real = getattr(self.real, method)
        if not callable(real):  # settings such as lease_seconds
            return real

        def call(*args, **kwargs):
            self._enter(method)
            result = real(*args, **kwargs)
            hook = self._hooks.get(method)
            if hook is not None:
                hook(result)
            return result
        return call


@dataclass
class Harness:
    team: Team
    real: MessageQueue
    queue: ScriptedQueue
    clock: FakeClock
    time: FakeTime
    agent: Agent
    seen: list[dict] = field(default_factory=list)  # the task dicts the handler was given

    def send(self, type: str = "job", content: Any = None, priority: int = 5,
             recipient: str = "worker") -> int:
        return self.real.send("ci", recipient, type, content, priority=priority)

    def task(self, task_id: int) -> dict:
        return next(t for t in self.real.list_tasks(limit=1000) if t["id"] == task_id)

    def tasks(self, **filters) -> list[dict]:
        return self.real.list_tasks(limit=1000, **filters)

    def status(self) -> dict:
        return json.loads(heartbeat_path(self.team.status_dir, self.agent.name).read_text())

    def stop(self) -> None:
        """SIGTERM as the agent's handler sees it (called directly: no real signal)."""
        self.agent._on_stop_signal(signal.SIGTERM, None)

    def run(self) -> int:
        return self.agent.run()


@pytest.fixture
def signals_restored():
    """Agent.run() installs SIGTERM/SIGINT handlers (and ignores both on the way out) and may
    arm SIGALRM: give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                    signal.SIGALRM)}
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def start(signals_restored, monkeypatch):
    """``start(handler, agents=..., name=..., **team)``: an Agent ready to ``run()``.

    ``handler(task, ctx)`` is called for tasks only; periodic runs (type "periodic") go to
    ``periodic(task, ctx)`` when given, else do nothing.
    """
    monkeypatch.delenv("SUPERVISOR_ENABLED", raising=False)  # not under supervisord here
    opened: list[MessageQueue] = []
    with temp_root() as root:

        def make(handler, agents: dict | None = None, name: str = "worker",
                 periodic: Callable | None = None, **team_overrides) -> Harness:
            team = write_team(root, agents or AGENTS, **team_overrides)
            clock = real_time_clock()
            fake_time = FakeTime(clock)
            monkeypatch.setattr(agent_module, "time", fake_time)
            real = MessageQueue.from_team(team, clock=clock)
            opened.append(real)
            queue = ScriptedQueue(real)
            agent = Agent(team, name, queue=queue, clock=clock, mono=clock.monotonic)
            harness = Harness(team, real, queue, clock, fake_time, agent)

            def dispatch(task: dict, ctx: HandlerContext):
                if task["type"] == "periodic":
                    return periodic(task, ctx) if periodic else None
                harness.seen.append(dict(task))
                return handler(task, ctx)

            agent.runner = CallableRunner(dispatch)  # the real runner, our function
            queue.when_idle = harness.stop  # idle: supervisord stops us (ends run())
            return harness

        try:
            yield make
        finally:
            for queue in opened:
                queue.close()


def echo(task: dict, ctx: HandlerContext) -> Any:
    return {"echo": task["content"]}


def log_lines(capsys, text: str) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if text in line]
