"""The SQLite file at the team's path: is it still the database a process opened, may a
missing one be made, and may the one there be opened at all?

Renaming, deleting or replacing ``data/orchestrator.db`` under a running team splits it:
running processes go on in the old file (whose WAL keeps the old name, ``orchestrator.db-wal``)
while a new opener would make or take up another file at the path, share that WAL and delete
it when it closes. So:

* nothing makes a database but ``init``, ``start`` and the watchdog, and only on a
  project without history (``may_create``): no file, no ``-id``, ``-wal`` or ``-shm``;
  every connection opens an existing file (``connect_uri``: mode=rw), never makes one;
* ``<path>-id`` records the id of the database made there (identity.py); a WAL beside a
  file of another id belongs to that other database, and the file is not opened
  (``check_leftovers``);
* each process remembers the file and id it opened and looks again (``problem``); doctor
  looks at the team's processes from outside (``process_problem``). identity.judge decides.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
import struct
import time
from typing import Callable, NamedTuple, Optional
from urllib.parse import quote

from coffee_team.dburl import is_postgres_url
from coffee_team.errors import DatabaseMismatch, DatabaseMissing
from coffee_team.queue import identity
from coffee_team.queue.identity import Opened, Seen
from coffee_team.queue.sql_schema import READ_DATABASE_ID

ID_SUFFIX = "-id"
HISTORY = (ID_SUFFIX, "-wal", "-shm")  # leftovers that say a database was at the path
LEFTOVER_SUFFIXES = HISTORY + ("-journal",)
_HEADER = b"SQLite format 3\x00"
_SHM_DMS = 128  # SQLite's UNIX_SHM_DMS: 120 + SQLITE_SHM_NLOCK (8)


class FileProblem(NamedTuple):
    """A process has a database open that is not the one at its path any more."""

    verdict: str                   # identity.RENAMED, DELETED or REPLACED
    path: str
    pid: int
    now_at: Optional[str] = None   # where a renamed file is now, if known

    @property
    def deleted(self) -> bool:
        return self.verdict == identity.DELETED

    def __str__(self) -> str:
        return (f"{identity.describe(self.verdict, self.path, self.now_at)} (PID {self.pid} "
                f"has it open); {identity.remedy(self.verdict, self.path, self.now_at)}")


def sqlite_path(url: str) -> str:
    """The absolute path, its directory resolved (as /proc shows an open file's name)."""
    path = os.path.abspath(os.path.expanduser(url))
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def connect_uri(path: str, read_only: bool = False) -> str:
    """A URI that opens the file at ``path`` and never creates one (SQLite's default does)."""
    mode = "ro&immutable=1" if read_only else "rw"
    return f"file:{quote(path)}?mode={mode}"


def history(path: str) -> Optional[str]:
    """The leftover that says a database was at ``path`` (its id record, WAL or shm), or None."""
    for suffix in HISTORY:
        if os.path.lexists(path + suffix):
            return path + suffix
    return None


def may_create(path: str, create: bool) -> None:
    """Raise DatabaseMissing unless a database may be made at ``path`` (which has none)."""
    left = history(path)
    if left is not None:
        raise DatabaseMissing(
            f"{path}: database missing, but {left} shows one was there (renamed, moved or "
            f"deleted): put it back; to start afresh with an empty one, remove {path}-* "
            f"(that loses what the old one held)")
    if not create:
        raise DatabaseMissing(f"{path}: database not found (it is made when the team starts: "
                              f"coffee-team start; or check team.database_path)")


def recorded(path: str) -> Opened:
    """What ``<path>-id`` says: the id and the file (device, inode) of the database last opened
    at ``path`` (Opened(None, None) when there is no record)."""
    try:
        with open(path + ID_SUFFIX, encoding="ascii") as f:
            words = f.read().split()
    except (OSError, ValueError):
        return Opened(None, None)
    file = None
    if len(words) > 1:
        with contextlib.suppress(ValueError):
            dev, ino = words[1].split(":")
            file = (int(dev), int(ino))
    return Opened(file, words[0] if words else None)


def recorded_id(path: str) -> Optional[str]:
    return recorded(path).db_id


def record(path: str, opened: Opened) -> None:
    """Write ``<path>-id`` (atomically, 0600) unless it says so already."""
    if not opened.db_id or recorded(path) == opened:
        return
    text = opened.db_id + (f" {opened.file[0]}:{opened.file[1]}" if opened.file else "")
    tmp = f"{path}{ID_SUFFIX}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text + "\n")
        os.replace(tmp, path + ID_SUFFIX)
    except OSError:  # a read-only directory: the record is a safeguard, not a must
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def file_id(path: str) -> Optional[str]:
    """The id stored in the file at ``path`` itself, read without its WAL or any lock
    (immutable: touches no -wal/-shm); None if there is none or it cannot be read."""
    try:
        conn = sqlite3.connect(connect_uri(path, read_only=True), uri=True, timeout=0.5)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(READ_DATABASE_ID).fetchone()
        return str(row[0]) if row else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def check_leftovers(path: str) -> None:
    """Refuse to open ``path`` while the WAL or shm beside it belong to another database than
    the file there: SQLite would read that WAL as this file's, share the shm with that
    database's processes, and delete the WAL on close. ``<path>-id`` names the file they
    belong to; another file there is opened only if no process has the shm attached and
    the WAL holds no frames of another database (an empty one, or this database's own:
    the data directory copied with it)."""
    rec = recorded(path)
    if rec.db_id is None or rec.file == file_at(path):
        return
    wal = path + "-wal"
    found = file_id(path)
    if rec.file is None and found == rec.db_id:  # a record without the file: the id tells
        return
    if attached(path + "-shm"):
        hint = "stop the team (its processes still hold the old one) or put the old file back"
    elif found is not None and found == rec.db_id:
        return
    elif _has_frames(wal):
        hint = (f"put the old file back; or, if it is not wanted, move {wal} and {path}-shm "
                f"away (all that is left of it) to use the new file")
    else:
        return
    what = f"another database (id {found[:8]})" if found else "another file"
    raise DatabaseMismatch(f"{path}: {what} than the one {wal} belongs to (id "
                           f"{rec.db_id[:8]}); opening it would mix the two: {hint}")


def _has_frames(wal: str) -> bool:
    try:
        return os.path.getsize(wal) > 0
    except OSError:
        return False


def attached(shm: str) -> bool:
    """Does any process have the database of this -shm open? Every SQLite connection in WAL
    mode holds a read lock on the shm's byte 128 (its "dead man switch") while it is open;
    F_OFD_GETLK asks without taking one, and sees this process's own locks too (F_GETLK,
    where there is no OFD lock, sees only other processes'). The descriptor stays open for
    the process's life (one per shm file, asked only where ids differ): closing it would drop
    this process's own POSIX locks on the file."""
    try:
        st = os.stat(shm)
        fd = _PROBES.get((st.st_dev, st.st_ino))
        if fd is None:
            fd = _PROBES[(st.st_dev, st.st_ino)] = os.open(shm, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS, 1, 0)
        answer = fcntl.fcntl(fd, getattr(fcntl, "F_OFD_GETLK", fcntl.F_GETLK), query)
        return struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK
    except OSError:
        return True  # cannot tell: as if attached


_PROBES: dict[tuple[int, int], int] = {}


def opened_now(path: str, db_id: Optional[str]) -> Opened:
    """What a process remembers right after it opened ``path``."""
    return Opened(file_at(path), db_id)


def problem(path: str, opened: Opened) -> Optional[FileProblem]:
    """Is ``path`` still the database this process opened? None when it is."""
    signature = _signature(path)
    at = signature and (signature[0], signature[1])  # file_at's, from the same stat
    links = now_at = None
    seen_id = _id_of(path, signature) if at == opened.file and opened.db_id else None
    if at != opened.file and opened.file is not None:
        links, now_at = _held(opened.file, "self")
    verdict = identity.judge(opened, Seen(at, seen_id, links))
    if verdict == identity.SAME:
        return None
    return FileProblem(verdict, path, os.getpid(), now_at if now_at != path else None)


def process_problem(url: str, pid: int) -> Optional[FileProblem]:
    """Does process ``pid`` hold a database of the path that is no longer the one there (a
    renamed, deleted or replaced file)? Its descriptors say: the file itself under its path
    (or "(deleted)"), or, once renamed, the SQLite file of a process that holds the path's
    WAL or shm (those keep their names). None for PostgreSQL and where /proc is unreadable."""
    if is_postgres_url(url) or url == ":memory:":
        return None
    path = sqlite_path(url)
    fd_dir = f"/proc/{pid}/fd"
    try:
        links = {fd: os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
    except OSError:
        return None
    names = {fd: link.removesuffix(" (deleted)") for fd, link in links.items()}
    uses = any(name in (path, path + "-wal", path + "-shm") for name in names.values())
    if not uses:
        return None
    at = file_at(path)
    for fd, name in names.items():
        fd_path = os.path.join(fd_dir, fd)
        if name != path and (not name.startswith("/") or name.endswith(LEFTOVER_SUFFIXES)):
            continue
        try:
            held = os.stat(fd_path)
        except OSError:  # closed meanwhile
            continue
        if name != path and not (stat.S_ISREG(held.st_mode) and _is_sqlite(fd_path)):
            continue
        opened = Opened((held.st_dev, held.st_ino), None)
        verdict = identity.judge(opened, Seen(at, None, held.st_nlink))
        if verdict != identity.SAME:
            return FileProblem(verdict, path, pid, name if name != path else None)
    return None


def _is_sqlite(fd_path: str) -> bool:
    try:
        with open(fd_path, "rb") as f:
            return f.read(len(_HEADER)) == _HEADER
    except OSError:
        return False


def _held(file: tuple[int, int], pid: str) -> tuple[Optional[int], Optional[str]]:
    """(links, name) of the file (device, inode) that process ``pid`` has open; (None, None)
    if it has none or /proc cannot say."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        descriptors = os.listdir(fd_dir)
    except OSError:
        return None, None
    for fd in descriptors:
        link = os.path.join(fd_dir, fd)
        try:
            st = os.stat(link)
            if (st.st_dev, st.st_ino) == file:
                return st.st_nlink, os.readlink(link).removesuffix(" (deleted)")
        except OSError:
            continue
    return None, None


# path -> (its file's signature, the id read from it then). Reading the id opens a connection
# (~0.3 ms of CPU), and the watchdog's threads and every busy agent look once a second; a
# write, a copy over the file or a checkpoint changes its mtime and ctime, so the id is read
# again only when the file changed. Not kept while the file changed within RACY_NS of the
# read: a change in the same tick of the kernel's coarse file clock keeps the signature.
_IDS_SEEN: dict[str, tuple[tuple[int, ...], Optional[str]]] = {}
RACY_NS = 1_000_000_000


def _signature(path: str) -> Optional[tuple[int, ...]]:
    """(device, inode, size, mtime, ctime) of the file at ``path``; None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _id_of(path: str, signature: Optional[tuple[int, ...]],
           clock: Callable[[], int] = time.time_ns) -> Optional[str]:
    """file_id, read again only when the file's signature changed (``_IDS_SEEN``)."""
    seen = _IDS_SEEN.get(path)
    if seen is not None and signature is not None and seen[0] == signature:
        return seen[1]
    found = file_id(path)
    if signature is not None and clock() - signature[4] > RACY_NS:
        _IDS_SEEN[path] = (signature, found)
    return found


def file_at(path: str) -> Optional[tuple[int, int]]:
    """(device, inode) of the file at ``path``; None if there is none."""
    signature = _signature(path)
    return signature and (signature[0], signature[1])
