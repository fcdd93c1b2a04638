"""The database commands through click's CliRunner, on a throwaway project (no supervisord)."""
from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
from click.testing import CliRunner

from coffee_team.cli import main
from coffee_team.queue import MessageQueue
from tests.harness import Project, demo_agents


@pytest.fixture
def proj(tmp_path):
    p = Project(tmp_path)
    agents = demo_agents()
    agents["code_developer"]["handles"] = ["spec_created"]
    p.write_team(agents)
    MessageQueue.from_team(p.team).close()  # what `start` makes: no other command does
    return p


def run(proj, *args):
    result = CliRunner().invoke(main, ["--team", str(proj.team_file), *args])
    assert "Traceback" not in result.output
    return result


def one_line_error(result, code):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_send_route_broadcast_and_list(proj):
    first = run(proj, "send", "architect", "design_request", "--content", '{"spec": "SPEC-1"}',
                "--priority", "2", "--from", "project_manager")
    assert first.exit_code == 0, first.output
    routed = run(proj, "send", "-", "spec_created")
    assert routed.exit_code == 0
    broadcast = run(proj, "send", "all", "roadmap_updated")
    assert len(broadcast.output.split()) == 6
    with MessageQueue.from_team(proj.team) as q:
        task = q.get_messages("architect")[0]
        assert task["content"] == {"spec": "SPEC-1"} and task["priority"] == 2
        assert task["sender"] == "project_manager"
        assert q.get_messages("code_developer")[0]["type"] == "spec_created"

    stats = json.loads(run(proj, "queue", "--json").output)
    assert stats["architect"]["pending"] == 2 and stats["code_developer"]["pending"] == 2
    table = run(proj, "queue").output
    assert table.splitlines()[0].split()[:4] == ["recipient", "waiting", "pending", "working"]
    listed = json.loads(run(proj, "queue", "list", "--agent", "architect", "--json").output)
    assert [t["type"] for t in listed] == ["roadmap_updated", "design_request"]


def test_dedupe_key_returns_existing_id(proj):
    a = run(proj, "send", "architect", "x", "--dedupe-key", "k1").output.strip()
    b = run(proj, "send", "architect", "x", "--dedupe-key", "k1").output.strip()
    assert a == b


@pytest.mark.parametrize("args, code, needle", [
    (["send", "architect", "x", "--content", "{bad json"], 2, "not valid JSON"),
    (["send", "nobody", "x"], 1, "unknown recipient 'nobody'"),
    (["send", "architect", "x", "--priority", "42"], 2, "priority"),
    (["send", "all", "x", "--priority", "-1"], 2, "priority"),
    (["send", "architect", "x", "--content", "[" * 992 + "]" * 992], 2, "nested more than 64"),
    (["send", "architect", "x", "--content", "[" * 65 + "]" * 65], 2, "nested more than 64"),
    (["send", "architect", "x", "--content", "NaN"], 2, "not JSON-serialisable"),
    (["send", "architect", "x", "--content", "@/no/such/file.json"], 2, "No such file"),
    (["notifications", "--ack", "99999999999999999999"], 2, "99999999999999999999"),
    (["trace", "--out", "/no/such/dir/trace.json"], 2, "No such file or directory"),
    (["cleanup", "--older-than-hours", "nan"], 2, "not a finite number"),
    (["cleanup", "--older-than-hours", "inf"], 2, "not a finite number"),
    (["cleanup", "--older-than-hours", "-1"], 2, "older-than-hours"),
    (["send", "-", "no_such_type"], 1, "no_such_type"),
    (["queue", "list", "--agent", "nobody"], 2, "unknown agent"),
    (["history", "nobody"], 2, "unknown agent"),
])
def test_user_errors_are_one_line(proj, args, code, needle):
    run(proj, "send", "architect", "warmup")  # the database exists
    result = run(proj, *args)
    assert result.exit_code == code, result.output
    # click's own usage errors (a bad option value) end in its one "Error:" line
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and needle in errors[0], result.output
    if not result.output.startswith("Usage:"):
        one_line_error(result, code)
    with MessageQueue.from_team(proj.team) as q:
        assert len(q.list_tasks()) == 1  # nothing was written


def test_content_from_a_file_or_stdin_up_to_the_limit(proj, tmp_path):
    big = {"text": "x" * (1024 * 1024 - 20)}  # 300 KiB is past what argv takes
    path = tmp_path / "content.json"
    path.write_text(json.dumps(big))
    from_file = run(proj, "send", "architect", "x", "--content", f"@{path}")
    assert from_file.exit_code == 0, from_file.output
    from_stdin = CliRunner().invoke(main, ["--team", str(proj.team_file), "send", "architect",
                                           "x", "--content", "-"], input=json.dumps([1, 2]))
    assert from_stdin.exit_code == 0, from_stdin.output
    with MessageQueue.from_team(proj.team) as q:
        assert [t["content"] for t in q.list_tasks()] == [[1, 2], big]
    path.write_text(json.dumps({"text": "x" * (1024 * 1024)}))
    assert "the limit is 1048576" in one_line_error(
        run(proj, "send", "architect", "x", "--content", f"@{path}"), 2)


def test_broadcast_keeps_the_dedupe_key(proj):
    first = run(proj, "send", "all", "sync", "--dedupe-key", "nightly").output.split()
    again = run(proj, "send", "all", "sync", "--dedupe-key", "nightly").output.split()
    assert len(first) == 6 and again == first


def test_start_restart_stop_on_a_damaged_database_are_one_line(proj):
    """No supervisord: start opens the database (to clear give-ups) before booting it."""
    run(proj, "send", "architect", "warmup")
    (proj.root / "data" / "orchestrator.db").write_bytes(b"this is not a database" * 100)
    line = one_line_error(run(proj, "start", "--timeout", "5"), 1)
    assert "orchestrator.db" in line and "database" in line


@pytest.mark.slow  # starts a process
def test_full_disk_while_sending_is_one_line(proj):
    """A file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails every write past it, as a full
    disk would: the database opens (its 32 KiB -shm fits), the 120 KB send does not."""
    run(proj, "send", "architect", "warmup")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    command = ("import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "from coffee_team.cli import main; main(prog_name='coffee-team')")
    result = subprocess.run(
        [sys.executable, "-c", command, "--team", str(proj.team_file), "send", "architect",
         "x", "--content", json.dumps("x" * 120_000)], capture_output=True, text=True, preexec_fn=small_files,
        timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: database error: "), result.stderr
