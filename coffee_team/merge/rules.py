"""What the review and merge queue does next: pure functions of what git answered, no I/O.

- ``needs_review``: did a task leave new commits on the agent's branch?
- ``merge_plan``: how an approved head reaches its target (nothing to do, a fast-forward, or
  a merge commit);
- ``ending``: what a merge attempt's outcome does to the item (taskstate.MERGE_ACTIONS) and
  whom it tells;
- ``sync_plan``: how an agent's worktree is brought onto its target's new head before its
  next task, its own unmerged commits kept.

The item's states and the transitions between them are taskstate's (MERGE_STATES); the git
work is attempt.py's and worktree.py's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# merge_plan
ALREADY = "already"            # the head is on the target already: nothing to merge
FAST_FORWARD = "fast-forward"  # the target is in the head: the head becomes the target
MERGE = "merge"                # both went on: a merge commit of the two

# Attempt.outcome
MERGED = "merged"              # the target moved to new_head
ALREADY_THERE = "already"      # nothing to do: the reviewed commits are on the target
CONFLICT = "conflict"          # git could not merge the head into the target
CHECK_FAILED = "check_failed"  # a check failed (or timed out) on the merge result
MOVED = "moved"                # the target moved while the checks ran: merge again on it
BLOCKED = "blocked"            # the target's checkout has uncommitted changes in the way
ERROR = "error"                # anything else (a commit gone, the target missing, git failing)
OUTCOMES = (MERGED, ALREADY_THERE, CONFLICT, CHECK_FAILED, MOVED, BLOCKED, ERROR)

BLOCKED_RETRY = 60.0  # seconds before a merge blocked by a person's checkout is tried again

# sync_plan
CURRENT = "current"            # the worktree has the target's head already
UPDATE = "fast-forward"        # nothing of its own: it moves to the target's head
REBASE = "rebase"              # its own commits replayed on the target's head
KEEP = "keep"                  # its commits wait for review or merge: left as they are
DIRTY = "dirty"                # uncommitted changes: left as it is, reported


def needs_review(before: Optional[str], after: Optional[str], after_in_before: bool) -> bool:
    """Did the task leave new commits? The branch's head moved to a commit its old head does
    not contain (a branch reset backwards, or left where it was, did not)."""
    return after is not None and after != before and not after_in_before


def merge_plan(head_in_target: bool, target_in_head: bool) -> str:
    if head_in_target:
        return ALREADY
    return FAST_FORWARD if target_in_head else MERGE


@dataclass(frozen=True)
class Attempt:
    """What one merge attempt came to."""
    outcome: str
    new_head: Optional[str] = None  # MERGED, ALREADY_THERE: the target's head after it
    old_head: Optional[str] = None  # MERGED: the target's head before it
    detail: str = ""                # one line: the conflicting files, the check, the error
    output: str = ""                # git's or the checks' output


@dataclass(frozen=True)
class Ending:
    """What an attempt does to its item: a MERGE_ACTIONS action and whom it tells."""
    action: str                    # merged, fail or release
    reason: Optional[str] = None   # one line, kept in the item and shown by `merges`
    tell_author: bool = False      # a merge_failed task back to the author
    broadcast: bool = False        # branch_updated to every agent: the target moved
    retry_after: float = 0.0       # release: seconds before the item is tried again
    warn: bool = False             # a WARNING notification for a person


def ending(attempt: Attempt, target: str, previous_reason: Optional[str] = None) -> Ending:
    """The item's next state after ``attempt`` (``previous_reason``: what the last attempt
    left, so a blocked merge warns a person once, not at every retry)."""
    outcome, detail = attempt.outcome, attempt.detail
    if outcome == MERGED:
        return Ending("merged", broadcast=True)
    if outcome == ALREADY_THERE:
        return Ending("merged", reason=f"already on {target}: nothing to merge")
    if outcome == MOVED:
        return Ending("release", reason=f"{target} moved during the merge: merging again")
    if outcome == BLOCKED:
        reason = f"{target} is checked out with uncommitted changes in the way: {detail}"
        return Ending("release", reason=reason, retry_after=BLOCKED_RETRY,
                      warn=reason != previous_reason)
    what = {CONFLICT: f"conflict with {target}", CHECK_FAILED: "check failed",
            ERROR: "merge failed"}[outcome]
    return Ending("fail", reason=f"{what}: {detail}" if detail else what, tell_author=True)


def sync_plan(target_in_branch: bool, branch_in_target: bool, under_review: bool,
              dirty: bool) -> str:
    """How an agent's worktree is brought onto its target's head before its next task.
    Commits still on their way (waiting for review or merge) are kept as they are: the merge
    queue merges them by their ids, and a rebase would make copies that a later review
    would count again."""
    if target_in_branch:
        return CURRENT
    if dirty:
        return DIRTY
    if branch_in_target:
        return UPDATE
    return KEEP if under_review else REBASE
