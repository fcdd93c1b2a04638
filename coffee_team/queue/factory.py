"""Open the coffee-team database: ``open_database()`` turns a URL or a path into a configured
database, ``backend_for()`` wraps one in its dialect's backend (db.SqlBackend).

SQLite gets ``sqlite_db`` (no ORM) in WAL mode, in a private file; PostgreSQL gets peewee
(``migrate.py`` creates and upgrades the schema), loaded only when a PostgreSQL URL is opened.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from typing import Any
from urllib.parse import unquote

from coffee_team.dburl import is_postgres_url
from coffee_team.errors import DatabaseUrlError
from coffee_team.queue import files, sql_session
from coffee_team.queue.db import SqlBackend, is_busy
from coffee_team.queue.pg_session import bounded_pg_params, open_postgres
from coffee_team.queue.sqlite_db import SqliteBackend, SqliteDatabase

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_CACHE_SIZE_KIB = 16 * 1024


def open_database(
    url_or_path: str,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    cache_size_kib: int = DEFAULT_CACHE_SIZE_KIB,
    bounded: bool = False,
    create: bool = True,
) -> Any:
    """Return an (unconnected) database for a URL or a file path.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a bare path give
    a sqlite_db.SqliteDatabase in WAL mode; ``postgresql://user@host:port/db?opt=v``
    gives a peewee PostgresqlDatabase (query options are passed to psycopg2).

    ``bounded``: for code that must never block (the rpcinterface inside supervisord). SQLite
    is bounded by ``busy_timeout_ms`` anyway; on PostgreSQL it also becomes the statement and
    lock timeout, with a short connect timeout and TCP keepalives (see
    ``pg_session.bounded_pg_params``).

    ``create``: a missing SQLite file may be made, on a path without history only
    (files.may_create); False: a missing file is DatabaseMissing. A file whose WAL belongs to
    another database is never opened (files.check_leftovers).
    """
    text = str(url_or_path)
    if is_postgres_url(text):
        db = open_postgres(text)
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
    return _open_sqlite(text, busy_timeout_ms, cache_size_kib, create)


def _open_sqlite(path: str, busy_timeout_ms: int, cache_size_kib: int, create: bool
                 ) -> SqliteDatabase:
    if path != ":memory:":
        path = files.sqlite_path(path)
        _prepare_private_file(path, create)
        files.check_leftovers(path)
        _ensure_wal(path, busy_timeout_ms / 1000.0)
    pragmas = [
        ("busy_timeout", int(busy_timeout_ms)),
        ("synchronous", "normal"),  # WAL + NORMAL: durable across app crashes
        ("foreign_keys", 1),
        ("cache_size", -int(cache_size_kib)),
        # a child failed by its parent's dependency trigger fails its own children in turn
        ("recursive_triggers", 1),
    ]
    return SqliteDatabase(path, pragmas, timeout=busy_timeout_ms / 1000.0)


def _prepare_private_file(path: str, create: bool) -> None:
    """Create parent dirs 0700 and the db file 0600 (WAL/SHM inherit it), where one may be
    made (files.may_create: never where a database was; its WAL is not this file's).

    An existing file is never opened here: closing any descriptor of a file drops every POSIX
    lock the process holds on it, so a second queue opened in a process that already has one
    (the watchdog's delivery thread) would strip the first connection's locks, and another
    process could then delete the WAL from under it.
    """
    if os.path.lexists(path):
        if os.stat(path).st_uid == os.getuid():
            os.chmod(path, 0o600)
        return
    files.may_create(path, create)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process made it just now
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


def _ensure_wal(path: str, timeout: float) -> None:
    """Switch the file to WAL once; the mode persists in the file.

    The switch needs an exclusive lock and SQLite reports SQLITE_BUSY at
    once, without its busy handler, when several processes open a new
    database together -- so retry here instead of on every connection.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = sqlite3.connect(files.connect_uri(path), timeout=timeout, uri=True)
            try:
                if conn.execute(sql_session.SQLITE_JOURNAL_MODE).fetchone()[0] != "wal":
                    conn.execute(sql_session.SQLITE_USE_WAL)
                return
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def is_postgres(db) -> bool:
    peewee = sys.modules.get("peewee")  # not imported: no PostgreSQL database exists
    return peewee is not None and isinstance(db, peewee.PostgresqlDatabase)


def backend_for(db) -> SqlBackend:
    if is_postgres(db):
        from coffee_team.queue.pg_backend import PostgresBackend  # peewee is loaded already
        return PostgresBackend(db)
    return SqliteBackend(db)
