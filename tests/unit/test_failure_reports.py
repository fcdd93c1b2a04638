"""No silent failure, in-process (no supervisord): a task failed for good shows in ``status``
(the agent's last failure and its count of the last 24 h, from the database's columns), and
follow-ups that cannot be sent are recorded on the task that produced them and notified once
while the good ones of the same answer go out."""
from __future__ import annotations

import json
import os

import pytest

from coffee_team import status
from coffee_team.queue import MessageQueue
from tests.clock import T0, FakeClock
from tests.fast_team import temp_root, write_team


@pytest.fixture
def team_queue():
    with temp_root() as root:
        team = write_team(root, {
            "architect": {"handler": "tests.test_failure_reports:answer",
                          "handles": ["design"]},
            "code_developer": {"handles": ["spec_created"]}})
        clock = FakeClock(T0)
        queue = MessageQueue.from_team(team, clock=clock)
        try:
            yield team, queue, clock
        finally:
            queue.close()


def running(team) -> list[dict]:
    return [{"name": n, "statename": "RUNNING", "pid": os.getpid(), "start": 1,
             "description": ""} for n in team.names]


def fail(queue, agent: str, error: str) -> int:
    task_id = queue.send("ci", agent, "review")
    [task] = queue.claim(agent)
    assert queue.mark_failed(task.id, error, agent=agent)
    return task_id


def test_status_shows_the_last_failure_and_the_24_hour_count(team_queue):
    team, queue, clock = team_queue
    fail(queue, "architect", "boom")
    clock.advance(60)
    last = fail(queue, "architect", "timed out after 600s")
    clock.advance(240)
    columns = status.queue_columns(queue, team)
    data = status.collect(team, running(team), os.getpid(), extra=columns, now=clock())
    data["now"] = clock()
    rows = {a["name"]: a for a in data["agents"]}
    assert rows["architect"]["failed_24h"] == 2
    assert rows["architect"]["last_failure"] == {"task_id": last, "type": "review",
                                                 "error": "timed out after 600s",
                                                 "at": T0 + 60}
    assert (rows["code_developer"]["failed_24h"], rows["code_developer"]["last_failure"]) == \
        (0, None)
    json.dumps(data)  # --json prints it as it is
    text = status.render(data)
    architect = next(line for line in text.splitlines() if "architect:" in line)
    assert architect.endswith(f", last failed #{last} 4m 0s ago: timed out after 600s, "
                              f"2 failed in 24h)")
    assert "failed" not in next(line for line in text.splitlines() if "code_developer:" in line)


def test_a_failure_older_than_24_hours_is_no_longer_shown():
    agent = {"last_failure": {"task_id": 3, "type": "t", "error": "x", "at": T0},
             "failed_24h": 0}
    assert status.failure_text(agent, T0 + 90000) == ""
    agent["failed_24h"] = 1
    long = {**agent, "last_failure": {**agent["last_failure"], "error": "line one\n" + "y" * 200}}
    text = status.failure_text(long, T0 + 3700)
    assert text.startswith("last failed #3 1h 1m ago: line one yyy") and "\n" not in text
    assert text.endswith("…, 1 failed in 24h") and len(text) < 140
