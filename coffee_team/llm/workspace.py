"""Where an llm agent's CLI runs: the project root, a directory, or a git worktree of its own.

``worktree: true`` gives the agent a worktree of the project's repository on its own branch
(``agents/${agent}`` by default) under ``data/worktrees/<agent>``: created once, found again
after any restart, so parallel agents never edit the same checkout. The branch a checkout is
on is read from git's files (no process per task); ``Workspace.require`` fails a task rather
than let it run in a checkout on another branch (the worktree's own, else team.require_branch,
seed CFR-013). ``problems`` are the start-time checks and ``health`` the doctor's.

Clean retries: a run that does not end with an answer (killed by a timeout, stall, cancel,
stop or crash, or failed) may leave half-done edits in the worktree, which the next run's
commit would sweep in. A marker in the worktree's git directory says a run is under way
(``begin_run``; ``end_run`` removes it once the run answered); before the next run,
``set_aside`` finds it and stashes what is uncommitted (``git stash push --include-untracked``,
the message naming the agent and the task), so every run starts from the last commit.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import HandlerError, TeamError
from ..merge.git import IDENTITY, branch_head, git

RUN_MARKER = "coffee-team-run.json"  # in the worktree's git directory: never in a commit
LISTED_FILES = 50  # of the files set aside, recorded on the task


@dataclass(frozen=True)
class Workspace:
    root: Path                     # the project root
    agent: str
    spec: object = None            # team.llm.WorkspaceSpec or None
    require_branch: Optional[str] = None

    @classmethod
    def of(cls, team, spec) -> "Workspace":
        return cls(team.root, spec.name, spec.workspace, team.settings.require_branch)

    @property
    def is_worktree(self) -> bool:
        return bool(self.spec is not None and self.spec.worktree)

    @property
    def directory(self) -> Path:
        if self.spec is None:
            return self.root
        relative = self.spec.path_for(self.agent) if self.is_worktree else self.spec.dir
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    @property
    def branch(self) -> Optional[str]:
        """The branch a task must find its checkout on (None: any)."""
        return self.spec.branch_for(self.agent) if self.is_worktree else self.require_branch

    # --- start time -------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What keeps this workspace from being used at all (checked by gen-config/start)."""
        if self.spec is None:
            return []
        if not self.is_worktree:
            return [] if self.directory.is_dir() else [f"dir: {self.directory} is not a directory"]
        if repository(self.root) is None:
            return [f"worktree: {self.root} is not in a git repository (worktree: true makes "
                    f"a git worktree of the project's repository)"]
        return []

    def ensure(self) -> Path:
        """The directory to run in; a worktree is created (idempotently) if missing."""
        if self.is_worktree:
            self._ensure_worktree()
        return self.directory

    def _ensure_worktree(self) -> None:
        path, branch = self.directory, self.branch
        repo = repository(self.root)
        if repo is None:
            raise TeamError(f"agents.{self.agent}.workspace: {self.root} is not in a git repository")
        if self.spec.merge is not None:
            self._ensure_target(repo)
        if path.exists():
            if _common_dir(path) != _common_dir(repo):
                raise TeamError(f"agents.{self.agent}.workspace: {path} exists and is not a "
                                f"worktree of {repo}")
            return
        git(repo, "worktree", "prune")  # a worktree deleted by hand is still registered
        path.parent.mkdir(parents=True, exist_ok=True)
        if branch_head(repo, branch) is not None:
            git(repo, "worktree", "add", str(path), branch)
        else:
            git(repo, "worktree", "add", "-b", branch, str(path), self.start_point)

    @property
    def start_point(self) -> str:
        """Where a new branch of the agent starts: ``base``, else the merge target (what its
        work is merged into), else HEAD."""
        merge = self.spec.merge
        return self.spec.base or (merge.into if merge is not None else "HEAD")

    def _ensure_target(self, repo: Path) -> None:
        """The merge target exists (made from ``base`` or HEAD the first time): the agent's
        branch starts from it, and the merge queue moves it forward. Agents starting
        together may race to make it; whoever loses finds it made."""
        into = self.spec.merge.into
        if branch_head(repo, into) is None:
            code, out = git(repo, "branch", into, self.spec.base or "HEAD", check=False)
            if code != 0 and branch_head(repo, into) is None:
                raise TeamError(f"agents.{self.agent}.workspace.merge.into: cannot create "
                                f"branch {into}: {out.strip()[-200:]}")

    # --- per task ---------------------------------------------------------------------------
    def require(self) -> Path:
        """The directory, if its checkout is on the branch the task needs (else HandlerError)."""
        directory = self.directory
        wanted = self.branch
        if wanted is not None:
            current = current_branch(directory)
            if current != wanted:
                raise HandlerError(f"checkout {directory} is on {current or 'no branch'}, not "
                                   f"{wanted}: the task does not run there")
        return directory

    # --- clean retries ----------------------------------------------------------------------
    def begin_run(self, task: dict) -> None:
        """Mark a run under way (a worktree only); end_run() unmarks it once it answered."""
        marker = self._marker()
        if marker is not None:
            marker.write_text(json.dumps({"task_id": task.get("id"), "type": task.get("type"),
                                          "attempt": task.get("attempts"),
                                          "started_at": time.time()}))

    def end_run(self) -> None:
        marker = self._marker()
        if marker is not None:
            marker.unlink(missing_ok=True)

    def set_aside(self, task: dict) -> Optional[dict[str, Any]]:
        """Before a run: stash what the previous run left uncommitted if it did not answer.
        What was stashed ({stash, message, files, left_by}), or None (nothing to set aside).
        HandlerError (the task is retried) if git cannot stash: it never runs on those edits."""
        marker = self._marker()
        if marker is None or not marker.exists():
            return None
        try:
            left_by = json.loads(marker.read_text())
        except (OSError, ValueError):
            left_by = {}
        path = self.directory
        code, out = git(path, "status", "--porcelain", "--untracked-files=all", check=False)
        files = [line[3:] for line in out.splitlines() if line.strip()] if code == 0 else []
        if code == 0 and not files:
            marker.unlink(missing_ok=True)
            return None
        what = f"task #{left_by.get('task_id')}" if left_by.get("task_id") is not None \
            else "a periodic run"
        nth = f" attempt {left_by['attempt']}" if left_by.get("attempt") else ""
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        message = (f"coffee-team: {self.agent}: {what}{nth} stopped mid-run ({now} UTC); "
                   f"set aside before task #{task.get('id')}")
        code, out = git(path, *IDENTITY, "stash", "push", "--include-untracked", "-m",
                         message, check=False)
        if code != 0:
            last = (out.strip().splitlines() or [f"exited with {code}"])[-1][:300]
            lock = marker.parent / "index.lock"
            if lock.exists():  # git stash fails silently on it; a killed `git commit` leaves it
                last += f"; {lock} exists: remove it if no git command runs there"
            raise HandlerError(f"worktree {path}: cannot set aside the changes {what} left "
                               f"uncommitted (git stash: {last}); the task does not run on them")
        marker.unlink(missing_ok=True)
        return {"stash": _stash_of(path, message), "message": message,
                "files": files[:LISTED_FILES], "left_by": left_by}

    def _marker(self) -> Optional[Path]:
        if not self.is_worktree:
            return None
        found = git_dir(self.directory)
        return None if found is None else found / RUN_MARKER

    # --- doctor -----------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        """(ok, detail): the worktree exists, is on its branch, and is clean or what is dirty."""
        path, wanted = self.directory, self.branch
        if not path.is_dir():
            return False, f"{path} missing (the agent creates it when it starts)"
        current = current_branch(path)
        if current != wanted:
            return False, f"{path} is on {current or 'no branch'}, expected {wanted}"
        code, out = git(path, "status", "--porcelain", check=False)
        dirty = [line[3:] for line in out.splitlines() if line.strip()]
        if code != 0:
            return False, f"{path}: git status failed: {out.strip()[:200]}"
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            return True, f"{path} on {wanted}, uncommitted: {shown}"
        return True, f"{path} on {wanted}, clean"


def repository(path: Path) -> Optional[Path]:
    """The top of the git work tree holding ``path``, or None."""
    code, out = git(path, "rev-parse", "--show-toplevel", check=False)
    return Path(out.strip()) if code == 0 and out.strip() else None


def git_dir(path: Path) -> Optional[Path]:
    """The git directory of the checkout holding ``path`` (None: not a checkout), from git's
    files: ``.git`` is a directory, or in a worktree a file naming the git directory."""
    for directory in (path, *path.parents):
        dot_git = directory / ".git"
        try:
            if dot_git.is_file():
                text = dot_git.read_text().strip()
                found = Path(text.removeprefix("gitdir:").strip())
                return found if found.is_absolute() else directory / found
        except OSError:
            return None
        if dot_git.is_dir():
            return dot_git
    return None


def current_branch(path: Path) -> Optional[str]:
    """The branch checked out at ``path`` (None: detached or not a checkout)."""
    found = git_dir(path)
    try:
        head = (found / "HEAD").read_text().strip() if found is not None else ""
    except OSError:
        return None
    prefix = "ref: refs/heads/"
    return head[len(prefix):] if head.startswith(prefix) else None


def _stash_of(path: Path, message: str) -> Optional[str]:
    """The commit of the stash entry with ``message`` (the stash list is the repository's,
    shared by every worktree: another agent may have stashed meanwhile)."""
    code, out = git(path, "reflog", "show", "--format=%H %gs", "refs/stash", check=False)
    for line in out.splitlines() if code == 0 else ():
        sha, _, subject = line.partition(" ")
        if subject.endswith(message):
            return sha
    return None


def _common_dir(path: Path) -> Optional[Path]:
    code, out = git(path, "rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
    return Path(out.strip()).resolve() if code == 0 else None


def team_problems(team) -> list[str]:
    """Every llm agent's missing role file or unusable workspace, one line each naming the
    key path (gen-config and start refuse the team with these, exit 2)."""
    found = []
    for spec in team.agents:
        if spec.llm is None:
            continue
        where = f"{team.path}: agents.{spec.name}"
        role = spec.llm.system_prompt_file
        if role is not None and not team.resolve(role).is_file():
            found.append(f"{where}.llm.system_prompt_file: {team.resolve(role)} is not a "
                         f"readable file")
        found += [f"{where}.workspace.{p}" for p in Workspace.of(team, spec).problems()]
    return found
