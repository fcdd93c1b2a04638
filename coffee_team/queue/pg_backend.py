"""The PostgreSQL backend: reconnects, transactions, the hot path's prepared statements, and
what the queue and migrations do differently on PostgreSQL (LISTEN/NOTIFY wake-ups, advisory
locks, schema changes in place).

psycopg2 sends every statement as text, to be parsed and planned again on each call; the
statements named in ``sql.PG_PREPARED`` are PREPAREd once per connection and EXECUTEd after.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
import weakref
import zlib
from typing import Any, ContextManager, Optional, Sequence

import peewee

from coffee_team.queue import sql, sql_schema
from coffee_team.queue.db import SqlBackend
from coffee_team.queue.files import FileProblem
from coffee_team.queue.identity import SAME, Opened, Seen, judge
from coffee_team.queue.locks import agent_lock_key
from coffee_team.queue.pg_session import pg_connect, placeholders, readable_now
from coffee_team.queue.wake import PgWake, WakeSockets

_wrap_db_errors = getattr(peewee, "__exception_wrapper__")  # psycopg2 -> peewee errors
# Arbitrary but stable key for pg_advisory_xact_lock during migrations.
_PG_MIGRATE_LOCK_KEY = zlib.crc32(b"coffee-team:migrate")
ID_CHECK_EVERY = 10.0  # seconds between reads of the database's id (identity.py)


class PostgresBackend(SqlBackend):
    """A connection the server already closed (restart, pg_terminate_backend,
    idle_session_timeout) is replaced once, transparently, when a call starts on it: a read
    outside a transaction, or the BEGIN of a write transaction, runs again on a new connection
    (nothing of it ran on the dead one).  A connection lost in the middle of a transaction
    raises a peewee OperationalError/InterfaceError once and is dropped, so the next statement
    reconnects (callers such as Agent.durable retry with backoff); the server rolled that
    transaction back, so a retry never applies it twice.  A write that is a transaction of
    its own (sql.PG_SINGLE_WRITES) is never run twice: a session the server ended while
    idle tells so on its socket, and is replaced before the write is sent; a loss after that
    raises, like a lost COMMIT."""

    # Concurrent claimers skip each other's rows instead of queueing up.
    _claim_lock = " FOR UPDATE SKIP LOCKED"
    folded = True
    task_count_triggers = sql_schema.PG_TASK_COUNT_TRIGGERS
    metrics_index_v8 = sql_schema.PG_METRICS_TIMESTAMP_INDEX
    dependency_triggers = sql_schema.PG_DEPENDENCY_TRIGGERS

    def __init__(self, db: peewee.Database):
        super().__init__(db)
        # sql.PG_PREPARED by its translated text (what run() is given): (name, PREPARE, EXECUTE)
        self._hot: dict[str, tuple[str, str, str]] = {}
        for name in sql.PG_PREPARED:
            self._hot[getattr(self.prepared, name)] = _prepare_texts(
                name, getattr(sql, name).replace("{lock}", self._claim_lock))
        self._single_writes = {getattr(self.prepared, name) for name in sql.PG_SINGLE_WRITES}
        # Per connection, the names PREPAREd on it: a new connection (reconnect) has none.
        self._prepared_on: "weakref.WeakKeyDictionary[Any, set[str]]" = \
            weakref.WeakKeyDictionary()
        self._schema: Optional[str] = None  # current_schema(), for the agents' lock keys

    sql = staticmethod(placeholders)

    def run(self, prepared: str, params: Sequence[Any] = ()):
        hot = self._hot.get(prepared)
        execute = self.db.execute_sql if hot is None else self._execute_prepared
        statement = prepared if hot is None else hot
        if prepared in self._single_writes and not self.db.in_transaction():
            self._replace_if_ended()
            return execute(statement, params)  # it may have run: never twice
        try:
            return execute(statement, params)
        except peewee.PeeweeException:
            # Outside a transaction, and not a single write: this was a read.
            if not self.drop_if_dead():
                raise
        return execute(statement, params)

    def _replace_if_ended(self) -> None:
        """Before a write outside a transaction: an idle session has nothing to say unless the
        server ended it (its FATAL message, then EOF), so a readable socket means replace it
        now, while nothing of the write has been sent."""
        conn = self.db._state.conn
        if conn is None or not (conn.closed or readable_now(conn)):
            return
        with contextlib.suppress(Exception):
            conn.close()
        self.drop_if_dead()

    def _execute_prepared(self, hot: tuple[str, str, str], params: Sequence[Any]):
        """psycopg2 has no server-side prepare of its own: PREPARE once per connection, then
        EXECUTE (prepared statements outlive a rolled-back transaction, not the session)."""
        name, prepare, execute = hot
        with _wrap_db_errors:
            conn = self.db.connection()
            cursor = conn.cursor()
            done = self._prepared_on.get(conn)
            if done is None:
                done = self._prepared_on[conn] = set()
            if name not in done:
                cursor.execute(prepare)
                done.add(name)
            cursor.execute(execute, params)
        return cursor

    def write_transaction(self):
        return _PgTransaction(self)

    def drop_if_dead(self) -> bool:
        """Forget a connection the server closed (outside a transaction); True if dropped."""
        state = self.db._state
        conn = state.conn
        if conn is None or not conn.closed or self.db.in_transaction():
            return False
        with contextlib.suppress(Exception):
            conn.close()
        self.db.dispose()  # state reset: the next statement connects afresh
        return True

    def wake(self, wake_dir: Optional[str]) -> tuple[PgWake, Any]:
        # LISTEN/NOTIFY reaches every host; a wake_dir adds the same-host unix sockets.
        return (PgWake(lambda: pg_connect(self.db), WakeSockets(wake_dir) if wake_dir else None),
                PgWake.notify_in_transaction)

    def instance_running(self, agent: str) -> bool:
        """Tries the agent's advisory key for the transaction: an instance running on any
        host holds it, and none can take it over until the transaction ends."""
        if self._schema is None:
            (self._schema,) = self.run(self.prepared.PG_CURRENT_SCHEMA).fetchone()
        key = agent_lock_key(self._schema or "", agent)
        (free,) = self.run(self.prepared.PG_TRY_ADVISORY_XACT_LOCK, (key,)).fetchone()
        return not free

    def remember(self) -> None:
        row = self.run(sql_schema.READ_DATABASE_ID).fetchone()
        self._opened = Opened(None, row[0] if row else None)
        self._looked: tuple[float, Optional[FileProblem]] = (time.monotonic(), None)

    def file_problem(self) -> Optional[FileProblem]:
        """No file: another id under the same URL is another database (restored, made anew).
        Asked at most every ID_CHECK_EVERY seconds (a read on the server, from every process:
        a restore is rare). A database that cannot be read now is no evidence: the work's own
        error says so."""
        opened = getattr(self, "_opened", None)
        if opened is None or opened.db_id is None:
            return None
        at, seen = self._looked
        if time.monotonic() - at < ID_CHECK_EVERY:
            return seen
        try:
            row = self.run(sql_schema.READ_DATABASE_ID).fetchone()
        except peewee.PeeweeException:
            return None
        verdict = judge(opened, Seen(None, row[0] if row else None, None))
        problem = None if verdict == SAME else FileProblem(
            verdict, f"{self.db.database} (PostgreSQL)", os.getpid())
        self._looked = (time.monotonic(), problem)
        return problem

    # -- the schema (migrate.py): peewee is this backend's own database; PostgreSQL changes
    # columns, constraints and keys in place.
    def schema_backend(self) -> ContextManager["PostgresBackend"]:
        return contextlib.nullcontext(self)

    def lock_schema(self) -> None:
        self.execute(sql_schema.PG_MIGRATE_LOCK, (_PG_MIGRATE_LOCK_KEY,))  # until COMMIT

    def tasks_v2_before(self) -> None:
        for statement in (sql_schema.PG_V2_ADD_COLUMNS, sql_schema.PG_V2_DROP_CHECK,
                          sql_schema.PG_V2_ADD_CHECK, sql_schema.V2_DUE_AT_CREATION):
            self.db.execute_sql(statement)

    def tasks_v2_after(self) -> None:
        pass  # altered in place

    def restart_state_v4_before(self, host: str) -> None:
        self.db.execute_sql(sql_schema.PG_V4_ADD_HOST)
        self.db.execute_sql(self.sql(sql_schema.V4_RESTART_HOST), (host,))
        self.db.execute_sql(sql_schema.PG_V4_DROP_KEY)
        self.db.execute_sql(sql_schema.PG_V4_ADD_KEY)

    def restart_state_v4_after(self, host: str) -> None:
        pass  # altered in place

    def tasks_v10_before(self) -> None:
        for statement in (sql_schema.PG_V10_ADD_COLUMNS, sql_schema.PG_V2_DROP_CHECK,
                          sql_schema.PG_V2_ADD_CHECK, sql_schema.PG_V10_DROP_DEDUPE):
            self.db.execute_sql(statement)

    def tasks_v10_after(self) -> None:
        pass  # altered in place

    def tasks_v11_before(self) -> None:
        # the dedupe index goes: create_tables makes it anew, awaiting_approval counted live
        for statement in (sql_schema.PG_V11_ADD_SENT_FROM, sql_schema.PG_V2_DROP_CHECK,
                          sql_schema.PG_V2_ADD_CHECK, sql_schema.PG_V10_DROP_DEDUPE):
            self.db.execute_sql(statement)

    def tasks_v11_after(self) -> bool:
        return False  # altered in place: its triggers are still there


class _PgTransaction:
    __slots__ = ("backend", "atomic")

    def __init__(self, backend: PostgresBackend):
        self.backend = backend
        self.atomic = backend.db.atomic()

    def __enter__(self):
        try:
            return self.atomic.__enter__()
        except peewee.PeeweeException:
            if not self.backend.drop_if_dead():
                raise
        self.atomic = self.backend.db.atomic()  # BEGIN failed: nothing ran; once more, anew
        return self.atomic.__enter__()

    def __exit__(self, exc_type, exc, tb):
        try:
            return self.atomic.__exit__(exc_type, exc, tb)
        except peewee.PeeweeException:
            if self.backend.drop_if_dead() and exc is not None:
                return False  # the ROLLBACK failed on the dead connection: report the cause
            raise
        finally:
            if exc is not None:
                self.backend.drop_if_dead()


def _prepare_texts(name: str, statement: str) -> tuple[str, str, str]:
    """(name, PREPARE text, EXECUTE text) of a ``?`` statement; the EXECUTE takes psycopg2's
    parameters. Statement names live in the session: prefixed so nothing else collides."""
    count = 0

    def number(_match) -> str:
        nonlocal count
        count += 1
        return f"${count}"
    server_name = f"coffee_{name.lower()}"
    prepare = f"PREPARE {server_name} AS {re.sub(r'[?]', number, statement)}"
    execute = f"EXECUTE {server_name}" + (f" ({', '.join(['%s'] * count)})" if count else "")
    return server_name, prepare, execute
