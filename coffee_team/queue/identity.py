"""Database identity: the one rule that decides whether the database at the team's path is
still the one a process opened.

Every database carries an id, written at its creation (schema 17, ``database_identity``).
A process remembers what it opened (``Opened``: the file's device and inode, none on
PostgreSQL, and the id) and now and then looks again (``Seen``: what is at the path now, the
id read there, and how many names the file it holds still has). ``judge`` turns the two into
one of SAME, RENAMED, REPLACED, DELETED; files.py gathers what it needs, and every process
(agents, the watchdog and its threads, the rpcinterface, the CLI, doctor) acts on its answer
the same way: anything but SAME means write nothing and say so in one line until the path
holds the opened database again.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

SAME = "same"          # the path holds the database this process opened
RENAMED = "renamed"    # no file at the path; the opened one lives on under another name
DELETED = "deleted"    # no file at the path and the opened one has no name left
REPLACED = "replaced"  # another database at the path (another file, or another id in it)
VERDICTS = (SAME, RENAMED, DELETED, REPLACED)


class Opened(NamedTuple):
    """What a process remembers of the database it opened."""

    file: Optional[tuple[int, int]]  # (st_dev, st_ino) of the SQLite file; None on PostgreSQL
    db_id: Optional[str]             # the id read when it opened (None: not known)


class Seen(NamedTuple):
    """What a process sees when it looks again."""

    file: Optional[tuple[int, int]]  # (st_dev, st_ino) at the path now; None: no file there
    db_id: Optional[str]             # the id read at the path now (None: not read or none)
    links: Optional[int]             # st_nlink of the file the process holds (None: unknown)


def judge(opened: Opened, seen: Seen) -> str:
    """SAME, RENAMED, DELETED or REPLACED (pure: the whole rule; tests/unit/test_identity.py
    walks every combination).

    PostgreSQL has no file: only a different id counts (a database restored or made anew
    under the same URL). On SQLite an id that differs counts only when known on both sides:
    an id that could not be read is no evidence of another database.
    """
    other_id = opened.db_id is not None and seen.db_id is not None and seen.db_id != opened.db_id
    if opened.file is None:
        return REPLACED if other_id else SAME
    if seen.file is None:
        return RENAMED if seen.links else DELETED
    if seen.file != opened.file or other_id:
        return REPLACED
    return SAME


def describe(verdict: str, path: str, now_at: Optional[str] = None) -> str:
    """The verdict as the start of a one-line message (the caller adds what to do)."""
    if verdict == RENAMED:
        where = f" to {now_at}" if now_at else ""
        return f"database file {path} was renamed{where} while open"
    if verdict == DELETED:
        return f"database file {path} was deleted while open"
    if verdict == REPLACED:
        return f"database {path} was replaced by another database while open"
    return f"database {path} is the one open"


def remedy(verdict: str, path: str, now_at: Optional[str] = None) -> str:
    """What a person does about it, in a few words."""
    if verdict == RENAMED and now_at:
        return f"move it back (mv {now_at} {path}): the team goes on where it stopped"
    if verdict in (RENAMED, DELETED):
        return f"put the file back at {path} (the team writes nothing until then)"
    if verdict == REPLACED:
        return ("restart the team on the new one (coffee-team stop, then start), or put the "
                "old one back")
    return ""
