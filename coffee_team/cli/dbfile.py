"""The database file as the CLI sees it from outside the team: none made yet, or one the
running team still holds that is no longer the one at the path (queue/files.py decides)."""
from __future__ import annotations

import os

from ..team import Team


def never_made(team: Team) -> bool:
    """No SQLite database at the path and nothing that says one was (a new project)."""
    from ..queue import files
    if team.is_postgres:
        return False
    path = files.sqlite_path(team.database_url)
    return not os.path.lexists(path) and files.history(path) is None


def stale_in_running_team(team: Team) -> str | None:
    """Does supervisord or one of its children hold a database that is no longer the one at
    the path (renamed, deleted or replaced: queue/identity.py)? One line, or None."""
    import psutil

    from ..queue.files import process_problem
    try:
        supervisord = psutil.Process(int((team.run_dir / "supervisord.pid").read_text()))
        processes = [supervisord] + supervisord.children(recursive=True)
    except (OSError, ValueError, psutil.Error):
        return None  # not running: nothing holds the file
    for proc in processes:
        stale = process_problem(team.database_url, proc.pid)
        if stale is not None:
            return str(stale)
    return None
