"""Real agent work takes hours: under a real supervisord with heartbeat_stale_after 3 and
lease_seconds 6, tasks of ~20 s (Python and command) complete exactly once with no hang, crash
or requeue; output streams into the log while a command runs; a cancelled task's handler stops
and the agent carries on; a stall is warned once, or cancelled. A SIGSTOPped agent, idle or
working, is still hung and restarted.

The long-work team runs once for the module: its tasks start together and each test checks one
aspect while they run, which keeps the suite's extra time to about the longest task.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest

from coffee_team.queue import MessageQueue
from tests.harness import Project, boot_supervisord, temporary_project, wait_until

pytestmark = pytest.mark.slow

WORK = 20  # seconds of each long task: > 3 × lease_seconds, > 6 × heartbeat_stale_after
BUILD = """\
import json, os, sys, time
task = json.load(sys.stdin)
mode = task["content"]["mode"]
open(os.path.join(os.environ["PID_DIR"], str(task["id"])), "w").write(str(os.getpid()))
if mode == "quiet":
    print("one line, then silence", flush=True)
    time.sleep(60)
steps = int(task["content"].get("steps", 60))
for i in range(steps):
    print(f"step {i} of {steps}", flush=True)
    print(f"note {i}", file=sys.stderr, flush=True)
    time.sleep(0.5)
print(json.dumps({"built": task["id"]}))
print("bye")
"""


def long_team(project: Project) -> None:
    script = project.root / "build.py"
    script.write_text(BUILD)
    pid_dir = project.root / "pids"
    pid_dir.mkdir()
    command = {"command": [sys.executable, str(script)], "check_interval": 3600,
               "environment": {"PID_DIR": str(pid_dir)}}
    project.write_team({
        "thinker": {"priority": 1, "check_interval": 3600, "handler": "coffee_team.agent.faults:long_work",
                    "stall_after": 3, "options": {"work_seconds": WORK, "silent_seconds": 5,
                                                  "record_file": str(project.root / "done")}},
        "builder": {"priority": 1, **command},
        "cancelled": {"priority": 1, **command},
        "staller": {"priority": 1, **command, "stall_after": 2, "on_stall": "cancel"},
    }, lease_seconds=6, heartbeat_stale_after=3)


@pytest.fixture(scope="module")
def team():
    with temporary_project() as project:
        long_team(project)
        boot_supervisord(project)
        project.wait_states("RUNNING", timeout=40)
        with MessageQueue.from_team(project.team) as q:
            project.ids = {  # type: ignore[attr-defined]
                "thinker": q.send("cli", "thinker", "think"),
                "builder": q.send("cli", "builder", "build", {"mode": "loud", "steps": 2 * WORK}),
                "cancelled": q.send("cli", "cancelled", "build", {"mode": "loud"}),
                "staller": q.send("cli", "staller", "build", {"mode": "quiet"}),
            }
        yield project


def task(project, task_id) -> dict:
    with MessageQueue.from_team(project.team) as q:
        return next(t for t in q.list_tasks(limit=1000) if t["id"] == task_id)


def events(project, agent) -> list[dict]:
    with MessageQueue.from_team(project.team) as q:
        return q.events(agent=agent, limit=1000)


def test_command_output_is_in_the_log_while_it_runs(team):
    task_id = team.ids["builder"]

    def logged():
        out = team.cli("logs", "builder").stdout
        return out if f"[#{task_id}] step 3 of" in out else None
    log = wait_until(logged, 10, 0.2, "step 3 in the log")
    assert task(team, task_id)["status"] == "in_progress"  # live, not buffered until exit
    assert f"[#{task_id}] note 2" in log  # stderr too, tagged with the task


def test_a_cancelled_task_stops_its_handler_and_the_agent_carries_on(team):
    task_id = team.ids["cancelled"]
    pid_file = team.root / "pids" / str(task_id)
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10, 0.1,
                         "the command to start"))
    with MessageQueue.from_team(team.team) as q:  # what `task cancel` does to the row
        assert q.mark_failed(task_id, "cancelled by the operator")
        cancelled_at = time.monotonic()
        wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
                   3, 0.05, "the cancelled command to be stopped")
        print(f"cancelled command stopped {time.monotonic() - cancelled_at:.2f}s after the cancel")
        assert time.monotonic() - cancelled_at < 2.5
        next_id = q.send("cli", "cancelled", "build", {"mode": "loud", "steps": 1})
    wait_until(lambda: task(team, next_id)["status"] == "completed", 10, 0.2, "the next task")
    row = task(team, task_id)
    assert (row["status"], row["error"], row["result"]) == ("failed", "cancelled by the operator",
                                                            None)  # not overwritten
    assert task(team, next_id)["result"] == {"built": next_id}
    assert "no longer in progress" in (team.root / "data" / "logs" / "cancelled.log").read_text()


def test_stalled_command_is_cancelled_with_one_warning(team):
    task_id = team.ids["staller"]
    wait_until(lambda: task(team, task_id)["status"] == "failed", 10, 0.2, "the stall cancel")
    assert task(team, task_id)["error"] == "stalled: no output for 2 s"
    stalls = [e for e in events(team, "staller") if e["kind"] == "stalled"]
    assert [(e["detail"]["task_id"], e["detail"]["action"]) for e in stalls] == [(task_id, "cancel")]


def test_long_tasks_complete_exactly_once_without_hang_crash_or_requeue(team):
    ids = (team.ids["thinker"], team.ids["builder"])
    wait_until(lambda: all(task(team, i)["status"] == "completed" for i in ids), WORK + 15, 0.5,
               "both long tasks to complete")
    thought, built = (task(team, i) for i in ids)
    assert (thought["attempts"], built["attempts"]) == (1, 1)  # the 6 s lease followed the work
    assert thought["completed_at"] - thought["claimed_at"] >= WORK
    assert built["result"] == {"built": built["id"]}  # the last JSON line; "bye" is output
    assert (team.root / "done").read_text().split() == [str(thought["id"])]
    for agent in ("thinker", "builder"):
        kinds = {e["kind"] for e in events(team, agent)}
        assert not kinds & {"crash", "hung", "stale", "stopped", "exited", "requeued"}, kinds
    with MessageQueue.from_team(team.team) as q:
        titles = [n["title"] for n in q.notifications()]
    assert not [t for t in titles if "heartbeat" in t], titles
    # one stall (5 s silent with stall_after 3), then progress every second: one warning
    stalls = [e for e in events(team, "thinker") if e["kind"] == "stalled"]
    assert [(e["detail"]["task_id"], e["detail"]["action"]) for e in stalls] == [(ids[0], "warn")]
    assert sum("thinker stalled" in t for t in titles) == 1
    history = team.cli("history", "thinker", check=True).stdout
    assert "0 crash(es), 0 restart(s)" in history


def test_status_says_what_each_agent_works_on(project):
    project.write_team({"thinker": {"handler": "coffee_team.agent.faults:long_work", "check_interval": 3600,
                                    "options": {"work_seconds": 60,
                                                "record_file": str(project.root / "done")}}})
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    with MessageQueue.from_team(project.team) as q:
        task_id = q.send("cli", "thinker", "think")
    wait_until(lambda: f"working on #{task_id} for" in project.cli("status").stdout, 10, 0.2,
               "status to show the task")
    import json
    [row] = json.loads(project.cli("status", "--json", check=True).stdout)["agents"]
    assert row["agent_state"] == "working" and row["current_task"]["id"] == task_id
    assert row["activity"].startswith(f"working on #{task_id} for 0m ")
    assert row["task_started_at"] <= row["last_output_at"] <= time.time()
    assert project.rpc().coffee.getTeamStatus()["agents"][0]["current_task"]["id"] == task_id


def test_sigstopped_agents_idle_or_working_are_hung_and_restarted(project):
    project.write_team({
        "idle": {"handler": "coffee_team.agent.demo:handle", "check_interval": 3600},
        "busy": {"handler": "coffee_team.agent.faults:long_work", "check_interval": 3600,
                 "options": {"work_seconds": 120, "record_file": str(project.root / "done")}},
    }, heartbeat_stale_after=2, stop_wait_seconds=1)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    with MessageQueue.from_team(project.team) as q:
        task_id = q.send("cli", "busy", "think")
        wait_until(lambda: task(project, task_id)["status"] == "in_progress", 10, 0.1, "a claim")
    time.sleep(1.5)  # working for a while: its heartbeat thread has beaten meanwhile
    pids = {i["name"]: i["pid"] for i in project.rpc().supervisor.getAllProcessInfo()}
    for name in ("idle", "busy"):
        os.kill(pids[name], signal.SIGSTOP)

    def restarted():
        infos = {i["name"]: i for i in project.rpc().supervisor.getAllProcessInfo()}
        return all(infos[n]["statename"] == "RUNNING" and infos[n]["pid"] != pids[n]
                   for n in ("idle", "busy"))
    wait_until(restarted, 25, 0.2, "both frozen agents to be restarted")
    for name in ("idle", "busy"):
        crashes = [e for e in events(project, name) if e["kind"] == "crash"]
        assert [e["detail"]["reason"] for e in crashes] == ["hung (heartbeat stopped)"]
    row = task(project, task_id)  # the frozen agent's task came back and runs again
    assert row["status"] == "in_progress" and row["attempts"] == 2
