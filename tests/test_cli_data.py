"""The database commands through click's CliRunner, on a throwaway project (no supervisord)."""
from __future__ import annotations

import json

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
    assert table.splitlines()[0].split()[:3] == ["recipient", "pending", "working"]
    listed = json.loads(run(proj, "queue", "list", "--agent", "architect", "--json").output)
    assert [t["type"] for t in listed] == ["roadmap_updated", "design_request"]


def test_dedupe_key_returns_existing_id(proj):
    a = run(proj, "send", "architect", "x", "--dedupe-key", "k1").output.strip()
    b = run(proj, "send", "architect", "x", "--dedupe-key", "k1").output.strip()
    assert a == b


@pytest.mark.parametrize("args, code, needle", [
    (["send", "architect", "x", "--content", "{bad json"], 2, "not valid JSON"),
    (["send", "nobody", "x"], 1, "unknown recipient 'nobody'"),
    (["send", "architect", "x", "--priority", "42"], 1, "priority"),
    (["send", "-", "no_such_type"], 1, "no_such_type"),
    (["queue", "list", "--agent", "nobody"], 2, "unknown agent"),
    (["history", "nobody"], 2, "unknown agent"),
])
def test_user_errors_are_one_line(proj, args, code, needle):
    run(proj, "send", "architect", "warmup")  # the database exists
    line = one_line_error(run(proj, *args), code)
    assert needle in line


def test_missing_and_corrupt_database(proj):
    line = one_line_error(run(proj, "queue"), 1)
    assert "database not found" in line
    (proj.root / "data" / "orchestrator.db").write_bytes(b"this is not a database" * 100)
    line = one_line_error(run(proj, "queue"), 1)
    assert "orchestrator.db" in line


def test_metrics_history_notifications_trace(proj, tmp_path):
    with MessageQueue.from_team(proj.team) as q:
        q.send("architect", "code_developer", "spec_created", {"n": 1})
        task = q.claim("code_developer")[0]
        q.mark_completed(task.id, {"ok": True})
        q.record_event("code_developer", "running", pid=1)
        q.record_event("code_developer", "crash", reason="exited unexpectedly", attempt=1)
        q.record_event("code_developer", "restarted", attempt=1)
        q.record_event("code_developer", "given_up", reason="reached max restarts (3)")
        q.notify("CRITICAL", "code_developer", "code_developer given up", "max restarts")

    data = json.loads(run(proj, "metrics", "--json").output)
    assert data["bottlenecks"][0]["task_type"] == "spec_created"
    assert data["agent_performance"][0]["agent"] == "code_developer"

    hist = json.loads(run(proj, "history", "code_developer", "--json").output)
    assert hist["summary"]["code_developer"] == {
        "crashes": 1, "restarts": 1, "given_up": True, "last_crash": "exited unexpectedly"}
    assert "GIVEN UP" in run(proj, "history").output

    notes = json.loads(run(proj, "notifications", "--json").output)
    assert notes[0]["level"] == "CRITICAL" and notes[0]["sound"] is False
    assert run(proj, "notifications", "--ack", str(notes[0]["id"])).exit_code == 0
    assert json.loads(run(proj, "notifications", "--json").output) == []
    one_line_error(run(proj, "notifications", "--ack", str(notes[0]["id"])), 1)

    chrome = tmp_path / "trace.json"
    assert run(proj, "trace", "--out", str(chrome)).exit_code == 0
    events = json.loads(chrome.read_text())["traceEvents"]
    assert any(e["ph"] == "X" and e["name"] == "spec_created" for e in events)
    assert any(e["ph"] == "i" and e["name"] == "crash" for e in events)
    seed = tmp_path / "events.json"
    assert run(proj, "trace", "--format", "events", "--out", str(seed)).exit_code == 0
    kinds = [e["event_type"] for e in json.loads(seed.read_text())["events"]]
    assert {"message_sent", "message_received", "task_completed", "agent_restart"} <= set(kinds)


def test_cleanup_removes_only_old_finished_tasks(proj):
    with MessageQueue.from_team(proj.team) as q:
        q.send("cli", "architect", "a")
        q.mark_completed(q.claim("architect")[0].id)
        q.send("cli", "architect", "b")
    assert "removed 0" in run(proj, "cleanup").output
    assert "removed 1" in run(proj, "cleanup", "--older-than-hours", "0").output
    with MessageQueue.from_team(proj.team) as q:
        assert [t["type"] for t in q.list_tasks()] == ["b"]


def test_database_from_a_newer_version_is_refused(proj):
    run(proj, "send", "architect", "warmup")
    import sqlite3
    db = sqlite3.connect(proj.team.database_url)
    db.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
    db.commit()
    db.close()
    line = one_line_error(run(proj, "queue"), 1)
    assert "schema version 99 is newer" in line
