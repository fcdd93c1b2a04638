"""task show/cancel/retry, pause/resume and send --delay through click's CliRunner (no
supervisord): each works, and each bad input is one line with the right exit code."""
from __future__ import annotations

import json

import pytest

from coffee_team.queue import MessageQueue
from tests.integration.test_cli_data import one_line_error, proj, run  # noqa: F401  (fixture)


def test_send_delay_and_queue_list_show_the_next_try(proj):
    first = run(proj, "send", "architect", "later", "--delay", "5m")
    assert first.exit_code == 0, first.output
    task_id = int(first.output)
    with MessageQueue.from_team(proj.team) as q:
        task = q.get_task(task_id)
        assert task["run_after"] - task["created_at"] == pytest.approx(300)
        assert q.claim("architect") == []
    listed = run(proj, "queue", "list").output
    assert "attempt 1/1 next try" in listed
    for accepted in ("30", "30s", "2h"):
        assert run(proj, "send", "architect", "x", "--delay", accepted).exit_code == 0


@pytest.mark.parametrize("delay", ["-5", "nan", "31d", "5 minutes", "1e9"])
def test_send_refuses_bad_delays(proj, delay):
    line = one_line_error(run(proj, "send", "architect", "x", "--delay", delay), 2)
    assert "--delay" in line


def test_task_show_cancel_retry(proj):
    task_id = run(proj, "send", "architect", "t", "--content", '{"a": 1}').output.strip()
    shown = json.loads(run(proj, "task", "show", task_id, "--json").output)
    assert shown["status"] == "pending" and shown["content"] == {"a": 1}
    text = run(proj, "task", "show", task_id).output
    assert text.startswith(f"task {task_id}: pending") and 'content: {"a": 1}' in text

    cancelled = run(proj, "task", "cancel", task_id, "--json")
    assert json.loads(cancelled.output) == {"id": int(task_id), "status": "cancelled",
                                            "was": "pending"}
    line = one_line_error(run(proj, "task", "cancel", task_id), 1)
    assert "cannot cancel a task that is cancelled" in line
    assert run(proj, "task", "retry", task_id).output.strip() == \
        f"task {task_id}: cancelled → pending"
    stats = json.loads(run(proj, "queue", "--json").output)
    assert stats["architect"]["pending"] == 1 and "cancelled" in stats["architect"]
    assert json.loads(run(proj, "metrics", "--json").output)["states"]["pending"] == 1


def test_task_show_lists_every_failed_attempt(proj):
    with MessageQueue.from_team(proj.team) as q:
        task_id = q.send("cli", "architect", "t")
        q.claim("architect")
        q.mark_failed(task_id, "it broke")
    text = run(proj, "task", "show", str(task_id)).output
    assert "failed" in text and "error (attempt 1," in text and "it broke" in text
    line = one_line_error(run(proj, "task", "cancel", str(task_id)), 1)
    assert "cannot cancel a task that is failed" in line


@pytest.mark.parametrize("args, code, needle", [
    (("task", "show", "999"), 2, "no task with id 999"),
    (("task", "cancel", "999"), 2, "no task with id 999"),
    (("task", "retry", "999"), 2, "no task with id 999"),
    (("task", "show", "abc"), 2, "task id must be a positive integer"),
    (("task", "cancel", "--", "-1"), 2, "task id must be a positive integer"),
    (("task", "retry", "1.5"), 2, "task id must be a positive integer"),
    (("pause", "nobody"), 2, "unknown agent(s) nobody"),
    (("resume", "nobody"), 2, "unknown agent(s) nobody"),
    (("pause", "architect,assistant"), 2, "unknown agent"),
])
def test_bad_input_is_one_line(proj, args, code, needle):
    run(proj, "send", "architect", "t")  # the database exists
    assert needle in one_line_error(run(proj, *args), code)


def test_retry_of_a_completed_task_is_refused(proj):
    with MessageQueue.from_team(proj.team) as q:
        task_id = q.send("cli", "architect", "t")
        q.claim("architect")
        q.mark_completed(task_id)
    line = one_line_error(run(proj, "task", "retry", str(task_id), "--json"), 1)
    assert "cannot retry a task that is completed" in line


def test_pause_and_resume_are_stored(proj):
    paused = run(proj, "pause", "architect", "--reason", "budget", "--json")
    assert json.loads(paused.output) == {"agent": "architect", "paused": True, "reason": "budget"}
    with MessageQueue.from_team(proj.team) as q:
        q.send("cli", "architect", "t")
        assert q.claim("architect") == []
        assert q.pauses()["architect"]["reason"] == "budget"
    assert run(proj, "resume", "architect").output.strip() == "architect: resumed"
    assert run(proj, "resume", "architect").output.strip() == "architect: was not paused"
    with MessageQueue.from_team(proj.team) as q:
        assert len(q.claim("architect")) == 1


def test_reading_commands_need_the_database(proj):
    line = one_line_error(run(proj, "task", "show", "1"), 1)
    assert "database not found" in line
