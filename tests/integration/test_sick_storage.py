"""A sick database file or a full disk under a real supervisord (issue 18, findings 4, 6, 7).

The team must never go blind or down over it: ``status`` shows the processes with one line
about the database or disk, and a full disk is waited for, never taken for hangs. Nothing
lost, nothing done twice. A database file renamed, deleted or replaced under the team:
test_db_identity.py.
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
