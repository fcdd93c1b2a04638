"""Create the schema, or upgrade an older database in place (tables.SCHEMA_VERSION says
what each version added); the statements are named in ``sql``.

Checking that the schema is current is one plain read; only creating or upgrading it loads
peewee (the models), so an agent on a current SQLite database never imports it."""
from __future__ import annotations

import sqlite3
import threading
import time
import zlib
from typing import Any

from coffee_team.errors import SchemaTooNew
from coffee_team.queue import sql, sql_schema
from coffee_team.queue.db import SqlBackend, backend_for, is_postgres
from coffee_team.queue.tables import SCHEMA_VERSION

# bind_ctx() rebinds model classes process-wide; serialise it.
_BIND_LOCK = threading.Lock()
# Arbitrary but stable key for pg_advisory_xact_lock during migrations.
_PG_MIGRATE_LOCK_KEY = zlib.crc32(b"coffee-team:migrate")


def migrate(db: Any, host: str = "") -> int:
    """Create or upgrade the schema; idempotent and safe across processes.

    The common case (already current) is one read.  Otherwise the work runs
    under a database-wide write lock (SQLite BEGIN IMMEDIATE, PostgreSQL
    advisory lock) and re-checks, so concurrent callers do it exactly once.
    An older database's restart state goes to ``host``, the upgrading one.
    """
    if _is_current(db.get_tables(), db):
        return SCHEMA_VERSION
    if is_postgres(db):
        return _upgrade(db, host)
    orm = db.orm()  # peewee on the same file, for create_tables
    try:
        return _upgrade(orm, host)
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


def _upgrade(db: Any, host: str) -> int:
    from coffee_team.queue.models import ALL_MODELS
    backend = backend_for(db)
    with _BIND_LOCK, db.bind_ctx(ALL_MODELS):
        with backend.write_transaction():
            if is_postgres(db):
                backend.execute(sql_schema.PG_MIGRATE_LOCK, (_PG_MIGRATE_LOCK_KEY,))
            tables = db.get_tables()
            if not _is_current(tables, db):
                version = _current_version(db, tables)
                upgrade_v2 = "tasks" in tables and version < 2 and not _has_v2_tasks(db)
                upgrade_v4 = "restart_state" in tables and not _has_column(
                    db, "restart_state", "host")
                if upgrade_v2:
                    _tasks_v2_before(db)
                if upgrade_v4:
                    _restart_state_v4_before(db, host)
                db.create_tables(ALL_MODELS, safe=True)
                if upgrade_v2:
                    _tasks_v2_after(db)
                if upgrade_v4:
                    _restart_state_v4_after(db, host)
                if "tasks" in tables and "queue_depth" not in tables:
                    _add_queue_depth(backend)
                if version < 3:
                    _add_task_counts(backend, db)
                if "tasks" in tables:
                    _tasks_v7(db)
                if version < 8:
                    db.execute_sql(sql_schema.PG_METRICS_TIMESTAMP_INDEX if is_postgres(db)
                                   else sql_schema.SQLITE_V8_DROP_METRICS_INDEX)
                if version < SCHEMA_VERSION:
                    backend.execute(sql_schema.RECORD_SCHEMA_VERSION, (SCHEMA_VERSION, time.time()))
    return SCHEMA_VERSION


def _is_current(tables: list[str], db: Any) -> bool:
    version = _current_version(db, tables)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"database schema version {version} is newer than this coffee-team "
                           f"supports ({SCHEMA_VERSION}); upgrade coffee-team "
                           f"(pip install -U -e .) or point team.database_path elsewhere")
    return "queue_depth" in tables and version >= SCHEMA_VERSION


def _add_queue_depth(backend: SqlBackend) -> None:
    """Bring a version-1 database made before the queue_depth counter up to
    date: fill the counter and drop the indexes the model no longer has."""
    for index in ("tasks_created_at", "tasks_recipient_status", "metrics_agent_task_type"):
        backend.execute(sql.drop_index(index))
    backend.execute(sql_schema.FILL_QUEUE_DEPTH)


def _add_task_counts(backend: SqlBackend, db: Any) -> None:
    """Schema 3: count the finished tasks once (the table was just created), then let the
    triggers keep the counts, in this same transaction so no change slips between."""
    backend.execute(sql_schema.FILL_TASK_COUNTS)
    triggers = (sql_schema.PG_TASK_COUNT_TRIGGERS if is_postgres(db)
                else sql_schema.SQLITE_TASK_COUNT_TRIGGERS)
    for statement in triggers:
        backend.execute(statement)


# Schema 2 on a version-1 tasks table (sql_schema.py's V2 statements).  PostgreSQL alters it in
# place; SQLite cannot change a CHECK constraint, so the table is rebuilt (renamed, created
# anew, copied), all inside the migration's write transaction.  Old pending rows become due
# at their creation time.



def _has_column(db: Any, table: str, column: str) -> bool:
    return any(c.name == column for c in db.get_columns(table))


def _has_v2_tasks(db: Any) -> bool:
    return _has_column(db, "tasks", "run_after")


def _tasks_v2_before(db: Any) -> None:
    """Before create_tables: make room for the version-2 tasks table and its claim index."""
    for index in sql_schema.V1_CLAIM_INDEXES:
        db.execute_sql(sql.drop_index(index))
    if is_postgres(db):
        db.execute_sql(sql_schema.PG_V2_ADD_COLUMNS)
        db.execute_sql(sql_schema.PG_V2_DROP_CHECK)
        db.execute_sql(sql_schema.PG_V2_ADD_CHECK)
        db.execute_sql(sql_schema.V2_DUE_AT_CREATION)
    else:
        db.execute_sql(sql_schema.SQLITE_V2_RENAME)


def _tasks_v2_after(db: Any) -> None:
    """After create_tables: SQLite copies the rows into the new table (ids kept)."""
    if not is_postgres(db):
        db.execute_sql(sql_schema.SQLITE_V2_COPY)
        db.execute_sql(sql_schema.SQLITE_V2_DROP_OLD)


def _restart_state_v4_before(db: Any, host: str) -> None:
    """Schema 4 keys restart_state by (agent, host): PostgreSQL changes the key in place,
    SQLite (which cannot) renames the table for create_tables to make the new one."""
    if is_postgres(db):
        db.execute_sql(sql_schema.PG_V4_ADD_HOST)
        from coffee_team.queue.pg_backend import PostgresBackend
        db.execute_sql(PostgresBackend.sql(sql_schema.V4_RESTART_HOST), (host,))
        db.execute_sql(sql_schema.PG_V4_DROP_KEY)
        db.execute_sql(sql_schema.PG_V4_ADD_KEY)
    else:
        db.execute_sql(sql_schema.SQLITE_V4_RENAME)


def _restart_state_v4_after(db: Any, host: str) -> None:
    if not is_postgres(db):
        db.execute_sql(sql_schema.SQLITE_V4_COPY, (host,))
        db.execute_sql(sql_schema.SQLITE_V4_DROP_OLD)


def _current_version(db: Any, tables: list[str]) -> int:
    if "schema_version" not in tables:
        return 0
    row = db.execute_sql(sql_schema.SCHEMA_VERSION).fetchone()
    return int(row[0] or 0)


def _tasks_v7(db: Any) -> None:
    """Schema 7 on an older tasks table: add the traceparent column (a version-1 SQLite table
    was rebuilt by create_tables above and has it already)."""
    if not _has_column(db, "tasks", "traceparent"):
        db.execute_sql(sql_schema.V7_ADD_TRACEPARENT)
