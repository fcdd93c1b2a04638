"""Is supervisord running, gone, or there and silent (issue 26 items 5 and 9): the pure verdict
from the pidfile, its process and what the socket did; the observations; one start at a
time; and the command line's lines and exit codes (3 not running, 4 not answering, 130
Ctrl+C) against a socket that accepts and never answers, all in this process."""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from coffee_team import client
from coffee_team.cli import main
from coffee_team.errors import ActionRefused, SupervisorDown, SupervisorNotAnswering
from coffee_team.ops import probe, starting
from coffee_team.ops.probe import (ANSWERED, NONE, OTHER, REFUSED, STOPPED, SUPERVISORD,
                                   TIMEOUT, UNASKED, Seen, judge)

REPO = Path(__file__).resolve().parents[2]
URL = "unix:///p/data/run/supervisor.sock"
GHOST = 2**22 + 4321  # above any pid_max: no process of this machine has it


# --- the verdict ----------------------------------------------------------------------------

@pytest.mark.parametrize("process", [NONE, OTHER, SUPERVISORD])
def test_an_answer_is_running_whatever_the_pidfile_says(process):
    verdict = judge(Seen(1234, process, ANSWERED, URL))
    assert (verdict.state, verdict.exit_code, verdict.line) == ("running", 0, "")
    assert verdict.pid == (1234 if process == SUPERVISORD else None)


def test_a_live_supervisord_that_times_out_does_not_answer_exit_4():
    verdict = judge(Seen(4321, SUPERVISORD, TIMEOUT, URL, waited=10))
    assert (verdict.state, verdict.pid, verdict.exit_code) == ("not_answering", 4321, 4)
    assert verdict.line.startswith("supervisord PID 4321 does not answer: stopped or overloaded")
    assert "within 10s" in verdict.line and URL in verdict.line
    assert "kill -CONT 4321" in verdict.line and "not running" not in verdict.line


def test_a_stopped_supervisord_is_named_as_such_without_asking():
    verdict = judge(Seen(4321, STOPPED, UNASKED, URL))
    assert (verdict.state, verdict.exit_code) == ("not_answering", 4)
    assert "PID 4321 does not answer: stopped" in verdict.line
    assert "kill -CONT 4321" in verdict.line


def test_a_live_supervisord_whose_socket_refuses_is_not_booted_again():
    verdict = judge(Seen(4321, SUPERVISORD, REFUSED, URL, why="No such file or directory"))
    assert (verdict.state, verdict.exit_code) == ("not_answering", 4)
    assert "No such file or directory" in verdict.line and "kill 4321" in verdict.line


@pytest.mark.parametrize("process", [NONE, OTHER])
def test_no_supervisord_and_a_refusing_socket_is_not_running_exit_3(process):
    verdict = judge(Seen(99, process, REFUSED, URL, why="Connection refused"))
    assert (verdict.state, verdict.pid, verdict.exit_code) == ("not_running", None, 3)
    assert verdict.line == (f"supervisord is not running (no answer at {URL}: Connection "
                            f"refused); start the team with `coffee-team start`")


def test_a_silent_server_without_a_pid_of_ours_does_not_answer():
    # SUPERVISOR_SERVER_URL / --conf: another server, whose pidfile we do not read
    verdict = judge(Seen(None, NONE, TIMEOUT, "http://h:9001", waited=5))
    assert (verdict.state, verdict.pid, verdict.exit_code) == ("not_answering", None, 4)
    assert "supervisord at http://h:9001 does not answer" in verdict.line


# --- observing ------------------------------------------------------------------------------

class Team:
    def __init__(self, root: Path):
        self.run_dir = root / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)


def own(team) -> client.Endpoint:
    return client.Endpoint("unix://" + str(team.run_dir / "supervisor.sock"))


def test_process_kind():
    assert probe.process_kind(None) == NONE
    assert probe.process_kind(os.getpid()) == OTHER  # pytest is no supervisord
    assert probe.process_kind(GHOST) == NONE


def test_stopped_supervisord_from_proc():
    assert not probe.stopped_supervisord(None)
    assert not probe.stopped_supervisord(GHOST)
    assert not probe.stopped_supervisord(os.getpid())  # running, and no supervisord


def raises(exc):
    def ask():
        raise exc
    return ask


def test_observe_reads_the_pidfile_and_classifies_the_socket(tmp_path, monkeypatch):
    team = Team(tmp_path)
    (team.run_dir / "supervisord.pid").write_text("4321\n")
    monkeypatch.setattr(probe, "process_kind", lambda pid: SUPERVISORD if pid == 4321 else NONE)
    seen = probe.observe(team, own(team), 1, ask=raises(SupervisorNotAnswering("x", 1)))
    assert (seen.pid, seen.process, seen.socket) == (4321, SUPERVISORD, TIMEOUT)
    seen = probe.observe(team, own(team), 1, ask=raises(SupervisorDown(
        f"supervisord is not running (no answer at {URL}: Connection refused)")))
    assert (seen.socket, seen.why) == (REFUSED, "Connection refused")
    assert probe.observe(team, own(team), 1, ask=lambda: False).socket == REFUSED
    assert probe.observe(team, own(team), 1, ask=lambda: True).socket == ANSWERED


def test_observe_does_not_ask_a_stopped_supervisord(tmp_path, monkeypatch):
    team = Team(tmp_path)
    (team.run_dir / "supervisord.pid").write_text("4321")
    monkeypatch.setattr(probe, "process_kind", lambda pid: STOPPED)
    seen = probe.observe(team, own(team), 1, ask=lambda: pytest.fail("asked"))
    assert (seen.pid, seen.socket) == (4321, UNASKED)


def test_another_endpoints_pidfile_is_not_ours(tmp_path):
    team = Team(tmp_path)
    (team.run_dir / "supervisord.pid").write_text("4321")
    assert probe.own_pid(team, own(team)) == 4321
    assert probe.own_pid(team, client.Endpoint("http://h:9001")) is None
    (team.run_dir / "supervisord.pid").write_text("garbage")
    assert probe.own_pid(team, own(team)) is None


def test_after_failure_keeps_a_message_that_is_not_about_the_connection(tmp_path):
    team = Team(tmp_path)
    verdict = probe.after_failure(team, own(team), SupervisorDown("u: wrong username or "
                                                                  "password"), 0)
    assert verdict.exit_code == 3 and verdict.line.startswith("u: wrong username or password")


# --- one start at a time --------------------------------------------------------------------

def hold_lock(team) -> int:
    fd = os.open(team.run_dir / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"777\n")
    return fd


def test_the_start_that_holds_the_lock_goes_on_and_writes_its_pid(tmp_path):
    team = Team(tmp_path)
    with starting.only_one_start(team) as other:
        assert other is None
        assert probe.read_pid(team.run_dir / "start.lock") == os.getpid()
    with starting.only_one_start(team) as other:  # released: the next one holds it
        assert other is None


def test_a_second_start_sees_the_first_ones_supervisord(tmp_path, monkeypatch):
    team = Team(tmp_path)
    (team.run_dir / "supervisord.pid").write_text("4321")
    monkeypatch.setattr(probe, "process_kind", lambda pid: SUPERVISORD)
    fd = hold_lock(team)
    try:
        with starting.only_one_start(team) as other:
            assert other.startswith("already starting: another `coffee-team start` (PID 777)")
            assert "supervisord PID 4321" in other
    finally:
        os.close(fd)


def test_a_second_start_gives_up_in_its_bound_without_a_supervisord(tmp_path):
    team = Team(tmp_path)
    fd = hold_lock(team)
    ticks = iter(range(1000))
    try:
        with pytest.raises(ActionRefused, match=r"another `coffee-team start` \(PID 777\)"):
            with starting.only_one_start(team, bound=0.0, clock=lambda: next(ticks)):
                pytest.fail("ran without the lock")
    finally:
        os.close(fd)


# --- the command line -----------------------------------------------------------------------

@pytest.fixture
def team_file(tmp_path, monkeypatch) -> Path:
    for name in ("SUPERVISOR_SERVER_URL", "SUPERVISOR_USERNAME", "SUPERVISOR_PASSWORD",
                 "COFFEE_TEAM"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True)
    path.write_text((REPO / "data" / "team.yaml").read_text()
                    .replace("  python: .venv/bin/python\n", ""))
    return path


@pytest.fixture
def silent_supervisord(team_file, monkeypatch):
    """A socket that takes connections and never answers, and a pidfile naming a PID the
    probe takes for a live supervisord: supervisord stopped (SIGSTOP) or overloaded."""
    run_dir = team_file.parent / "run"
    run_dir.mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(run_dir / "supervisor.sock"))
    sock.listen(8)
    (run_dir / "supervisord.pid").write_text(f"{GHOST}\n")
    monkeypatch.setattr(probe, "process_kind", lambda pid: SUPERVISORD if pid == GHOST else NONE)
    yield team_file
    sock.close()


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_status_of_a_silent_supervisord_is_exit_4_within_its_bound(silent_supervisord):
    result = invoke("--team", str(silent_supervisord), "status", "--timeout", "0.2")
    assert result.exit_code == 4, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: supervisord PID {GHOST} does not answer: stopped or overloaded")
    assert "within 0.2s" in line and "Traceback" not in result.output


def test_start_refuses_to_boot_beside_a_silent_supervisord(silent_supervisord, monkeypatch):
    monkeypatch.setattr(client, "boot", lambda *a, **k: pytest.fail("booted a second one"))
    monkeypatch.setattr("coffee_team.ops.lifecycle.runnable", lambda team: team)
    assert invoke("--team", str(silent_supervisord), "gen-config").exit_code == 0
    from coffee_team.ops import lifecycle
    real = lifecycle.start
    monkeypatch.setattr(lifecycle, "start", lambda *a, **k: real(*a, **{**k,
                                                                       "answer_within": 0.2}))
    result = invoke("--team", str(silent_supervisord), "start")
    assert result.exit_code == 4, result.output
    assert result.output.strip().splitlines()[-1].startswith(
        f"Error: supervisord PID {GHOST} does not answer")


@pytest.mark.parametrize("command", ["start", "stop", "status"])
def test_ctrl_c_is_one_line_and_exit_130(team_file, monkeypatch, command):
    from coffee_team.ops import lifecycle

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    for name in ("start", "shutdown", "team_status"):
        monkeypatch.setattr(lifecycle, name, interrupted)
    monkeypatch.setattr(lifecycle, "runnable", lambda team: team)
    result = invoke("--team", str(team_file), command)
    assert result.exit_code == 130, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), result.output
    if command == "start":
        assert lines[0] == "interrupted: nothing was started"


def test_a_supervisord_in_state_t_is_named_before_any_call(silent_supervisord, monkeypatch):
    monkeypatch.setattr(probe, "stopped_supervisord", lambda pid: pid == GHOST)
    monkeypatch.setattr(client, "call", lambda *a, **k: pytest.fail("asked a stopped one"))
    result = invoke("--team", str(silent_supervisord), "stop")
    assert result.exit_code == 4, result.output
    assert result.output.strip().splitlines() == [
        f"Error: supervisord PID {GHOST} does not answer: stopped (process state T, e.g. "
        f"SIGSTOP); `kill -CONT {GHOST}` resumes it, `coffee-team stop` after that stops the "
        f"team"]
