"""ctx.wait_for in a real Agent loop (agent_rig: real queue, fake clock): a handler waits on
another agent's task and gets its result; a failed one fails the handler; waiting on a task
sent after its own could never end and is refused at once."""
from __future__ import annotations

from tests.agent_rig import signals_restored, start  # noqa: F401 (fixtures)


def waits(task, ctx):
    return {"got": {str(k): v for k, v in ctx.wait_for(*task["content"]["wait"],
                                                        timeout=30).items()}}


def test_a_handler_waits_for_another_agents_task_and_gets_its_result(start):
    h = start(waits)
    review = h.send("review", recipient="reviewer")
    mine = h.send("job", {"wait": [review]})
    polls = []

    def reviewer_answers(result):  # the other agent completes its task meanwhile
        polls.append(result)
        if len(polls) == 1:
            [task] = h.real.claim("reviewer")
            h.real.mark_completed(task.id, {"ok": "looks good"})
    h.queue.after("finished", reviewer_answers)
    assert h.run() == 0
    assert h.task(mine)["status"] == "completed"
    assert h.task(mine)["result"] == {"got": {str(review): {"ok": "looks good"}}}
    assert [p["id"] for p in h.real.dependencies(mine)["parents"]] == [review]
    assert h.real.wait_graph()["waits"] == []  # the wait is resolved with the task's end


def test_a_failed_task_waited_for_fails_the_handler(start):
    h = start(waits)
    review = h.send("review", recipient="reviewer")
    [task] = h.real.claim("reviewer")
    h.real.mark_failed(task.id, "boom")
    mine = h.send("job", {"wait": [review]})
    h.run()
    assert h.task(mine)["status"] == "failed"
    assert h.task(mine)["error"] == f"task #{review} failed: boom"


def test_waiting_on_a_task_sent_after_its_own_is_refused(start):
    h = start(waits)
    mine = h.send("job", {"wait": []})
    later = h.real.send("ci", "reviewer", "review", after=[mine])
    h.real.backend.execute("UPDATE tasks SET content = ? WHERE id = ?",
                           (f'{{"wait": [{later}]}}', mine))
    h.run()
    row = h.task(mine)
    assert row["status"] == "failed" and "a cycle" in row["error"]
