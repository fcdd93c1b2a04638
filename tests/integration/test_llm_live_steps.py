"""LLM runs under a real supervisord, seen while they run (one boot for the module; its three
tasks start together and run side by side, about half a minute in all). Each agent runs the
fake Claude Code (tests/fake_llm_cli.py) with ``--output-format stream-json --verbose`` and
the team's default limits (no timeout_seconds, no stall_after):

- streamer: its steps show in ``logs`` and ``status`` while it runs; it completes once;
- victim: killed (kill -9) mid-run, it leaves what it had spent, marked killed at its restart;
- thrifty: a token budget crossed mid-run stops it at the next event, with one notification.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, temporary_project, wait_until

pytestmark = pytest.mark.slow

FAKE = str(Path(__file__).resolve().parents[1] / "fake_llm_cli.py")
STREAM = ["-p", "--output-format", "stream-json", "--verbose"]


def agent(log: Path, *options: str, **keys) -> dict:
    return {"check_interval": 3600, **keys, "llm": {
        "command": [sys.executable, FAKE, "--log", str(log), *STREAM, *options]}}


@pytest.fixture(scope="module")
def team():
    with temporary_project() as project:
        log = project.root / "cli.jsonl"
        project.write_team({
            "streamer": agent(log, "--steps", "10", "--pace", "0.4", "--cost", "0.5"),
            "victim": agent(log, "--steps", "60", "--pace", "0.3"),
            "thrifty": agent(log, "--steps", "6", "--pace", "0.3",
                             budget={"tokens_per_day": 100}),
        })
        boot_supervisord(project)
        project.wait_states("RUNNING", 60)
        project.ids = {name: send(project, name, f"work for {name}")  # type: ignore[attr-defined]
                       for name in ("streamer", "victim", "thrifty")}
        yield project


def send(project, name: str, content) -> int:
    return int(project.cli("send", name, "job", "--content", json.dumps(content),
                           check=True).stdout)


def task(project, task_id: int) -> dict:
    with MessageQueue.from_team(project.team) as q:
        return q.get_task(task_id)


def usage(project, task_id: int) -> list[dict]:
    with MessageQueue.from_team(project.team) as q:
        rows = q.backend.fetchall("SELECT outcome, estimated, cost_usd, tokens_in, tokens_out"
                                  " FROM llm_usage WHERE task_id = ? ORDER BY id", (task_id,))
    return [dict(zip(("outcome", "estimated", "cost", "tokens_in", "tokens_out"), r))
            for r in rows]


def status_of(project, name: str) -> dict:
    data = json.loads(project.cli("status", "--json", check=True).stdout)
    return next(a for a in data["agents"] if a["name"] == name)


def test_steps_show_in_logs_and_status_while_it_runs_and_it_completes_once(team):
    task_id = team.ids["streamer"]
    tag = f"[#{task_id}] "

    def logged_step():
        out = team.cli("logs", "streamer").stdout
        return out if f"{tag}Edit src/cli.py" in out else None
    log = wait_until(logged_step, 30, 0.2, "a step in the log")
    assert task(team, task_id)["status"] == "in_progress"  # live, not at the end
    assert f"{tag}session fake-" in log and f"{tag}Read README.md" in log
    assert '{"type"' not in log  # events are shown as steps, never as raw JSON

    def showing():
        row = status_of(team, "streamer")
        return row if row.get("progress") else None
    row = wait_until(showing, 10, 0.2, "a step in status")
    assert row["activity"].startswith(f"working on #{task_id} for ")
    assert row["activity"].endswith(f": {row['progress']}") and "left" not in row["activity"]
    text = team.cli("status").stdout
    assert f"working on #{task_id} for " in text

    wait_until(lambda: task(team, task_id)["status"] == "completed", 60, 0.3, "completion")
    done = task(team, task_id)
    assert done["attempts"] == 1 and done["result"]["usage"]["cost_usd"] == 0.5
    runs = [json.loads(line) for line in (team.root / "cli.jsonl").read_text().splitlines()]
    assert sum("work for streamer" in r["prompt"] for r in runs) == 1
    assert [(u["outcome"], bool(u["estimated"]), u["cost"]) for u in usage(team, task_id)] == \
        [("ok", False, 0.5)]
    assert "done: success, 10 turns, $0.5000, 150 tokens" in team.cli("logs", "streamer").stdout


def test_a_kill_9_of_the_agent_mid_run_leaves_what_it_had_spent(team):
    task_id = team.ids["victim"]
    # the running row is written every 2 s while events come: wait for one with tokens
    wait_until(lambda: (usage(team, task_id) or [{}])[0].get("tokens_in"), 30, 0.2,
               "the running spend written")
    [running] = usage(team, task_id)
    assert running["outcome"] == "running" and running["estimated"]
    pid = team.infos()["victim"]["pid"]
    os.kill(pid, signal.SIGKILL)
    # supervisord restarts it; its start settles the row the kill left
    wait_until(lambda: usage(team, task_id)[0]["outcome"] == "killed", 30, 0.2,
               "the killed run settled")
    killed = usage(team, task_id)[0]
    assert killed["estimated"] and killed["tokens_in"] >= running["tokens_in"] > 0
    assert team.infos()["victim"]["pid"] != pid
    team.cli("task", "cancel", str(task_id), check=True)  # its rerun is not this test's


def test_a_token_budget_crossed_mid_run_stops_it_at_the_next_event(team):
    task_id = team.ids["thrifty"]
    wait_until(lambda: "stopped by the budget" in (task(team, task_id)["error"] or ""), 30, 0.2,
               "the budget stop")
    stopped = task(team, task_id)
    assert (stopped["status"], stopped["attempts"]) == ("pending", 0)
    # 150 tokens over 6 turns, 24 a turn: the fifth turn's first event takes the day past 100
    [row] = usage(team, task_id)
    assert (row["outcome"], row["tokens_in"] + row["tokens_out"]) == ("over_budget", 120)
    assert "thrifty: RUNNING PAUSED" in team.cli("status").stdout
    with MessageQueue.from_team(team.team) as q:
        notes = [n for n in q.notifications() if n["agent"] == "thrifty"
                 and n["level"] == "CRITICAL"]
    assert len(notes) == 1 and "tokens_per_day 100 reached: 120 tokens used" in \
        notes[0]["message"]
    log = team.cli("logs", "thrifty").stdout
    assert "done: success" not in log
    result = team.cli("resume", "thrifty")
    assert result.returncode == 2 and "--raise USD or --raise-tokens N" in result.stderr + \
        result.stdout
