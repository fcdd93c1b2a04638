"""PostgreSQL advisory locks held by a dedicated session (as huey's storage owns its
LISTEN/NOTIFY): the connection and its SQL live here; ``coffee_team.agent.locks.PgAgentLock``
keeps the policy (which key, a keeper thread, reconnecting with backoff)."""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, Optional

from coffee_team.queue import sql, sql_session
from coffee_team.queue.pg_session import (keep_when_idle, open_postgres, pg_connect, pg_poll,
                                          placeholders, readable_now)

# Like every connection (pg_session.connection_params): TCP keepalives on both sides, so a
# silently lost network (no FIN, no RST) breaks the session within ~20 s: the keeper notices a
# lock that PostgreSQL may have dropped, and a lock holder whose host vanished loses the lock
# within ~20 s instead of the OS default of two hours, so a standby on another host takes
# over (standby.py).

def agent_lock_key(schema: str, name: str) -> int:
    """The stable signed 64-bit advisory-lock key of agent ``name`` in ``schema``: held by
    the agent's running instance (agent.locks.PgAgentLock), tried by a reaper's requeue
    (pg_backend.PostgresBackend.instance_running)."""
    import hashlib  # PostgreSQL only: OpenSSL is megabytes an agent on SQLite does without
    digest = hashlib.blake2b(f"coffee-team:agent:{schema}:{name}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LockHolder(NamedTuple):
    """The session holding a key, as pg_stat_activity shows it."""
    application_name: Optional[str]
    client_addr: Optional[str]  # None: a local (unix) socket
    backend_start: Optional[datetime]


class AdvisoryLockSession:
    """An autocommit connection for session-level advisory locks: PostgreSQL releases them
    when the connection ends, however it ends (crash, kill -9, lost network).

    ``fileno()`` is the connection's socket, to select() on: it turns readable when the
    server sends something, e.g. the notice that it terminated the session."""

    def __init__(self, url: str, application_name: str):
        self._try_lock = placeholders(sql_session.PG_TRY_ADVISORY_LOCK)
        self._holder = placeholders(sql_session.PG_ADVISORY_LOCK_HOLDER)
        self.conn = pg_connect(open_postgres(url), application_name=application_name)
        self.conn.autocommit = True
        keep_when_idle(self.conn)

    def fileno(self) -> int:
        return self.conn.fileno()

    def _fetchone(self, statement: str, params: tuple = ()) -> Optional[tuple]:
        cursor = self.conn.cursor()
        cursor.execute(statement, params or None)
        return cursor.fetchone()

    def current_schema(self) -> str:
        (schema,) = self._fetchone(sql.PG_CURRENT_SCHEMA)
        return schema or ""

    def try_lock(self, key: int) -> bool:
        """Take the bigint ``key`` for this session unless another session holds it."""
        (taken,) = self._fetchone(self._try_lock, (key,))
        return bool(taken)

    def holder(self, key: int) -> Optional[LockHolder]:
        """Who holds ``key`` in this database, or None if nobody (any more)."""
        # pg_locks shows a bigint key as two unsigned 32-bit halves.
        row = self._fetchone(self._holder, ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF))
        return LockHolder(*row) if row is not None else None

    def alive(self) -> bool:
        """False once the server closed the session; never blocks."""
        try:
            if readable_now(self.conn):
                pg_poll(self.conn)  # raises once the server closed the connection
            return not self.conn.closed
        except Exception:
            return False

    def close(self) -> None:
        try:
            if self.alive():  # a session the server ended holds nothing to unlock
                self._fetchone(sql_session.PG_ADVISORY_UNLOCK_ALL)  # released when close() returns
        except Exception:
            pass  # the session is gone already, and its locks with it
        try:
            self.conn.close()  # ending the session drops its advisory locks
        except Exception:
            pass
