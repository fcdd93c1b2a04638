"""A sick PostgreSQL under a real supervisord (issue 18, findings 2 and 4): a held lock never
freezes supervisord, and a dropped or idle-timed-out connection is replaced transparently.

Needs COFFEE_TEST_PG_URL, like test_pg_scaleout.py (whose temporary-database fixture this
module shares).
"""
from __future__ import annotations

import os
import signal
import threading
import time

import psycopg2
import pytest

from tests.harness import boot_supervisord, demo_agents, wait_until
from tests.integration.test_pg_scaleout import _admin, needs_pg, pg_db  # noqa: F401 (a fixture)

pytestmark = [needs_pg, pytest.mark.slow]


# seconds the tables stay locked: 3 x the watchdog's patience for a database answer
# (dbworker.PATIENCE, 2 s) and 30 x the RPC's busy timeout (200 ms)
HELD = 6


def pg_team(project, url, tmp_path, **team):
    agents = demo_agents()
    agents["code_developer"].update(handler="coffee_team.agent.faults:record",
                                    options={"record_file": str(tmp_path / "done"),
                                             "work_seconds": 3})
    # Agents blocked by the lock are not hung: keep staleness above the HELD s of the lock.
    project.write_team(agents, database_path=url, heartbeat_stale_after=30, **team)


def hold_locks(url, tables, seconds, held: threading.Event):
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        for table in tables:
            cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        held.set()
        time.sleep(seconds)
    finally:
        conn.rollback()
        conn.close()


def timed(call):
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


@pytest.fixture
def pg_project(project, pg_db, tmp_path):  # noqa: F811
    url, name = pg_db
    pg_team(project, url, tmp_path)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=60)
    return project, url, name


def test_held_lock_never_freezes_supervisord(pg_project, tmp_path, reliability):
    project, url, _ = pg_project
    rpc = project.rpc(timeout=30)
    task_id = rpc.coffee.sendMessage("cli", "code_developer", "work", {}, 5)
    wait_until(lambda: rpc.coffee.getTask(task_id)["status"] == "in_progress", 20, 0.1,
               "the task to be claimed")
    held = threading.Event()
    locker = threading.Thread(target=hold_locks,
                              args=(url, ("tasks", "restart_state"), HELD, held))
    locker.start()
    held.wait(10)
    os.kill(project.infos()["code_developer"]["pid"], signal.SIGKILL)
    pid_waits, status_waits, lines = [], [], set()
    while locker.is_alive():
        pid_waits.append(timed(rpc.supervisor.getPID)[0])
        took, status = timed(rpc.coffee.getTeamStatus)
        status_waits.append(took)
        lines.add(status.get("database", ""))
        timed(rpc.supervisor.getAllProcessInfo)
        time.sleep(0.2)
    locker.join()
    released = time.monotonic()
    assert max(pid_waits) < 1.0, pid_waits
    assert max(status_waits) < 1.0, status_waits
    assert any("timeout" in line for line in lines), lines  # a database line, no restart columns
    wait_until(lambda: rpc.coffee.getTask(task_id)["status"] == "completed", 60, 0.2,
               "the killed agent's task to be requeued and done")
    done_after = time.monotonic() - released
    assert "database" not in rpc.coffee.getTeamStatus()
    rows = _admin(f"SELECT status FROM tasks WHERE id = {task_id}", url)
    assert rows == [("completed",)]
    completions = _admin("SELECT COUNT(*) FROM metrics WHERE task_type = 'work'", url)[0][0]
    assert completions == 1
    reliability("PostgreSQL tables locked while an agent is killed",
                "1 task of 3 s on the killed agent",
                f"LOCK tasks + restart_state ACCESS EXCLUSIVE {HELD} s; kill -9", 0, "0",
                f"supervisor.getPID max {max(pid_waits):.2f}s, getTeamStatus max "
                f"{max(status_waits):.2f}s during the lock; task done {done_after:.1f}s after")


def test_dropped_and_idle_timed_out_connections_are_replaced_transparently(pg_db, project,
                                                                         tmp_path):
    url, name = pg_db
    _admin(f"ALTER DATABASE {name} SET idle_session_timeout = '3s'")
    try:
        pg_team(project, url, tmp_path)
        boot_supervisord(project)
        project.wait_states("RUNNING", timeout=60)
        rpc = project.rpc()
        assert "database" not in rpc.coffee.getTeamStatus()
        # The rpcinterface's own session terminated: the next calls work, no fault.
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
               f"'{name}' AND application_name = '' AND pid <> pg_backend_pid()")
        assert "database" not in rpc.coffee.getTeamStatus()
        rpc.coffee.sendMessage("cli", "assistant", "question", {}, 5)
        started = time.monotonic()
        for _ in range(4):  # each call after more than the idle timeout
            time.sleep(3.5)
            assert "database" not in rpc.coffee.getTeamStatus()
            assert rpc.coffee.sendMessage("cli", "assistant", "question", {}, 5) > 0
            assert project.cli("queue").returncode == 0
        quiet_for = time.monotonic() - started
        logs = project.root / "data" / "logs"
        lines = sum(log.read_text().count("unavailable") + log.read_text().count("lost")
                    for log in logs.glob("*.log") if log.name != "supervisord.log")
        assert lines <= len(project.team.names), lines  # at most one per agent, not per second
        infos = project.infos()
        assert all(i["statename"] == "RUNNING" for i in infos.values())
        print(f"{lines} reconnect lines in {quiet_for:.0f}s with idle_session_timeout=3s")
    finally:
        _admin(f"ALTER DATABASE {name} RESET idle_session_timeout")
