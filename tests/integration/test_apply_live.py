"""`coffee-team apply` against a real supervisord: only what changed moves."""
from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from coffee_team.queue import MessageQueue
from tests.harness import FAST_TEAM, boot_supervisord, wait_until

pytestmark = pytest.mark.slow


def agent(priority: int, check_interval: float = 3600) -> dict:
    return {"priority": priority, "check_interval": check_interval,
            "handler": "coffee_team.agent.demo:handle", "options": {"work_seconds": 0.01}}


def edit_team(project, agents: dict) -> None:
    """What a user does: change data/team.yaml (and nothing else) while the team runs."""
    doc = {"team": FAST_TEAM, "agents": agents}
    project.team_file.write_text(yaml.safe_dump(doc, sort_keys=False))


def pids(project) -> dict[str, int]:
    return {n: i["pid"] for n, i in project.infos().items() if n != "watchdog"}


def events(project, kind: str) -> list[dict]:
    with MessageQueue.from_team(project.team) as q:
        return [e for e in q.events(limit=1000) if e["kind"] == kind]


def test_apply_adds_changes_and_removes_agents_of_a_running_team(project):
    team = {"alpha": agent(1), "beta": agent(2)}
    project.write_team(team)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=30)
    before = pids(project)

    # a dry run prints the plan and changes nothing
    edit_team(project, {**team, "gamma": agent(3)})
    dry = project.cli("apply", "--dry-run", check=True)
    assert "added:     gamma" in dry.stdout and "dry run: nothing changed" in dry.stdout
    assert not (project.root / "supervisord.conf.d" / "agent-gamma.conf").exists()
    assert pids(project) == before

    # added: it runs, the others keep their PIDs, the watchdog restarts it after a kill -9
    out = project.cli("apply", "--json", check=True)
    assert json.loads(out.stdout)["added"] == ["gamma"]
    infos = project.wait_states({"alpha": "RUNNING", "beta": "RUNNING", "gamma": "RUNNING"})
    assert {n: infos[n]["pid"] for n in before} == before
    os.kill(infos["gamma"]["pid"], signal.SIGKILL)
    wait_until(lambda: [e for e in events(project, "restarted") if e["agent"] == "gamma"], 15,
               0.1, "the watchdog to restart gamma")
    gamma = project.wait_states({"gamma": "RUNNING"})["gamma"]["pid"]
    assert gamma != infos["gamma"]["pid"]

    # changed check_interval: only that agent restarts
    team = {**team, "gamma": agent(3), "beta": agent(2, check_interval=1800)}
    edit_team(project, team)
    out = project.cli("apply", check=True)
    assert "changed:   beta" in out.stdout
    after = project.wait_states("RUNNING", names=("alpha", "beta", "gamma"))
    assert after["alpha"]["pid"] == before["alpha"] and after["gamma"]["pid"] == gamma
    assert after["beta"]["pid"] != before["beta"]

    # removed with open tasks: refused with the counts, then --yes fails them with the reason
    project.cli("pause", "gamma", check=True)
    ids = [project.cli("send", "gamma", "job", check=True).stdout.strip() for _ in range(2)]
    del team["gamma"]
    edit_team(project, team)
    refused = project.cli("apply")
    assert refused.returncode == 1 and "gamma: 2 pending, 0 in progress" in refused.stderr
    assert "gamma" in project.infos()
    out = project.cli("apply", "--yes", check=True)
    assert "removed gamma (2 open task(s) failed: agent removed from the team)" in out.stdout
    assert "gamma" not in project.infos()
    for task_id in ids:
        shown = json.loads(project.cli("task", "show", task_id, "--json", check=True).stdout)
        assert (shown["status"], shown["error"]) == ("failed", "agent removed from the team")
    assert {n: i["pid"] for n, i in project.infos().items() if n != "watchdog"} == \
        {"alpha": before["alpha"], "beta": after["beta"]["pid"]}
