"""Retries, cancel and pause under a real supervisord (one boot for the module: CI budget).

``flaky`` fails the first two deliveries of every task under retry {attempts: 3, backoff: 2};
``plain`` records each task it runs and is paused, restarted and resumed.
"""
from __future__ import annotations

import time

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, temporary_project, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team():
    with temporary_project() as project:
        root = project.root
        project.write_team({
            "flaky": {"handler": "coffee_team.agent.faults:flaky", "check_interval": 3600,
                      "retry": {"attempts": 3, "backoff": 2},
                      "options": {"record_file": str(root / "flaky.calls"), "fail_times": 2}},
            "plain": {"handler": "coffee_team.agent.faults:record", "check_interval": 3600,
                      "options": {"record_file": str(root / "plain.done")}},
        })
        boot_supervisord(project)
        project.wait_states("RUNNING", 40)
        yield project


def task(project, task_id):
    with MessageQueue.from_team(project.team) as q:
        return q.get_task(task_id)


def test_a_handler_failing_twice_completes_on_attempt_3_after_2_and_4_seconds(team):
    task_id = int(team.cli("send", "flaky", "work", check=True).stdout)
    wait_until(lambda: task(team, task_id)["status"] in ("completed", "failed"), 20,
               message="the task to finish")
    done = task(team, task_id)
    assert done["status"] == "completed" and done["result"] == {"attempt": 3}
    assert [e["error"] for e in done["errors"]] == [
        "RuntimeError: flaky failure on attempt 1", "RuntimeError: flaky failure on attempt 2"]
    calls = [line.split() for line in (team.root / "flaky.calls").read_text().splitlines()]
    assert [int(c[1]) for c in calls] == [1, 2, 3]
    times = [float(c[2]) for c in calls]
    gaps = [times[1] - times[0], times[2] - times[1]]
    assert 1.0 <= gaps[0] <= 3.0 and 3.0 <= gaps[1] <= 5.0, gaps


def test_cancelled_task_never_runs_and_a_paused_agent_waits_for_resume(team):
    team.cli("pause", "plain", "--reason", "budget", check=True)
    keep = int(team.cli("send", "plain", "work", check=True).stdout)
    drop = int(team.cli("send", "plain", "work", check=True).stdout)
    assert team.cli("task", "cancel", str(drop), check=True).stdout.strip() == \
        f"task {drop}: pending → cancelled"
    # the pause is in the database: it outlives a restart of the agent
    rpc = team.rpc()
    rpc.supervisor.stopProcess("plain", True)
    rpc.supervisor.startProcess("plain", True)
    assert "plain: RUNNING PAUSED" in team.cli("status", check=True).stdout
    time.sleep(2.0)
    assert task(team, keep)["status"] == "pending"
    team.cli("resume", "plain", check=True)
    wait_until(lambda: task(team, keep)["status"] == "completed", 10, message="the kept task")
    assert (team.root / "plain.done").read_text().split() == [str(keep)]
    assert task(team, drop)["status"] == "cancelled"
