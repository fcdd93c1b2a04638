"""An llm agent's side of the review and merge queue (``workspace.merge``), run by its runner:

- before each task its worktree is brought onto the target's head (``sync``): a
  fast-forward when it has nothing of its own, a rebase of its own commits when none of them
  waits for review or merge; uncommitted changes, commits on their way and a rebase that
  conflicts leave it as it is, reported once (a log line and a journal event);
- after a task, ``request`` compares the branch's head with the one before: new commits make
  a review request (the merge item, and the review_requested task for a reviewing agent),
  which the runtime writes with the task's completion, in one transaction.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from .. import events as kinds
from ..output import log
from . import review, rules
from .git import (branch_head, commits, diffstat, dirty, git, identity, is_ancestor,
                  merge_base, patch)

REBASE_TIMEOUT = 300.0


class AgentMerging:
    def __init__(self, agent: str, directory: Path, branch: str, merge: Any, host: str = ""):
        self.agent, self.directory, self.branch, self.merge = agent, directory, branch, merge
        self.host = host
        self.reported: Optional[tuple[str, Optional[str]]] = None  # (what, target head)

    @classmethod
    def of(cls, team: Any, workspace: Any) -> Optional["AgentMerging"]:
        spec = workspace.spec
        if spec is None or not spec.worktree or spec.merge is None:
            return None
        return cls(workspace.agent, workspace.directory, workspace.branch, spec.merge,
                   team.state_host)

    def head(self) -> Optional[str]:
        return branch_head(self.directory, self.branch)

    # --- after a task -----------------------------------------------------------------------
    def request(self, task: dict, before: Optional[str]) -> Optional[dict]:
        """The review request of the commits ``task`` left ({item, review, ask}: a task to the
        reviewing agent, or what a person is asked; None: no new commits)."""
        after, where = self.head(), self.directory
        known = before is not None and after is not None
        if not rules.needs_review(before, after, known and is_ancestor(where, after, before)):
            return None
        into = self.merge.into
        item = {"author": self.agent, "host": self.host, "branch": self.branch, "target": into,
                "base": merge_base(where, into, after) or before or after, "head": after,
                "task_id": task.get("id"), "reviewer": self.merge.reviewer}
        listed, stat = commits(where, into, after), diffstat(where, item["base"], after)
        if item["reviewer"] is None:  # a person: an approval, not a task
            return {"item": item, "review": None,
                    "ask": review.person_request(item, task, listed, stat)}
        return {"item": item, "ask": None, "review": review.review_request(
            item, task, listed, stat, patch(where, item["base"], after))}

    # --- before a task ----------------------------------------------------------------------
    def sync(self, live_merges: Callable[[], int],
             record: Callable[..., Any] = lambda *a, **k: None) -> str:
        """Bring the worktree onto the target's head; what happened, in a few words."""
        where, into = self.directory, self.merge.into
        target, mine = branch_head(where, into), self.head()
        if target is None or mine is None:
            return rules.CURRENT
        target_in_mine = is_ancestor(where, target, mine)
        plan = rules.sync_plan(
            target_in_mine, not target_in_mine and is_ancestor(where, mine, target),
            under_review=not target_in_mine and live_merges() > 0,
            dirty=not target_in_mine and bool(dirty(where)))
        if plan == rules.CURRENT:
            return plan
        if plan == rules.UPDATE:
            code, out = git(where, "merge", "--ff-only", into, check=False)
            why = None if code == 0 else _last(out)
        elif plan == rules.REBASE:
            code, out = git(where, *identity(where), "rebase", into, check=False,
                            timeout=REBASE_TIMEOUT)
            why = None if code == 0 else _conflict(where, out)
        elif plan == rules.KEEP:
            why = "its commits wait for review or merge"
        else:
            why = f"uncommitted changes in {where}"
        done = f"{plan} onto {into} {target[:10]}"
        self._report(target, done if why is None else f"not brought onto {into}: {why}",
                     why is None, record)
        return done if why is None else f"not updated: {why}"

    def _report(self, target: str, line: str, updated: bool, record: Callable) -> None:
        """Once per outcome and target head: a worktree left behind is not news at every
        task."""
        if (line, target) == self.reported:
            return
        self.reported = (line, target)
        log(self.agent, f"worktree {line}")
        record(self.agent, kinds.WORKTREE_UPDATED if updated else kinds.WORKTREE_NOT_UPDATED,
               target=self.merge.into, head=target, detail=line)


def _last(out: str) -> str:
    lines = out.strip().splitlines()
    return lines[-1][:300] if lines else "git failed"


def _conflict(where: Path, out: str) -> str:
    """A rebase that stopped: undone (the branch is where it was), and why."""
    _, unmerged = git(where, "diff", "--name-only", "--diff-filter=U", check=False)
    git(where, "rebase", "--abort", check=False)
    files = unmerged.split()
    return f"rebase conflicts in {', '.join(files)}" if files else f"rebase failed: {_last(out)}"
