"""agent.Agent's loop in-process: claim → handler → complete/fail, follow-ups, timing, results the
queue cannot store; stops and database trouble have their own files (test_agent_stop.py,
test_agent_db_trouble.py).

The rig (tests/agent_rig.py) runs the agent's real ``run()`` on a real MessageQueue in a
throwaway SQLite file, seen through ``ScriptedQueue``, on a fake clock; handlers are plain
functions run by the real ``handlers.CallableRunner``.  No test sleeps more than a few ms.
"""
from __future__ import annotations

import datetime
import os
import signal
import sqlite3
import time
from typing import Callable

import pytest

from coffee_team.agent import runtime as agent_module
from coffee_team.handlers import HandlerError
from tests.agent_rig import AGENTS, echo, Harness, log_lines
from tests.agent_rig import signals_restored, start  # noqa: F401 (fixtures)


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
    assert during[0]["current_task"] == {"id": task_id, "type": "job", "started_at": h.clock(),
                                         "deadline": None}
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


def test_a_task_has_no_hard_time_limit_by_default_and_its_heartbeat_says_so(start):
    seen = {}

    def look(task, ctx):
        seen["timer"] = signal.getitimer(signal.ITIMER_REAL)[0]
        seen["task"] = dict(h.agent.activity.task)
        return "ok"
    h = start(look)
    assert h.agent.spec.timeout_seconds is None
    task_id = h.send()
    h.run()
    assert h.task(task_id)["status"] == "completed"
    assert seen["timer"] == 0 and seen["task"]["deadline"] is None  # no alarm: runs for hours


def test_a_set_time_limit_is_the_tasks_deadline_in_the_heartbeat(start):
    seen = {}

    def look(task, ctx):
        seen["task"] = dict(h.agent.activity.task)
        return "ok"
    h = start(look, agents={"worker": {**AGENTS["worker"], "timeout_seconds": 7200}})
    h.send()
    h.run()
    assert seen["task"]["deadline"] == seen["task"]["started_at"] + 7200


def test_malformed_follow_ups_are_recorded_on_the_completed_task(start):
    h = start(lambda task, ctx: {"send": "reviewer please"})
    task_id = h.send()
    h.run()
    task = h.task(task_id)
    assert task["status"] == "completed"
    assert task["result"] == {"undelivered": [{
        "follow_up": "reviewer please",
        "error": "result 'send' must be a list of message objects"}]}
    [note] = h.real.notifications()
    assert (note["level"], note["title"]) == ("WARNING",
                                              f"worker: 1 follow-up of task #{task_id} not sent")


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


def test_unroutable_follow_up_is_reported_and_the_good_ones_are_sent(start, capsys):
    """A bad follow-up is the handler's bug: the task completes, the good follow-ups of the
    same answer go, the bad ones are recorded on the task and said in one WARNING."""
    def misaddressed(task, ctx):
        ctx.send("reviewer", "review", {})
        ctx.send("nobody", "review", {"big": "x" * 300})
        return {"ok": 42, "send": [{"type": "nobody_handles"}, ["not", "a", "message"]]}

    h = start(misaddressed)
    task_id = h.send()
    assert h.run() == 0
    task = h.task(task_id)
    assert task["status"] == "completed" and task["result"]["ok"] == 42
    assert [t["type"] for t in h.tasks(agent="reviewer")] == ["review"]
    errors = [(u["follow_up"], u["error"].split(";")[0]) for u in task["result"]["undelivered"]]
    assert errors == [
        ('["not", "a", "message"]', "a follow-up must be a message object {recipient, type, "
                                    "content, priority}"),
        ({"recipient": "nobody", "type": "review", "priority": 5,
          "content": '{"big": "' + "x" * 191 + "…"}, "unknown recipient 'nobody'"),
        ({"type": "nobody_handles", "priority": 5}, "no agent handles task type 'nobody_handles'")]
    [note] = h.real.notifications()
    assert note["title"] == f"worker: 3 follow-ups of task #{task_id} not sent"
    assert "review to nobody: unknown recipient 'nobody'" in note["message"]
    assert "nobody_handles to (routed by type): no agent handles" in note["message"]
    assert log_lines(capsys, f"3 follow-ups of task #{task_id} not sent (the others were sent)")


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


def test_a_periodic_runs_bad_follow_up_is_notified_and_the_good_one_sent(start):
    def tick(task, ctx):
        ctx.send("reviewer", "review", {"periodic": True})
        ctx.send(None, "nobody_handles")

    h = start(echo, periodic=tick)
    h.run()
    assert len(h.tasks(agent="reviewer")) == 1
    [note] = h.real.notifications()
    assert note["title"] == "worker: 1 follow-up of its periodic run not sent"


def test_periodic_failures_are_logged_and_work_goes_on(start, capsys):
    def broken(task, ctx):
        raise RuntimeError("no luck")

    h = start(echo, periodic=broken)
    task_id = h.send(content=1)
    assert h.run() == 0
    assert h.task(task_id)["status"] == "completed"
    assert h.status()["periodic_runs"] == 0
    assert log_lines(capsys, "periodic run failed: RuntimeError: no luck")


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
    """Bad follow-up content is not a bad result: the task completes without that message."""
    def handler(task, ctx):
        ctx.send("reviewer", "review", {float("nan")})
        return "fine"

    h = start(handler)
    task_id = h.send()
    assert h.run() == 0
    task = h.task(task_id)
    assert (task["status"], task["result"]["value"]) == ("completed", "fine")
    [undelivered] = task["result"]["undelivered"]
    assert undelivered["error"].startswith("content ")
    assert h.tasks(agent="reviewer") == []
    assert log_lines(capsys, f"1 follow-up of task #{task_id} not sent")
