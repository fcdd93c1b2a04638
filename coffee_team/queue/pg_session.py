"""PostgreSQL connections and sessions, without peewee's queries: a URL read into connect
parameters, the bounded variant, a psycopg2 connection of its own (LISTEN in wake.py, advisory
locks in locks.py) kept alive while idle, reading what the server sent, and the ``?`` → ``%s``
placeholder translation every PostgreSQL statement goes through.

Imported by SQLite processes too (wake.py): nothing here loads a driver until it is called.
"""
from __future__ import annotations

import contextlib
import select
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from coffee_team.errors import DatabaseUrlError
from coffee_team.queue import sql_session

# libpq rounds connect_timeout below 2 s up to 2 s; keepalives and tcp_user_timeout notice a
# half-open connection (a host gone without FIN or RST) within about 3 s instead of ~2 hours.
BOUNDED_CONNECT_SECONDS = 2
BOUNDED_KEEPALIVE = dict(keepalives=1, keepalives_idle=1, keepalives_interval=1,
                         keepalives_count=2)


def placeholders(statement: str) -> str:
    """A ``?`` statement (sql.py) in psycopg2's placeholder style."""
    return statement.replace("%", "%%").replace("?", "%s")


def open_postgres(url: str):
    """An (unconnected) peewee PostgresqlDatabase for ``postgresql://user@host:port/db?opt=v``
    (query options are passed to psycopg2); MissingExtra, one line, without the driver."""
    from coffee_team.extras import require
    require("postgres", "a postgresql:// database_path")
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
        conn.cursor().execute(sql_session.PG_NO_IDLE_SESSION_TIMEOUT)


def readable_now(conn) -> bool:
    """Has the server sent something on ``conn`` (anything with a fileno())?  poll(), not
    select(): inside supervisord, with hundreds of programs, a socket's fd can be >= 1024,
    which select() refuses."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def pg_poll(conn) -> None:
    """Read what the server sent.  A terminated session first shows up as a FATAL notice
    and only the next read raises, so keep reading while the socket stays readable."""
    for _ in range(4):
        conn.poll()
        if not readable_now(conn):
            return
