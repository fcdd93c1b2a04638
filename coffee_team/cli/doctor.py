"""``coffee-team doctor``: the seed's startup checks, each a (ok, name, detail) line."""
from __future__ import annotations

import os
import subprocess
from typing import Callable

from .. import client, layout
from ..errors import DatabaseUnavailable, TeamError
from ..team import Team, load_team
from .dbfile import never_made, stale_in_running_team

Check = tuple[bool, str, str]


def _check_dirs(team: Team) -> Check:
    try:
        layout.ensure_data_dirs(team)
    except OSError as exc:
        return False, "data directories", f"cannot create {exc.filename}: {exc.strerror}"
    for directory in (team.status_dir, team.run_dir, team.log_dir):
        if not os.access(directory, os.W_OK | os.X_OK):
            return False, "data directories", f"{directory} is not writable"
    return True, "data directories", f"{team.data_dir} writable (mode 0700)"


def _check_database(team: Team) -> Check:
    from ..queue import MessageQueue
    stale = stale_in_running_team(team)
    if stale:
        return False, "database", f"{stale}; restart the team (`coffee-team stop`, `start`)"
    if never_made(team):  # a new project: start makes it; doctor makes nothing
        return True, "database", f"{team.database_url}: none yet (`coffee-team start` makes it)"
    try:
        with MessageQueue.from_team(team, create=False) as queue:
            stats = queue.stats()
    except DatabaseUnavailable as exc:  # missing (never made here), or another's WAL beside it
        return False, "database", str(exc)
    except Exception as exc:  # any failure here is what the check reports
        return False, "database", f"{team.database_url}: {type(exc).__name__}: {exc}"
    return True, "database", f"{team.database_url} opens ({len(stats)} recipients queued)"


def _check_disk(team: Team) -> Check:
    from .. import diskspace
    full = diskspace.problems(team)
    if full:
        return False, "disk space", "; ".join(full)
    return True, "disk space", f"at least {diskspace.LOW_BYTES // 1024} KiB free where the team writes"


def _check_config(team: Team) -> Check:
    try:
        layout.check_project_path(team)
        from ..notify import check_targets
        check_targets(team)
    except TeamError as exc:
        return False, "generated config", str(exc)
    diff = layout.diff_config(team)
    if diff.clean:
        return True, "generated config", f"{team.conf_dir} up to date"
    return False, "generated config", (f"stale: {', '.join(diff.changed + diff.stale)}; "
                                       f"run `coffee-team gen-config`")


def _check_interpreter(team: Team) -> Check:
    from ..team.interpreter import problem, program_python
    bad = problem(team)
    if bad:
        return False, "interpreter", bad
    where = "team.python" if team.settings.python else "the one coffee-team runs from"
    return True, "interpreter", f"{program_python(team)} ({where}) imports coffee_team"


def _check_programs(team: Team) -> Check:
    """Every program of the generated config on disk can start: its command exists and, for
    ``python -m MODULE``, that interpreter finds the module (else supervisord's spawn fails,
    or the program exits at once and ends FATAL)."""
    commands = layout.generated_commands(team)
    modules: dict[str, set[str]] = {}
    for name, argv in sorted(commands.items()):
        if not os.path.isfile(argv[0]) or not os.access(argv[0], os.X_OK):
            return False, "programs", (f"{name}: {argv[0]} does not exist or is not executable; "
                                       f"check team.python and run `coffee-team gen-config`")
        if len(argv) > 2 and argv[1] == "-m":
            modules.setdefault(argv[0], set()).add(argv[2])
    for python, wanted in sorted(modules.items()):
        missing = _missing_modules(python, sorted(wanted))
        if missing:
            users = sorted(n for n, a in commands.items() if a[0] == python and a[2] in missing)
            return False, "programs", (f"{', '.join(users)}: {python} cannot import "
                                       f"{', '.join(missing)}; install coffee-team into it or "
                                       f"change team.python, then `coffee-team gen-config`")
    return True, "programs", f"{len(commands)} commands exist and their modules import"


def _missing_modules(python: str, modules: list[str]) -> list[str]:
    from ..extras import installed
    from ..team.interpreter import is_running
    if is_running(python):  # no need to ask another process
        return [m for m in modules if not installed(m)]
    probe = ("import importlib.util, sys\n"
             "for m in sys.argv[1:]:\n"
             "    try:\n"
             "        found = importlib.util.find_spec(m) is not None\n"
             "    except ImportError:\n"
             "        found = False\n"
             "    if not found:\n"
             "        print(m)\n")
    try:
        done = subprocess.run([python, "-c", probe, *modules], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return modules
    if done.returncode != 0:
        return modules
    return done.stdout.split()


def _check_supervisord(team: Team, conf: str | None) -> Check:
    from ..errors import SupervisorNotAnswering
    from ..ops import probe
    endpoint = client.endpoint_for(team, conf)
    try:
        if client.is_running(endpoint):
            return True, "supervisord", f"RUNNING at {endpoint.url}"
    except SupervisorNotAnswering as exc:
        return False, "supervisord", probe.after_failure(team, endpoint, exc, exc.waited).line
    return False, "supervisord", f"not reachable at {endpoint.url}; run `coffee-team start`"


def _check_branch(team: Team) -> Check:
    wanted = team.settings.require_branch
    try:
        branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=team.root,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, "git branch", f"cannot run git: {exc}"
    if branch == wanted:
        return True, "git branch", f"on {wanted} (CFR-013)"
    return False, "git branch", f"on {branch or 'no branch'}, team requires {wanted} (CFR-013)"


def _check_workspaces(team: Team) -> list[Check]:
    """Role files and workspaces of the llm agents; each worktree on its branch, clean or
    what is dirty."""
    from ..llm.workspace import Workspace, team_problems
    checks: list[Check] = [(False, "llm agents", problem) for problem in team_problems(team)]
    for spec in team.agents:
        workspace = Workspace.of(team, spec) if spec.llm is not None else None
        if workspace is not None and workspace.is_worktree:
            ok, detail = workspace.health()
            checks.append((ok, f"worktree of {spec.name}", detail))
    return checks


def run_checks(team_path: str, conf: str | None = None) -> list[Check]:
    try:
        team = load_team(team_path)
    except TeamError as exc:
        return [(False, "team file", str(exc))]
    results: list[Check] = [(True, "team file", f"{team.path}: {len(team.agents)} agents valid")]
    checks: list[Callable[[], Check]] = [
        lambda: _check_dirs(team), lambda: _check_disk(team), lambda: _check_database(team),
        lambda: _check_interpreter(team), lambda: _check_config(team)]
    if team.conf_file.exists():
        checks.append(lambda: _check_programs(team))
    checks.append(lambda: _check_supervisord(team, conf))
    if team.settings.require_branch:
        checks.append(lambda: _check_branch(team))
    results += [check() for check in checks]
    return results + _check_workspaces(team)
