"""agent.Agent's loop in-process: claim → handler → complete/fail, stops, database trouble.

The agent runs its real ``run()`` (signal handlers, loop, shutdown) on a real MessageQueue in a
throwaway SQLite file, seen through ``ScriptedQueue``: it can inject database errors, and its
``wait()`` never blocks (an idle agent is told to stop, as supervisord would).  Time is fake:
the agent gets a FakeClock through its ``clock`` argument, and its retry pauses go through a
stand-in for the ``time`` module that records them instead of sleeping.  Handlers are plain
functions run by the real ``handlers.CallableRunner``.  No test sleeps more than a few ms.
"""
from __future__ import annotations

import datetime
import json
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import peewee
import pytest

from coffee_team.agent import runtime as agent_module
from coffee_team.agent.runtime import Agent
from coffee_team.handlers import CallableRunner, HandlerContext, HandlerError
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
            agent = Agent(team, name, queue=queue, clock=clock)
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


# --- the happy path --------------------------------------------------------------------------

def test_claims_run_and_complete_most_urgent_first(start):
    h = start(echo)
    later = h.send(content={"n": 1}, priority=7)
    urgent = h.send(content={"n": 2}, priority=2)

    assert h.run() == 0

    assert [t["id"] for t in h.seen] == [urgent, later]
    assert h.seen[0] == {"id": urgent, "sender": "ci", "recipient": "worker", "type": "job",
                         "content": {"n": 2}, "priority": 2, "attempts": 1}
    for task_id, content in ((urgent, {"n": 2}), (later, {"n": 1})):
        task = h.task(task_id)
        assert task["status"] == "completed" and task["result"] == {"echo": content}
        assert task["claimed_by"] == "worker" and task["completed_at"] == h.clock()
    status = h.status()
    assert (status["state"], status["tasks_completed"], status["tasks_failed"]) == (
        "stopped", 2, 0)
    assert status["periodic_runs"] == 1 and status["current_task"] is None
    assert status["pid"] == os.getpid() and status["trouble"] == []


def test_handler_gets_its_context(start):
    contexts = []

    def remember(task, ctx):
        contexts.append(ctx)
        return None

    h = start(remember)
    h.send()
    h.run()
    [ctx] = contexts
    assert (ctx.agent, ctx.options, ctx.auto_approve) == ("worker", {"flavour": "plain"}, False)


def test_status_names_the_task_in_hand(start):
    """The heartbeat file shows the current task while the handler runs (the watchdog and
    `status` read it), and nothing once it is done."""
    during = []

    def look(task, ctx):
        h.agent.write_status()
        during.append(h.status())
        return None

    h = start(look)
    task_id = h.send()
    h.run()
    assert during[0]["state"] == "working"
    assert during[0]["current_task"] == {"id": task_id, "type": "job", "started_at": h.clock()}
    assert h.status()["current_task"] is None


# --- failures of the handler -----------------------------------------------------------------

def test_handler_errors_fail_the_task_with_the_reason(start, capsys):
    def picky(task, ctx):
        if task["content"] == "bug":
            raise ValueError("bad input")
        if task["content"] == "refuse":
            raise HandlerError("refused: not my job")
        return "fine"

    h = start(picky)
    bug, refused, fine = h.send(content="bug"), h.send(content="refuse"), h.send(content="ok")

    assert h.run() == 0

    assert (h.task(bug)["status"], h.task(bug)["error"]) == ("failed", "ValueError: bad input")
    assert h.task(refused)["error"] == "refused: not my job"
    assert h.task(fine)["status"] == "completed"  # the loop carried on
    assert (h.status()["tasks_failed"], h.status()["tasks_completed"]) == (2, 1)
    assert len(log_lines(capsys, "failed:")) == 2


def test_handler_timeout_fails_the_task(start):
    def stuck(task, ctx):
        while True:
            time.sleep(0.005)  # the real sleep: interrupted by the agent's time limit

    agents = {"worker": {**AGENTS["worker"], "timeout_seconds": 0.05}}
    h = start(stuck, agents=agents)
    task_id = h.send()
    h.run()
    task = h.task(task_id)
    assert task["status"] == "failed" and task["error"] == "timed out after 0.05s"
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # no alarm left armed


def test_malformed_follow_ups_fail_the_task(start):
    h = start(lambda task, ctx: {"send": "reviewer please"})
    task_id = h.send()
    h.run()
    assert h.task(task_id)["status"] == "failed"
    assert "'send' must be a list" in h.task(task_id)["error"]


# --- follow-up messages ----------------------------------------------------------------------

def test_follow_ups_are_enqueued_with_the_completion(start):
    def delegate(task, ctx):
        ctx.send("reviewer", "review", {"of": task["id"]}, priority=3)
        return {"done": True, "send": [{"recipient": None, "type": "review", "content": "x"}]}

    h = start(delegate)
    task_id = h.send()
    h.run()

    assert h.task(task_id)["result"] == {"done": True}  # "send" is taken out of the result
    sent = sorted(h.tasks(agent="reviewer"), key=lambda t: t["id"])
    assert [(t["sender"], t["type"], t["content"], t["priority"]) for t in sent] == [
        ("worker", "review", {"of": task_id}, 3), ("worker", "review", "x", 5)]
    assert all(t["created_at"] == h.task(task_id)["completed_at"] for t in sent)


def test_unroutable_follow_up_still_completes_the_task(start, capsys):
    """A bad follow-up is the handler's bug: the task completes, none of its messages go
    (they are all-or-none), and the agent says why."""
    def misaddressed(task, ctx):
        ctx.send("reviewer", "review", {})
        ctx.send("nobody", "review", {})
        return 42

    h = start(misaddressed)
    task_id = h.send()
    assert h.run() == 0
    assert (h.task(task_id)["status"], h.task(task_id)["result"]) == ("completed", 42)
    assert h.tasks(agent="reviewer") == []
    assert log_lines(capsys, f"task {task_id}: follow-up messages not sent")


def test_follow_ups_are_not_sent_twice_when_the_commit_is_reported_failed(start):
    """The completion committed but the driver raised anyway (connection lost on the way
    back): the retry finds the task no longer in progress and enqueues nothing again."""
    h = start(lambda task, ctx: {"send": [{"recipient": "reviewer", "type": "review"}]})

    def lost_reply(result):
        h.queue.after("complete_and_claim", lambda _: None)
        raise sqlite3.OperationalError("disk I/O error")

    h.queue.after("complete_and_claim", lost_reply)
    task_id = h.send()
    h.run()
    assert h.task(task_id)["status"] == "completed"
    assert len(h.tasks(agent="reviewer")) == 1
    assert h.queue.calls.count("complete_and_claim") == 2


def test_periodic_run_sends_its_follow_ups(start):
    def tick(task, ctx):
        assert task["id"] is None and task["sender"] == "scheduler"
        ctx.send("reviewer", "review", {"periodic": True})

    h = start(echo, periodic=tick)
    h.run()
    [sent] = h.tasks(agent="reviewer")
    assert (sent["sender"], sent["content"]) == ("worker", {"periodic": True})
    assert h.status()["periodic_runs"] == 1


def test_periodic_failures_are_logged_and_work_goes_on(start, capsys):
    def broken(task, ctx):
        raise RuntimeError("no luck")

    h = start(echo, periodic=broken)
    task_id = h.send(content=1)
    assert h.run() == 0
    assert h.task(task_id)["status"] == "completed"
    assert h.status()["periodic_runs"] == 0
    assert log_lines(capsys, "periodic run failed: RuntimeError: no luck")


# --- stopping --------------------------------------------------------------------------------

def test_sigterm_mid_task_lets_it_finish_within_the_grace_period(start):
    """A real SIGTERM while the handler works: no new task is claimed, the grace alarm is
    armed, and the task completes; nothing is left to requeue."""
    armed = []

    def slow(task, ctx):
        assert signal.getsignal(signal.SIGTERM) == h.agent._on_stop_signal  # run() set it
        os.kill(os.getpid(), signal.SIGTERM)
        armed.append(signal.getitimer(signal.ITIMER_REAL)[0])
        return "finished"

    h = start(slow, stop_wait_seconds=6)
    first, second = h.send(priority=1), h.send(priority=2)

    assert h.run() == 0

    grace = max(1.0, h.team.settings.stop_wait_seconds - 2.0)
    assert grace - 0.5 < armed[0] <= grace
    assert h.task(first)["status"] == "completed" and h.task(first)["result"] == "finished"
    assert h.task(second)["status"] == "pending" and h.task(second)["attempts"] == 0
    assert [t["id"] for t in h.seen] == [first]
    assert "wait" not in h.queue.calls
    assert (h.status()["state"], h.status()["tasks_requeued"]) == ("stopped", 0)
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_grace_period_over_requeues_the_task(start):
    """SIGTERM, then the grace alarm fires before the handler is done: the handler is cut
    off and its task goes back to pending for the next instance."""
    reached_the_end = []

    def endless(task, ctx):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGALRM)  # the grace period runs out now
        reached_the_end.append(True)

    h = start(endless)
    task_id = h.send()
    assert h.run() == 0
    assert reached_the_end == []
    task = h.task(task_id)
    assert (task["status"], task["claimed_by"], task["attempts"]) == ("pending", None, 1)
    assert h.status()["tasks_requeued"] == 1 and h.status()["tasks_completed"] == 0


def test_sigterm_while_idle_leaves_the_wait_at_once(start):
    h = start(echo)
    h.queue.when_idle = lambda: os.kill(os.getpid(), signal.SIGTERM)
    assert h.run() == 0
    assert h.queue.calls.count("wait") == 1 and h.status()["state"] == "stopped"


def test_stop_during_the_claim_requeues_the_claimed_task(start):
    """The signal lands inside the claim's transaction: it is not cut in half, and the task
    it took is put back instead of being started."""
    h = start(echo)
    h.queue.after("claim", lambda tasks: h.stop())
    task_id = h.send()
    assert h.run() == 0
    assert h.seen == []
    assert (h.task(task_id)["status"], h.task(task_id)["attempts"]) == ("pending", 1)
    assert h.status()["tasks_requeued"] == 1


def test_stop_while_the_completion_is_written_keeps_the_completion(start):
    """A stop signal during a queue write is only noted (raising from the handler then would
    leave the transaction half done): the finished task is recorded, not redone."""
    h = start(echo)
    h.queue.before("complete_and_claim", h.stop)
    task_id = h.send(content="work")
    assert h.run() == 0
    assert h.task(task_id)["status"] == "completed"
    assert h.status()["tasks_requeued"] == 0 and "wait" not in h.queue.calls


def test_the_task_claimed_with_a_completion_is_requeued_when_a_stop_came_meanwhile(start):
    """complete_and_claim took the next task while the stop arrived: it is not run, and
    shutdown puts it back to pending."""
    h = start(echo)
    h.queue.before("complete_and_claim", h.stop)
    first, second = h.send(content="one"), h.send(content="two")
    assert h.run() == 0
    assert [t["content"] for t in h.seen] == ["one"]
    assert (h.task(first)["status"], h.task(second)["status"]) == ("completed", "pending")
    assert h.status()["tasks_requeued"] == 1


def test_a_completion_claims_the_next_task_in_the_same_call(start):
    """While tasks keep coming, the loop claims through its completions: one claim() for
    the first task, then complete_and_claim() each time."""
    h = start(echo)
    ids = [h.send(content=n) for n in range(3)]
    assert h.run() == 0
    assert [h.task(i)["status"] for i in ids] == ["completed"] * 3
    assert h.queue.calls.count("complete_and_claim") == 3
    assert h.queue.calls.count("mark_completed") == 0
    assert h.queue.calls.count("claim") == 2  # the first task, and the empty one after


def test_a_completion_before_a_due_periodic_run_does_not_claim(start):
    """The periodic run comes due while a task runs: that completion claims nothing, so the
    periodic run goes next, as before complete_and_claim."""
    order = []

    def slow(task, ctx):
        order.append(task["content"])
        h.clock.advance(4000)  # past check_interval (3600)
    h = start(slow, periodic=lambda task, ctx: order.append("periodic"))
    h.send(content="a"), h.send(content="b")
    assert h.run() == 0
    assert order == ["periodic", "a", "periodic", "b", "periodic"]
    assert h.queue.calls.count("mark_completed") == 2
    assert h.queue.calls.count("complete_and_claim") == 0


def test_shutdown_requeues_whatever_the_agent_holds(start):
    """Tasks in progress under the agent's name when it stops go back to pending."""
    h = start(echo)
    held = h.send()
    assert [t.id for t in h.real.claim("worker", 1)] == [held]
    h.queue.fail("claim", LOCKED, times=None)  # never claims again: stopped while retrying
    h.time.on_sleep = lambda seconds: h.stop()
    assert h.run() == 0
    assert h.task(held)["status"] == "pending"
    assert h.status()["tasks_requeued"] == 1


# --- database trouble ------------------------------------------------------------------------

def test_locked_database_is_retried_with_backoff_and_the_heartbeat_goes_on(start, capsys):
    h = start(echo)
    task_id = h.send()
    h.queue.fail("claim", LOCKED, times=8)
    beats = []

    def beat(seconds):  # what the heartbeat thread would write during this pause
        h.agent.write_status()
        beats.append(h.status())
    h.time.on_sleep = beat

    assert h.run() == 0

    assert h.task(task_id)["status"] == "completed"
    pauses = h.time.sleeps
    assert len(pauses) == 8 and 0 < pauses[0] <= 0.1
    assert all(b == min(a * 2, agent_module.DB_RETRY_MAX) for a, b in zip(pauses, pauses[1:]))
    assert pauses[-1] == agent_module.DB_RETRY_MAX  # capped, not growing without bound
    # Still alive while waiting: a fresh heartbeat before every pause, marked as trouble.
    assert all(b["trouble"] == ["database"] and b["state"] != "stopped" for b in beats)
    stamps = [b["last_heartbeat"] for b in beats]
    assert stamps == sorted(set(stamps)) and len(stamps) == 8
    assert h.status()["trouble"] == []
    err = capsys.readouterr().err
    assert err.count("database unavailable: OperationalError: database is locked") == 1
    assert err.count("database recovered") == 1


@pytest.mark.parametrize("method", ["claim", "complete_and_claim", "mark_failed",
                                    "send_many"])
@pytest.mark.parametrize("error", [LOCKED, peewee.OperationalError("database is locked"),
                                   sqlite3.DatabaseError("database disk image is malformed"),
                                   peewee.InterfaceError("connection already closed")],
                         ids=["sqlite3-locked", "peewee-locked", "sqlite3-malformed",
                              "peewee-closed"])
def test_every_queue_write_survives_database_errors(start, method, error):
    """Claim, completion, failure and the periodic run's follow-ups all wait out a database
    that is briefly unusable, then do their work."""
    def work(task, ctx):
        if task["content"] == "fail":
            raise HandlerError("no")
        return None

    h = start(work, periodic=lambda task, ctx: ctx.send("reviewer", "review", {}))
    done, failed = h.send(content="ok"), h.send(content="fail")
    h.queue.fail(method, error, times=2)

    assert h.run() == 0

    assert (h.task(done)["status"], h.task(failed)["status"]) == ("completed", "failed")
    assert len(h.tasks(agent="reviewer")) == 1
    assert len(h.time.sleeps) == 2
    assert h.queue.calls.count(method) >= 3


def test_stop_while_the_database_is_unusable_exits_cleanly(start, capsys):
    """The stop arrives during a failing operation: the agent does not retry on, it exits,
    and what it could not requeue stays for the next instance (or the watchdog)."""
    h = start(echo)
    held = h.send()
    h.real.claim("worker", 1)

    h.queue.before("claim", h.stop)  # in the database: only noted, never raised there
    h.queue.fail("claim", LOCKED, times=None)
    h.queue.fail("requeue_agent", LOCKED, times=None)

    assert h.run() == 0

    assert h.time.sleeps == []  # no retry once stopping
    assert h.queue.calls.count("claim") == 1
    assert h.task(held)["status"] == "in_progress"
    assert h.status()["state"] == "stopped"
    assert log_lines(capsys, "could not requeue unfinished tasks")


def test_unwritable_status_file_does_not_stop_the_work(start, capsys):
    h = start(echo)
    heartbeat_path(h.team.status_dir, h.agent.name).mkdir()  # os.replace() onto a directory fails: OSError
    task_id = h.send()
    assert h.run() == 0
    assert h.task(task_id)["status"] == "completed"
    assert len(log_lines(capsys, "cannot write")) == 1  # once per episode, not per beat


# --- timing ----------------------------------------------------------------------------------

def idle_until(h: Harness, waits: int, beats: list[float]) -> Callable[[], bool]:
    """An idle wait that times out after exactly its timeout (the fake clock moves by it),
    noting when it began, and stops the agent at the ``waits``-th wait."""
    def wait() -> bool:
        beats.append(h.clock())
        if len(beats) == waits:
            h.stop()
        h.clock.advance(h.queue.wait_timeouts[-1])
        return False
    return wait


def test_periodic_runs_follow_the_clock(start):
    """Idle, the agent waits until its next periodic run (its heartbeat is not due before it)
    and runs the periodic handler when it is due."""
    runs: list[float] = []
    h = start(echo, agents={"worker": {**AGENTS["worker"], "check_interval": 2}},
              periodic=lambda task, ctx: runs.append(h.clock()), heartbeat_interval=30,
              heartbeat_stale_after=60)
    started = h.clock()
    h.queue.when_idle = idle_until(h, 3, [])
    h.run()
    assert h.queue.wait_timeouts == [2.0] * 3
    assert runs == [started, started + 2.0, started + 4.0]  # the stop came at the 3rd wait


def test_an_idle_agent_waits_once_per_heartbeat_and_beats_on_that_tick(start):
    """Nothing due for long: one wait per heartbeat interval, no polling, and each wake-up
    writes the heartbeat (the pulse thread sleeps while no task runs)."""
    h = start(echo, heartbeat_interval=30, heartbeat_stale_after=60)
    waits: list[float] = []
    beats: list[float] = []

    def wait() -> bool:
        beats.append(h.status()["last_heartbeat"])
        waits.append(h.clock())
        if len(waits) == 3:
            h.stop()
        h.clock.advance(h.queue.wait_timeouts[-1])
        return False
    h.queue.when_idle = wait
    h.run()
    assert h.queue.wait_timeouts == [30.0] * 3
    assert beats == waits  # the beat of each tick was written just before its wait


def test_idle_wait_is_capped_under_supervisord_without_a_death_signal(start, monkeypatch):
    """Under supervisord the wait is bounded unless the kernel signals the parent's death
    (PDEATHSIG, set by run_agent): polling is then how a dead supervisord is noticed."""
    monkeypatch.setenv("SUPERVISOR_ENABLED", "1")
    h = start(echo, heartbeat_interval=30, heartbeat_stale_after=60)
    h.queue.when_idle = idle_until(h, 3, [])
    h.run()
    assert h.queue.wait_timeouts == [agent_module.IDLE_WAIT_CAP] * 3


# --- results the queue cannot store -------------------------------------------------------

def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("result, reason", [
    ({1, 2}, "not JSON-serialisable"),
    (datetime.datetime(2024, 1, 1), "not JSON-serialisable"),
    (float("nan"), "not JSON-serialisable"),
    ("x" * (2 * 2**20), "the limit is 1048576"),
    (_nested(65), "nested more than 64 levels deep"),
], ids=["set", "datetime", "NaN", "2 MB", "65 deep"])
def test_unstorable_result_fails_the_task_instead_of_killing_the_agent(start, result, reason):
    def handler(task, ctx):
        return result if task["content"] == "bad" else "ok"

    h = start(handler)
    bad, good = h.send(content="bad", priority=1), h.send(content="good", priority=2)
    try:
        exit_code = h.run()
    except Exception as exc:  # what happened before: the loop died with the queue's error
        raise AssertionError(f"run() raised {type(exc).__name__}: {exc}") from exc
    assert exit_code == 0
    failed = h.task(bad)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["error"].startswith("result not stored: result ")
    assert reason in failed["error"]
    assert h.task(good)["status"] == "completed"


def test_unstorable_follow_up_alone_still_completes_the_task(start, capsys):
    """Bad follow-up content is not a bad result: the task completes without its messages."""
    def handler(task, ctx):
        ctx.send("reviewer", "review", {float("nan")})
        return "fine"

    h = start(handler)
    task_id = h.send()
    assert h.run() == 0
    assert (h.task(task_id)["status"], h.task(task_id)["result"]) == ("completed", "fine")
    assert h.tasks(agent="reviewer") == []
    assert log_lines(capsys, f"task {task_id}: follow-up messages not sent")
