"""One merge of an approved item, in git: the head merged onto the target in a scratch
worktree, the checks run there, and the target moved forward only if they pass.

The target moves by a compare-and-swap (``git update-ref REF NEW OLD``), or, when a checkout
has it checked out (a person's), by ``git merge --ff-only`` there, which also keeps that
checkout's files in step: never a force, never a push, and NEW always contains OLD, so no
commit the target had is ever lost. A target that moved meanwhile makes the swap fail: the
merge is made again on its new head. The scratch worktree is removed whatever happens.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ..errors import HandlerError, describe_error
from ..handlers import CommandRunner, HandlerContext, Interrupted
from . import rules
from .git import branch_head, checkout_of, git, identity, is_ancestor, rev

MERGE_TIMEOUT = 300.0       # seconds git may take for one merge (a huge repository)
OUTPUT_TAIL = 64 * 1024     # bytes of a check's output kept: the end is where it failed


class Checks:
    """Runs the checks one after the other, as the llm runner runs its CLI
    (handlers.CommandRunner): each in its own session, ended at its exit (plus EXIT_GRACE for
    its last output) even if something it started still holds its output, and what it left
    running killed with it; a timeout (or the merger's stop) ends everything it started."""

    def __init__(self) -> None:
        self.current: Optional[CommandRunner] = None

    def run(self, argv: Sequence[str], cwd: Path, timeout: float) -> tuple[Optional[str], str]:
        """(why it failed in one line, or None if it passed; its output) of one check: it
        passes by exiting 0 within ``timeout`` seconds."""
        tail = _Tail()
        runner = self.current = CommandRunner(tuple(argv), cwd=str(cwd), sink=tail)
        marker = tempfile.mkdtemp(prefix="coffee-check-")  # names its processes (parentwatch)
        try:
            code, _, _ = runner.execute(list(argv), b"", {}, HandlerContext("merger", {}),
                                        os.path.join(marker, "result.json"), scan=_NoScan(),
                                        tag="", timeout=timeout)
            verdict = None if code == 0 else f"exit code {code}"
        except Interrupted:
            verdict = f"timed out after {timeout:g} s"
        except HandlerError as exc:  # it could not start
            return str(exc), ""
        finally:
            self.current = None
            shutil.rmtree(marker, ignore_errors=True)
        text = bytes(tail.data[-OUTPUT_TAIL:]).decode(errors="replace")
        if verdict is None:
            return None, text
        last = text.strip().splitlines()[-1:]
        return (f"{verdict}: {last[0][:300]}" if last else verdict), f"{text}[{verdict}]\n"

    def kill(self) -> None:
        runner = self.current
        if runner is not None:
            runner.kill()


class _Tail:
    """Where a check's output goes (stdout and stderr as they come): its last OUTPUT_TAIL
    bytes, the end being where it failed."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > 2 * OUTPUT_TAIL:
            del self.data[:-OUTPUT_TAIL]


class _NoScan:
    """A check has no result to find in its output: only its exit code counts."""

    def feed(self, lines: bytes) -> None:
        pass


def attempt(repo: Path, item: dict, checks: Sequence[Sequence[str]], check_timeout: float,
            scratch: Path, runner: Optional[Checks] = None) -> rules.Attempt:
    """Merge ``item`` (its head onto its target) with ``checks``; never raises for git's
    or a check's trouble: that is the attempt's outcome."""
    try:
        return _attempt(repo, item, checks, check_timeout, scratch, runner or Checks())
    except Exception as exc:  # noqa: BLE001 (git missing, a timeout, a disk full: one line)
        return rules.Attempt(rules.ERROR, detail=describe_error(exc))
    finally:
        remove_scratch(repo, scratch)


def _attempt(repo: Path, item: dict, checks: Sequence[Sequence[str]], check_timeout: float,
             scratch: Path, runner: Checks) -> rules.Attempt:
    target, head = item["target"], item["head"]
    old = branch_head(repo, target)
    if old is None:
        return rules.Attempt(rules.ERROR, detail=f"the branch {target} does not exist")
    if rev(repo, head) is None:
        return rules.Attempt(rules.ERROR, detail=f"commit {head[:12]} is not in the repository")
    plan = rules.merge_plan(is_ancestor(repo, head, old), is_ancestor(repo, old, head))
    if plan == rules.ALREADY:
        return rules.Attempt(rules.ALREADY_THERE, new_head=old)
    remove_scratch(repo, scratch)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    git(repo, "worktree", "add", "--detach", str(scratch),
        head if plan == rules.FAST_FORWARD else old)
    if plan == rules.MERGE:
        code, out = git(scratch, *identity(repo), "merge", "--no-ff", "--no-edit", "-m",
                        f"Merge {item['branch']} into {target} (review #{item['id']})", head,
                        check=False, timeout=MERGE_TIMEOUT)
        if code != 0:
            _, unmerged = git(scratch, "diff", "--name-only", "--diff-filter=U", check=False)
            files = unmerged.split()
            git(scratch, "merge", "--abort", check=False)
            detail = ", ".join(files) if files else (out.strip().splitlines() or ["?"])[-1]
            return rules.Attempt(rules.CONFLICT, detail=detail, output=out)
    new = rev(scratch, "HEAD")
    outputs = []
    for argv in checks:
        failure, out = runner.run(argv, scratch, check_timeout)
        outputs.append(f"$ {' '.join(argv)}\n{out}")
        if failure is not None:
            return rules.Attempt(rules.CHECK_FAILED, detail=f"{' '.join(argv)[:200]}: {failure}",
                                 output="\n".join(outputs))
    return move_target(repo, target, old, new, "\n".join(outputs))


def move_target(repo: Path, target: str, old: str, new: str, output: str = "") -> rules.Attempt:
    """``target`` from ``old`` to ``new`` (which contains it), only if it is still at
    ``old``."""
    checkout = checkout_of(repo, target)
    if checkout is None:
        code, out = git(repo, "update-ref", "-m", "coffee-team merge queue",
                        f"refs/heads/{target}", new, old, check=False)
    elif rev(checkout, "HEAD") != old:
        code, out = 1, "moved"
    else:  # as `git merge` would: its files follow, its uncommitted changes stay
        code, out = git(checkout, "merge", "--ff-only", "--no-edit", new, check=False)
    if code == 0:
        return rules.Attempt(rules.MERGED, new_head=new, old_head=old, output=output)
    if branch_head(repo, target) != old:
        return rules.Attempt(rules.MOVED, output=output)
    if checkout is not None:
        last = (out.strip().splitlines() or ["?"])
        return rules.Attempt(rules.BLOCKED, detail=f"{checkout}: {_in_the_way(out) or last[-1]}",
                             output=output)
    return rules.Attempt(rules.ERROR, detail=f"git update-ref {target}: {out.strip()[-200:]}",
                         output=output)


def _in_the_way(out: str) -> str:
    """The files ``git merge`` says local changes would be overwritten in."""
    lines, files, listing = out.splitlines(), [], False
    for line in lines:
        if "would be overwritten" in line:
            listing = True
        elif listing and line.startswith(("\t", "    ")):
            files.append(line.strip())
        elif listing:
            listing = False
    return ", ".join(files)


def remove_scratch(repo: Path, scratch: Path) -> None:
    """The scratch worktree gone, and git's record of it."""
    if scratch.exists():
        git(repo, "worktree", "remove", "--force", str(scratch), check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    git(repo, "worktree", "prune", check=False)


def scratch_for(root: Path, item_id: int) -> Path:
    return root / "data" / "worktrees" / ".merge" / str(item_id)

