"""A supervisord that lives but does not answer, under a real one (issue 26 items 5 and 9):
SIGSTOPped, `status` exits 4 within its bound naming the PID and `start` returns within
seconds without booting a second one; after SIGCONT all is well. Two concurrent starts both
exit 0 with one team; Ctrl+C early in `start` is one line, exit 130, no traceback."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest

from tests.harness import BIN, boot_supervisord, clean_env, wait_until

pytestmark = pytest.mark.slow


def supervisords(project) -> list[int]:
    """Every live supervisord process of this project (booted from its config)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and \
                any(arg.endswith("/supervisord") for arg in cmd) and str(project.conf) in cmd:
            found.append(proc.pid)
    return found


def timed(project, *args, timeout: float = 60):
    started = time.monotonic()
    result = project.cli(*args, timeout=timeout)
    return result, time.monotonic() - started


@contextlib.contextmanager
def stopped(pid: int):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_stopped_supervisord_is_exit_4_and_start_boots_no_second_one(running_team):
    project = running_team
    pid = project.supervisord_pid()
    with stopped(pid):
        status, took = timed(project, "status")
        assert status.returncode == 4, status.stderr
        last = status.stderr.strip().splitlines()[-1]
        assert last.startswith(f"Error: supervisord PID {pid} does not answer: stopped")
        assert "not running" not in status.stderr and "Traceback" not in status.stderr
        assert took < 10 + 5, f"status took {took:.1f}s (bound 10 s)"
        assert f"waiting for supervisord (PID {pid}) to answer coffee.getTeamStatus" \
            in status.stderr  # it said what it waited for while it waited

        start, took_start = timed(project, "start")
        assert start.returncode == 4, start.stderr
        assert f"supervisord PID {pid} does not answer" in start.stderr
        assert took_start < 5, f"start took {took_start:.1f}s"
        assert supervisords(project) == [pid]
        print(f"SIGSTOPped supervisord: status exit 4 after {took:.1f}s, start exit 4 after "
              f"{took_start:.1f}s, no second supervisord")
    # resumed: all is well (agents that lost their parent meanwhile are restarted by the
    # watchdog), and still one supervisord
    assert project.cli("status", check=True).stdout.startswith("Orchestrator Status:")
    project.wait_states("RUNNING", timeout=40)
    assert "Agents Running: 6/6" in project.cli("status", check=True).stdout
    project.cli("start", check=True)
    assert supervisords(project) == [pid]


def test_an_overloaded_supervisord_is_exit_4_within_the_status_bound(running_team):
    """Overloaded looks the same from outside as stopped without state T: the socket takes the
    connection and no answer comes. A `--timeout` shorter than any answer stands for it."""
    project = running_team
    pid = project.supervisord_pid()
    with stopped(pid):
        # a stopped process is recognised at once by start; status only sees the silence
        status, took = timed(project, "status", "--timeout", "1")
    assert status.returncode == 4 and took < 6, (took, status.stderr)
    assert f"supervisord PID {pid} does not answer" in status.stderr


def test_two_concurrent_starts_both_exit_0_with_one_team(project):
    project.write_team()
    command = [str(BIN / "coffee-team"), "--team", str(project.team_file), "start"]
    starts = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=clean_env(), cwd=project.root) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in starts]
    project.remember()
    assert [code for code, _, _ in results] == [0, 0], results
    pids = supervisords(project)
    assert pids == [project.supervisord_pid()], pids
    outs = sorted(out for _, out, _ in results)
    loser = [out for out in outs if out.startswith("already starting")]
    assert len(loser) == 1 and len(loser[0].strip().splitlines()) == 1, outs
    assert f"supervisord PID {pids[0]}" in loser[0]
    assert any("Orchestrator Status:" in out for out in outs)
    project.wait_states("RUNNING")


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.5])
def test_ctrl_c_in_start_is_one_line_and_exit_130(project, delay):
    project.write_team()
    start = subprocess.Popen([str(BIN / "coffee-team"), "--team", str(project.team_file),
                              "start"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=clean_env(), cwd=project.root)
    time.sleep(delay)
    start.send_signal(signal.SIGINT)
    out, err = start.communicate(timeout=60)
    project.remember()
    assert start.returncode == 130, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("interrupted"), err
    assert all(line.startswith("waiting for ") for line in lines[:-1]), err
    left = supervisords(project)
    if left:  # whatever it left running, the line names it
        assert f"supervisord PID {left[0]}" in lines[-1], err
        wait_until(project.answers, 20, message="the supervisord it left to answer")
    print(f"SIGINT after {delay}s: {lines[-1]}")
