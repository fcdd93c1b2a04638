"""The review and merge queue under a real supervisord (one boot, ~40 s): two llm agents run the
fake Claude Code (tests/fake_llm_cli.py, stream-json), which commits in their worktrees; a
third reviews with it; the watchdog's merger merges into roadmap.

- dev_a and dev_b write the same file: both are reviewed and approved, one merges, the other
  gets merge_failed with the conflict, resolves it and merges; every agent's worktree follows
  roadmap, and roadmap holds every reviewed commit exactly once;
- a commit that breaks the check fails its merge (roadmap never points at it), the author
  fixes it and it merges; a change request from the reviewer goes back to the author the same
  way; dev_p's commits wait for a person, who denies them and approves the rework with
  coffee-team deny/approve;
- coffee-team merges lists it all.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, temporary_project, wait_until

pytestmark = pytest.mark.slow

FAKE = str(Path(__file__).resolve().parents[1] / "fake_llm_cli.py")
STREAM = ["--output-format", "stream-json", "--verbose"]
CHECK = textwrap.dedent("""\
    import pathlib, sys
    bad = [p.name for p in pathlib.Path(".").glob("*.txt") if "BREAK" in p.read_text()]
    print("checked", len(list(pathlib.Path(".").glob("*.txt"))), "files")
    sys.exit(f"broken: {', '.join(bad)}" if bad else 0)
""")
DEVS = ("dev_a", "dev_b")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def agents() -> dict:
    merge = {"into": "roadmap", "review_by": "rev", "checks": [[sys.executable, "check.py"]],
             "check_timeout": 60}
    team = {name: {"llm": {"command": [sys.executable, FAKE, *STREAM, "--resolve"]},
                   "workspace": {"worktree": True, "merge": merge}} for name in DEVS}
    team["dev_p"] = {"llm": {"command": [sys.executable, FAKE, *STREAM, "--resolve"]},
                     "workspace": {"worktree": True, "merge": {**merge, "review_by": "person"}}}
    team["rev"] = {"llm": {"command": [sys.executable, FAKE, *STREAM, "--review"]}}
    return team


@pytest.fixture(scope="module")
def team():
    with temporary_project() as project:
        root = project.root
        git(root, "init", "-q", "-b", "main")
        git(root, "config", "user.email", "t@example.com")
        git(root, "config", "user.name", "t")
        (root / "check.py").write_text(CHECK)
        (root / ".gitignore").write_text("data/\nsupervisord.conf.d/\n")
        git(root, "add", ".")
        git(root, "commit", "-qm", "start")
        project.write_team(agents())
        boot_supervisord(project)
        project.wait_states("RUNNING", 60)
        wait_until(lambda: made(root), 30, interval=0.2,
                   message="roadmap and the worktrees, made as the agents start")
        yield project


def made(root: Path) -> bool:
    roadmap = subprocess.run(["git", "rev-parse", "--verify", "-q", "roadmap"], cwd=root,
                             capture_output=True)
    return roadmap.returncode == 0 and all((root / "data" / "worktrees" / agent).is_dir()
                                           for agent in DEVS)


def items(project) -> list[dict]:
    with MessageQueue.from_team(project.team) as q:
        return sorted(q.merge_items(limit=1000), key=lambda i: i["id"])


def send(project, agent: str, text: str) -> None:
    project.cli("send", agent, "work", "--content", json.dumps(text), check=True)


def settled(project, count: int):
    """``count`` items, none of them still on its way."""
    now = items(project)
    return now if len(now) == count and all(i["state"] in ("merged", "failed")
                                            for i in now) else None


def roadmap(project) -> list[str]:
    return git(project.root, "rev-list", "roadmap").split()


def test_two_agents_on_one_file_one_merges_the_other_resolves_and_merges(team):
    start = roadmap(team)
    for agent in DEVS:
        send(team, agent, "FAKE-COMMIT=shared.txt")
    done = wait_until(lambda: settled(team, 3), 90, interval=0.3,
                      message="two reviews, a conflict, its fix merged")
    assert [i["state"] for i in done] == ["merged", "failed", "merged"]
    first, conflict, fix = done
    assert conflict["reason"] == "conflict with roadmap: shared.txt"
    assert fix["author"] == conflict["author"] != first["author"]
    assert all(i["decided_by"] == "rev" for i in done)
    with MessageQueue.from_team(team.team) as q:
        back = [t for t in q.list_tasks(limit=1000) if t["type"] == "merge_failed"]
    assert len(back) == 1 and back[0]["recipient"] == conflict["author"]
    assert back[0]["content"]["detail"] == "shared.txt" and back[0]["status"] == "completed"
    lines = git(team.root, "show", "roadmap:shared.txt").splitlines()
    assert sorted(lines) == ["agents/dev_a work", "agents/dev_b work"]
    # every reviewed commit is on roadmap exactly once; what roadmap had is still there
    on_roadmap = roadmap(team)
    assert len(on_roadmap) == len(set(on_roadmap)) and set(start) <= set(on_roadmap)
    for item in done:
        for sha in git(team.root, "rev-list", f"{item['base']}..{item['head']}").split():
            assert sha in on_roadmap
    # every agent heard, and both worktrees are on roadmap's head now
    head = on_roadmap[0]
    wait_until(lambda: all(git(team.root / "data" / "worktrees" / agent, "rev-parse", "HEAD")
                           == head for agent in DEVS), 30, interval=0.3,
               message="the worktrees brought onto roadmap")


def test_a_failing_check_keeps_roadmap_where_it_was_until_the_fix(team):
    before = len(items(team))
    head = roadmap(team)[0]
    send(team, "dev_a", "FAKE-COMMIT=bad.txt FAKE-TEXT=BREAK")
    done = wait_until(lambda: settled(team, before + 2), 90, interval=0.3,
                      message="the failed check and its fix")[before:]
    assert [i["state"] for i in done] == ["failed", "merged"]
    assert done[0]["reason"].startswith("check failed: ")
    assert "broken: bad.txt" in done[0]["output"]
    # roadmap never pointed at the broken commit: every value it took had no BREAK in it
    for sha in git(team.root, "reflog", "--format=%H", "roadmap").split():
        listing = git(team.root, "ls-tree", "--name-only", sha).split()
        if "bad.txt" in listing:
            assert "BREAK" not in git(team.root, "show", f"{sha}:bad.txt")
    assert head in roadmap(team)
    assert git(team.root, "show", "roadmap:bad.txt") == "agents/dev_a fixed"


def test_a_change_request_goes_back_to_the_author_and_the_rework_merges(team):
    before = len(items(team))
    send(team, "dev_b", "FAKE-COMMIT=NEEDS-WORK.txt")
    done = wait_until(lambda: settled(team, before + 2), 90, interval=0.3,
                      message="the change request and the rework")[before:]
    assert [i["state"] for i in done] == ["failed", "merged"]
    assert done[0]["reason"] == "changes requested by rev: NEEDS-WORK: rename it"
    names = git(team.root, "ls-tree", "--name-only", "roadmap").split()
    assert "reworked.txt" in names and "NEEDS-WORK.txt" not in names


def pending_review(project, besides: int = 0):
    """The review a person is asked, other than approval ``besides`` (None: none waits)."""
    with MessageQueue.from_team(project.team) as q:
        waiting = [a for a in q.list_approvals("pending")
                   if a["kind"] == "review" and a["id"] != besides]
    return waiting[0] if waiting else None


def test_a_person_denies_then_approves_from_the_command_line(team):
    before = len(items(team))
    send(team, "dev_p", "FAKE-COMMIT=person.txt")
    asked = wait_until(lambda: pending_review(team), 60, interval=0.3,
                       message="the approval a person is asked")
    assert asked["agent"] == "dev_p" and "for roadmap" in asked["subject"]
    team.cli("deny", str(asked["id"]), "--reason", "say why in the file", "--by", "alice",
             check=True)
    again = wait_until(lambda: pending_review(team, besides=asked["id"]), 60, interval=0.3,
                       message="the rework's approval")
    team.cli("approve", str(again["id"]), "--by", "alice", check=True)
    done = wait_until(lambda: settled(team, before + 2), 60, interval=0.3,
                      message="the denied item and the approved one merged")[before:]
    assert [(i["state"], i["decided_by"]) for i in done] == [("failed", "alice"),
                                                              ("merged", "alice")]
    assert done[0]["reason"] == "changes requested by alice: say why in the file"
    with MessageQueue.from_team(team.team) as q:
        [back] = [t for t in q.list_tasks(agent="dev_p", limit=100)
                  if t["type"] == "merge_failed"]
    assert back["content"]["detail"] == "say why in the file"
    assert "person.txt" in git(team.root, "ls-tree", "--name-only", "roadmap").split()


def test_merges_lists_the_queue(team):
    listing = team.cli("merges", check=True).stdout
    assert "merged (" in listing and "failed (" in listing
    assert "conflict with roadmap: shared.txt" in listing
    failed = next(i for i in items(team) if i["reason"] and "check failed" in i["reason"])
    shown = team.cli("merges", "show", str(failed["id"]), check=True).stdout
    assert "broken: bad.txt" in shown
