"""A Python handler is stopped in the main thread (Interrupted) when the heartbeat thread finds
its task cancelled or stalled; the outcome is recorded once, or not at all for a cancel.
In-process: a real Agent and queue, the heartbeat thread's check() driven by hand (no sleep)."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from coffee_team.agent.runtime import Agent
from coffee_team.handlers import CallableRunner
from coffee_team.agent.pulse import Pulse
from coffee_team.queue import MessageQueue
from tests.harness import Project


@pytest.fixture
def rig(tmp_path):
    project = Project(tmp_path)
    project.write_team({"ann": {"handler": "coffee_team.agent.demo:handle", "stall_after": 30,
                                "on_stall": "cancel"}})
    team = project.team
    queue = MessageQueue.from_team(team)
    agent = Agent(team, "ann", queue=queue)
    previous = signal.signal(signal.SIGUSR1, agent._on_abort_signal)
    yield agent, queue
    signal.signal(signal.SIGUSR1, previous)
    queue.close()


def run_blocking_handler(agent, queue, meanwhile) -> tuple[dict, float]:
    """Claim one task and run a handler that blocks until interrupted; ``meanwhile(pulse,
    task_id)`` runs in a helper thread, as the heartbeat thread would."""
    release = threading.Event()
    pulse = Pulse(agent, heartbeat_interval=1, lease_seconds=queue.lease_seconds, loop_limit=3,
                  stall_after=agent.spec.stall_after, on_stall=agent.spec.on_stall)

    def handler(task, ctx):
        helper = threading.Thread(target=meanwhile, args=(pulse, task["id"]))
        helper.start()
        release.wait(20)  # a lock wait: signals interrupt it
        return {"finished": True}

    agent.runner = CallableRunner(handler)
    queue.send("cli", "ann", "work")
    [task] = queue.claim("ann")
    started = time.monotonic()
    agent.process(task)
    took = time.monotonic() - started
    release.set()
    return next(t for t in queue.list_tasks(limit=10) if t["id"] == task.id), took


def test_cancelled_task_interrupts_the_python_handler_and_records_nothing(rig):
    agent, queue = rig

    def cancel(pulse, task_id):
        with MessageQueue.from_team(agent.team) as other:  # e.g. `coffee-team task cancel`
            other.mark_failed(task_id, "cancelled by the operator")
        pulse.check(time.time() + 1)
        agent.queue.backend.close()

    row, took = run_blocking_handler(agent, queue, cancel)
    assert took < 10  # interrupted, not released by the 20 s wait
    assert (row["status"], row["error"], row["result"]) == ("failed", "cancelled by the operator",
                                                            None)
    assert agent.counts["tasks_cancelled"] == 1 and agent.counts["tasks_completed"] == 0
    assert agent.activity.task is None and agent.activity.state == "idle"


def test_stalled_python_handler_is_cancelled_with_one_warning(rig):
    agent, queue = rig

    def go_silent(pulse, task_id):
        pulse.check(time.time() + 31)  # 31 s without ctx.progress() with stall_after 30
        pulse.check(time.time() + 32)  # the same stall: no second warning or abort
        agent.queue.backend.close()

    row, took = run_blocking_handler(agent, queue, go_silent)
    assert took < 10
    assert (row["status"], row["error"]) == ("failed", "stalled: no output for 30 s")
    assert [e["kind"] for e in queue.events(agent="ann")] == ["stalled"]
    stall, failure = queue.notifications()  # the stall, then the task failed for good
    assert (stall["level"], failure["level"]) == ("WARNING", "WARNING")
    assert "stalled" in stall["title"] and failure["title"].endswith("(work) failed")
    assert agent.counts["tasks_failed"] == 1


def test_a_run_waiting_for_a_person_is_not_stalled_until_the_decision(rig):
    agent, queue = rig
    asked = queue.request_approval("tool", "ann", "Bash: git push", timeout=3600)
    seen = []

    def wait_then_go_silent(pulse, task_id):
        pulse.check(time.time() + 31)  # silent 31 s, but a person is asked: no stall
        seen.append((agent.pending_abort, len(queue.events(agent="ann"))))
        with MessageQueue.from_team(agent.team) as other:
            other.decide_approval(asked, True, "ana")
        pulse.check(time.time() + 62)  # 31 s of silence since then: a stall
        agent.queue.backend.close()

    row, took = run_blocking_handler(agent, queue, wait_then_go_silent)
    assert seen == [(None, 0)]  # nothing aborted, nothing reported while the person was asked
    assert took < 10 and (row["status"], row["error"]) == ("failed", "stalled: no output for 30 s")
    assert [e["kind"] for e in queue.events(agent="ann")] == ["stalled"]


def test_an_abort_for_a_finished_task_is_ignored(rig):
    agent, queue = rig
    agent.abort(5, "cancelled", "late")  # nothing runs: no signal, no pending abort
    assert agent.pending_abort is None
    agent.runner = CallableRunner(lambda task, ctx: {"ok": task["id"]})
    task_id = queue.send("cli", "ann", "work")
    agent.process(queue.claim("ann")[0])
    assert next(t for t in queue.list_tasks(limit=5) if t["id"] == task_id)["status"] == "completed"
