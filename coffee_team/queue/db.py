"""The base of the queue's database layer: ``SqlBackend``, the tiny interface (huey style)
through which one MessageQueue runs on SQLite and PostgreSQL alike, and the database errors
every caller classifies.

``factory.open_database()`` turns a URL or path into a configured database and
``factory.backend_for()`` wraps it in its backend: ``sqlite_db.SqliteBackend`` or
``pg_backend.PostgresBackend``, each of which holds its dialect's differences. The statements
themselves are named in ``sql``; the backends only translate them.
"""
from __future__ import annotations

import sqlite3
import sys
from types import SimpleNamespace
from typing import Any, Callable, ContextManager, Optional, Sequence

from coffee_team.errors import DatabaseUnavailable
from coffee_team.queue import sql


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


def is_transient(exc: BaseException) -> bool:
    """A database that is away or busy (a write worth trying again later), not one that
    refused the write (a constraint, a bad statement)."""
    if isinstance(exc, (DatabaseUnavailable, sqlite3.OperationalError)) or is_busy(exc):
        return True
    return type(exc).__name__ in ("OperationalError", "InterfaceError")


class SqlBackend:
    """Runs the statements of ``sql`` (written with ``?`` placeholders) in one dialect, and
    answers every question whose answer depends on the dialect (as huey's storage classes
    do): the queue and migrate.py ask their backend instead of testing which database they
    are on. ``sqlite_db.SqliteBackend`` and ``pg_backend.PostgresBackend`` are the two."""

    _claim_lock = ""  # what sql.CLAIM's {lock} becomes
    # PostgreSQL claims straight away (row locks, SKIP LOCKED) and folds statements together
    # (sql.PG_*); SQLite reads first, so an idle claim takes no database-wide write lock.
    folded = False
    # Schema 3's triggers and schema 8's metrics index statement (sql_schema), per dialect.
    task_count_triggers: tuple[str, ...] = ()
    metrics_index_v8 = ""
    dependency_triggers: tuple[str, ...] = ()  # schema 10 (sql_schema)
    retrigger_drops: tuple[str, ...] = ()  # schemas 16, 18: the two above made anew (SQLite)
    # A completion's metrics row is written by its statement's trigger (SQLite, schema 16):
    # sql.FINISH/FINISH_BY alone, so a completion is one statement, its own transaction.
    metric_by_trigger = False
    # Every task inserted raises its recipient's pending bound by trigger (SQLite, schema 16):
    # a send checks the bound instead of raising it (sql_sqlite).
    depth_by_trigger = False
    # An agent's completion and next claim of one task as one statement of its own,
    # (task id, agent, now, result, lease expiry): sql_sqlite.COMPLETE_AND_CLAIM (SQLite).
    complete_and_claim_one: Optional[str] = None

    def __init__(self, db):
        self.db = db
        # Every named statement, translated once: the hot path runs these with run().
        self.prepared = SimpleNamespace(**{name: self.sql(text.replace("{lock}", self._claim_lock))
                                           for name, text in sql.named().items()})
        self._insert_sql: dict[tuple[int, bool], str] = {}  # (rows, returning_ids) -> insert
        # Claims of one task: the general statements, unless the dialect has its own (SQLite).
        self.prepared.CLAIM_ONE = self.prepared.CLAIM
        self.prepared.CLAIM_READY_ONE = self.prepared.CLAIM_READY

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

    # -- the dialect's answers (each subclass gives its own) ------------------------------
    def wake(self, wake_dir: Optional[str]) -> tuple[Any, Optional[Callable]]:
        """The queue's wake-ups: (what wakes waiters after a commit and gives a waiter its
        listener, or None: waiters poll; what a write transaction calls with (backend,
        recipients) to wake them at its commit, or None)."""
        raise NotImplementedError

    def instance_running(self, agent: str) -> bool:
        """Inside a write transaction: does a running instance of ``agent`` hold its lock?"""
        raise NotImplementedError

    def remember(self) -> None:
        """Right after opening (and migrating): remember the database's identity."""
        raise NotImplementedError

    def file_problem(self):
        """Is the database at the path still the one this process opened? (files.FileProblem
        or None)"""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """SQLite: what the WAL holds, into the main file (nothing elsewhere)."""

    # -- creating and upgrading the schema (migrate.py) -----------------------------------
    def schema_backend(self) -> ContextManager["SqlBackend"]:
        """The backend whose ``db`` peewee can create tables through, for one migration."""
        raise NotImplementedError

    def lock_schema(self) -> None:
        """Inside the migration's write transaction: keep concurrent migrations out."""
        raise NotImplementedError

    def tasks_v2_before(self) -> None:
        """Before create_tables: make room for the version-2 tasks table."""
        raise NotImplementedError

    def tasks_v2_after(self) -> None:
        """After create_tables: the version-1 rows in the version-2 table."""
        raise NotImplementedError

    def restart_state_v4_before(self, host: str) -> None:
        """Before create_tables: make room for restart_state keyed by (agent, host)."""
        raise NotImplementedError

    def restart_state_v4_after(self, host: str) -> None:
        """After create_tables: the older rows, now ``host``'s."""
        raise NotImplementedError

    def tasks_v10_before(self) -> None:
        """Before create_tables: make room for the version-10 tasks table (the waiting state)."""
        raise NotImplementedError

    def tasks_v10_after(self) -> None:
        """After create_tables: the older rows in the version-10 tasks table."""
        raise NotImplementedError

    def tasks_v11_before(self) -> None:
        """Before create_tables: make room for the version-11 tasks table (the
        awaiting_approval state, sent_from)."""
        raise NotImplementedError

    def tasks_v11_after(self) -> bool:
        """After create_tables: the older rows in the version-11 table; True when the table
        was made anew (its triggers are to be made again)."""
        raise NotImplementedError

