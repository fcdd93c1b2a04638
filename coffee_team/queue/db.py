"""Open the coffee-team database and keep every SQL-dialect difference here.

``open_database()`` turns a URL or path into a configured database: ``sqlite_db`` on SQLite
(no ORM), peewee on PostgreSQL (``migrate.py`` creates and upgrades the schema);
``backend_for()`` wraps a database in the tiny interface the queue needs (huey style), so
SQLite and PostgreSQL share one MessageQueue implementation and one test-suite.  The
statements themselves are named in ``sql``; the backends only translate them.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from types import SimpleNamespace
from typing import Any, Optional, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from coffee_team.errors import DatabaseUnavailable, DatabaseUrlError
from coffee_team.queue import sql
from coffee_team.queue.sqlite_db import SqliteDatabase
from coffee_team.dburl import is_postgres_url

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_CACHE_SIZE_KIB = 16 * 1024



def open_database(
    url_or_path: str,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    cache_size_kib: int = DEFAULT_CACHE_SIZE_KIB,
    bounded: bool = False,
) -> Any:
    """Return an (unconnected) database for a URL or a file path.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a bare path give
    a sqlite_db.SqliteDatabase in WAL mode; ``postgresql://user@host:port/db?opt=v``
    gives a peewee PostgresqlDatabase (query options are passed to psycopg2).

    ``bounded``: for code that must never block (the rpcinterface inside supervisord). SQLite
    is bounded by ``busy_timeout_ms`` anyway; on PostgreSQL it also becomes the statement and
    lock timeout, with a short connect timeout and TCP keepalives (see ``bounded_pg_params``).
    """
    text = str(url_or_path)
    if is_postgres_url(text):
        db = _open_postgres(text)
        if bounded:
            db.connect_params.update(bounded_pg_params(db.connect_params, busy_timeout_ms))
        return db
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///"):
            raise DatabaseUrlError(
                f"bad SQLite URL {text!r}; use sqlite:///relative.db or sqlite:////abs.db"
            )
        text = unquote(text[len("sqlite:///"):])
    elif "://" in text:
        raise DatabaseUrlError(
            f"unsupported database URL {text!r}; use sqlite:///path or postgresql://..."
        )
    if not text:
        raise DatabaseUrlError("empty database path")
    return _open_sqlite(text, busy_timeout_ms, cache_size_kib)


def _open_sqlite(path: str, busy_timeout_ms: int, cache_size_kib: int) -> SqliteDatabase:
    if path != ":memory:":
        path = os.path.abspath(os.path.expanduser(path))
        _prepare_private_file(path)
        _ensure_wal(path, busy_timeout_ms / 1000.0)
    pragmas = [
        ("busy_timeout", int(busy_timeout_ms)),
        ("synchronous", "normal"),  # WAL + NORMAL: durable across app crashes
        ("foreign_keys", 1),
        ("cache_size", -int(cache_size_kib)),
    ]
    return SqliteDatabase(path, pragmas, timeout=busy_timeout_ms / 1000.0)


def _prepare_private_file(path: str) -> None:
    """Create parent dirs 0700 and the db file 0600 (WAL/SHM inherit it).

    An existing file is never opened here: closing any descriptor of a file drops every POSIX
    lock the process holds on it, so a second queue opened in a process that already has one
    (the watchdog's delivery thread) would strip the first connection's locks, and another
    process could then delete the WAL from under it.  A -wal/-shm pair next to a database file
    that had to be created belongs to a deleted file (still open in running processes): a new
    file must not share it, so it is unlinked.
    """
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if os.stat(path).st_uid == os.getuid():
            os.chmod(path, 0o600)
    else:
        for leftover in (path + "-wal", path + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _ensure_wal(path: str, timeout: float) -> None:
    """Switch the file to WAL once; the mode persists in the file.

    The switch needs an exclusive lock and SQLite reports SQLITE_BUSY at
    once, without its busy handler, when several processes open a new
    database together -- so retry here instead of on every connection.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = sqlite3.connect(path, timeout=timeout)
            try:
                if conn.execute(sql.SQLITE_JOURNAL_MODE).fetchone()[0] != "wal":
                    conn.execute(sql.SQLITE_USE_WAL)
                return
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _open_postgres(url: str):
    import peewee
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise DatabaseUrlError(f"PostgreSQL URL {url!r} names no database")
    params: dict[str, Any] = dict(parse_qsl(parts.query))
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        params["host"] = parts.hostname
    if parts.port:
        params["port"] = parts.port
    return peewee.PostgresqlDatabase(dbname, **params)


# libpq rounds connect_timeout below 2 s up to 2 s; keepalives and tcp_user_timeout notice a
# half-open connection (a host gone without FIN or RST) within about 3 s instead of ~2 hours.
BOUNDED_CONNECT_SECONDS = 2
BOUNDED_KEEPALIVE = dict(keepalives=1, keepalives_idle=1, keepalives_interval=1,
                         keepalives_count=2)


def bounded_pg_params(params: dict[str, Any], wait_ms: int) -> dict[str, Any]:
    """psycopg2 connect parameters under which no statement waits (for a lock, or runs) longer
    than ``wait_ms``; the URL's own ``options`` are kept."""
    timeouts = f"-c statement_timeout={int(wait_ms)} -c lock_timeout={int(wait_ms)}"
    options = f"{params['options']} {timeouts}" if params.get("options") else timeouts
    return {"connect_timeout": BOUNDED_CONNECT_SECONDS, "tcp_user_timeout": 3000,
            **BOUNDED_KEEPALIVE, "options": options}


def pg_connect(db, **extra: Any):
    """A new psycopg2 connection to ``db`` outside peewee (LISTEN, advisory locks)."""
    import psycopg2
    return psycopg2.connect(dbname=db.database, **{**db.connect_params, **extra})


def keep_when_idle(conn) -> None:
    """Exempt an autocommit session that is idle by design (LISTEN, advisory locks) from the
    server's ``idle_session_timeout``, which would end it (and drop its locks) every few
    seconds. Servers before PostgreSQL 14 have no such timeout, and refuse the setting."""
    import psycopg2
    with contextlib.suppress(psycopg2.ProgrammingError, psycopg2.DataError):
        conn.cursor().execute(sql.PG_NO_IDLE_SESSION_TIMEOUT)


def database_errors() -> tuple[type[BaseException], ...]:
    """Errors meaning "the database is unusable right now" (locked, read-only, gone).

    psycopg2 only if importable: an SQLite agent blocks its import to save memory; peewee's
    only if imported (by PostgreSQL), since nothing else raises them."""
    errors: list[type[BaseException]] = [sqlite3.Error, DatabaseUnavailable]
    peewee = sys.modules.get("peewee")
    if peewee is not None:
        errors.append(peewee.PeeweeException)
    try:
        import psycopg2
        errors.append(psycopg2.Error)
    except ImportError:
        pass
    return tuple(errors)


# Error codes meaning "busy right now, retry": SQLite's busy/locked; PostgreSQL's lock not
# available (lock_timeout), query canceled (statement_timeout) and deadlock detected.
_SQLITE_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
# sqlite3's errors carry their code since Python 3.11; before, the message is all there is.
_SQLITE_CODES = sys.version_info >= (3, 11)
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked",
                         "database schema is locked")
_PG_BUSY = ("55P03", "57014", "40P01")


def is_busy(exc: BaseException) -> bool:
    """Is this a database that is locked or past its time limit right now (worth a retry)?
    Decided by the drivers' error codes (peewee re-raises them with the original as the
    context), not by the message."""
    seen: BaseException | None = exc
    while seen is not None:
        name = getattr(seen, "sqlite_errorname", None)
        if name:
            return name.startswith(_SQLITE_BUSY)
        if not _SQLITE_CODES and isinstance(seen, sqlite3.OperationalError):
            return str(seen).startswith(_SQLITE_BUSY_MESSAGES)
        pgcode = getattr(seen, "pgcode", None)
        if pgcode:
            return pgcode in _PG_BUSY
        seen = seen.__cause__ or seen.__context__
    return False


def is_postgres(db) -> bool:
    peewee = sys.modules.get("peewee")  # not imported: no PostgreSQL database exists
    return peewee is not None and isinstance(db, peewee.PostgresqlDatabase)


class SqlBackend:
    """Runs the statements of ``sql`` (written with ``?`` placeholders) in one dialect."""

    _claim_lock = ""  # what sql.CLAIM's {lock} becomes

    def __init__(self, db):
        self.db = db
        # Every named statement, translated once: the hot path runs these with run().
        self.prepared = SimpleNamespace(**{name: self.sql(text.replace("{lock}", self._claim_lock))
                                           for name, text in sql.named().items()})
        self._insert_sql: dict[tuple[int, bool], str] = {}  # (rows, returning_ids) -> insert

    @staticmethod
    def sql(statement: str) -> str:
        """``statement`` in this dialect's placeholder style."""
        return statement

    def execute(self, statement: str, params: Sequence[Any] = ()):
        return self.run(self.sql(statement), params)

    def run(self, prepared: str, params: Sequence[Any] = ()):
        """Execute SQL that already went through sql()."""
        return self.db.execute_sql(prepared, params)

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(statement, params).fetchall())

    def fetchone(self, statement: str, params: Sequence[Any] = ()) -> Optional[tuple]:
        return self.execute(statement, params).fetchone()

    def fetchdicts(self, statement: str, params: Sequence[Any] = ()) -> list[dict]:
        cursor = self.execute(statement, params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def insert(self, statement: str, params: Sequence[Any]) -> int:
        """Run an INSERT ... RETURNING id and return the id."""
        (new_id,) = self.execute(statement, params).fetchone()
        return new_id

    def insert_tasks(self, params: Sequence[Any], count: int) -> list[int]:
        """Insert ``count`` pending tasks (sql.insert_tasks' parameters, row after row)
        inside a write transaction; return the ids in row order."""
        cursor = self.run(self._insert_statement(count, returning_ids=True), params)
        # RETURNING order is unspecified; ids ascend in insertion order.
        return sorted(new_id for (new_id,) in cursor.fetchall())

    def _insert_statement(self, count: int, *, returning_ids: bool) -> str:
        statement = self._insert_sql.get((count, returning_ids))
        if statement is None:
            statement = self._insert_sql[count, returning_ids] = self.sql(
                sql.insert_tasks(count, returning_ids=returning_ids))
        return statement

    def write_transaction(self):
        raise NotImplementedError

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()


class SqliteBackend(SqlBackend):
    """Runs on a sqlite_db.SqliteDatabase, or on the peewee one migrate.py uses: both give
    this thread's sqlite3 connection and ``atomic()``; errors are sqlite3's own."""

    def run(self, prepared: str, params: Sequence[Any] = ()):
        return self.db.connection().execute(prepared, params)

    def insert_tasks(self, params: Sequence[Any], count: int) -> list[int]:
        insert = self._insert_statement(count, returning_ids=False)
        if count == 1:
            return [self.run(insert, params).lastrowid]
        # Under the write lock, rowids of a table without AUTOINCREMENT are
        # MAX(rowid) + 1, + 2, ... (SQLite goes random only past 2**63 - 1), so
        # one index seek replaces RETURNING, ~20% of a bulk insert's cost.
        top = self.run(self.prepared.SQLITE_LAST_TASK_ROWID).fetchone()[0] or 0
        if top + count >= _MAX_ROWID:  # pragma: no cover - 9.2e18 tasks later
            return super().insert_tasks(params, count)
        last = self.run(insert, params).lastrowid
        if last != top + count:  # pragma: no cover - would be an SQLite change
            raise sqlite3.DatabaseError(f"tasks ids not contiguous: {top} + {count} != {last}")
        return list(range(top + 1, last + 1))

    def write_transaction(self):
        # IMMEDIATE takes the write lock up front: no deadlock-prone upgrade
        # from a read lock, and busy_timeout governs the wait.
        return self.db.atomic("IMMEDIATE")


_MAX_ROWID = 2 ** 63 - 1


def backend_for(db) -> SqlBackend:
    if is_postgres(db):
        from coffee_team.queue.pg_backend import PostgresBackend  # builds on SqlBackend
        return PostgresBackend(db)
    return SqliteBackend(db)
