"""agent.Agent's loop when it is told to stop: the grace period, requeues, a completion that
claims the next task, shutdown.

Same rig as test_agent_loop.py (tests/agent_rig.py): the real ``run()`` on a real MessageQueue in
a throwaway SQLite file seen through ``ScriptedQueue``, on a fake clock. No test sleeps more
than a few ms.
"""
from __future__ import annotations

import os
import signal

from tests.agent_rig import echo, LOCKED
from tests.agent_rig import signals_restored, start  # noqa: F401 (fixtures)


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
