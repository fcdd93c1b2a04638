"""Every SQL statement coffee-team runs, each under a name (as procrastinate's ``sql/``).

All are written once with ``?`` placeholders; ``db.SqlBackend`` translates them for its
dialect (PostgreSQL: ``%s``) and adds ``{lock}`` where only PostgreSQL has a clause.  The
backend prepares every UPPER_CASE statement here once into ``backend.prepared`` (same names)
for the hot path; other callers pass these constants to ``backend.execute``/``fetchdicts``.
A connection's own setup and transactions, and the dedicated PostgreSQL sessions (LISTEN,
advisory locks), run outside any backend: their statements are in ``sql_session``.
A few statements depend on their arguments' shape (how many rows, which columns): the
functions at the end build them.  ``PG_`` statements run on PostgreSQL only, ``SQLITE_``
statements on SQLite only.
"""
from __future__ import annotations

from typing import Iterable

from coffee_team.queue.tables import LIVE_STATUSES, QUEUED_STATUSES

# LIMIT ? with this returns every row: SQLite refuses LIMIT NULL and PostgreSQL a negative
# LIMIT, but both take the largest bigint.
NO_LIMIT = 2 ** 63 - 1

# --- moving tasks (core.py): the hot path --------------------------------------------------

# Pending only (expired leases are released to pending first): equality on (recipient,
# status) lets the claim index deliver rows already in priority, id order; an OR on status
# would scan the whole recipient.  The RETURNING columns are ClaimedTask's fields, in order.
_CLAIM_PENDING = (
    "UPDATE tasks SET status = 'in_progress', claimed_by = ?, claimed_at = ?,"
    " lease_expires_at = ?, attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM tasks WHERE recipient = ? AND status = 'pending'"
    " AND run_after <= ?")  # delayed and backed-off tasks wait until due
_CLAIM_ORDER = (
    " ORDER BY priority, id LIMIT ?{lock})"
    " RETURNING id, sender, recipient, type, content, priority, attempts,"
    " created_at, lease_expires_at, traceparent")
CLAIM = _CLAIM_PENDING + _CLAIM_ORDER
# CLAIM without a read first: it claims nothing while the agent is paused or one of its leases
# expired (uncorrelated, so each is one probe per statement); the caller then reads
# WORK_AVAILABLE and releases and claims as before.  Parameters: CLAIM's, with (agent, now)
# twice before the LIMIT.
CLAIM_READY = (
    _CLAIM_PENDING
    + " AND NOT EXISTS (SELECT 1 FROM agent_pause WHERE agent = ?"
    " AND (paused_until IS NULL OR paused_until > ?))"
    " AND NOT EXISTS (SELECT 1 FROM tasks AS held WHERE held.recipient = ?"
    " AND held.status = 'in_progress' AND held.lease_expires_at < ?)"
    + _CLAIM_ORDER)
# Expired leases go back to pending, or fail once out of attempts.  "attempts - failures":
# max_attempts counts crash redeliveries only; handler failures have their own limit (retry:).
RELEASE_EXPIRED = (
    "UPDATE tasks SET lease_expires_at = NULL,"
    " status = CASE WHEN attempts - failures >= ? THEN 'failed' ELSE 'pending' END,"
    " error = CASE WHEN attempts - failures >= ?"
    " THEN 'lease expired after ' || CAST(attempts AS TEXT) || ' attempts' ELSE error END,"
    " completed_at = CASE WHEN attempts - failures >= ? THEN ? ELSE completed_at END,"
    " claimed_by = CASE WHEN attempts - failures >= ? THEN claimed_by ELSE NULL END"
    " WHERE recipient = ? AND status = 'in_progress' AND lease_expires_at < ?"
    " RETURNING status, id, type, error")
# (any due pending, any lease expired, paused): each EXISTS is one index probe (an OR on
# status would scan the recipient's tasks); the pause is one primary-key probe, so a paused
# agent takes no write lock either.
WORK_AVAILABLE = (
    "SELECT EXISTS (SELECT 1 FROM tasks WHERE recipient = ? AND status = 'pending'"
    " AND run_after <= ?),"
    " EXISTS (SELECT 1 FROM tasks WHERE recipient = ? AND status = 'in_progress'"
    " AND lease_expires_at < ?),"
    " EXISTS (SELECT 1 FROM agent_pause WHERE agent = ?"
    " AND (paused_until IS NULL OR paused_until > ?))")
# When the earliest pending task of a recipient comes due (bounds wait()).
NEXT_DUE = "SELECT MIN(run_after) FROM tasks WHERE recipient = ? AND status = 'pending'"
_FINISH = ("UPDATE tasks SET status = ?, completed_at = ?, result = ?, error = ?,"
           " lease_expires_at = NULL WHERE id = ? AND status = 'in_progress'")
FINISH = _FINISH + " RETURNING claimed_by, type, claimed_at, dependents"
# FINISH, only if the given agent still holds the task.
FINISH_BY = _FINISH + " AND claimed_by = ? RETURNING claimed_by, type, claimed_at, dependents"
# PostgreSQL folds the metrics row into the same statement: FINISH_BY's parameters; a row
# (the agent) when the task finished.
_METRIC_OF_FINISHED = (
    "INSERT INTO metrics (agent, task_type, duration_ms, timestamp)"
    " SELECT claimed_by, type, GREATEST(0.0, (completed_at - claimed_at) * 1000.0),"
    " completed_at FROM finished RETURNING agent")
_FINISHED_BY = (f"WITH finished AS ({_FINISH} AND claimed_by = ?"
                " RETURNING claimed_by, type, claimed_at, completed_at)")
PG_FINISH_BY_WITH_METRIC = f"{_FINISHED_BY} {_METRIC_OF_FINISHED}"
# One statement, one transaction: complete (FINISH_BY's parameters) and CLAIM_READY.  Rows:
# (finished 0/1, then ClaimedTask's fields, all NULL when nothing was claimed).
PG_COMPLETE_AND_CLAIM = (
    f"{_FINISHED_BY}, metric AS ({_METRIC_OF_FINISHED}), claimed AS ({CLAIM_READY})"
    " SELECT (SELECT COUNT(*) FROM metric), claimed.* FROM (SELECT 1) AS one"
    " LEFT JOIN claimed ON TRUE")
# Leases of running tasks, kept fresh by the working agent's heartbeat thread: the task is
# still this agent's work while it is in progress and claimed by it (a cancel, requeue or
# expiry release ends that).
HOLDS_TASK = "SELECT 1 FROM tasks WHERE id = ? AND status = 'in_progress' AND claimed_by = ?"
RENEW_LEASE = ("UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND status = 'in_progress'"
               " AND claimed_by = ? RETURNING id")
ADD_METRIC = "INSERT INTO metrics (agent, task_type, duration_ms, timestamp) VALUES (?, ?, ?, ?)"
# A restarted agent's tasks out of attempts fail (each said once); REQUEUE_HELD requeues the rest.
FAIL_HELD = (
    "UPDATE tasks SET status = 'failed', completed_at = ?, lease_expires_at = NULL,"
    " error = 'agent restarted after ' || CAST(attempts AS TEXT) || ' attempts'"
    " WHERE claimed_by = ? AND status = 'in_progress' AND attempts - failures >= ?"
    " RETURNING id, recipient, type, error")
REQUEUE_HELD = (
    "UPDATE tasks SET status = 'pending', claimed_by = NULL, claimed_at = NULL,"
    " lease_expires_at = NULL WHERE claimed_by = ? AND status = 'in_progress'"
    " RETURNING recipient")
# Backpressure (models.QueueDepth): n more tasks may be pending (send, release, requeue);
# returns the new bound.
ADD_PENDING = (
    "INSERT INTO queue_depth (recipient, pending_bound) VALUES (?, ?)"
    " ON CONFLICT (recipient) DO UPDATE"
    " SET pending_bound = queue_depth.pending_bound + excluded.pending_bound"
    " RETURNING pending_bound")
# One send on PostgreSQL in one statement: ADD_PENDING, the insert unless that passes
# max_queue_size (then the caller takes the counting path; the bound stays an upper bound),
# and the recipient's NOTIFY.  Parameters: recipient, sql.insert_tasks' 9, max_queue_size,
# channel.  Casts: an INSERT ... SELECT does not type its parameters from the columns.
PG_SEND_ONE = (
    "WITH depth AS (INSERT INTO queue_depth (recipient, pending_bound) VALUES (?, 1)"
    " ON CONFLICT (recipient) DO UPDATE SET pending_bound = queue_depth.pending_bound + 1"
    " RETURNING pending_bound), task AS (INSERT INTO tasks (sender, recipient, type, content,"
    " priority, created_at, dedupe_key, run_after, traceparent, status, attempts)"
    " SELECT ?, ?, ?, ?, CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION), ?,"
    " CAST(? AS DOUBLE PRECISION), ?, 'pending', 0 FROM depth WHERE pending_bound <= ?"
    " RETURNING id) SELECT id, pg_notify(?, '') FROM task")
SET_PENDING = "UPDATE queue_depth SET pending_bound = ? WHERE recipient = ?"
# The truth (waiting tasks too: each turns pending unsent), capped: max_queue_size + 1 steps.
COUNT_PENDING = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE recipient = ?"
    f" AND status IN {QUEUED_STATUSES} LIMIT ?) AS p")
LIVE_DEDUPE = (
    "SELECT id FROM tasks WHERE recipient = ? AND dedupe_key = ?"
    f" AND status IN {LIVE_STATUSES} LIMIT 1")

# --- wake-ups (wake.py) ---------------------------------------------------------------------

# Sent inside the write transaction: PostgreSQL delivers at COMMIT and folds duplicates.
PG_NOTIFY_ONE = "SELECT pg_notify(?, '')"
PG_NOTIFY_MANY = "SELECT pg_notify(c, '') FROM unnest(?::text[]) AS c"

# The hot path's statements, which PostgreSQL parses and plans once per connection
# (PREPARE, then EXECUTE: pg_backend.PostgresBackend) instead of on every call.
PG_PREPARED = frozenset((
    "CLAIM", "CLAIM_READY", "RELEASE_EXPIRED", "WORK_AVAILABLE", "NEXT_DUE", "FINISH",
    "FINISH_BY", "PG_FINISH_BY_WITH_METRIC", "PG_COMPLETE_AND_CLAIM", "HOLDS_TASK",
    "RENEW_LEASE", "ADD_METRIC", "ADD_PENDING", "PG_SEND_ONE", "LIVE_DEDUPE",
    "PG_NOTIFY_ONE", "PG_NOTIFY_MANY"))
# Of those, the writes that run as a transaction of their own (outside write_transaction()):
# a lost connection must not make them run twice (pg_backend.PostgresBackend.run).
PG_SINGLE_WRITES = frozenset(("CLAIM_READY", "PG_SEND_ONE", "PG_FINISH_BY_WITH_METRIC",
                              "PG_COMPLETE_AND_CLAIM"))

# --- journal (journal.py) -------------------------------------------------------------------

INSERT_EVENT = "INSERT INTO events (ts, agent, kind, detail) VALUES (?, ?, ?, ?) RETURNING id"
EVENTS_SINCE = "SELECT id, ts, agent, kind, detail FROM events WHERE id > ? ORDER BY id LIMIT ?"
AGENT_EVENTS_SINCE = (
    "SELECT id, ts, agent, kind, detail FROM events WHERE id > ? AND agent = ?"
    " ORDER BY id LIMIT ?")
INSERT_NOTIFICATION = (
    "INSERT INTO notifications (created_at, level, agent, title, message, sound,"
    " acknowledged) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id")
NOTIFICATIONS_SINCE = (
    "SELECT id, created_at, level, agent, title, message, sound, acknowledged"
    " FROM notifications WHERE id > ? ORDER BY id LIMIT ?")
UNACKED_NOTIFICATIONS_SINCE = (
    "SELECT id, created_at, level, agent, title, message, sound, acknowledged"
    " FROM notifications WHERE id > ? AND acknowledged = ? ORDER BY id LIMIT ?")
NOTIFICATION_EXISTS = "SELECT 1 FROM notifications WHERE id = ?"
# Parameters (True, id, False): the row count tells whether this call acknowledged it.
ACK_NOTIFICATION = "UPDATE notifications SET acknowledged = ? WHERE id = ? AND acknowledged = ?"

# --- notification delivery (delivery.py) ----------------------------------------------------

ADD_NOTIFY_TARGET = ("INSERT INTO notify_targets (target, label, added_at, since_id)"
                     " VALUES (?, ?, ?, 0) ON CONFLICT (target) DO UPDATE SET label = excluded.label"
                     " RETURNING added_at, since_id")
LAST_NOTIFICATION_ID = "SELECT COALESCE(MAX(id), 0) FROM notifications"
# Re-reads a window below since_id: on PostgreSQL a smaller id may commit after a larger one;
# the unique (notification_id, target) index makes planning one twice a no-op.
PLAN_DELIVERIES = (
    "INSERT INTO deliveries (notification_id, target, attempts, next_try_at)"
    " SELECT id, ?, 0, created_at FROM notifications WHERE id > ? AND id <= ?"
    " AND created_at >= ? AND level IN (?, ?, ?)"
    " ON CONFLICT (notification_id, target) DO NOTHING")
SET_NOTIFY_TARGET_SINCE = "UPDATE notify_targets SET since_id = ? WHERE target = ?"
DUE_DELIVERIES = (
    "SELECT d.id, d.target, d.attempts, n.id AS notification_id, n.created_at, n.level,"
    " n.agent, n.title, n.message FROM deliveries d JOIN notifications n"
    " ON n.id = d.notification_id WHERE d.delivered_at IS NULL AND d.next_try_at <= ?"
    " ORDER BY d.next_try_at, d.id LIMIT ?")
# The claim of one attempt: whoever moves next_try_at ahead owns it (another watchdog, or
# this one after a restart, sees it as not due).
BEGIN_DELIVERY = ("UPDATE deliveries SET attempts = attempts + 1, next_try_at = ?"
                  " WHERE id = ? AND delivered_at IS NULL AND next_try_at <= ?")
DELIVERED = ("UPDATE deliveries SET delivered_at = ?, last_error = NULL"
             " WHERE id = ? AND delivered_at IS NULL")
DELIVERY_FAILED = "UPDATE deliveries SET last_error = ? WHERE id = ? AND delivered_at IS NULL"
DELIVERY_SUMMARY = (
    "SELECT t.target, t.label,"
    " SUM(CASE WHEN d.delivered_at IS NOT NULL THEN 1 ELSE 0 END) AS delivered,"
    " SUM(CASE WHEN d.delivered_at IS NULL AND d.attempts = 0 THEN 1 ELSE 0 END) AS pending,"
    " SUM(CASE WHEN d.delivered_at IS NULL AND d.attempts > 0 THEN 1 ELSE 0 END) AS failing,"
    " MAX(CASE WHEN d.delivered_at IS NULL THEN d.last_error END) AS last_error,"
    " MIN(CASE WHEN d.delivered_at IS NULL THEN d.next_try_at END) AS next_try_at"
    " FROM notify_targets t LEFT JOIN deliveries d ON d.target = t.target"
    " GROUP BY t.target, t.label ORDER BY t.label")
DELIVERIES_SINCE = ("SELECT notification_id, target, attempts, next_try_at, delivered_at,"
                    " last_error FROM deliveries WHERE notification_id > ? ORDER BY id")

# --- task control (control.py): failures with retries, cancel, retry, pause, escalation -

FAILING_TASK = ("SELECT recipient, claimed_by, type, claimed_at, status, failures, errors"
                " FROM tasks WHERE id = ?")
# Guarded by holder and failure count: a second mark_failed of the same attempt misses.
FAIL_TO_RETRY = ("UPDATE tasks SET status = 'pending', run_after = ?, failures = ?, errors = ?,"
                 " error = ?, claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL"
                 " WHERE id = ? AND status = 'in_progress' AND claimed_by = ? AND failures = ?")
FAIL_FINAL = ("UPDATE tasks SET status = 'failed', completed_at = ?, failures = ?, errors = ?,"
              " error = ?, lease_expires_at = NULL"
              " WHERE id = ? AND status = 'in_progress' AND claimed_by = ? AND failures = ?")
CONTROLLED_TASK = "SELECT status, recipient, dedupe_key, run_after FROM tasks WHERE id = ?"
# completed_at marks when it ended, so cleanup removes it in time; claimed_by stays (who had it).
CANCEL_TASK = ("UPDATE tasks SET status = 'cancelled', completed_at = ?, lease_expires_at = NULL"
               " WHERE id = ? AND status = ?")
RETRY_TASK = ("UPDATE tasks SET status = 'pending', attempts = 0, failures = 0, run_after = ?,"
              " claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL,"
              " completed_at = NULL, error = NULL, result = NULL, escalated_at = NULL"
              " WHERE id = ? AND status = ?")
# Tasks stamped ahead of the clock (sent while it was ahead) back to now: control.bring_back.
BRING_BACK = ("UPDATE tasks SET run_after = CASE WHEN created_at > ? THEN run_after - created_at"
              " + ? ELSE run_after END, escalated_at = CASE WHEN escalated_at > ? THEN ? ELSE"
              " escalated_at END, created_at = CASE WHEN created_at > ? THEN ? ELSE created_at"
              " END WHERE created_at > ? OR escalated_at > ? RETURNING recipient, status")
PAUSE_AGENT = ("INSERT INTO agent_pause (agent, paused_at, paused_until, reason) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (agent) DO UPDATE SET paused_at = excluded.paused_at,"
               " paused_until = excluded.paused_until, reason = excluded.reason")
RESUME_AGENT = "DELETE FROM agent_pause WHERE agent = ?"
# An agent removed from the team (coffee-team apply --yes): its open work fails with a reason.
FAIL_OPEN_TASKS = ("UPDATE tasks SET status = 'failed', completed_at = ?, error = ?,"
                   f" lease_expires_at = NULL WHERE recipient = ? AND status IN {LIVE_STATUSES}")
ACTIVE_PAUSES = ("SELECT agent, paused_at, paused_until, reason FROM agent_pause"
                 " WHERE paused_until IS NULL OR paused_until > ?")
# No status index: a scan of the tasks table once per watchdog pass, only if escalate_after.
ESCALATION_CANDIDATES = ("SELECT id, recipient, type, priority, escalated_at, run_after"
                         " FROM tasks WHERE status = 'pending' AND priority > 0"
                         " AND COALESCE(escalated_at, run_after) <= ?")
ESCALATE_TASK = ("UPDATE tasks SET priority = ?, escalated_at = ?"
                 " WHERE id = ? AND status = 'pending' AND priority = ?")

# --- LLM agents (usage.py): what runs cost, budgets, deferrals, sessions --------------------

INSERT_USAGE = (
    "INSERT INTO llm_usage (task_id, agent, task_type, ts, day, cost_usd, tokens_in, tokens_out,"
    " cache_read, cache_write, outcome, estimated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " RETURNING id")
# A run's row is kept current while it runs; whatever ends it, the row holds its spend so far.
UPDATE_USAGE = ("UPDATE llm_usage SET cost_usd = ?, tokens_in = ?, tokens_out = ?,"
                " cache_read = ?, cache_write = ?, outcome = ?, estimated = ? WHERE id = ?")
# Runs still 'running' when their agent starts again were cut off by its death (kill -9).
SETTLE_RUNNING_USAGE = ("UPDATE llm_usage SET outcome = 'killed', estimated = ?"
                        " WHERE agent = ? AND outcome = 'running'")
# (USD, input + output tokens) of one UTC day: one agent's, or the team's.
AGENT_SPEND_ON = ("SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(tokens_in + tokens_out), 0)"
                  " FROM llm_usage WHERE agent = ? AND day = ?")
TEAM_SPEND_ON = ("SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(tokens_in + tokens_out), 0)"
                 " FROM llm_usage WHERE day = ?")
SPEND_BY_AGENT_ON = ("SELECT agent, SUM(cost_usd), SUM(tokens_in + tokens_out) FROM llm_usage"
                     " WHERE day = ? GROUP BY agent")
# The finest grouping ``costs`` needs; it adds these rows up by agent, type or day.
USAGE_SINCE = (
    "SELECT agent, task_type, day, COUNT(*), SUM(cost_usd), SUM(tokens_in), SUM(tokens_out),"
    " SUM(cache_read), SUM(cache_write), SUM(CASE WHEN estimated THEN 1 ELSE 0 END)"
    " FROM llm_usage WHERE ts >= ?"
    " GROUP BY agent, task_type, day")
# One row per (scope, day): the first writer pauses and notifies, any other finds it there.
INSERT_BUDGET_STOP = ("INSERT INTO budget_stop (scope, day, stopped_at, reason) VALUES (?, ?, ?, ?)"
                      " ON CONFLICT (scope, day) DO NOTHING RETURNING scope")
BUDGET_STOPS_ON = "SELECT scope, reason FROM budget_stop WHERE day = ? AND scope IN (?, ?)"
DELETE_BUDGET_STOP = "DELETE FROM budget_stop WHERE scope = ? AND day = ?"
BUDGET_ALLOWANCE = "SELECT usd, tokens, unlimited FROM budget_allowance WHERE scope = ? AND day = ?"
# Raises add up over the day; no budget at all stays so once chosen.
ADD_BUDGET_ALLOWANCE = (
    "INSERT INTO budget_allowance (scope, day, usd, tokens, unlimited, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, day) DO UPDATE SET"
    " usd = budget_allowance.usd + excluded.usd,"
    " tokens = budget_allowance.tokens + excluded.tokens,"
    " unlimited = (budget_allowance.unlimited OR excluded.unlimited),"
    " updated_at = excluded.updated_at")
# A rate-limited run goes back to pending without counting as a delivery (attempts) or a
# failure: only the holder may defer it.
DEFER_TASK = (
    "UPDATE tasks SET status = 'pending', run_after = ?, error = ?,"
    " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,"
    " claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL"
    " WHERE id = ? AND status = 'in_progress' AND claimed_by = ? RETURNING recipient")
AGENT_SESSION = "SELECT session_id FROM llm_session WHERE agent = ? AND session_key = ?"
SAVE_AGENT_SESSION = (
    "INSERT INTO llm_session (agent, session_key, session_id, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (agent, session_key) DO UPDATE SET session_id = excluded.session_id,"
    " updated_at = excluded.updated_at")

# --- reporting (reporting.py) ---------------------------------------------------------------

_TASK_COLUMNS = ("id, sender, recipient, type, content, priority, created_at, completed_at, status,"
                 " claimed_by, claimed_at, lease_expires_at, attempts, dedupe_key, error, result,"
                 " failures, run_after, escalated_at, errors, waiting_on, sent_from")
TASKS_OF_RECIPIENT = (
    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE recipient = ? AND status = ?"
    " ORDER BY priority, id")
# Stats never scan the tasks table: finished tasks are counted by triggers (task_counts);
# pending and in-progress rows are few (max_queue_size bounds pending), counted through the
# claim index per recipient (every recipient ever sent to has a queue_depth row).
FINISHED_COUNTS = "SELECT recipient, status, n FROM task_counts WHERE n > 0"
LIVE_COUNTS = ("SELECT recipient, status, COUNT(*), MIN(created_at) FROM tasks"
               " WHERE recipient IN (SELECT recipient FROM queue_depth)"
               f" AND status IN {LIVE_STATUSES} GROUP BY recipient, status")
DELETE_FINISHED_BEFORE = (
    "DELETE FROM tasks WHERE status IN ('completed', 'failed', 'cancelled')"
    " AND completed_at < ?")
# Tasks per state, for ``metrics`` (tasks created in the window).
STATE_COUNTS = "SELECT status, COUNT(*) FROM tasks WHERE created_at >= ? GROUP BY status"
SLOWEST_TASK_TYPES = (
    "SELECT task_type, COUNT(*) AS count, AVG(duration_ms) AS avg_ms,"
    " MAX(duration_ms) AS max_ms FROM metrics WHERE timestamp >= ?"
    " GROUP BY task_type ORDER BY avg_ms DESC LIMIT 10")
AGENT_PERFORMANCE = (
    "SELECT agent, COUNT(*) AS count, AVG(duration_ms) AS avg_ms FROM metrics"
    " WHERE timestamp >= ? GROUP BY agent ORDER BY agent")

# --- the dashboard and /metrics (reporting.py, journal.py): each an index walk or a LIMIT ---

NEWEST_EVENTS = "SELECT id, ts, agent, kind, detail FROM events ORDER BY id DESC LIMIT ?"
NEWEST_NOTIFICATIONS = (
    "SELECT id, created_at, level, agent, title, message, sound, acknowledged"
    " FROM notifications ORDER BY id DESC LIMIT ?")
NOTIFICATION_LEVEL_COUNTS = "SELECT level, COUNT(*) FROM notifications GROUP BY level"
# Task durations after a metrics row id, for a histogram kept up to date incrementally.
METRICS_AFTER = ("SELECT id, agent, task_type, duration_ms FROM metrics WHERE id > ?"
                 " ORDER BY id LIMIT ?")

# --- backends (sqlite_db.py, pg_backend.py), PostgreSQL sessions (core.py, locks.py) --------

SQLITE_LAST_TASK_ROWID = "SELECT MAX(rowid) FROM tasks"
PG_CURRENT_SCHEMA = "SELECT current_schema()"
# The agent's advisory key (locks.py) for one transaction: a reaper's requeue runs only while
# no instance runs.
PG_TRY_ADVISORY_XACT_LOCK = "SELECT pg_try_advisory_xact_lock(?)"


# --- statements shaped by their arguments ---------------------------------------------------

def insert_tasks(rows: int, *, returning_ids: bool) -> str:
    """A multi-row insert of pending tasks, 9 parameters a row (see enqueue._add_rows); without
    RETURNING where the backend knows the ids anyway (SQLite)."""
    return ("INSERT INTO tasks (sender, recipient, type, content, priority, created_at,"
            " dedupe_key, run_after, traceparent, status, attempts) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0)"] * rows)
            + (" RETURNING id" if returning_ids else ""))


def list_tasks(by_id: bool, by_status: bool, by_recipient: bool, before: bool = False) -> str:
    """Tasks newest first by id, status, recipient and ``id < ?`` (a page), LIMIT ?. Separate
    statements, not ``? IS NULL OR ...``: SQLite plans before it sees the values."""
    clauses = [c for c, on in (("id = ?", by_id), ("status = ?", by_status),
                               ("recipient = ?", by_recipient), ("id < ?", before)) if on]
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"SELECT {_TASK_COLUMNS} FROM tasks{where} ORDER BY id DESC LIMIT ?"


def recent_events_of_kinds(kinds: int) -> str:
    """One agent's events of any of ``kinds`` kinds, newest first, LIMIT ?."""
    marks = ", ".join("?" * kinds)
    return ("SELECT id, ts, agent, kind, detail FROM events WHERE agent = ?"
            f" AND kind IN ({marks}) ORDER BY id DESC LIMIT ?")


def restart_states(fields: Iterable[str], *, one_agent: bool) -> str:
    """One host's restart-state rows (agent, then ``fields``): WHERE host = ?, and for one
    agent AND agent = ?."""
    where = " WHERE host = ?" + (" AND agent = ?" if one_agent else "")
    return f"SELECT agent, {', '.join(fields)} FROM restart_state{where}"


def save_restart_state(fields: Iterable[str], updated: Iterable[str]) -> str:
    """Insert agent, host + every field (peewee defaults are Python-side only), but on conflict
    overwrite just ``updated``; field names come from journal.RESTART_FIELDS, never input."""
    names = list(fields)
    updates = ", ".join(f"{n} = excluded.{n}" for n in updated) or "agent = excluded.agent"
    return (f"INSERT INTO restart_state (agent, host, {', '.join(names)})"
            f" VALUES (?, ?{', ?' * len(names)})"
            f" ON CONFLICT (agent, host) DO UPDATE SET {updates}")


def named() -> dict[str, str]:
    """{NAME: statement} of every named statement above (not the builders)."""
    return {name: text for name, text in globals().items()
            if name.isupper() and not name.startswith("_") and isinstance(text, str)}
