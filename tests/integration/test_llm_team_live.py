"""LLM agents under a real supervisord (one boot for the module: CI budget), each running
the fake coding CLI (tests/fake_llm_cli.py) as a real subprocess per task.

- architect → code_developer → project_manager: the seed's chain, follow-ups from the CLI's
  fenced JSON block; code_developer takes its prompt as an argument, the others on stdin;
- budgeted: usd_per_day 1.0, 0.25 USD a task (raised by 0.5 on resume);
- limited: a rate-limit message defers its task;
- wt_a, wt_b: a git worktree each (the project is a git repository).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, temporary_project, wait_until

pytestmark = pytest.mark.slow

FAKE = str(Path(__file__).resolve().parents[1] / "fake_llm_cli.py")
COSTS = {"architect": 0.125, "code_developer": 0.0625, "project_manager": 0.03125}
ROLE = "You are the architect of this project. Write short specs."


def llm(log: Path, cost: float, *options: str, **keys) -> dict:
    return {"command": [sys.executable, FAKE, "--log", str(log), "--cost", str(cost),
                        *options], **keys}


def agents(root: Path) -> dict:
    log = root / "cli.jsonl"
    return {
        "architect": {"handles": ["design_request"], "llm": llm(
            log, COSTS["architect"], "--send", "spec_created",
            system_prompt_file="agents/architect.md",
            prompt="Design request ${content.spec_id}: ${content}")},
        "code_developer": {"handles": ["spec_created"], "llm": llm(
            log, COSTS["code_developer"], "--send", "needs_verification", "--prompt-via", "arg",
            prompt_via="arg", prompt="Implement ${content.spec_id}")},
        "project_manager": {"handles": ["needs_verification"], "llm": llm(
            log, COSTS["project_manager"], prompt="Verify ${content.spec_id}")},
        "budgeted": {"llm": llm(log, 0.25), "budget": {"usd_per_day": 1.0}},
        "limited": {"llm": llm(log, 0.0), "retry": {"attempts": 2, "backoff": 1}},
        "wt_a": {"llm": llm(log, 0.0), "workspace": {"worktree": True}},
        "wt_b": {"llm": llm(log, 0.0), "workspace": {"worktree": True}},
    }


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def team():
    with temporary_project() as project:
        root = project.root
        (root / "agents").mkdir()
        (root / "agents" / "architect.md").write_text(ROLE + "\n")
        git(root, "init", "-q", "-b", "main")
        git(root, "commit", "-q", "--allow-empty", "-m", "start")
        project.write_team(agents(root))
        boot_supervisord(project)
        project.wait_states("RUNNING", 60)
        yield project


def queue(project) -> MessageQueue:
    return MessageQueue.from_team(project.team)


def tasks(project, **filters) -> list[dict]:
    with queue(project) as q:
        return q.list_tasks(limit=1000, **filters)


def runs(project) -> list[dict]:
    path = project.root / "cli.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def critical(project, agent: str) -> list[dict]:
    with queue(project) as q:
        return [n for n in q.notifications() if n["agent"] == agent and n["level"] == "CRITICAL"]


def send(project, agent: str, type: str, content) -> int:
    return int(project.cli("send", agent, type, "--content", json.dumps(content),
                           check=True).stdout)


def test_the_seed_chain_runs_through_three_llm_agents_once_each(team):
    for spec in ("SPEC-1", "SPEC-2"):
        send(team, "architect", "design_request", {"spec_id": spec, "text": f"build {spec}"})
    chain = ("architect", "code_developer", "project_manager")
    wait_until(lambda: sum(t["status"] == "completed" for t in tasks(team)
                           if t["recipient"] in chain) == 6, 60, interval=0.2,
               message="six completed tasks along the chain")
    done = [t for t in tasks(team) if t["recipient"] in chain]
    assert len(done) == 6 and all(t["status"] == "completed" and t["attempts"] == 1
                                  for t in done)
    assert sorted((t["recipient"], t["content"]["spec_id"]) for t in done) == sorted(
        (agent, spec) for agent in chain for spec in ("SPEC-1", "SPEC-2"))
    assert {t["sender"] for t in done if t["recipient"] == "project_manager"} == \
        {"code_developer"}

    architect = [r for r in runs(team) if r["prompt"].startswith(ROLE)]
    assert len(architect) == 2 and all('"text": "build SPEC-' in r["prompt"] for r in architect)
    for run in runs(team):
        argv = " ".join(run["argv"])
        if "Implement" in run["prompt"]:  # prompt_via: arg, and only there
            assert run["argv"][-1] == run["prompt"]
        else:
            assert "SPEC-" not in argv and "build" not in argv


def test_costs_add_up_exactly_per_agent_and_in_total(team):
    data = json.loads(team.cli("costs", "--json", check=True).stdout)
    groups = {g["key"]: g for g in data["groups"]}
    for agent, cost in COSTS.items():
        assert groups[agent]["cost_usd"] == 2 * cost and groups[agent]["runs"] == 2
    assert data["total"]["cost_usd"] == sum(g["cost_usd"] for g in data["groups"])
    status = json.loads(team.cli("status", "--json", check=True).stdout)
    today = {a["name"]: a["cost_today_usd"] for a in status["agents"]}
    assert today["architect"] == 0.25


def test_a_one_dollar_budget_completes_exactly_four_quarter_dollar_tasks(team):
    ids = [send(team, "budgeted", "job", {"n": n}) for n in range(6)]
    wait_until(lambda: "budgeted: RUNNING PAUSED" in team.cli("status").stdout, 30,
               interval=0.2, message="the budget to pause the agent")
    time.sleep(2.0)  # nothing more starts while paused
    states = [t["status"] for t in sorted(tasks(team, agent="budgeted"), key=lambda t: t["id"])]
    assert states == ["completed"] * 4 + ["pending"] * 2
    notes = critical(team, "budgeted")  # (a busy 2-core box may add CPU WARNINGs)
    assert len(notes) == 1 and not notes[0]["sound"]
    assert "usd_per_day 1 reached" in notes[0]["message"]

    refused = team.cli("resume", "budgeted")  # past a budget: say how far
    assert refused.returncode == 2 and "--raise USD" in refused.stderr
    team.cli("resume", "budgeted", "--raise", "0.5", check=True)
    wait_until(lambda: all(t["status"] == "completed" for t in tasks(team, agent="budgeted")),
               30, interval=0.2, message="the rest after resume")
    wait_until(lambda: len(critical(team, "budgeted")) == 2, 10, interval=0.2,
               message="the raised budget reached: a stop of its own")
    assert "usd_per_day 1.5 reached" in critical(team, "budgeted")[-1]["message"]
    assert len(ids) == 6


def test_a_rate_limit_defers_the_task_to_the_stated_time_without_an_attempt(team):
    reset = int(time.time()) + 4
    limited = send(team, "limited", "job", f"FAKE-RATELIMIT={reset}")
    wait_until(lambda: tasks(team, agent="limited")[0]["run_after"] == reset, 20,
               interval=0.1, message="the deferral")
    after = send(team, "limited", "job", "fine")
    with queue(team) as q:
        task = q.get_task(limited)
        assert (task["status"], task["failures"], task["errors"]) == ("pending", 0, [])
        assert task["attempts"] == 0
        assert q.pauses()["limited"]["paused_until"] == reset
    assert [t["status"] for t in tasks(team, agent="limited")] == ["pending", "pending"]
    # the agent takes nothing until the reset, then resumes by itself
    team.cli("task", "cancel", str(limited), check=True)
    wait_until(lambda: next(t for t in tasks(team) if t["id"] == after)["status"] == "completed",
               30, interval=0.2, message="intake to resume after the reset")
    assert next(t for t in tasks(team) if t["id"] == after)["completed_at"] >= reset


def test_two_worktrees_on_two_branches_never_see_each_others_files(team):
    for agent in ("wt_a", "wt_b"):
        send(team, agent, "job", f"FAKE-TOUCH={agent}.txt")
    wait_until(lambda: all(t["status"] == "completed" for t in tasks(team)
                           if t["recipient"] in ("wt_a", "wt_b")), 30, interval=0.2,
               message="the touches")
    for agent in ("wt_a", "wt_b"):
        send(team, agent, "job", "look around")
    wait_until(lambda: sum("look around" in r["prompt"] for r in runs(team)) == 2, 30,
               interval=0.2, message="the looks")
    looks = {Path(r["cwd"]).name: r for r in runs(team) if "look around" in r["prompt"]}
    assert looks["wt_a"]["branch"] == "agents/wt_a" and looks["wt_b"]["branch"] == "agents/wt_b"
    assert "wt_a.txt" in looks["wt_a"]["files"] and "wt_b.txt" not in looks["wt_a"]["files"]
    assert "wt_b.txt" in looks["wt_b"]["files"] and "wt_a.txt" not in looks["wt_b"]["files"]
    doctor = team.cli("doctor").stdout
    assert "ok   worktree of wt_a: " in doctor and "uncommitted: wt_a.txt" in doctor
