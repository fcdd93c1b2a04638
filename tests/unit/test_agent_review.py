"""The agent runtime's part in the review and merge queue, in-process (tests/agent_rig.py): a
task that left commits completes with its review request; a reviewer's answer completes its
review_requested task with the verdict, or fails it saying how to answer. No process: the
review request is what an llm agent's runner hands over (take_review)."""
from __future__ import annotations

from tests.agent_rig import start, signals_restored  # noqa: F401 (fixtures)

ITEM = {"author": "worker", "host": "", "branch": "agents/worker", "target": "roadmap",
        "base": "a" * 40, "head": "b" * 40, "reviewer": "reviewer"}


def review_message():
    return {"sender": "worker", "recipient": "reviewer", "type": "review_requested",
            "content": {"range": "a..b"}}


def test_a_task_that_left_commits_completes_with_its_review_request(start):
    h = start(lambda task, ctx: {"done": True}, name="worker")
    requests = [{"item": {**ITEM, "task_id": None}, "review": review_message()}]
    h.agent.runner.take_review = lambda: requests.pop() if requests else None
    first, second = h.send(), h.send()
    assert h.run() == 0
    assert [h.task(t)["status"] for t in (first, second)] == ["completed", "completed"]
    [item] = h.real.merge_items()
    assert item["state"] == "waiting_review" and item["head"] == "b" * 40
    [review] = h.tasks(agent="reviewer")
    assert review["type"] == "review_requested"
    assert review["content"] == {"range": "a..b", "merge_item": item["id"]}


def item_for_review(h) -> tuple[int, int]:
    """An item waiting for review and the reviewer's review_requested task."""
    task_id = h.real.send("ci", "worker", "job")
    [task] = h.real.claim("worker")
    _, item_id = h.real.request_review(task.id, None, agent="worker",
                                       item={**ITEM, "task_id": task_id}, review=review_message())
    [review] = h.tasks(agent="reviewer")
    return item_id, review["id"]


def test_an_approval_completes_the_review_and_queues_the_merge(start):
    h = start(lambda task, ctx: {"verdict": "approve"}, name="reviewer")
    item_id, review = item_for_review(h)
    assert h.run() == 0
    assert h.task(review)["status"] == "completed"
    row = h.real.merge_item(item_id)
    assert (row["state"], row["decided_by"]) == ("approved", "reviewer")


def test_a_change_request_goes_back_to_the_author(start):
    h = start(lambda task, ctx: {"verdict": "request_changes", "comments": "name it well"},
              name="reviewer")
    item_id, review = item_for_review(h)
    assert h.run() == 0
    row = h.real.merge_item(item_id)
    assert (row["state"], row["comments"]) == ("failed", "name it well")
    [back] = [t for t in h.tasks(agent="worker") if t["type"] == "merge_failed"]
    assert back["sender"] == "merge_queue" and back["status"] == "pending"
    assert back["content"]["reason"] == "changes_requested"
    assert back["content"]["detail"] == "name it well"


def test_an_answer_without_a_verdict_fails_the_review_and_leaves_the_item_waiting(start):
    h = start(lambda task, ctx: {"text": "looks fine to me"}, name="reviewer")
    item_id, review = item_for_review(h)
    assert h.run() == 0
    task = h.task(review)
    assert task["status"] == "failed" and "the review's answer has no verdict" in task["error"]
    assert h.real.merge_item(item_id)["state"] == "waiting_review"
