"""Nothing fails unseen, under a real supervisord (one boot for the module: CI budget), with a
command target receiving the notifications as a person's pager would:

- flaky: a command agent that always exits 3, retried once: one WARNING when it fails for
  good, ``status`` (text and --json) shows its last failure and its 24-hour count;
- architect → code_developer: the fake coding CLI asks for one follow-up nobody handles and
  one that is fine: the good one is sent, the bad one recorded on the task and notified once;
- wt: a worktree agent whose run is killed by its timeout: the next run starts clean, the
  killed run's edit stashed and recorded;
- acct_a, acct_b: one rate_limit_group: a limit hit by one pauses both until the reset.
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
PAGER = """
import sys
with open(sys.argv[1], "a") as f:
    f.write(sys.stdin.read().replace("\\n", " ") + "\\n")
"""


def llm(root: Path, *options: str) -> dict:
    return {"command": [sys.executable, FAKE, "--log", str(root / "cli.jsonl"), *options]}


def agents(root: Path) -> dict:
    return {
        "flaky": {"command": [sys.executable, "-c", "import sys; sys.exit('no luck')"],
                  "retry": {"attempts": 2, "backoff": 0.2}},
        "architect": {"handles": ["design"],
                      "llm": llm(root, "--send", "spec_created", "--send", "nobody_handles")},
        "code_developer": {"handles": ["spec_created"], "llm": llm(root)},
        "wt": {"llm": llm(root), "workspace": {"worktree": True}, "timeout_seconds": 3},
        "acct_a": {"llm": llm(root), "rate_limit_group": "acct"},
        "acct_b": {"llm": llm(root), "rate_limit_group": "acct"},
    }


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def team():
    with temporary_project() as project:
        root = project.root
        git(root, "init", "-q", "-b", "main")
        git(root, "commit", "-q", "--allow-empty", "-m", "start")
        (root / "pager.py").write_text(PAGER)
        project.write_team(agents(root), notify=[{"level": "WARNING", "name": "pager",
                                                  "command": [sys.executable, "pager.py",
                                                              str(root / "paged.jsonl")]}])
        boot_supervisord(project)
        project.wait_states("RUNNING", 60)
        yield project


def paged(project) -> list[dict]:
    path = project.root / "paged.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def task(project, task_id: int) -> dict:
    with MessageQueue.from_team(project.team) as q:
        return q.get_task(task_id)


def send(project, agent: str, type: str, content) -> int:
    return int(project.cli("send", agent, type, "--content", json.dumps(content),
                           check=True).stdout)


def test_a_task_failed_for_good_reaches_the_pager_once_and_shows_in_status(team):
    task_id = send(team, "flaky", "job", {"n": 1})
    title = f"flaky: task #{task_id} (job) failed"
    wait_until(lambda: any(n["title"] == title for n in paged(team)), 30, 0.2,
               "the failure at the pager")
    time.sleep(1.5)  # a second notification would have come by now
    [note] = [n for n in paged(team) if n["agent"] == "flaky"]
    assert (note["level"], note["sound"]) == ("WARNING", False)
    assert note["message"] == f"{title}, no retry left: {sys.executable} exited with 1: no luck"
    done = task(team, task_id)
    assert (done["status"], done["failures"]) == ("failed", 2)
    data = json.loads(team.cli("status", "--json", check=True).stdout)
    flaky = next(a for a in data["agents"] if a["name"] == "flaky")
    assert flaky["failed_24h"] == 1 and flaky["last_failure"]["task_id"] == task_id
    text = team.cli("status", check=True).stdout
    line = next(line for line in text.splitlines() if line.startswith("  flaky:"))
    assert f"last failed #{task_id} " in line and line.endswith("1 failed in 24h)")


def test_the_good_follow_up_goes_and_the_bad_one_is_recorded_and_paged_once(team):
    task_id = send(team, "architect", "design", {"spec_id": "SPEC-9"})
    wait_until(lambda: task(team, task_id)["status"] == "completed", 30, 0.2, "the design")
    [undelivered] = task(team, task_id)["result"]["undelivered"]
    assert undelivered["follow_up"]["type"] == "nobody_handles"
    with MessageQueue.from_team(team.team) as q:
        wait_until(lambda: [t for t in q.list_tasks(agent="code_developer")
                            if t["content"] == {"spec_id": "SPEC-9"}], 10, 0.2,
                   "the good follow-up")
    title = f"architect: 1 follow-up of task #{task_id} not sent"
    wait_until(lambda: any(n["title"] == title for n in paged(team)), 20, 0.2, "the page")
    time.sleep(1.0)
    assert sum(n["title"] == title for n in paged(team)) == 1


def test_a_run_killed_by_its_timeout_leaves_nothing_in_the_next_runs_worktree(team):
    killed = send(team, "wt", "job", "FAKE-TOUCH=half.txt FAKE-SLEEP=60")
    wait_until(lambda: task(team, killed)["status"] == "failed", 30, 0.2, "the timeout")
    assert task(team, killed)["error"] == "timed out after 3s"
    after = send(team, "wt", "job", "look around")
    wait_until(lambda: task(team, after)["status"] == "completed", 30, 0.2, "the next run")
    aside = task(team, after)["result"]["set_aside"]
    assert aside["files"] == ["half.txt"] and aside["left_by"]["task_id"] == killed
    runs = [json.loads(line) for line in (team.root / "cli.jsonl").read_text().splitlines()]
    look = next(r for r in runs if "look around" in r["prompt"])
    assert "half.txt" not in look["files"]
    tree = team.root / "data/worktrees/wt"
    assert git(tree, "status", "--porcelain") == ""
    assert f"task #{killed} attempt 1 stopped mid-run" in git(tree, "stash", "list")


def test_a_rate_limit_pauses_the_whole_group_until_the_reset(team):
    reset = int(time.time()) + 6
    limited = send(team, "acct_a", "job", f"FAKE-RATELIMIT={reset}")
    wait_until(lambda: task(team, limited)["run_after"] == reset, 20, 0.1, "the deferral")
    team.cli("task", "cancel", str(limited), check=True)
    other = send(team, "acct_b", "job", "fine")
    wait_until(lambda: "acct_b: RUNNING PAUSED" in team.cli("status").stdout, 10, 0.2,
               "acct_b to show paused")
    assert task(team, other)["status"] == "pending"
    wait_until(lambda: task(team, other)["status"] == "completed", 40, 0.2,
               "acct_b to work after the reset")
    assert task(team, other)["completed_at"] >= reset
