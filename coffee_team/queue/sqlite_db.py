"""SQLite without an ORM: one connection per thread, its pragmas, transactions, and the
SQLite backend (what the queue and migrations do differently on SQLite).

An agent on SQLite runs only the statements of ``sql``, so it needs nothing above sqlite3:
peewee (with hashlib/OpenSSL, logging, decimal and uuid) was ~7 MB of an idle agent's memory.
Peewee comes in only to create or upgrade the schema (``orm()``, used by migrate.py).
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any, Iterator, Optional, Sequence

from coffee_team.errors import DatabaseUnavailable
from coffee_team.queue import files, sql_schema, sql_sqlite
from coffee_team.queue.db import SqlBackend
from coffee_team.queue.files import FileProblem
from coffee_team.queue.identity import Opened
from coffee_team.queue.sql_session import (SQLITE_BEGIN, SQLITE_BEGIN_IMMEDIATE, SQLITE_COMMIT,
                                           SQLITE_RELEASE, SQLITE_ROLLBACK, SQLITE_ROLLBACK_TO,
                                           SQLITE_SAVEPOINT, SQLITE_TABLES, pragma)
from coffee_team.queue.wake import WakeSockets


class SqliteDatabase:
    """A database file and the settings every connection to it gets; each thread opens its
    own connection on first use (sqlite3 connections must stay in their thread)."""

    def __init__(self, path: str, pragmas: Sequence[tuple[str, Any]], timeout: float):
        self.database = path
        self.pragmas = tuple(pragmas)
        self.timeout = timeout
        self._local = threading.local()
        # the file and id this process opened (SqliteBackend.remember): a thread connects
        # later only to that file, never to another one put at the path
        self.opened: Optional[Opened] = None

    def connect(self) -> sqlite3.Connection:
        if self.opened is not None:
            problem = files.problem(self.database, self.opened)
            if problem is not None:
                raise DatabaseUnavailable(str(problem))
        # isolation_level=None: no implicit BEGIN; Transaction says when one starts.
        # mode=rw: a file that is not there (any more) is an error, never made anew.
        memory = self.database == ":memory:"
        conn = sqlite3.connect(self.database if memory else files.connect_uri(self.database),
                               timeout=self.timeout, isolation_level=None, uri=not memory)
        try:
            for name, value in self.pragmas:
                conn.execute(pragma(name, value))
        except BaseException:
            conn.close()
            raise
        self._local.conn = conn
        self._local.depth = 0
        return conn

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        return conn if conn is not None else self.connect()

    def is_closed(self) -> bool:
        return getattr(self._local, "conn", None) is None

    def close(self) -> None:
        """Close this thread's connection (not inside a transaction: that would be lost)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        if self._local.depth:
            raise sqlite3.OperationalError("close() inside a transaction")
        self._local.conn = None
        if self.moved():
            with contextlib.suppress(sqlite3.Error):  # SQLite would leave it in the WAL
                conn.execute(sql_schema.SQLITE_CHECKPOINT_ALL).fetchall()
        conn.close()

    def moved(self) -> bool:
        """Is the file opened no longer the one at the path (renamed, deleted, another file
        there)? Its WAL, which keeps the path's name, is then to go into it."""
        return self.opened is not None and self.opened.file is not None and \
            files.file_at(self.database) != self.opened.file

    def execute_sql(self, statement: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.connection().execute(statement, params)

    def get_tables(self) -> list[str]:
        return [name for (name,) in self.execute_sql(SQLITE_TABLES).fetchall()]

    def transaction_depth(self) -> int:
        return getattr(self._local, "depth", 0)

    def in_transaction(self) -> bool:
        return self.transaction_depth() > 0

    def atomic(self, lock_type: str = "") -> "Transaction":
        """A transaction, or a savepoint inside one. ``lock_type`` "IMMEDIATE" takes the write
        lock at BEGIN: no deadlock-prone upgrade from a read lock; busy_timeout governs the
        wait."""
        return Transaction(self, SQLITE_BEGIN_IMMEDIATE if lock_type == "IMMEDIATE"
                           else SQLITE_BEGIN)

    def orm(self):
        """A peewee database on the same file with the same settings (for migrate.py)."""
        import peewee
        memory = self.database == ":memory:"
        return peewee.SqliteDatabase(self.database if memory else files.connect_uri(self.database),
                                     pragmas=list(self.pragmas), timeout=self.timeout,
                                     uri=not memory)


class Transaction:
    __slots__ = ("db", "begin", "conn", "nested")

    def __init__(self, db: SqliteDatabase, begin: str):
        self.db = db
        self.begin = begin

    def __enter__(self) -> "Transaction":
        self.conn = self.db.connection()
        local = self.db._local
        self.nested = local.depth > 0
        self.conn.execute(SQLITE_SAVEPOINT if self.nested else self.begin)
        local.depth += 1  # only once BEGIN worked: a busy BEGIN leaves no transaction open
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db._local.depth -= 1
        conn = self.conn
        if self.nested:
            if not conn.in_transaction:  # SQLite rolled back all of it (e.g. SQLITE_FULL):
                return                   # no savepoint is left, and the error goes on up
            if exc_type is not None:
                conn.execute(SQLITE_ROLLBACK_TO)
            conn.execute(SQLITE_RELEASE)
            return
        if exc_type is None:
            try:
                conn.execute(SQLITE_COMMIT)
                return
            except BaseException:
                if conn.in_transaction:
                    conn.execute(SQLITE_ROLLBACK)
                raise
        # SQLite may have rolled back already (e.g. on SQLITE_FULL): ROLLBACK would then fail.
        if conn.in_transaction:
            try:
                conn.execute(SQLITE_ROLLBACK)
            except BaseException:  # left inside a transaction, every later BEGIN would fail
                self.db._local.conn = None
                conn.close()
                raise


class SqliteBackend(SqlBackend):
    """Runs on a sqlite_db.SqliteDatabase, or on the peewee one migrate.py uses: both give
    this thread's sqlite3 connection and ``atomic()``; errors are sqlite3's own."""

    # sql_sqlite's forms of the hot path: an agent's completion and next claim in one UPDATE,
    # a claim of one task by a scalar subquery (schema 18's measurements: docs/performance.md)
    complete_and_claim_one = sql_sqlite.COMPLETE_AND_CLAIM

    def __init__(self, db):
        super().__init__(db)
        self.prepared.CLAIM_ONE = sql_sqlite.CLAIM_ONE
        self.prepared.CLAIM_READY_ONE = sql_sqlite.CLAIM_READY_ONE

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

    def wake(self, wake_dir: Optional[str]) -> tuple[Optional[WakeSockets], None]:
        # Unix sockets reach this host's waiters, all there are on one file: after commit.
        return (WakeSockets(wake_dir) if wake_dir else None), None

    def instance_running(self, agent: str) -> bool:
        # SQLite serves one host, where no instance starts before its predecessor is reaped.
        return False

    def remember(self) -> None:
        """Remember the file and id just opened (after migrate: the id exists), have the id in
        the main file (where files.file_id reads it) and in ``<path>-id``."""
        path = self.db.database
        if path == ":memory:":
            return
        row = self.run(sql_schema.READ_DATABASE_ID).fetchone()
        db_id = row[0] if row else None
        if db_id and files.file_id(path) != db_id:
            with contextlib.suppress(sqlite3.Error):
                self.run(sql_schema.SQLITE_CHECKPOINT).fetchall()
        self.db.opened = files.opened_now(path, db_id)
        files.record(path, self.db.opened)

    def file_problem(self) -> Optional[FileProblem]:
        opened = self.db.opened
        return None if opened is None else files.problem(self.db.database, opened)

    def checkpoint(self) -> None:
        """What this thread's connection committed, into the main file (a renamed file is then
        whole under its new name); never a new connection for it."""
        if not self.db.is_closed() and self.db.moved():  # not into a file overwritten in place
            with contextlib.suppress(sqlite3.Error):
                self.run(sql_schema.SQLITE_CHECKPOINT_ALL).fetchall()

    # -- the schema (migrate.py): peewee on the same file; SQLite cannot alter a CHECK
    # constraint or a primary key, so those tables are renamed, created anew and copied.
    @contextlib.contextmanager
    def schema_backend(self) -> Iterator["SqliteBackend"]:
        orm = self.db.orm()  # for create_tables
        try:
            yield SqliteBackend(orm)
        except sqlite3.Error:
            raise
        except Exception as exc:
            # peewee's copy of the driver's error (raised while handling it: __context__, or
            # __cause__ where it chains): the queue raises sqlite3's, which callers catch
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, sqlite3.Error):
                raise cause from None
            raise
        finally:
            orm.close()

    def lock_schema(self) -> None:
        pass  # write_transaction()'s BEGIN IMMEDIATE keeps other migrations out already

    task_count_triggers = sql_schema.SQLITE_TASK_COUNT_TRIGGERS
    metrics_index_v8 = sql_schema.SQLITE_V8_DROP_METRICS_INDEX
    dependency_triggers = sql_schema.SQLITE_DEPENDENCY_TRIGGERS
    retrigger_drops = sql_schema.SQLITE_V18_DROP_TRIGGERS
    metric_by_trigger = True
    depth_by_trigger = True

    def tasks_v2_before(self) -> None:
        self.db.execute_sql(sql_schema.SQLITE_V2_RENAME)

    def tasks_v2_after(self) -> None:
        self.db.execute_sql(sql_schema.SQLITE_V2_COPY)  # ids kept
        self.db.execute_sql(sql_schema.SQLITE_V2_DROP_OLD)

    def restart_state_v4_before(self, host: str) -> None:
        self.db.execute_sql(sql_schema.SQLITE_V4_RENAME)

    def restart_state_v4_after(self, host: str) -> None:
        self.db.execute_sql(sql_schema.SQLITE_V4_COPY, (host,))
        self.db.execute_sql(sql_schema.SQLITE_V4_DROP_OLD)

    def tasks_v10_before(self) -> None:
        for index in sql_schema.V9_INDEXES:
            self.db.execute_sql(sql_schema.drop_index(index))
        self.db.execute_sql(sql_schema.SQLITE_V10_RENAME)

    def tasks_v10_after(self) -> None:
        columns = [c.name for c in self.db.get_columns("tasks_v9")]
        self.db.execute_sql(sql_schema.sqlite_v10_copy(columns))  # ids kept
        self.db.execute_sql(sql_schema.SQLITE_V10_DROP_OLD)

    def tasks_v11_before(self) -> None:
        for index in sql_schema.V10_INDEXES:
            self.db.execute_sql(sql_schema.drop_index(index))
        self.db.execute_sql(sql_schema.SQLITE_V11_RENAME)

    def tasks_v11_after(self) -> bool:
        columns = [c.name for c in self.db.get_columns("tasks_v10")]
        self.db.execute_sql(sql_schema.sqlite_v11_copy(columns))  # ids kept
        self.db.execute_sql(sql_schema.SQLITE_V11_DROP_OLD)
        return True  # its triggers went with the old table


_MAX_ROWID = 2 ** 63 - 1
