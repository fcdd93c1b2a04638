"""A sick database file or a full disk under a real supervisord (issue 18, findings 4, 6, 7).

The team must never go blind or down over it: ``status`` shows the processes with one line
about the database or disk, a database file deleted under the team is noticed (and a new one
taken up), and a full disk is waited for, never taken for hangs. Nothing lost, nothing done
twice.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, wait_until
from tests.integration.test_reliability import assert_no_crash, recording_team, side_effects

pytestmark = pytest.mark.slow


def damage(path) -> None:
    """Overwrite every page but the first: SQLite then says "database disk image is malformed"."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(max(size - 4096, 8192)))


def test_status_with_a_damaged_database_shows_the_processes_and_one_line(project):
    project.write_team()
    with MessageQueue.from_team(project.team) as q:
        q.send_many([{"sender": "t", "recipient": "architect", "type": "x",
                      "content": {"pad": "y" * 200}} for _ in range(300)])
    damage(project.team.database_url)
    boot_supervisord(project)
    result = project.cli("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(any(line.strip().startswith(f"{name}: ") for line in lines)
               for name in project.team.names), result.stdout
    trouble = [line for line in lines if "malformed" in line]
    assert len(trouble) == 1 and trouble[0].strip().startswith("Database: "), result.stdout
    assert "Traceback" not in result.stderr


def test_deleted_database_file_is_detected_and_the_new_one_taken_up(project, tmp_path,
                                                                    reliability):
    workers = recording_team(project, tmp_path)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    path = project.team.database_url
    assert "database" not in project.rpc().coffee.getTeamStatus()  # the rpcinterface's is open
    with MessageQueue.from_team(project.team) as q:
        before = q.send("cli", workers[0], "work")
        wait_until(lambda: before in side_effects(tmp_path, workers), 20, 0.1, "work before")
    os.unlink(path)
    deleted_at = time.monotonic()
    doctor = wait_until(lambda: (r := project.cli("doctor")).returncode == 1
                        and "was deleted while open" in r.stdout and r, 10, 0.3,
                        "doctor to notice the deleted file")
    assert [line for line in doctor.stdout.splitlines() if "deleted" in line][0].startswith(
        "FAIL database: database file ")
    status = wait_until(lambda: "database" in (s := project.rpc().coffee.getTeamStatus()) and s,
                        3, 0.2, "the rpcinterface's check (once a second)")
    assert "deleted while open" in status["database"] and len(status["agents"]) == 6
    logs = project.root / "data" / "logs"
    wait_until(lambda: "was deleted while open" in (logs / f"{workers[0]}.log").read_text(),
               10, 0.2, "the agent to say the file is gone")
    time.sleep(2)  # several retries: still one line for the episode
    assert (logs / f"{workers[0]}.log").read_text().count("was deleted while open") == 1
    # A sender creates a new file at the path: the team takes it up and does the work.
    result = project.cli("send", workers[0], "work", "--content", "{}")
    assert result.returncode == 0, result.stderr
    with MessageQueue.from_team(project.team) as q:
        (after,) = [t["id"] for t in q.list_tasks(limit=10)]
        wait_until(lambda: q.get_task(after)["status"] == "completed", 20, 0.2,
                   "the task sent to the new file to complete")
    recovered = time.monotonic() - deleted_at
    assert "replaced by another file" in (logs / f"{workers[0]}.log").read_text()
    wait_until(lambda: project.cli("doctor").returncode == 0, 10, 0.5, "doctor all ok again")
    assert "database" not in project.rpc().coffee.getTeamStatus()
    assert_no_crash(project)
    reliability("database file deleted under the team", "tasks before and after",
                "rm of the SQLite file; a sender creates a new one", 0, "0",
                f"agents, watchdog, rpcinterface, doctor say so in one line; new file taken "
                f"up, its task done {recovered:.1f}s after the rm")


@contextlib.contextmanager
def small_tmpfs(directory, size="2m"):
    """A ``size`` tmpfs mounted on ``directory`` (which keeps nothing of its old content)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(directory)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def fill(directory) -> None:
    """Write until the filesystem refuses (ENOSPC)."""
    with open(directory / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()


def test_full_disk_is_waited_for_not_taken_for_hangs(project, tmp_path, reliability):
    disk = project.root / "disk"
    with small_tmpfs(disk):
        workers = recording_team(project, tmp_path, work_seconds=0.01,
                                 database_path="disk/orchestrator.db")
        os.rmdir(project.team.status_dir)
        os.symlink(disk, project.team.status_dir)  # heartbeats and the database on the tmpfs
        boot_supervisord(project)
        infos = project.wait_states("RUNNING", timeout=40)
        pids = {n: i["pid"] for n, i in infos.items()}
        stale_after = project.team.settings.heartbeat_stale_after
        with MessageQueue.from_team(project.team) as q:
            ids = [q.send("cli", workers[i % 3], "work", {"i": i}) for i in range(30)]
            fill(disk)
            filled_at = time.monotonic()
            with contextlib.suppress(Exception):  # the disk is full: may or may not fit
                ids.append(q.send("cli", workers[0], "work", {"i": "during"}))
            doctor = project.cli("doctor")
            status = project.cli("status")
            time.sleep(max(0.0, 2 * stale_after + 3 - (time.monotonic() - filled_at)))
            assert {n: i["pid"] for n, i in project.infos().items()} == pids  # no restart
            assert_no_crash(project)
            os.unlink(disk / "filler")
            freed_at = time.monotonic()
            wait_until(lambda: {t["id"] for t in q.list_tasks(status="completed", limit=1000)}
                       >= set(ids), 30, 0.2, "every task to complete once space is back")
            drained = time.monotonic() - freed_at
            time.sleep(2 * project.team.settings.health_check_interval + 1)
            assert {n: i["pid"] for n, i in project.infos().items()} == pids
            assert_no_crash(project)
            with MessageQueue.from_team(project.team) as check:
                hangs = [e for e in check.events(limit=10**5) if e["kind"] == "hung"]
            done = side_effects(tmp_path, workers)
            logs = (project.root / "data" / "logs" / f"{workers[0]}.log").read_text()
        assert hangs == []
        assert "FAIL disk space: disk full:" in doctor.stdout, doctor.stdout
        assert "Disk: disk full:" in status.stdout, status.stdout
        assert status.returncode == 0
        assert "waiting for disk" in logs
        assert sorted(set(done) & set(ids)) == sorted(ids)  # nothing lost
        assert len([i for i in done if i in set(ids)]) == len(ids)  # nothing done twice
    reliability("disk full (2 MB tmpfs with heartbeats and database)",
                f"{len(ids)} tasks, 3 agents", f"disk filled for {2 * stale_after + 3:g} s "
                f"(2 × heartbeat_stale_after + 3)", 0, "0",
                f"no hang, no restart; backlog done {drained:.1f}s after space was freed")
