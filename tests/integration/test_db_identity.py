"""Database identity under a real supervisord (issue 26, item 1).

The finding: ``mv data/orchestrator.db data/moved.db`` under a running team went unnoticed;
``doctor`` or ``send`` then made a new empty database at the path, and SQLite deleted
``orchestrator.db-wal`` on close, which held every recent task of the renamed file. Now no
command makes a database there, no WAL is deleted, the renamed file keeps its tasks, and the
team (agents, watchdog, rpcinterface, doctor, status) says so in one line until the file is
back; then it goes on where it stopped. A deleted and a replaced database likewise.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from coffee_team.queue import MessageQueue, files
from coffee_team.queue.identity import DELETED, RENAMED
from tests.harness import boot_supervisord, wait_until
from tests.integration.test_reliability import assert_no_crash, recording_team, side_effects

pytestmark = pytest.mark.slow


def tasks_in_file(path) -> dict[int, str]:
    """The tasks in the file itself, id: status (immutable: no WAL read, none made, no lock)."""
    conn = sqlite3.connect(files.connect_uri(str(path), read_only=True), uri=True)
    try:
        return dict(conn.execute("SELECT id, status FROM tasks").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


def task_ids_in_file(path) -> set[int]:
    return set(tasks_in_file(path))


def running_team_with_tasks(project, tmp_path, n=12):
    workers = recording_team(project, tmp_path)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    assert "database" not in project.rpc().coffee.getTeamStatus()  # the rpcinterface's open
    with MessageQueue.from_team(project.team, create=False) as q:
        ids = [q.send("cli", workers[i % 3], "work", {"i": i}) for i in range(n)]
    wait_until(lambda: set(side_effects(tmp_path, workers)) >= set(ids), 20, 0.1, "the work")
    return workers, ids


def one_line_refusal(result) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    return result.stderr.strip()


def test_a_renamed_database_is_reported_everywhere_and_nothing_is_lost(project, tmp_path,
                                                                       reliability):
    workers, ids = running_team_with_tasks(project, tmp_path)
    path = project.team.database_url
    moved = os.path.join(os.path.dirname(path), "moved.db")
    wal = path + "-wal"
    wal_inode = os.stat(wal).st_ino
    os.rename(path, moved)
    # the team notices: each process checkpoints the WAL into the renamed file
    wait_until(lambda: task_ids_in_file(moved) >= set(ids), 10, 0.2,
               "the renamed file to hold every task without the WAL")
    doctor = wait_until(lambda: (r := project.cli("doctor")).returncode == 1
                        and f"renamed to {moved}" in r.stdout and r, 10, 0.3,
                        "doctor to name where the file went")
    assert [line for line in doctor.stdout.splitlines() if "renamed" in line][0].startswith(
        "FAIL database: database file ")
    send = one_line_refusal(project.cli("send", workers[0], "work", "--content", "{}"))
    assert "database missing" in send and f"mv {moved} {path}" in send
    queue = one_line_refusal(project.cli("queue"))
    assert "database missing" in queue
    status = project.cli("status")
    assert status.returncode == 0 and "Traceback" not in status.stderr
    lines = [line for line in status.stdout.splitlines() if line.strip().startswith("Database:")]
    assert len(lines) == 1 and "renamed" in lines[0], status.stdout
    assert all(f"{name}: " in status.stdout for name in project.team.names)
    # nothing made a database at the path, nothing deleted the renamed file's WAL
    assert not os.path.exists(path) and os.stat(wal).st_ino == wal_inode
    logs = project.root / "data" / "logs"
    wait_until(lambda: f"renamed to {moved}" in (logs / f"{workers[0]}.log").read_text(),
               10, 0.2, "the agent to say where the file went")
    time.sleep(1.5)  # several checks: still one line for the episode
    assert (logs / f"{workers[0]}.log").read_text().count("was renamed to") == 1
    assert (logs / "watchdog.log").read_text().count("was renamed to") == 1
    # the file back: the team goes on where it stopped
    os.rename(moved, path)
    moved_back_at = time.monotonic()
    result = project.cli("send", workers[0], "work", "--content", "{}")
    assert result.returncode == 0, result.stderr
    after = int(result.stdout.strip())
    wait_until(lambda: after in side_effects(tmp_path, workers), 20, 0.05, "work after")
    back = time.monotonic() - moved_back_at
    wait_until(lambda: project.cli("doctor").returncode == 0, 10, 0.5, "doctor all ok again")
    assert "database" not in project.rpc().coffee.getTeamStatus()
    with MessageQueue.from_team(project.team, create=False) as q:
        done = {t["id"] for t in q.list_tasks(status="completed", limit=1000)}
    assert done >= set(ids) | {after}
    assert sorted(side_effects(tmp_path, workers)) == sorted(set(side_effects(tmp_path, workers)))
    assert_no_crash(project)
    reliability("database file renamed under the team", f"{len(ids)} tasks before, 1 after",
                "mv of the SQLite file; doctor, send, queue, status run meanwhile", 0, "0",
                f"no database made, WAL kept, renamed file whole; agents, watchdog, "
                f"rpcinterface, doctor, status say so in one line; moved back, a task sent "
                f"then done {back:.1f}s after the mv back (the CLI's start-up included)")


def test_a_deleted_database_is_reported_and_never_made_anew(project, tmp_path, reliability):
    workers, ids = running_team_with_tasks(project, tmp_path, n=3)
    path = project.team.database_url
    wal_inode = os.stat(path + "-wal").st_ino
    os.unlink(path)
    doctor = wait_until(lambda: (r := project.cli("doctor")).returncode == 1
                        and "was deleted while open" in r.stdout and r, 10, 0.3,
                        "doctor to notice the deleted file")
    assert "FAIL database: database file " in doctor.stdout
    send = one_line_refusal(project.cli("send", workers[0], "work", "--content", "{}"))
    assert "database missing" in send and "was deleted while open" in send
    status = wait_until(lambda: "deleted" in (s := project.rpc().coffee.getTeamStatus()).get(
        "database", "") and s, 3, 0.2, "the rpcinterface's check (once a second)")
    assert len(status["agents"]) == 6
    start = one_line_refusal(project.cli("start"))  # a running team: starts nothing either
    assert not os.path.exists(path) and os.stat(path + "-wal").st_ino == wal_inode
    assert "database" in start or "deleted" in start or "missing" in start
    logs = project.root / "data" / "logs"
    wait_until(lambda: "was deleted while open" in (logs / f"{workers[0]}.log").read_text(),
               10, 0.2, "the agent to say the file is gone")
    reliability("database file deleted under the team", "3 tasks before",
                "rm of the SQLite file; doctor, send, start run meanwhile", 0, "0",
                "no database made at the path, its WAL kept; agents, watchdog, rpcinterface, "
                "doctor say so in one line and write nothing (was: a sender made a new file "
                "and the team took it up)")


def test_a_replaced_database_is_reported_and_neither_takes_up_the_others_wal(
        project, tmp_path, reliability):
    workers, ids = running_team_with_tasks(project, tmp_path, n=3)
    path = project.team.database_url
    other = os.path.join(os.path.dirname(path), "other.db")
    with MessageQueue(other, agents=project.team.names) as q:
        mine = q.send("someone", workers[0], "theirs")
    os.rename(other, path)
    doctor = wait_until(lambda: (r := project.cli("doctor")).returncode == 1
                        and "replaced" in r.stdout and r, 10, 0.3, "doctor to see it")
    assert "FAIL database" in doctor.stdout
    send = one_line_refusal(project.cli("send", workers[0], "work", "--content", "{}"))
    assert "another database" in send
    status = wait_until(lambda: "replaced" in (s := project.rpc().coffee.getTeamStatus()).get(
        "database", "") and s, 3, 0.2, "the rpcinterface's check")
    assert len(status["agents"]) == 6
    time.sleep(1.5)
    # no frame of the old file's WAL went into it, and the team took no work from it
    assert tasks_in_file(path) == {mine: "pending"}
    # restarted on the new one, as the line says: its task is done
    project.cli("stop", check=True)
    restarted_at = time.monotonic()
    project.cli("start", check=True)
    with MessageQueue.from_team(project.team, create=False) as q:
        wait_until(lambda: q.get_task(mine)["status"] == "completed", 20, 0.1,
                   "the new file's task")
    done = time.monotonic() - restarted_at
    reliability("database file replaced under the team", "3 tasks before; 1 in the new file",
                "mv of another database onto the path", 0, "0",
                "reported in one line everywhere, the old WAL never read into the new file, "
                f"its task left alone; after stop, start: done {done:.1f}s after the start")


def test_process_problem_sees_a_rename_in_another_process(tmp_path):
    path = tmp_path / "o.db"
    MessageQueue(str(path), agents=["a"]).close()
    script = ("import sys, time\nfrom coffee_team.queue import MessageQueue\n"
              "q = MessageQueue(sys.argv[1], agents=['a'], create=False)\nq.stats()\n"
              "print('open', flush=True)\ntime.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        assert files.process_problem(str(path), child.pid) is None
        os.rename(path, tmp_path / "moved.db")
        problem = files.process_problem(str(path), child.pid)
        assert problem.verdict == RENAMED and problem.now_at == str(tmp_path / "moved.db")
        os.rename(tmp_path / "moved.db", path)
        assert files.process_problem(str(path), child.pid) is None
        os.unlink(path)
        assert files.process_problem(str(path), child.pid).verdict == DELETED
    finally:
        child.kill()
        child.wait()
