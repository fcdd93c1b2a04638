"""Where an llm agent's CLI runs: the project root, a directory, or a git worktree of its own.

``worktree: true`` gives the agent a worktree of the project's repository on its own branch
(``agents/${agent}`` by default) under ``data/worktrees/<agent>``: created once, found again
after any restart, so parallel agents never edit the same checkout. The branch a checkout is
on is read from git's files (no process per task); ``Workspace.require`` fails a task rather
than let it run in a checkout on another branch (the worktree's own, else team.require_branch,
seed CFR-013). ``problems`` are the start-time checks and ``health`` the doctor's.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import HandlerError, TeamError

GIT_TIMEOUT = 60


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
        if path.exists():
            if _common_dir(path) != _common_dir(repo):
                raise TeamError(f"agents.{self.agent}.workspace: {path} exists and is not a "
                                f"worktree of {repo}")
            return
        _git(repo, "worktree", "prune")  # a worktree deleted by hand is still registered
        path.parent.mkdir(parents=True, exist_ok=True)
        if _git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False)[0] == 0:
            _git(repo, "worktree", "add", str(path), branch)
        else:
            _git(repo, "worktree", "add", "-b", branch, str(path), self.spec.base or "HEAD")

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

    # --- doctor -----------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        """(ok, detail): the worktree exists, is on its branch, and is clean or what is dirty."""
        path, wanted = self.directory, self.branch
        if not path.is_dir():
            return False, f"{path} missing (the agent creates it when it starts)"
        current = current_branch(path)
        if current != wanted:
            return False, f"{path} is on {current or 'no branch'}, expected {wanted}"
        code, out = _git(path, "status", "--porcelain", check=False)
        dirty = [line[3:] for line in out.splitlines() if line.strip()]
        if code != 0:
            return False, f"{path}: git status failed: {out.strip()[:200]}"
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            return True, f"{path} on {wanted}, uncommitted: {shown}"
        return True, f"{path} on {wanted}, clean"


def repository(path: Path) -> Optional[Path]:
    """The top of the git work tree holding ``path``, or None."""
    code, out = _git(path, "rev-parse", "--show-toplevel", check=False)
    return Path(out.strip()) if code == 0 and out.strip() else None


def current_branch(path: Path) -> Optional[str]:
    """The branch checked out at ``path`` (None: detached or not a checkout), from git's
    files: ``.git`` is a directory, or in a worktree a file naming the git directory."""
    for directory in (path, *path.parents):
        dot_git = directory / ".git"
        try:
            if dot_git.is_file():
                text = dot_git.read_text().strip()
                git_dir = Path(text.removeprefix("gitdir:").strip())
                git_dir = git_dir if git_dir.is_absolute() else directory / git_dir
            elif dot_git.is_dir():
                git_dir = dot_git
            else:
                continue
            head = (git_dir / "HEAD").read_text().strip()
        except OSError:
            return None
        prefix = "ref: refs/heads/"
        return head[len(prefix):] if head.startswith(prefix) else None
    return None


def _common_dir(path: Path) -> Optional[Path]:
    code, out = _git(path, "rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
    return Path(out.strip()).resolve() if code == 0 else None


def _git(cwd: Path, *args: str, check: bool = True) -> tuple[int, str]:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if check:
            raise TeamError(f"git {' '.join(args)} in {cwd}: {exc}") from None
        return 1, str(exc)
    if check and proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise TeamError(f"git {' '.join(args)} in {cwd} failed: {lines[-1] if lines else ''}")
    return proc.returncode, proc.stdout + (proc.stderr if proc.returncode else "")


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
