"""The watchdog under a real supervisord with restart_backoff: 1."""
from __future__ import annotations

import os
import signal
import time

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, demo_agents, wait_until

pytestmark = pytest.mark.slow


def crashing_team(project, **team):
    agents = demo_agents()
    agents["code_searcher"] = {"priority": 4, "check_interval": 3600,
                               "handler": "coffee_team.agent.faults:crash",
                               "options": {"crash_after": 1.5}}
    project.write_team(agents, **team)


def events(project, agent, kind=None):
    with MessageQueue.from_team(project.team) as q:
        rows = q.events(agent=agent, limit=1000)
    return [e for e in rows if kind is None or e["kind"] == kind]


def status_of(queue, task_id):
    return {t["id"]: t["status"] for t in queue.list_tasks(limit=10000)}[task_id]


def test_crash_loop_backs_off_1_2_4_then_gives_up_once(project, reliability):
    crashing_team(project)
    boot_supervisord(project)
    wait_until(lambda: events(project, "code_searcher", "given_up"), 40, 0.2, "give-up")
    crashes = [e["ts"] for e in events(project, "code_searcher", "crash")]
    restarts = [e["ts"] for e in events(project, "code_searcher", "restarted")]
    delays = [round(r - c, 2) for c, r in zip(crashes, restarts)]
    print(f"restart delays {delays} (schedule 1, 2, 4)")
    reliability("crash loop", "demo team, 1 agent exits 1 after RUNNING", "4 crashes",
                0, "0", f"restarts after {', '.join(f'{d:g}' for d in delays)}s "
                f"(1/2/4 × 1s), then 1 CRITICAL give-up")
    assert len(restarts) == 3
    for delay, due in zip(delays, (1, 2, 4)):
        assert abs(delay - due) <= 1.0, delays
    with MessageQueue.from_team(project.team) as q:
        critical = [n for n in q.notifications() if n["level"] == "CRITICAL"]
        assert len(critical) == 1 and critical[0]["agent"] == "code_searcher"
        assert critical[0]["sound"] is False
        failed = q.get_messages("project_manager", "pending") + \
            q.list_tasks(agent="project_manager", limit=1000)
        assert any(t["type"] == "agent_failed" for t in failed)
    # the others carry on
    infos = {i["name"]: i["statename"] for i in project.rpc().supervisor.getAllProcessInfo()}
    assert infos["code_searcher"] == "EXITED"
    assert all(infos[n] == "RUNNING" for n in project.team.names if n != "code_searcher")
    # a human restart clears the give-up
    result = project.cli("status", "--json", check=True)
    assert '"code_searcher"' in result.stdout


def test_killed_agent_task_is_requeued_and_completed_once(project, tmp_path, reliability):
    record = tmp_path / "done.txt"
    agents = demo_agents()
    agents["code_developer"] = {"priority": 2, "check_interval": 3600,
                                "handler": "coffee_team.agent.faults:record",
                                "options": {"record_file": str(record), "work_seconds": 3}}
    project.write_team(agents)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    with MessageQueue.from_team(project.team) as q:
        task_id = q.send("architect", "code_developer", "implement_priority", {"n": 1})
        wait_until(lambda: status_of(q, task_id) == "in_progress", 10,
                   message="the task to be claimed")
        pid = project.rpc().supervisor.getProcessInfo("code_developer")["pid"]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: status_of(q, task_id) != "in_progress", 10,
                   interval=0.01, message="the task to be requeued")
        claimable = time.monotonic() - killed_at
        print(f"task claimable again {claimable:.2f}s after kill -9")
        wait_until(lambda: status_of(q, task_id) == "completed", 30, 0.2, "the task to complete")
    assert record.read_text().split().count(str(task_id)) == 1  # done exactly once
    reliability("agent killed -9 holding a task", "1 task of 3 s", "kill -9 of the agent", 0,
                "0", f"task claimable again {claimable:.2f}s after the kill")


def test_listener_killed_during_backoff_still_restarts_on_time(project, reliability):
    crashing_team(project, restart_backoff=4.0, max_restart_attempts=5)
    boot_supervisord(project)
    wait_until(lambda: events(project, "code_searcher", "restart_scheduled"), 30, 0.1,
               "a scheduled restart")
    scheduled = events(project, "code_searcher", "restart_scheduled")[0]
    os.kill(project.rpc().supervisor.getProcessInfo("watchdog")["pid"], signal.SIGKILL)
    wait_until(lambda: events(project, "code_searcher", "restarted"), 15, 0.1, "the restart")
    restarted = events(project, "code_searcher", "restarted")[0]
    lateness = restarted["ts"] - scheduled["detail"]["due_at"]
    print(f"restart {lateness:+.2f}s from its due time across a listener kill -9")
    assert -0.1 <= lateness <= 1.5
    wait_until(lambda: len(events(project, "code_searcher", "crash")) >= 2, 20, 0.1,
               "the second crash")
    second = events(project, "code_searcher", "crash")[1]
    assert second["detail"]["attempt"] == 2  # the count survived the listener's death
    reliability("listener killed -9 during a backoff", "demo team, 1 crashing agent",
                "kill -9 of the watchdog", 0, "0",
                f"restart {lateness:+.2f}s from its due time; count kept")


def test_damaged_database_at_boot_is_waited_out_then_the_team_launches(project, reliability):
    project.write_team()
    database = project.root / "data" / "orchestrator.db"
    database.write_bytes(b"this is not a database\n" * 100)
    boot_supervisord(project)
    rpc = project.rpc()
    first = wait_until(lambda: rpc.supervisor.getProcessInfo("watchdog")["pid"], 10,
                       message="the watchdog to run")
    log_file = project.root / "data" / "logs" / "watchdog.log"
    # its first try said so (spawned is not yet tried: on a loaded machine its start-up
    # alone can outlast the 5 s below)
    wait_until(lambda: "cannot start yet" in log_file.read_text(), 30, 0.1,
               "the watchdog's first try")
    time.sleep(5)  # long enough for several retries (1, 2, 4 s) and for a crash loop to show
    info = rpc.supervisor.getProcessInfo("watchdog")
    assert (info["statename"], info["pid"]) == ("RUNNING", first)  # never crashed
    assert all(i["statename"] == "STOPPED" for i in rpc.supervisor.getAllProcessInfo()
               if i["name"] != "watchdog")
    log = log_file.read_text()
    assert log.count("cannot start yet") == 1 and "Traceback" not in log

    database.unlink()  # the user restores (here: removes) the damaged file
    started = time.monotonic()
    project.wait_states({n: "RUNNING" for n in project.team.names}, timeout=30)
    assert rpc.supervisor.getProcessInfo("watchdog")["pid"] == first
    reliability("damaged database at boot", "team of 6, database file overwritten",
                "file is not a database for 5 s", 0, "0",
                f"watchdog kept its PID; team RUNNING {time.monotonic() - started:.1f} s after "
                f"the file was fixed")
