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

# Every PostgreSQL connection (agents, watchdog, CLI, web, the LISTEN and advisory-lock
# sessions) is opened with these, so a network partition is an error within seconds instead of
# a wait of ~2 hours (the kernel's defaults) or for ever:
# - connect_timeout: a server that does not answer the connection (libpq's own timer);
# - TCP keepalives: a silently lost network (no FIN, no RST) breaks an idle session, or one
#   waiting for an answer, within ~20 s (10 s idle, then 3 probes 3 s apart);
# - tcp_user_timeout: data sent and never acknowledged breaks the session after 20 s;
# - on the server's side the same keepalives (a client gone drops its session, its row locks
#   and its advisory locks within ~20 s), and no statement, lock wait or idle transaction
#   runs for ever.
# A database URL's own parameters win: ?keepalives_idle=30&tcp_user_timeout=60000, and the
# server timeouts as ?statement_timeout=600000 (milliseconds; moved into ``options``).
CONNECT_SECONDS = 10
KEEPALIVE = dict(keepalives=1, keepalives_idle=10, keepalives_interval=3, keepalives_count=3)
TCP_USER_TIMEOUT_MS = 20000
SERVER_SETTINGS = {  # name -> value, sent as ``options=-c name=value``
    "tcp_keepalives_idle": 10, "tcp_keepalives_interval": 3, "tcp_keepalives_count": 3,
    "statement_timeout": 300000,                    # ms: 5 min, a migration on a big table
    "lock_timeout": 60000,                          # ms
    "idle_in_transaction_session_timeout": 120000,  # ms
}
# the server settings a URL may name as query parameters of their own
URL_SERVER_SETTINGS = ("statement_timeout", "lock_timeout",
                       "idle_in_transaction_session_timeout")

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
    params = connection_params(dict(parse_qsl(parts.query)), _libpq_version())
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        params["host"] = parts.hostname
    if parts.port:
        params["port"] = parts.port
    return peewee.PostgresqlDatabase(dbname, **params)


def _libpq_version() -> int:
    import psycopg2.extensions
    return psycopg2.extensions.libpq_version()


def connection_params(query: dict[str, str], libpq_version: int = 170000) -> dict[str, Any]:
    """psycopg2 connect parameters from a URL's query: the defaults above, under what the
    URL sets itself. ``statement_timeout``, ``lock_timeout`` and
    ``idle_in_transaction_session_timeout`` in the query become ``-c`` options (a setting the
    URL's ``options`` names already is left to it). libpq before 12 has no
    ``tcp_user_timeout``: it is then left out."""
    params: dict[str, Any] = {"connect_timeout": CONNECT_SECONDS, **KEEPALIVE}
    if libpq_version >= 120000:
        params["tcp_user_timeout"] = TCP_USER_TIMEOUT_MS
    settings: dict[str, Any] = dict(SERVER_SETTINGS)
    for name in URL_SERVER_SETTINGS:
        if name in query:
            settings[name] = query.pop(name)
    params.update(query)
    own = params.get("options", "")
    settings = {name: value for name, value in settings.items() if f"{name}=" not in own}
    params["options"] = with_settings(own, settings)
    return params


def with_settings(options: str, settings: dict[str, Any]) -> str:
    """libpq ``options`` with ``-c name=value`` for each setting appended."""
    added = " ".join(f"-c {name}={value}" for name, value in settings.items())
    return f"{options} {added}".strip()


def bounded_pg_params(params: dict[str, Any], wait_ms: int) -> dict[str, Any]:
    """psycopg2 connect parameters under which no statement waits (for a lock, or runs) longer
    than ``wait_ms``; the URL's own ``options`` are kept (the later ``-c`` of a name wins)."""
    options = with_settings(params.get("options", ""), {"statement_timeout": int(wait_ms),
                                                        "lock_timeout": int(wait_ms)})
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
