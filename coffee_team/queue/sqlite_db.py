"""SQLite without an ORM: one connection per thread, its pragmas, and transactions.

An agent on SQLite runs only the statements of ``sql``, so it needs nothing above sqlite3:
peewee (with hashlib/OpenSSL, logging, decimal and uuid) was ~7 MB of an idle agent's memory.
Peewee comes in only to create or upgrade the schema (``orm()``, used by migrate.py).
"""
from __future__ import annotations

import sqlite3
import threading
from typing import Any, Sequence

from coffee_team.queue import sql


class SqliteDatabase:
    """A database file and the settings every connection to it gets; each thread opens its
    own connection on first use (sqlite3 connections must stay in their thread)."""

    def __init__(self, path: str, pragmas: Sequence[tuple[str, Any]], timeout: float):
        self.database = path
        self.pragmas = tuple(pragmas)
        self.timeout = timeout
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit BEGIN; Transaction says when one starts.
        conn = sqlite3.connect(self.database, timeout=self.timeout, isolation_level=None)
        try:
            for name, value in self.pragmas:
                conn.execute(sql.pragma(name, value))
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
        conn.close()

    def execute_sql(self, statement: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.connection().execute(statement, params)

    def get_tables(self) -> list[str]:
        return [name for (name,) in self.execute_sql(sql.SQLITE_TABLES).fetchall()]

    def transaction_depth(self) -> int:
        return getattr(self._local, "depth", 0)

    def in_transaction(self) -> bool:
        return self.transaction_depth() > 0

    def atomic(self, lock_type: str = "") -> "Transaction":
        """A transaction, or a savepoint inside one. ``lock_type`` "IMMEDIATE" takes the write
        lock at BEGIN: no deadlock-prone upgrade from a read lock; busy_timeout governs the
        wait."""
        return Transaction(self, sql.SQLITE_BEGIN_IMMEDIATE if lock_type == "IMMEDIATE"
                           else sql.SQLITE_BEGIN)

    def orm(self):
        """A peewee database on the same file with the same settings (for migrate.py)."""
        import peewee
        return peewee.SqliteDatabase(self.database, pragmas=list(self.pragmas),
                                     timeout=self.timeout)


class Transaction:
    __slots__ = ("db", "begin", "conn", "nested")

    def __init__(self, db: SqliteDatabase, begin: str):
        self.db = db
        self.begin = begin

    def __enter__(self) -> "Transaction":
        self.conn = self.db.connection()
        local = self.db._local
        self.nested = local.depth > 0
        self.conn.execute(sql.SQLITE_SAVEPOINT if self.nested else self.begin)
        local.depth += 1  # only once BEGIN worked: a busy BEGIN leaves no transaction open
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db._local.depth -= 1
        conn = self.conn
        if self.nested:
            if not conn.in_transaction:  # SQLite rolled back all of it (e.g. SQLITE_FULL):
                return                   # no savepoint is left, and the error goes on up
            if exc_type is not None:
                conn.execute(sql.SQLITE_ROLLBACK_TO)
            conn.execute(sql.SQLITE_RELEASE)
            return
        if exc_type is None:
            try:
                conn.execute(sql.SQLITE_COMMIT)
                return
            except BaseException:
                if conn.in_transaction:
                    conn.execute(sql.SQLITE_ROLLBACK)
                raise
        # SQLite may have rolled back already (e.g. on SQLITE_FULL): ROLLBACK would then fail.
        if conn.in_transaction:
            try:
                conn.execute(sql.SQLITE_ROLLBACK)
            except BaseException:  # left inside a transaction, every later BEGIN would fail
                self.db._local.conn = None
                conn.close()
                raise
