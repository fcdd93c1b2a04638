"""The merge queue against a real git repository in a temp dir, without supervisord: the merger
(merge/merger.py) takes approved items one by one, the agents' side (merge/worktree.py) asks
for reviews and keeps worktrees on the target. git runs as it does in production, so these
tests start processes (slow)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from coffee_team.llm.workspace import Workspace
from coffee_team.merge.attempt import Checks
from coffee_team.merge.merger import Merger
from coffee_team.merge.worktree import AgentMerging
from coffee_team.queue import MessageQueue
from coffee_team.team import load_team
from tests.harness import wait_until

pytestmark = pytest.mark.slow

CHECK = textwrap.dedent("""\
    import pathlib, sys
    bad = [p.name for p in pathlib.Path(".").glob("*.txt") if "BREAK" in p.read_text()]
    print("checked", len(list(pathlib.Path(".").glob("*.txt"))), "files")
    sys.exit(f"broken: {', '.join(bad)}" if bad else 0)
""")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


class Repo:
    """A project that is a git repository, its team (dev_a, dev_b, slow merge into roadmap,
    reviewed by rev; dev_p's by a person), its queue and its merger."""

    def __init__(self, root: Path):
        self.root = root
        git(root, "init", "-q", "-b", "main")
        git(root, "config", "user.email", "t@example.com")
        git(root, "config", "user.name", "t")
        (root / "check.py").write_text(CHECK)
        (root / ".gitignore").write_text("data/\n")
        git(root, "add", ".")
        git(root, "commit", "-qm", "start")
        merge = {"into": "roadmap", "review_by": "rev", "checks": [[sys.executable, "check.py"]],
                 "check_timeout": 30}
        llm = {"command": ["true"]}
        agents = {name: {"llm": llm, "workspace": {"worktree": True, "merge": merge}}
                  for name in ("dev_a", "dev_b")}
        agents["slow"] = {"llm": llm, "workspace": {"worktree": True, "merge": {
            **merge, "checks": [[sys.executable, "-c", "import time; time.sleep(30)"]],
            "check_timeout": 1}}}
        agents["dev_p"] = {"llm": llm, "workspace": {"worktree": True, "merge": {
            **merge, "review_by": "person"}}}
        agents["rev"] = {"llm": llm}
        (root / "data").mkdir()
        (root / "data" / "team.yaml").write_text(yaml.safe_dump({"agents": agents}))
        self.team = load_team(root / "data" / "team.yaml")
        self.queue = MessageQueue.from_team(self.team)
        self.logged: list[str] = []
        self.merger = Merger(self.queue, lambda: self.team, self.logged.append)
        self.sides = {}
        for name in ("dev_a", "dev_b", "slow", "dev_p"):
            workspace = Workspace.of(self.team, self.team.agent(name))
            workspace.ensure()
            self.sides[name] = AgentMerging.of(self.team, workspace)

    def worktree(self, agent: str) -> Path:
        return self.sides[agent].directory

    def commit(self, agent: str, name: str, text: str, message: str) -> str:
        where = self.worktree(agent)
        (where / name).write_text(text)
        git(where, "add", name)
        git(where, "commit", "-qm", message)
        return git(where, "rev-parse", "HEAD")

    def task(self, agent: str, *commits: tuple[str, str, str],
             approve: bool | None = True) -> int:
        """A task of ``agent`` that commits, completed with its review request, then the
        reviewer's verdict (None: none yet); the item's id."""
        side = self.sides[agent]
        side.sync(lambda: self.queue.live_merges(agent), self.queue.record_event)
        self.queue.send("cli", agent, "work")
        [task] = self.queue.claim(agent)
        before = side.head()
        for name, text, message in commits:
            self.commit(agent, name, text, message)
        request = side.request({"id": task.id, "type": "work"}, before)
        done, item_id = self.queue.request_review(task.id, None, agent=agent,
                                                  item=request["item"], review=request["review"])
        assert done and item_id
        [review] = [t for t in self.queue.claim("rev", 10) if t.type == "review_requested"]
        assert review.content["merge_item"] == item_id
        if approve is not None:
            self.queue.decide_review(item_id, approve, by="rev",
                                     comments=None if approve else "no",
                                     task=(review.id, None, "rev", []))
        return item_id

    def roadmap(self) -> list[str]:
        return git(self.root, "rev-list", "roadmap").split()

    def tasks_of(self, agent: str, kind: str) -> list:
        return [t for t in self.queue.claim(agent, 50) if t.type == kind]


@pytest.fixture
def repo(tmp_path):
    project = Repo(tmp_path)
    yield project
    project.queue.close()


def test_two_branches_on_one_file_one_merges_the_other_is_fixed_and_merges(repo):
    start = repo.roadmap()
    a = repo.task("dev_a", ("shared.txt", "alpha\n", "a: shared"))
    b = repo.task("dev_b", ("shared.txt", "beta\n", "b: shared"))
    first, second = repo.merger.pass_once(), repo.merger.pass_once()
    assert (first["id"], second["id"]) == (a, b) and repo.merger.pass_once() is None
    assert repo.queue.merge_item(a)["state"] == "merged"
    failed = repo.queue.merge_item(b)
    assert failed["state"] == "failed" and failed["reason"] == "conflict with roadmap: shared.txt"
    assert "CONFLICT" in failed["output"]
    [back] = repo.tasks_of("dev_b", "merge_failed")
    assert back.content["reason"] == "conflict" and back.content["detail"] == "shared.txt"
    # every agent hears that roadmap moved, once
    assert [len(repo.tasks_of(n, "branch_updated")) for n in ("dev_a", "slow", "rev")] == [1] * 3
    # dev_b's worktree cannot be rebased (the conflict): it is left as it was, and says so
    where = repo.worktree("dev_b")
    head_b = git(where, "rev-parse", "HEAD")
    said = repo.sides["dev_b"].sync(lambda: 0, repo.queue.record_event)
    assert said == "not updated: rebase conflicts in shared.txt"
    assert git(where, "rev-parse", "HEAD") == head_b and git(where, "status", "--porcelain") == ""
    # the fix: roadmap merged into the branch by hand, the conflict resolved
    subprocess.run(["git", "merge", "roadmap"], cwd=where, capture_output=True)
    (where / "shared.txt").write_text("alpha\nbeta\n")
    git(where, "commit", "-qam", "b: both")
    side = repo.sides["dev_b"]
    repo.queue.send("cli", "dev_b", "fix")
    [fix] = [t for t in repo.queue.claim("dev_b", 50) if t.type == "fix"]
    request = side.request({"id": fix.id, "type": "fix"}, head_b)
    assert request["review"]["content"]["commits"][0].endswith("b: both")
    _, c = repo.queue.request_review(fix.id, None, agent="dev_b", item=request["item"],
                                     review=request["review"])
    repo.queue.decide_review(c, True, by="rev")
    assert repo.merger.pass_once()["id"] == c
    assert repo.queue.merge_item(c)["state"] == "merged"
    assert (repo.root / "shared.txt").exists() is False  # main's checkout never moved
    assert git(repo.root, "show", "roadmap:shared.txt") == "alpha\nbeta"
    # every reviewed commit is on roadmap exactly once, nothing else was lost
    on_roadmap = repo.roadmap()
    assert len(on_roadmap) == len(set(on_roadmap))
    for item_id in (a, b, c):
        row = repo.queue.merge_item(item_id)
        for sha in git(repo.root, "rev-list", f"{row['base']}..{row['head']}").split():
            assert sha in on_roadmap
    assert set(start) <= set(on_roadmap)


def test_a_failing_check_keeps_roadmap_where_it_was(repo):
    before = repo.roadmap()
    item = repo.task("dev_a", ("a.txt", "BREAK\n", "a: broken"))
    repo.merger.pass_once()
    row = repo.queue.merge_item(item)
    assert row["state"] == "failed" and repo.roadmap() == before
    assert "broken: a.txt" in row["output"] and "check failed" in row["reason"]
    [back] = repo.tasks_of("dev_a", "merge_failed")
    assert back.content["reason"] == "check_failed" and "broken: a.txt" in back.content["output"]
    assert repo.tasks_of("dev_b", "branch_updated") == []
    # fixed on the branch: reviewed again and merged
    fixed = repo.task("dev_a", ("a.txt", "fine\n", "a: fixed"))
    repo.merger.pass_once()
    assert repo.queue.merge_item(fixed)["state"] == "merged"
    assert git(repo.root, "show", "roadmap:a.txt") == "fine"


def test_a_check_past_its_time_fails_the_merge(repo):
    before = repo.roadmap()
    item = repo.task("slow", ("s.txt", "s\n", "slow: s"))
    repo.merger.pass_once()
    row = repo.queue.merge_item(item)
    assert row["state"] == "failed" and "timed out after 1 s" in row["reason"]
    assert repo.roadmap() == before


@pytest.mark.parametrize("leave", ["sleep 600 &", "setsid sleep 600 &"])
@pytest.mark.parametrize("code", [0, 3])
def test_a_check_ends_at_its_exit_though_what_it_started_holds_its_output(tmp_path, leave,
                                                                          code):
    """The merge waited for the end of the check's output, not for its exit: a check that left
    something running with its stdout (in its group, or gone to its own session) held the
    merge until check_timeout, or for good once it had left the group. Now: its exit +
    EXIT_GRACE, its output kept, the rest killed."""
    pidfile = tmp_path / "left.pid"
    argv = ["sh", "-c", f"{leave} echo $! > {pidfile}; echo checked; exit {code}"]
    ended: list = []
    started = time.monotonic()
    run = threading.Thread(target=lambda: ended.append(Checks().run(argv, tmp_path, 20)),
                           daemon=True)
    run.start()
    run.join(30)
    took = time.monotonic() - started
    pid = int(pidfile.read_text())
    try:
        assert ended, f"the check still runs after {took:.0f} s"
        [(failure, out)] = ended
        assert took < 8, f"the check took {took:.1f} s"  # 2 s of grace; was: 20 s, or forever
        assert out == "checked\n" if code == 0 else out.startswith("checked\n")
        assert failure == (None if code == 0 else "exit code 3: checked")
        wait_until(lambda: not _alive(pid), 5, message=f"PID {pid} ended")
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    print(f"check ended {took:.2f} s after it began")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_fast_forward_and_an_item_already_merged(repo):
    first = repo.task("dev_a", ("a.txt", "1\n", "a: 1"), approve=None)  # still in review
    second = repo.task("dev_a", ("a.txt", "2\n", "a: 2"))  # contains the first
    assert repo.queue.merge_item(second)["base"] == repo.queue.merge_item(first)["base"]
    assert repo.merger.pass_once()["id"] == second
    head = repo.queue.merge_item(second)["head"]
    assert repo.roadmap()[0] == head  # a fast-forward: no merge commit
    repo.queue.decide_review(first, True, by="rev")
    assert repo.merger.pass_once()["id"] == first
    row = repo.queue.merge_item(first)
    assert row["state"] == "merged" and row["reason"] == "already on roadmap: nothing to merge"
    assert repo.roadmap()[0] == head
    assert len(repo.tasks_of("dev_b", "branch_updated")) == 1  # one move, one broadcast


def test_a_person_on_roadmap_keeps_their_files_and_their_work(repo):
    git(repo.root, "checkout", "-q", "roadmap")
    item = repo.task("dev_a", ("a.txt", "from a\n", "a: a"))
    (repo.root / "a.txt").write_text("mine, uncommitted\n")  # in the merge's way
    repo.merger.pass_once()
    row = repo.queue.merge_item(item)
    assert row["state"] == "approved" and "uncommitted changes in the way" in row["reason"]
    assert "a.txt" in row["reason"] and row["not_before"] > 0
    assert (repo.root / "a.txt").read_text() == "mine, uncommitted\n"
    [warning] = repo.queue.notifications()
    assert warning["level"] == "WARNING" and "checked out" in warning["title"]
    (repo.root / "a.txt").unlink()
    (repo.root / "notes.md").write_text("a person's notes\n")  # not in the way
    repo.queue.backend.execute("UPDATE merge_items SET not_before = 0 WHERE id = ?", (item,))
    repo.merger.pass_once()
    assert repo.queue.merge_item(item)["state"] == "merged"
    assert (repo.root / "a.txt").read_text() == "from a\n"  # the checkout followed roadmap
    assert (repo.root / "notes.md").read_text() == "a person's notes\n"
    assert git(repo.root, "status", "--porcelain") == "?? notes.md"
    assert len(repo.queue.notifications()) == 1


def test_roadmap_moved_during_the_checks_is_merged_again_on_its_new_head(repo):
    # someone else's commit lands on roadmap while dev_a's checks run (its check.py lands it)
    old = repo.roadmap()[0]
    tree = git(repo.root, "rev-parse", "roadmap^{tree}")
    other = git(repo.root, "commit-tree", tree, "-p", old, "-m", "other: lands meanwhile")
    hook = (f"import subprocess\nsubprocess.run(['git', 'update-ref', 'refs/heads/roadmap', "
            f"{other!r}, {old!r}], cwd={str(repo.root)!r})\n")
    item = repo.task("dev_a", ("check.py", hook + CHECK, "a: the hook"))
    repo.merger.pass_once()
    row = repo.queue.merge_item(item)
    assert row["state"] == "approved" and "moved during the merge" in row["reason"]
    assert repo.roadmap()[0] == other  # never overwritten
    repo.merger.pass_once()
    assert repo.queue.merge_item(item)["state"] == "merged"
    assert other in repo.roadmap() and row["head"] in repo.roadmap()


def test_worktrees_follow_roadmap_keeping_their_own_commits(repo):
    a = repo.task("dev_a", ("a.txt", "a\n", "a: a"))
    repo.merger.pass_once()
    new = repo.roadmap()[0]
    side_b, where_b = repo.sides["dev_b"], repo.worktree("dev_b")
    events = []

    def record(agent, kind, **detail):
        events.append((agent, kind, detail["detail"]))

    assert side_b.sync(lambda: 0, record).startswith("fast-forward onto roadmap")
    assert git(where_b, "rev-parse", "HEAD") == new
    assert side_b.sync(lambda: 0, record) == "current"
    # dev_b commits, roadmap moves again: its commit is replayed on the new head
    mine = repo.commit("dev_b", "b.txt", "b\n", "b: own")
    repo.task("dev_a", ("a2.txt", "a2\n", "a: a2"))
    repo.merger.pass_once()
    assert side_b.sync(lambda: 1, record).startswith("not updated: its commits wait")
    assert side_b.sync(lambda: 1, record).startswith("not updated")  # reported once
    assert side_b.sync(lambda: 0, record).startswith("rebase onto roadmap")
    log = git(where_b, "log", "--format=%s", "-3").splitlines()
    assert log[0] == "b: own" and git(where_b, "rev-parse", "HEAD") != mine
    assert git(where_b, "merge-base", "--is-ancestor", "roadmap", "HEAD") == ""
    # uncommitted work is never touched
    repo.task("dev_a", ("a3.txt", "a3\n", "a: a3"))
    repo.merger.pass_once()
    (where_b / "wip.txt").write_text("wip\n")
    before = git(where_b, "rev-parse", "HEAD")
    assert side_b.sync(lambda: 0, record).startswith("not updated: uncommitted changes")
    assert git(where_b, "rev-parse", "HEAD") == before
    assert [kind for _, kind, _ in events] == [
        "worktree_updated", "worktree_not_updated", "worktree_updated", "worktree_not_updated"]
    # three merges while dev_b took no task: one branch_updated waits for it, not three
    assert len(repo.tasks_of("dev_b", "branch_updated")) == 1
    assert repo.queue.merge_item(a)["state"] == "merged"


def test_no_new_commits_ask_for_no_review(repo):
    side = repo.sides["dev_a"]
    head = side.head()
    assert side.request({"id": 1, "type": "t"}, head) is None
    repo.commit("dev_a", "a.txt", "a\n", "a")
    git(repo.worktree("dev_a"), "reset", "-q", "--hard", head)  # committed, then reset back
    assert side.request({"id": 1, "type": "t"}, head) is None


def test_a_merger_that_starts_again_finishes_what_its_predecessor_left(repo):
    item = repo.task("dev_a", ("a.txt", "a\n", "a: a"))
    repo.queue.begin_merge("")  # a watchdog killed in the middle of the merge
    assert repo.merger.pass_once() is None
    repo.merger._stop.set()
    repo.merger.run(interval=0)  # released at the start; stopped before the loop
    assert repo.queue.merge_item(item)["state"] == "approved"
    assert any("merging them again" in line for line in repo.logged)
    repo.merger._stop.clear()
    repo.merger.pass_once()
    assert repo.queue.merge_item(item)["state"] == "merged"


def test_a_busy_database_at_the_end_of_a_merge_is_waited_for(repo, monkeypatch):
    import sqlite3
    item = repo.task("dev_a", ("a.txt", "a\n", "a: a"))
    real, calls = repo.queue.finish_merge, []

    def busy_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kwargs)
    monkeypatch.setattr(repo.queue, "finish_merge", busy_once)
    repo.merger.pass_once()
    assert len(calls) == 2 and repo.queue.merge_item(item)["state"] == "merged"
    assert any("database is locked; retrying" in line for line in repo.logged)


def test_a_person_reviews_through_an_approval(repo):
    side = repo.sides["dev_p"]
    repo.queue.send("cli", "dev_p", "work")
    [task] = repo.queue.claim("dev_p")
    before = side.head()
    repo.commit("dev_p", "p.txt", "p\n", "p: one")
    request = side.request({"id": task.id, "type": "work"}, before)
    assert request["review"] is None
    _, item_id = repo.queue.request_review(task.id, None, agent="dev_p", item=request["item"],
                                           review=None, ask=request["ask"])
    [approval] = repo.queue.list_approvals("pending")
    assert approval["kind"] == "review" and "(1 commit) for roadmap" in approval["subject"]
    assert approval["request"]["commits"][0].endswith("p: one")
    repo.queue.decide_approval(approval["id"], False, by="alice", reason="call it q")
    [back] = repo.tasks_of("dev_p", "merge_failed")
    assert back.content["detail"] == "call it q" and back.content["merge_item"] == item_id
    assert "a person asked for changes" in back.content["todo"]
    assert repo.merger.pass_once() is None  # nothing approved
    # the rework, approved this time, merges
    repo.queue.send("cli", "dev_p", "rework")
    [rework] = [t for t in repo.queue.claim("dev_p", 10) if t.type == "rework"]
    head = side.head()
    git(side.directory, "mv", "p.txt", "q.txt")
    git(side.directory, "commit", "-qm", "p: renamed")
    request = side.request({"id": rework.id, "type": "rework"}, head)
    _, again = repo.queue.request_review(rework.id, None, agent="dev_p", item=request["item"],
                                         review=None, ask=request["ask"])
    [approval] = repo.queue.list_approvals("pending")
    repo.queue.decide_approval(approval["id"], True, by="alice")
    assert repo.merger.pass_once()["id"] == again
    row = repo.queue.merge_item(again)
    assert (row["state"], row["decided_by"]) == ("merged", "alice")
    assert git(repo.root, "ls-tree", "--name-only", "roadmap").split().count("q.txt") == 1
