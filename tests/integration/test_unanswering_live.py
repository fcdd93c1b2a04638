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


def timed(project, *args, timeout: float = 60, env: dict | None = None):
    started = time.monotonic()
    result = project.cli(*args, timeout=timeout, env=env)
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
        assert status.stderr.strip().splitlines() == [
            f"Error: supervisord PID {pid} does not answer: stopped (process state T, e.g. "
            f"SIGSTOP); `kill -CONT {pid}` resumes it, `coffee-team stop` after that stops "
            f"the team"]
        assert took < 3, f"status took {took:.1f}s: a stopped supervisord is seen at once"

        start, took_start = timed(project, "start")
        assert start.returncode == 4, start.stderr
        assert f"supervisord PID {pid} does not answer" in start.stderr
        assert took_start < 5, f"start took {took_start:.1f}s"
        assert supervisords(project) == [pid]
        stop, took_stop = timed(project, "stop")
        assert stop.returncode == 4 and took_stop < 3, (took_stop, stop.stderr)
        print(f"SIGSTOPped supervisord: status exit 4 after {took:.1f}s, start after "
              f"{took_start:.1f}s (no second supervisord), stop after {took_stop:.1f}s")
    # resumed: all is well (agents that lost their parent meanwhile are restarted by the
    # watchdog), and still one supervisord
    assert project.cli("status", check=True).stdout.startswith("Orchestrator Status:")
    project.wait_states("RUNNING", timeout=40)
    assert "Agents Running: 6/6" in project.cli("status", check=True).stdout
    project.cli("start", check=True)
    assert supervisords(project) == [pid]


def test_a_silent_supervisord_is_exit_4_within_the_status_bound(running_team):
    """Overloaded looks from outside like stopped without state T: the socket takes the
    connection and no answer comes. Reached by URL (SUPERVISOR_SERVER_URL), the stopped one
    is only that: status waits its bound, says what it waits for, and exits 4."""
    project = running_team
    sock = project.sock.parent / ".." / "run" / project.sock.name  # the same, by another name
    url = {"SUPERVISOR_SERVER_URL": f"unix://{sock}"}
    with stopped(project.supervisord_pid()):
        status, took = timed(project, "status", "--timeout", "3", env=url)
    assert status.returncode == 4, status.stderr
    assert 3 <= took < 3 + 4, f"status took {took:.1f}s (bound 3 s)"
    lines = status.stderr.strip().splitlines()
    assert lines[0] == ("waiting for supervisord to answer coffee.getTeamStatus... 2 s"), lines
    assert lines[-1] == (f"Error: supervisord at unix://{sock} does not answer: "
                         f"stopped or overloaded (no answer within 3s); wait and retry")
    print(f"silent supervisord: status exit 4 after {took:.1f}s (--timeout 3)")


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
    # Agents RUNNING only after 6 s (startsecs): on a quiet machine `start` would otherwise be
    # done before the latest Ctrl+C.
    project.write_team(start_seconds=6)
    start = subprocess.Popen([str(BIN / "coffee-team"), "--team", str(project.team_file),
                              "start"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=clean_env(), cwd=project.root)
    # the delay counts from the start's own beginning (it holds the start lock), not from the
    # spawn: on a loaded machine the interpreter may still be importing 2.5 s later, before
    # the command line handles Ctrl+C at all
    lock = project.team.run_dir / "start.lock"
    wait_until(lambda: lock.exists() and lock.read_text().strip() == str(start.pid), 30, 0.02,
               "the start to begin")
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
