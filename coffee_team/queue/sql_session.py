"""The statements of a connection's own setup and transactions (SQLite) and of the dedicated
PostgreSQL sessions (LISTEN, advisory locks): run on a driver's connection directly, never
through a backend (so never in ``backend.prepared``); ``sql`` holds every other statement.
"""
from __future__ import annotations

# --- SQLite connections (factory.py, sqlite_db.py) ------------------------------------------

SQLITE_JOURNAL_MODE = "PRAGMA journal_mode"
SQLITE_USE_WAL = "PRAGMA journal_mode = wal"
# IMMEDIATE takes the write lock up front: no deadlock-prone upgrade from a read lock.
SQLITE_BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
SQLITE_BEGIN = "BEGIN"
SQLITE_COMMIT = "COMMIT"
SQLITE_ROLLBACK = "ROLLBACK"
# A transaction inside another (sqlite_db.Transaction): savepoints of one name nest.
SQLITE_SAVEPOINT = "SAVEPOINT coffee_nested"
SQLITE_RELEASE = "RELEASE coffee_nested"
SQLITE_ROLLBACK_TO = "ROLLBACK TO coffee_nested"
SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"


def pragma(name: str, value: object) -> str:
    """Set an SQLite pragma (names and values come from factory.py, never input)."""
    return f"PRAGMA {name} = {value}"


# --- dedicated PostgreSQL sessions (pg_session.py, wake.py, locks.py) -----------------------

PG_TRY_ADVISORY_LOCK = "SELECT pg_try_advisory_lock(?)"
# Before a deliberate close: the server drops a closed session's locks only once its backend
# has exited, a moment after the client is gone; a reaper or standby asking then would wait.
PG_ADVISORY_UNLOCK_ALL = "SELECT pg_advisory_unlock_all()"
# Sessions idle by design (LISTEN, advisory locks) opt out of a server's idle_session_timeout.
PG_NO_IDLE_SESSION_TIMEOUT = "SET idle_session_timeout = 0"
# Who holds a bigint advisory key (PostgreSQL stores it as two 32-bit halves, objsubid 1),
# in this database: the session's application_name, address and start time.
PG_ADVISORY_LOCK_HOLDER = (
    "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l"
    " JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.classid::bigint = ? AND l.objid::bigint = ?"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def listen(channel: str) -> str:
    """LISTEN takes no parameter: ``channel`` must be a safe identifier (wake.pg_channel)."""
    return f'LISTEN "{channel}"'
