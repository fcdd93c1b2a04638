"""git as coffee-team runs it: one subprocess per command, bounded in time, never reading
stdin, its output read back as text. The worktrees (llm/workspace.py), the merges
(merge/attempt.py) and the worktree updates (merge/worktree.py) all go through ``git()``.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from ..errors import TeamError

GIT_TIMEOUT = 60.0
# Commits the merge queue makes itself (merge commits, a worktree's rebased commits) when the
# repository names nobody: git refuses to commit without an identity.
IDENTITY = ("-c", "user.name=coffee-team", "-c", "user.email=coffee-team@localhost")


def git(cwd: Path, *args: str, check: bool = True,
        timeout: float = GIT_TIMEOUT) -> tuple[int, str]:
    """(exit code, stdout, and stderr when it failed); with ``check`` a failure is a
    TeamError naming the command and git's last line."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if check:
            raise TeamError(f"git {' '.join(args)} in {cwd}: {exc}") from None
        return 1, str(exc)
    if check and proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise TeamError(f"git {' '.join(args)} in {cwd} failed: {lines[-1] if lines else ''}")
    return proc.returncode, proc.stdout + (proc.stderr if proc.returncode else "")


def rev(cwd: Path, ref: str) -> Optional[str]:
    """The commit ``ref`` names, or None if it names none."""
    code, out = git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return out.strip() if code == 0 and out.strip() else None


def branch_head(cwd: Path, branch: str) -> Optional[str]:
    return rev(cwd, f"refs/heads/{branch}")


def is_ancestor(cwd: Path, ancestor: str, descendant: str) -> bool:
    code, out = git(cwd, "merge-base", "--is-ancestor", ancestor, descendant, check=False)
    if code not in (0, 1):
        raise TeamError(f"git merge-base --is-ancestor in {cwd} failed: {out.strip()[:200]}")
    return code == 0


def merge_base(cwd: Path, one: str, other: str) -> Optional[str]:
    code, out = git(cwd, "merge-base", one, other, check=False)
    return out.strip() if code == 0 and out.strip() else None


def commits(cwd: Path, exclude: str, head: str, limit: int = 50) -> list[str]:
    """``abc1234 subject`` of each commit ``head`` has and ``exclude`` has not, newest first."""
    _, out = git(cwd, "log", f"--max-count={limit}", "--format=%h %s", f"{exclude}..{head}")
    return out.splitlines()


def diffstat(cwd: Path, base: str, head: str, limit: int = 4000) -> str:
    _, out = git(cwd, "diff", "--stat=100", base, head)
    return out if len(out) <= limit else out[:limit] + "\n[… cut]"


def patch(cwd: Path, base: str, head: str, limit: int = 40_000) -> str:
    """The change ``base..head`` makes, as a patch of at most ``limit`` characters."""
    _, out = git(cwd, "diff", "--no-color", "--no-ext-diff", base, head)
    if len(out) <= limit:
        return out
    return out[:limit] + f"\n[… {len(out) - limit} more characters: git diff {base} {head}]"


def dirty(cwd: Path) -> list[str]:
    """The paths ``git status`` shows as changed or untracked in the checkout at ``cwd``."""
    _, out = git(cwd, "status", "--porcelain")
    return [line[3:] for line in out.splitlines() if line.strip()]


def identity(cwd: Path) -> tuple[str, ...]:
    """IDENTITY when the repository's configuration names no committer, else nothing."""
    code, out = git(cwd, "config", "user.email", check=False)
    return () if code == 0 and out.strip() else IDENTITY


def checkout_of(cwd: Path, branch: str) -> Optional[Path]:
    """The worktree (the main one included) that has ``branch`` checked out, or None."""
    _, out = git(cwd, "worktree", "list", "--porcelain")
    path = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree "):])
        elif line == f"branch refs/heads/{branch}" and path is not None:
            return path
    return None
