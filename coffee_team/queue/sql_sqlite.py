"""SQLite's one-statement sends (enqueue.py): an INSERT raises its recipient's pending bound
by itself (sql_schema's tasks_count_insert trigger, schema 16), so one statement is a send's
whole transaction. Written for SQLite only (no placeholder translation needed); run through
``backend.execute``.
"""
from __future__ import annotations

# One plain send: the row, unless the recipient's bound (raised by the trigger as the row goes
# in) is already at max_queue_size, which leaves it to the counting path (0 rows inserted).
# Parameters: sql.insert_tasks' 9, the recipient, max_queue_size.
SEND_ONE = (
    "INSERT INTO tasks (sender, recipient, type, content, priority, created_at, dedupe_key,"
    " run_after, traceparent, status, attempts) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0"
    " WHERE COALESCE((SELECT pending_bound FROM queue_depth WHERE recipient = ?), 0) < ?")
# A batch checks the bound first (its rows raise it as they go in).
PENDING_BOUND = "SELECT pending_bound FROM queue_depth WHERE recipient = ?"
