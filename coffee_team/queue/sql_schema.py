"""The statements that create and upgrade the schema (migrate.py), apart from the ones every
call runs (sql.py); written with ``?`` placeholders like those, run through ``backend.execute``.
"""
from __future__ import annotations

from coffee_team.queue.tables import STATUS_CHECK
from coffee_team.taskstate import FINISHED

SCHEMA_VERSION = "SELECT MAX(version) FROM schema_version"
# Schema 12: the sessions of schema 6 (one per agent) become the sessions of key ''.
V12_COPY_SESSIONS = ("INSERT INTO llm_session (agent, session_key, session_id, updated_at)"
                    " SELECT agent, '', session_id, updated_at FROM agent_session")
V12_DROP_OLD_SESSIONS = "DROP TABLE agent_session"
RECORD_SCHEMA_VERSION = "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"
# Schema 17: the database's id, written once at its creation (identity.py, files.py).
READ_DATABASE_ID = "SELECT id FROM database_identity ORDER BY created_at, id LIMIT 1"
RECORD_DATABASE_ID = "INSERT INTO database_identity (id, created_at) VALUES (?, ?)"
# After the id is written: into the main file, where files.file_id reads it without the WAL.
SQLITE_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
# A renamed file's WAL keeps the old name and SQLite leaves it behind when a moved file closes:
# all of it into the file under its new name, the WAL emptied (nothing in it to replay).
SQLITE_CHECKPOINT_ALL = "PRAGMA wal_checkpoint(TRUNCATE)"
# Serialises concurrent migrations (SQLite has BEGIN IMMEDIATE for that); ends with the
# transaction.
PG_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(?)"
# A version-1 database made before the queue_depth counter: fill the counter.
FILL_QUEUE_DEPTH = ("INSERT INTO queue_depth (recipient, pending_bound) SELECT recipient,"
                    " COUNT(*) FROM tasks WHERE status = 'pending' GROUP BY recipient")
_FINISHED = "({})".format(", ".join(f"'{s}'" for s in FINISHED))


def _sqlite_finished(column: str) -> str:
    """``column IN _FINISHED`` as SQLite's triggers test it: for an IN list of more than two
    constants SQLite builds a temporary index each time a statement (or a trigger firing)
    first needs it, ~3 µs; three comparisons cost a fraction of that."""
    return "({})".format(" OR ".join(f"{column} = '{s}'" for s in FINISHED))


_OLD_ENDED, _NEW_ENDED = _sqlite_finished("OLD.status"), _sqlite_finished("NEW.status")
# Schema 3: task_counts filled once from the rows, then kept by triggers.
FILL_TASK_COUNTS = ("INSERT INTO task_counts (recipient, status, n) SELECT recipient, status,"
                    f" COUNT(*) FROM tasks WHERE status IN {_FINISHED}"
                    " GROUP BY recipient, status")
# SQLite's triggers fire on completed_at, which every statement that moves a task into or out
# of a finished state sets (it is set for completed, failed and cancelled tasks, cleared on a
# retry) and a claim does not: a claim runs no trigger program (schema 16; schemas 3 and 10
# fired on status). A completion (in_progress -> completed, nearly every end) has a trigger of
# its own (schema 18): its count upsert and its metrics row unconditional, no test of the
# other transitions (~7 µs of the agent's cycle); tasks_count_update keeps every other end and
# retry (a cancel, a failure, a completed task retried) counted.
_SQLITE_ON_END = "AFTER UPDATE OF completed_at ON tasks"
_COMPLETION = "OLD.status = 'in_progress' AND NEW.status = 'completed'"
SQLITE_TASK_COUNT_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS tasks_completed {_SQLITE_ON_END} WHEN {_COMPLETION} BEGIN"
    " INSERT INTO task_counts (recipient, status, n) VALUES (NEW.recipient, 'completed', 1)"
    " ON CONFLICT (recipient, status) DO UPDATE SET n = n + 1;"
    " INSERT INTO metrics (agent, task_type, duration_ms, timestamp) VALUES (NEW.claimed_by,"
    " NEW.type, MAX(0.0, (NEW.completed_at - NEW.claimed_at) * 1000.0), NEW.completed_at);"
    " END",
    f"CREATE TRIGGER IF NOT EXISTS tasks_count_update {_SQLITE_ON_END}"
    f" WHEN OLD.status <> NEW.status AND NOT ({_COMPLETION}) AND ({_OLD_ENDED}"
    f" OR {_NEW_ENDED}) BEGIN"
    " INSERT INTO task_counts (recipient, status, n) SELECT NEW.recipient, NEW.status, 1"
    f" WHERE {_NEW_ENDED} ON CONFLICT (recipient, status) DO UPDATE SET n = n + 1;"
    f" UPDATE task_counts SET n = n - 1 WHERE {_OLD_ENDED}"
    " AND recipient = OLD.recipient AND status = OLD.status;"
    " END",
    # backpressure's bound (models.QueueDepth) raised by every row sent (sql_sqlite.SEND_ONE)
    "CREATE TRIGGER IF NOT EXISTS tasks_count_insert AFTER INSERT ON tasks BEGIN"
    " INSERT INTO queue_depth (recipient, pending_bound) VALUES (NEW.recipient, 1)"
    " ON CONFLICT (recipient) DO UPDATE SET pending_bound = pending_bound + 1; END",
    "CREATE TRIGGER IF NOT EXISTS tasks_count_delete AFTER DELETE ON tasks"
    f" WHEN {_OLD_ENDED} BEGIN"
    " UPDATE task_counts SET n = n - 1 WHERE recipient = OLD.recipient AND status = OLD.status;"
    " END",
)
# Schemas 16 and 18 on SQLite: the triggers above replace the older ones (dropped by name,
# then made anew from SQLITE_TASK_COUNT_TRIGGERS and SQLITE_DEPENDENCY_TRIGGERS).
SQLITE_V18_DROP_TRIGGERS = ("DROP TRIGGER IF EXISTS tasks_count_update",
                            "DROP TRIGGER IF EXISTS tasks_completed",
                            "DROP TRIGGER IF EXISTS tasks_count_delete",
                            "DROP TRIGGER IF EXISTS tasks_dependents")
PG_TASK_COUNT_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION coffee_count_finished() RETURNS trigger LANGUAGE plpgsql AS $$"
    f" BEGIN IF OLD.status IN {_FINISHED} THEN"
    " UPDATE task_counts SET n = n - 1 WHERE recipient = OLD.recipient AND status = OLD.status;"
    f" END IF; IF TG_OP = 'UPDATE' AND NEW.status IN {_FINISHED} THEN"
    " INSERT INTO task_counts (recipient, status, n) VALUES (NEW.recipient, NEW.status, 1)"
    " ON CONFLICT (recipient, status) DO UPDATE SET n = task_counts.n + 1;"
    " END IF; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER tasks_count_update AFTER UPDATE OF status ON tasks FOR EACH ROW"
    f" WHEN (OLD.status <> NEW.status AND (OLD.status IN {_FINISHED}"
    f" OR NEW.status IN {_FINISHED})) EXECUTE FUNCTION coffee_count_finished()",
    "CREATE OR REPLACE TRIGGER tasks_count_delete AFTER DELETE ON tasks FOR EACH ROW"
    f" WHEN (OLD.status IN {_FINISHED}) EXECUTE FUNCTION coffee_count_finished()",
)
# Schema 2 on a version-1 tasks table (migrate._tasks_v2_before/_after).
V1_TASK_COLUMNS = ("id, sender, recipient, type, content, priority, created_at, completed_at,"
                   " status, claimed_by, claimed_at, lease_expires_at, attempts, dedupe_key,"
                   " error, result")
V1_CLAIM_INDEXES = ("tasks_recipient_status_priority_id", "tasks_live_dedupe_key")
PG_V2_ADD_COLUMNS = ("ALTER TABLE tasks ADD COLUMN failures INTEGER NOT NULL DEFAULT 0,"
                     " ADD COLUMN run_after DOUBLE PRECISION NOT NULL DEFAULT 0,"
                     " ADD COLUMN escalated_at DOUBLE PRECISION, ADD COLUMN errors TEXT")
PG_V2_DROP_CHECK = "ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_status_check"
PG_V2_ADD_CHECK = "ALTER TABLE tasks ADD CONSTRAINT tasks_status_check " + STATUS_CHECK
SQLITE_V2_RENAME = "ALTER TABLE tasks RENAME TO tasks_v1"
SQLITE_V2_COPY = (f"INSERT INTO tasks ({V1_TASK_COLUMNS}, run_after, failures)"
                  f" SELECT {V1_TASK_COLUMNS}, created_at, 0 FROM tasks_v1")
SQLITE_V2_DROP_OLD = "DROP TABLE tasks_v1"
V2_DUE_AT_CREATION = "UPDATE tasks SET run_after = created_at WHERE status = 'pending'"

# Schema 4: restart_state gains host in its key (migrate._restart_state_v4_before/_after); the rows
# of a version-2 database go to the host that upgrades it (one host: nothing changes).
V2_RESTART_COLUMNS = ("agent, attempts, next_restart_at, given_up, running_since, last_crash_at,"
                      " hang_restart")
PG_V4_ADD_HOST = "ALTER TABLE restart_state ADD COLUMN host VARCHAR(255) NOT NULL DEFAULT ''"
PG_V4_DROP_KEY = "ALTER TABLE restart_state DROP CONSTRAINT IF EXISTS restart_state_pkey"
PG_V4_ADD_KEY = "ALTER TABLE restart_state ADD PRIMARY KEY (agent, host)"
V4_RESTART_HOST = "UPDATE restart_state SET host = ?"
SQLITE_V4_RENAME = "ALTER TABLE restart_state RENAME TO restart_state_v2"
SQLITE_V4_COPY = (f"INSERT INTO restart_state ({V2_RESTART_COLUMNS}, host)"
                  f" SELECT {V2_RESTART_COLUMNS}, ? FROM restart_state_v2")
SQLITE_V4_DROP_OLD = "DROP TABLE restart_state_v2"

# Schema 7: tasks carry their sender's W3C trace context (migrate._tasks_v7); a plain nullable
# column, so both dialects add it in place and old rows simply have none.
V7_ADD_TRACEPARENT = "ALTER TABLE tasks ADD COLUMN traceparent TEXT"


# Schema 8: the metrics timestamp index only where it costs no hot-path page (see models.Metric).
PG_METRICS_TIMESTAMP_INDEX = "CREATE INDEX IF NOT EXISTS metrics_timestamp ON metrics (timestamp)"
SQLITE_V8_DROP_METRICS_INDEX = "DROP INDEX IF EXISTS metrics_timestamp"

# Schema 9: usage rows say whether their figures are estimated (migrate._llm_usage_v9).
V9_ADD_ESTIMATED = "ALTER TABLE llm_usage ADD COLUMN estimated BOOLEAN NOT NULL DEFAULT FALSE"


def drop_index(name: str) -> str:
    return f"DROP INDEX IF EXISTS {name}"


# Schema 10: the 'waiting' state and dependencies (migrate.py's upgrade_v10). SQLite cannot change the
# status CHECK in place: the table is renamed, created anew and its rows copied (ids kept); its
# indexes go with the old table, so their names are dropped first.
V9_INDEXES = ("tasks_recipient_status_priority_id_run_after", "tasks_live_dedupe_key")
SQLITE_V10_RENAME = "ALTER TABLE tasks RENAME TO tasks_v9"
SQLITE_V10_DROP_OLD = "DROP TABLE tasks_v9"


def sqlite_v10_copy(columns: list[str]) -> str:
    """Every column the old table has (version 2 to 9: traceparent came with 7)."""
    names = ", ".join(columns)
    return f"INSERT INTO tasks ({names}) SELECT {names} FROM tasks_v9"


PG_V10_ADD_COLUMNS = ("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS waiting_on INTEGER NOT NULL"
                     " DEFAULT 0, ADD COLUMN IF NOT EXISTS dependents INTEGER NOT NULL DEFAULT 0")
PG_V10_DROP_DEDUPE = "DROP INDEX IF EXISTS tasks_live_dedupe_key"  # create_tables: with waiting

# The dependency rule of taskstate.after_parent_finished, applied by the database in the
# transaction that finishes a parent (any statement: complete, fail, cancel, a lease expiry,
# an agent removed), so the last parent's completion and the child's release commit together
# on both databases, whoever writes. A child failed here finishes in turn and fails or
# releases its own children (SQLite: recursive_triggers, set on every connection).
# ``dependents > 0`` keeps the trigger off every task nothing was sent after.
_ENDS = (f"NEW.dependents > 0 AND OLD.status NOT IN {_FINISHED}"
         f" AND NEW.status IN {_FINISHED}")
_ENDED_AT = "COALESCE(NEW.completed_at, NEW.created_at)"
_FAIL_CHILDREN = (
    f"UPDATE tasks SET status = 'failed', completed_at = {_ENDED_AT}, lease_expires_at = NULL,"
    " error = 'dependency #' || CAST(NEW.id AS TEXT) || ' failed'"
    " || CASE WHEN NEW.status = 'cancelled' THEN ' (cancelled)' ELSE '' END"
    " WHERE status = 'waiting' AND id IN (SELECT child FROM task_deps WHERE parent = NEW.id"
    " AND resolved = 0 AND run_on_failure = 0)")
_COUNT_CHILDREN = (
    "UPDATE tasks SET waiting_on = waiting_on - 1,"
    " status = CASE WHEN waiting_on <= 1 THEN 'pending' ELSE 'waiting' END,"
    f" run_after = CASE WHEN waiting_on <= 1 AND run_after < {_ENDED_AT} THEN {_ENDED_AT}"
    " ELSE run_after END"  # waiting since its release, for escalate_after
    " WHERE status = 'waiting' AND id IN (SELECT child FROM task_deps WHERE parent = NEW.id"
    " AND resolved = 0 AND (NEW.status = 'completed' OR run_on_failure = 1))")
_RESOLVE_EDGES = "UPDATE task_deps SET resolved = 1 WHERE parent = NEW.id AND resolved = 0"
SQLITE_DEPENDENCY_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS tasks_dependents {_SQLITE_ON_END} WHEN NEW.dependents > 0"
    f" AND NOT {_OLD_ENDED} AND {_NEW_ENDED}"
    f" BEGIN {_FAIL_CHILDREN} AND NEW.status <> 'completed'; {_COUNT_CHILDREN};"
    f" {_RESOLVE_EDGES}; END",
)
PG_DEPENDENCY_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION coffee_dependents() RETURNS trigger LANGUAGE plpgsql AS $$"
    f" BEGIN IF NEW.status <> 'completed' THEN {_FAIL_CHILDREN}; END IF; {_COUNT_CHILDREN};"
    # released children's recipients wake at commit, as after a send (wake.pg_channel)
    " PERFORM pg_notify(d.channel, '') FROM task_deps d JOIN tasks c ON c.id = d.child"
    " WHERE d.parent = NEW.id AND d.resolved = 0 AND d.channel IS NOT NULL"
    f" AND c.status = 'pending'; {_RESOLVE_EDGES}; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER tasks_dependents AFTER UPDATE OF status ON tasks FOR EACH ROW"
    f" WHEN ({_ENDS}) EXECUTE FUNCTION coffee_dependents()",
)


# Schema 11: the 'awaiting_approval' state (the status CHECK and the live dedupe index) and
# tasks.sent_from (migrate.py's upgrade_v11), the same way as schema 10's: SQLite renames,
# creates anew and copies (ids kept), PostgreSQL alters in place.
V10_INDEXES = V9_INDEXES
SQLITE_V11_RENAME = "ALTER TABLE tasks RENAME TO tasks_v10"
SQLITE_V11_DROP_OLD = "DROP TABLE tasks_v10"
PG_V11_ADD_SENT_FROM = "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS sent_from BIGINT"


def sqlite_v11_copy(columns: list[str]) -> str:
    """Every column the old table has (waiting_on and dependents from version 10 on)."""
    names = ", ".join(columns)
    return f"INSERT INTO tasks ({names}) SELECT {names} FROM tasks_v10"
