"""The SQLite file under a running team: is it still the file at its path?

Deleting or replacing ``data/orchestrator.db`` while the team runs splits it: running processes
go on in the old inode while a new sender creates and uses a new file nobody reads. Agents, the
watchdog, the rpcinterface and ``doctor`` all ask ``database_file_problem`` and say so in one
line; agents reopen the new file.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional

from coffee_team.dburl import is_postgres_url


class StaleFile(NamedTuple):
    """A process still has the SQLite file open that no longer is the file at its path."""

    path: str
    pid: int
    deleted: bool  # no file at the path any more; else another file took its place

    def __str__(self) -> str:
        what = "deleted" if self.deleted else "replaced by another file"
        return (f"database file {self.path} was {what} while open (PID {self.pid} still has "
                f"the old one)")


def database_file_problem(url: str, pid: Optional[int] = None) -> Optional[StaleFile]:
    """Is process ``pid`` (default: this one) using the database file that is at its path now?

    A SQLite file deleted or replaced under running processes splits the team: they go on in
    the old inode while new senders create and use a new file. Each descriptor the process has
    open on the path (``/proc/PID/fd``) is compared, by device and inode, with the path.
    None when all match, for PostgreSQL, and where /proc cannot be read.
    """
    if is_postgres_url(url) or url == ":memory:":
        return None
    path = os.path.abspath(url)
    path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    fd_dir = f"/proc/{pid or 'self'}/fd"
    try:
        descriptors = os.listdir(fd_dir)
        current = _identity(path)
    except OSError:
        return None
    for fd in descriptors:
        link = os.path.join(fd_dir, fd)
        try:
            if os.readlink(link) not in (path, path + " (deleted)"):
                continue
            held = os.stat(link)
        except OSError:  # closed meanwhile
            continue
        if (held.st_dev, held.st_ino) != current:
            return StaleFile(path, pid or os.getpid(), deleted=current is None)
    return None


def _identity(path: str) -> Optional[tuple[int, int]]:
    """(device, inode) of the file at ``path``; None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
