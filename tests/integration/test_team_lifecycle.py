"""The foundation under a real supervisord: boot, launch order, singleton, heartbeats,
status, stop, and kill -9 of supervisord leaving no orphans."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from coffee_team.heartbeat import heartbeat_path, read_heartbeat
from tests.harness import BIN, boot_supervisord, demo_agents, exists, wait_until

pytestmark = pytest.mark.slow


def agent_pids(project) -> dict[str, int]:
    return {i["name"]: i["pid"] for i in project.rpc().supervisor.getAllProcessInfo()
            if i["name"] in project.team.names and i["pid"]}


def boot_events(project, kind: str) -> list[dict]:
    from coffee_team.queue import MessageQueue
    with MessageQueue.from_team(project.team) as q:
        return [e for e in q.events(limit=10000) if e["kind"] == kind]


def assert_booted_group_after_group(project) -> None:
    """Every agent was started only after the previous priority group was ready (the
    watchdog's group_ready event), and before its own group was: times the agents recorded
    themselves (heartbeat started_at) against the readiness the watchdog recorded, so an
    unstaggered boot, or a stagger that did not wait for readiness, fails here."""
    team = project.team
    priorities = sorted({spec.priority for spec in team.agents})
    ready = wait_until(lambda: (lambda rows: rows if len(rows) == len(priorities) else None)(
        boot_events(project, "group_ready")), 10, 0.1, "every priority group to be ready")
    ready_at = {e["detail"]["priority"]: e["ts"] for e in ready}
    assert sorted(ready_at) == priorities  # each group once, none timed out
    assert not boot_events(project, "group_not_ready")
    started = {name: read_heartbeat(team.status_dir, name)["started_at"] for name in team.names}
    for spec in team.agents:
        assert spec.name in {n for e in ready if e["detail"]["priority"] == spec.priority
                             for n in e["detail"]["agents"]}
        assert started[spec.name] <= ready_at[spec.priority], spec.name
        earlier = [p for p in priorities if p < spec.priority]
        if earlier:
            gap = started[spec.name] - ready_at[max(earlier)]
            assert gap > 0, f"{spec.name} (priority {spec.priority}) started {-gap:.3f}s " \
                            f"before priority {max(earlier)} was ready"


def test_plain_supervisord_boots_team_in_priority_order(running_team):
    assert_booted_group_after_group(running_team)
    out = subprocess.run([str(BIN / "supervisorctl"), "-c", str(running_team.conf), "status"],
                         capture_output=True, text=True, timeout=30).stdout
    for name in running_team.team.names:
        assert any(line.split()[:2] == [name, "RUNNING"] for line in out.splitlines()), out


def test_thirty_agents_boot_in_four_groups_each_once_the_previous_is_ready(project):
    agents = {f"a{i:02d}": {"priority": i // 8, "check_interval": 3600,
                            "handler": "coffee_team.agent.demo:handle"} for i in range(30)}
    project.write_team(agents)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=60)
    assert_booted_group_after_group(project)
    launched = boot_events(project, "launched")
    assert sorted(e["agent"] for e in launched) == sorted(agents)


def test_second_instance_is_refused_with_pid(running_team):
    pid = agent_pids(running_team)["architect"]
    result = running_team.cli("agent", "run", "architect", timeout=30)
    assert result.returncode == 1
    assert "AgentAlreadyRunningError" in result.stderr
    assert f"PID {pid}" in result.stderr
    assert "Traceback" not in result.stderr


def test_heartbeat_files_are_rewritten(running_team):
    path = heartbeat_path(running_team.team.status_dir, "code_developer")
    first = json.loads(path.read_text())["last_heartbeat"]
    wait_until(lambda: json.loads(path.read_text())["last_heartbeat"] > first, 5,
               message="a newer heartbeat")
    status = json.loads(path.read_text())
    assert status["pid"] == agent_pids(running_team)["code_developer"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_status_text_and_json(running_team):
    text = running_team.cli("status", check=True).stdout
    assert text.startswith("Orchestrator Status:")
    assert "Agents Running: 6/6" in text
    assert "architect: RUNNING (PID" in text

    data = json.loads(running_team.cli("status", "--json", check=True).stdout)
    assert data["agents_running"] == data["agents_total"] == 6
    row = {a["name"]: a for a in data["agents"]}["code_developer"]
    for key in ("name", "state", "pid", "priority", "uptime_seconds", "cpu_percent", "rss_mb",
                "heartbeat_age_seconds"):
        assert key in row
    assert row["state"] == "RUNNING" and row["priority"] == 2 and row["rss_mb"] > 5
    assert row["heartbeat_age_seconds"] is not None and row["heartbeat_age_seconds"] < 3


def test_stop_agents_then_whole_team_leaves_nothing(running_team):
    running_team.cli("stop", "--agents", "assistant,code_searcher", check=True)
    infos = running_team.wait_states({"assistant": "STOPPED", "code_searcher": "STOPPED",
                                      "architect": "RUNNING"})
    assert infos["code_developer"]["statename"] == "RUNNING"

    running_team.cli("restart", "architect", check=True)
    running_team.wait_states({"architect": "RUNNING"})

    running_team.cli("stop", check=True)
    assert running_team.processes() == []
    result = running_team.cli("status")
    assert result.returncode == 3
    assert "not running" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_kill_9_supervisord_leaves_no_orphans(running_team):
    pids = agent_pids(running_team)
    assert len(pids) == 6
    # Process objects, not bare PIDs: an agent reaped by init between two looks at its PID
    # is gone (exists() says so; psutil.Process(pid) raised NoSuchProcess), and a PID taken
    # by a new process meanwhile is not the agent
    agents = [psutil.Process(pid) for pid in pids.values()]
    os.kill(running_team.supervisord_pid(), signal.SIGKILL)
    t0 = time.monotonic()
    wait_until(lambda: not any(exists(agent) for agent in agents), 5,
               message="every agent to exit after supervisord died")
    elapsed = time.monotonic() - t0
    print(f"agents gone {elapsed:.2f}s after kill -9 of supervisord")
    for name in pids:
        with open(running_team.team.lock_path(name)) as f:  # the agent made it
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


def test_an_agent_still_starting_when_supervisord_is_killed_exits_before_its_lock(project):
    """PDEATHSIG signals only a death after the request: an agent whose start-up outlasted
    supervisord (a loaded machine) asked too late, was re-parented meanwhile, and lived on
    (until its first log line met the dead pipe: seconds under load, after taking its lock
    and opening the database). Here its interpreter starts only once supervisord is dead."""
    go = project.root / "go"
    wrapper = project.root / "python"
    wrapper.write_text(f"""#!/bin/sh
case "$*" in *" agent run "*) while [ ! -e {go} ]; do sleep 0.05; done ;; esac
exec {sys.executable} "$@"
""")
    wrapper.chmod(0o755)
    project.write_team({"a": {"priority": 1, "check_interval": 3600,
                              "handler": "coffee_team.agent.demo:handle"}}, python=str(wrapper))
    boot_supervisord(project)
    info = project.wait_states({"a": "RUNNING"}, timeout=40)["a"]  # the wrapper, waiting
    starting = psutil.Process(info["pid"])
    supervisord = project.supervisord()
    os.kill(supervisord.pid, signal.SIGKILL)
    wait_until(lambda: not exists(supervisord), 10, message="supervisord to die")
    go.touch()  # now the agent's interpreter starts, under the wrapper's PID
    wait_until(lambda: not exists(starting), 30, 0.1, "the agent to exit")
    assert not project.team.lock_path("a").exists()  # it never took its lock


def test_start_cli_boots_only_named_agents(project):
    project.write_team()
    result = project.cli("start", "--agents", "architect,project_manager", check=True)
    assert "Orchestrator Status:" in result.stdout
    infos = project.wait_states({"architect": "RUNNING", "project_manager": "RUNNING"})
    time.sleep(1.5)  # give a wrongly launched agent the time to show up
    infos = {i["name"]: i for i in project.rpc().supervisor.getAllProcessInfo()}
    assert infos["code_developer"]["statename"] == "STOPPED"
    # start again with the server up: starts the rest in priority order
    project.cli("start", check=True)
    project.wait_states("RUNNING")


def test_demo_chain_flows_end_to_end(running_team):
    """architect → spec_created → code_developer → needs_verification → project_manager;
    assistant → bug_report → project_manager; project_manager → all."""
    from coffee_team.queue import MessageQueue
    wanted = {("architect", "code_developer", "spec_created"),
              ("code_developer", "project_manager", "needs_verification"),
              ("assistant", "project_manager", "bug_report"),
              ("project_manager", "ux_design_expert", "roadmap_updated")}
    with MessageQueue.from_team(running_team.team) as q:
        def done():
            seen = {(t["sender"], t["recipient"], t["type"])
                    for t in q.list_tasks(status="completed", limit=1000)}
            return wanted <= seen
        wait_until(done, 20, 0.2, "the demo chain to complete")
        assert q.agent_performance(1)
    out = running_team.cli("metrics", check=True).stdout
    assert "needs_verification" in out


def test_graceful_stop_requeues_a_task_it_cannot_finish(project, tmp_path):
    from coffee_team.queue import MessageQueue
    agents = demo_agents()
    agents["code_developer"] = {"priority": 2, "check_interval": 3600,
                                "handler": "coffee_team.agent.faults:record",
                                "options": {"record_file": str(tmp_path / "r"),
                                            "work_seconds": 30}}
    project.write_team(agents, stop_wait_seconds=4)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    with MessageQueue.from_team(project.team) as q:
        q.send("cli", "code_developer", "implement_priority", priority=0)
        working = wait_until(lambda: q.list_tasks(status="in_progress", agent="code_developer"),
                             10, message="a 30-second task to be claimed")
        task_id = working[0]["id"]
        t0 = time.monotonic()
        project.cli("stop", "--agents", "code_developer", check=True)
        took = time.monotonic() - t0
        info = project.rpc().supervisor.getProcessInfo("code_developer")
        assert info["statename"] == "STOPPED" and info["exitstatus"] == 0, info
        assert took < 4, f"stop took {took:.1f}s (stopwaitsecs 4: it was killed, not graceful)"
        task = [t for t in q.list_tasks(limit=100) if t["id"] == task_id][0]
        assert task["status"] == "pending" and not task["claimed_by"]


def test_reload_relaunches_the_team_and_requeue_still_works(running_team):
    from coffee_team.queue import MessageQueue
    for _ in range(2):
        subprocess.run([str(BIN / "supervisorctl"), "-c", str(running_team.conf), "reload"],
                       check=True, capture_output=True, timeout=30)

        # a short timeout: a call caught in the restart must not hang
        wait_until(lambda: running_team.answers(timeout=2), 30, 0.1,
                   "supervisord to come back from reload")
        running_team.wait_states("RUNNING", timeout=40)  # the watchdog relaunched the team
    assert running_team.rpc().coffee.getAPIVersion()
    pid = agent_pids(running_team)["code_developer"]
    with MessageQueue.from_team(running_team.team) as q:
        q.send("cli", "code_developer", "implement_priority")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not q.list_tasks(status="in_progress", agent="code_developer"), 10,
                   0.02, "the dead agent's work to be requeued")
    log = (running_team.root / "data" / "logs" / "supervisord.log").read_text()
    assert "Traceback" not in log and "coffee: requeue" not in log


def _one_error_line(result) -> str:
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stdout + result.stderr
    return lines[0]


def test_agent_added_to_the_team_file_or_a_damaged_database_is_one_line(running_team):
    """Issue 18, finding 8: `start` after adding an agent said `Fault 10: BAD_NAME`; restart and
    stop --agents on a damaged database printed a traceback."""
    agents = demo_agents()
    agents["newcomer"] = {"priority": 9, "handler": "coffee_team.agent.demo:handle"}
    running_team.write_team(agents)  # and gen-config: supervisord still runs the old one
    for args in (("start", "--agents", "newcomer"), ("restart", "newcomer"),
                 ("stop", "--agents", "newcomer")):
        result = running_team.cli(*args)
        line = _one_error_line(result)
        assert result.returncode == 2 and "newcomer: in the team file but not in the " \
            "running supervisord" in line and "coffee-team apply" in line, line
    database = running_team.root / "data" / "orchestrator.db"
    database.write_bytes(b"not a database" * 1000)
    for suffix in ("-wal", "-shm"):  # else the newest pages, page 1 too, come from the WAL
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    for args in (("restart", "architect"), ("stop", "--agents", "architect")):
        result = running_team.cli(*args)
        assert result.returncode == 1 and "database" in _one_error_line(result)
