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


def test_no_command_but_start_makes_the_database(proj):
    for leftover in proj.root.glob("data/orchestrator.db*"):
        leftover.unlink()  # a new project: `start` makes it
    for args in (("task", "show", "1"), ("send", "architect", "x"), ("pause", "architect"),
                 ("queue", "list")):
        line = one_line_error(run(proj, *args), 1)
        assert "database not found" in line and "coffee-team start" in line
    assert list(proj.root.glob("data/orchestrator.db*")) == []


def test_send_after_waits_and_show_and_list_say_on_what(proj):
    first = run(proj, "send", "architect", "backend").output.strip()
    second = run(proj, "send", "architect", "frontend").output.strip()
    child = run(proj, "send", "assistant", "verify", "--after", f"{first},#{second}")
    assert child.exit_code == 0, child.output
    child_id = child.output.strip()
    listed = run(proj, "queue", "list", "--status", "waiting").output
    assert f"{child_id} waiting" in listed and f"after #{first},#{second}" in listed
    shown = run(proj, "task", "show", child_id).output
    assert f"parent #{first}: pending  backend  → architect" in shown
    assert "waiting on 2 task(s)" in shown
    assert f"child #{child_id}: waiting" in run(proj, "task", "show", first).output
    as_json = json.loads(run(proj, "task", "show", child_id, "--json").output)
    assert [p["id"] for p in as_json["parents"]] == [int(first), int(second)]
    with MessageQueue.from_team(proj.team) as q:
        for _ in range(2):
            [task] = q.claim("architect")
            q.mark_completed(task.id)
        assert q.get_task(int(child_id))["status"] == "pending"


@pytest.mark.parametrize("after, says", [("999", "after #999: no such task"),
                                          ("4x", "--after: expected task ids"),
                                          ("0", "--after: expected task ids")])
def test_send_after_refuses_what_cannot_be_waited_on(proj, after, says):
    run(proj, "send", "assistant", "before")
    assert says in one_line_error(run(proj, "send", "architect", "t", "--after", after), 2)
    assert len(json.loads(run(proj, "queue", "list", "--json").output)) == 1  # nothing sent


def test_send_after_a_cycle_is_refused_in_one_line(proj):
    first = run(proj, "send", "architect", "a", "--dedupe-key", "k").output.strip()
    second = run(proj, "send", "assistant", "b", "--after", first).output.strip()
    line = one_line_error(run(proj, "send", "architect", "a", "--dedupe-key", "k",
                              "--after", second), 2)
    assert f"after #{second}: task #{first}" in line and "a cycle" in line


def test_schedule_lists_each_entry_with_its_next_run(proj):
    import yaml
    document = yaml.safe_load(proj.team_file.read_text())
    document["team"]["timezone"] = "Europe/Paris"
    document["agents"]["architect"]["schedule"] = [
        {"cron": "0 9 * * 1-5", "type": "daily_review"},
        {"cron": "*/15 * * * *", "type": "poll", "timezone": "UTC", "catch_up": "none"}]
    proj.team_file.write_text(yaml.safe_dump(document))
    text = run(proj, "schedule").output.splitlines()
    assert text[0].split()[:4] == ["architect", "daily_review", "0", "9"]
    assert "Europe/Paris" in text[0] and ":00 CE" in text[0] and "(catch_up one)" in text[0]
    assert "UTC" in text[1] and "(catch_up none)" in text[1]
    runs = json.loads(run(proj, "schedule", "--json").output)["architect"]
    import time
    assert all(time.time() < r["next_run"] <= time.time() + 4 * 86400 for r in runs)
    document["agents"]["architect"]["schedule"] = [{"cron": "0 9 * *", "type": "x"}]
    proj.team_file.write_text(yaml.safe_dump(document))
    assert "five-field cron" in one_line_error(run(proj, "schedule"), 2)
