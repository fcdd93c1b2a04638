"""Create the schema, or upgrade an older database in place (tables.SCHEMA_VERSION says
what each version added); the statements are named in ``sql_schema``, and what differs
by dialect is the backend's (db.SqlBackend's schema methods).

Checking that the schema is current is one plain read; only creating or upgrading it loads
peewee (the models), so an agent on a current SQLite database never imports it."""
from __future__ import annotations

import threading
import os
import time
from typing import Any

from coffee_team.errors import SchemaTooNew
from coffee_team.queue import sql_schema
from coffee_team.queue.db import SqlBackend
from coffee_team.queue.factory import backend_for
from coffee_team.queue.tables import SCHEMA_VERSION

# bind_ctx() rebinds model classes process-wide; serialise it.
_BIND_LOCK = threading.Lock()


def migrate(db: Any, host: str = "") -> int:
    """Create or upgrade the schema; idempotent and safe across processes.

    The common case (already current) is one read.  Otherwise the work runs
    under a database-wide write lock (SQLite BEGIN IMMEDIATE, PostgreSQL
    advisory lock) and re-checks, so concurrent callers do it exactly once.
    An older database's restart state goes to ``host``, the upgrading one.
    """
    if _is_current(db.get_tables(), db):
        return SCHEMA_VERSION
    with backend_for(db).schema_backend() as backend:
        return _upgrade(backend, host)


def _upgrade(backend: SqlBackend, host: str) -> int:
    from coffee_team.queue.models import ALL_MODELS as TASK_MODELS
    from coffee_team.queue.models_agents import AGENT_MODELS
    ALL_MODELS = TASK_MODELS + AGENT_MODELS
    db = backend.db
    with _BIND_LOCK, db.bind_ctx(ALL_MODELS):
        with backend.write_transaction():
            backend.lock_schema()
            tables = db.get_tables()
            if not _is_current(tables, db):
                version = _current_version(db, tables)
                upgrade_v2 = "tasks" in tables and version < 2 and not _has_v2_tasks(db)
                upgrade_v4 = "restart_state" in tables and not _has_column(
                    db, "restart_state", "host")
                if upgrade_v2:
                    for index in sql_schema.V1_CLAIM_INDEXES:
                        db.execute_sql(sql_schema.drop_index(index))
                    backend.tasks_v2_before()
                # after the v2 step: SQLite's moved the table away (rebuilt below with every
                # column); PostgreSQL's altered it in place, and this adds schema 10's part
                upgrade_v10 = "tasks" in db.get_tables() and not _has_column(
                    db, "tasks", "waiting_on")
                if upgrade_v10:
                    backend.tasks_v10_before()
                # after those: SQLite's moved the table away already; PostgreSQL's altered it
                # in place, and this adds schema 11's part
                upgrade_v11 = "tasks" in db.get_tables() and not _has_column(
                    db, "tasks", "sent_from")
                if upgrade_v11:
                    backend.tasks_v11_before()
                if upgrade_v4:
                    backend.restart_state_v4_before(host)
                db.create_tables(ALL_MODELS, safe=True)
                if upgrade_v2:
                    backend.tasks_v2_after()
                if upgrade_v4:
                    backend.restart_state_v4_after(host)
                if upgrade_v10:
                    backend.tasks_v10_after()
                rebuilt = upgrade_v11 and backend.tasks_v11_after()
                if "tasks" in tables and "queue_depth" not in tables:
                    _add_queue_depth(backend)
                if version < 3:
                    _add_task_counts(backend)
                elif upgrade_v10 or rebuilt:  # a rebuilt table lost its triggers with the old one
                    for statement in backend.task_count_triggers:
                        backend.execute(statement)
                if "tasks" in tables:
                    _tasks_v7(db)
                if "llm_usage" in tables:
                    _llm_usage_v9(db)
                if version < 8:
                    db.execute_sql(backend.metrics_index_v8)
                if version < 10 or rebuilt:
                    for statement in backend.dependency_triggers:
                        backend.execute(statement)
                if version < 18:  # SQLite: triggers on completed_at (16), completions' own (18)
                    for statement in (backend.retrigger_drops + backend.task_count_triggers
                                      + backend.dependency_triggers if backend.retrigger_drops
                                      else ()):
                        backend.execute(statement)
                if "agent_session" in tables:  # schema 12: sessions keyed by agent and key
                    backend.execute(sql_schema.V12_COPY_SESSIONS)
                    backend.execute(sql_schema.V12_DROP_OLD_SESSIONS)
                if db.execute_sql(sql_schema.READ_DATABASE_ID).fetchone() is None:
                    backend.execute(sql_schema.RECORD_DATABASE_ID, (os.urandom(16).hex(), time.time()))
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
        backend.execute(sql_schema.drop_index(index))
    backend.execute(sql_schema.FILL_QUEUE_DEPTH)


def _add_task_counts(backend: SqlBackend) -> None:
    """Schema 3: count the finished tasks once (the table was just created), then let the
    triggers keep the counts, in this same transaction so no change slips between."""
    backend.execute(sql_schema.FILL_TASK_COUNTS)
    for statement in backend.task_count_triggers:
        backend.execute(statement)


# Schema 2 on a version-1 tasks table (sql_schema.py's V2 statements): the backend alters it
# in place (PostgreSQL) or rebuilds it (SQLite cannot change a CHECK constraint), all inside
# the migration's write transaction.  Old pending rows become due at their creation time.
def _has_column(db: Any, table: str, column: str) -> bool:
    return any(c.name == column for c in db.get_columns(table))


def _has_v2_tasks(db: Any) -> bool:
    return _has_column(db, "tasks", "run_after")


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


def _llm_usage_v9(db: Any) -> None:
    """Schema 9 on an older llm_usage table: add the estimated column (old rows: exact)."""
    if not _has_column(db, "llm_usage", "estimated"):
        db.execute_sql(sql_schema.V9_ADD_ESTIMATED)
