"""The PostgreSQL backend: reconnects, transactions, and the hot path's prepared statements.

psycopg2 sends every statement as text, to be parsed and planned again on each call; the
statements named in ``sql.PG_PREPARED`` are PREPAREd once per connection and EXECUTEd after.
"""
from __future__ import annotations

import contextlib
import re
import weakref
from typing import Any, Sequence

import peewee

from coffee_team.queue import sql
from coffee_team.queue.db import SqlBackend
from coffee_team.queue.wake import readable_now

_wrap_db_errors = getattr(peewee, "__exception_wrapper__")  # psycopg2 -> peewee errors


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

    @staticmethod
    def sql(statement: str) -> str:
        return statement.replace("%", "%%").replace("?", "%s")

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
