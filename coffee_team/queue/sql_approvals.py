"""The statements of a person's approvals (approvals.py) and of what their decisions do to
tasks, apart from sql.py's hot path: none runs on a claim or a plain send, so they are run
through ``backend.execute`` (translated per call) like sql_schema's.
"""
from __future__ import annotations

_APPROVAL_COLUMNS = ("id, kind, agent, task_id, subject, request, status, created_at, expires_at,"
                     " on_timeout, notification_id, decided_at, decided_by, reason")
INSERT_APPROVAL = (
    "INSERT INTO approvals (kind, agent, task_id, subject, request, status, created_at,"
    " expires_at, on_timeout) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING id")
SET_APPROVAL_NOTIFICATION = "UPDATE approvals SET notification_id = ? WHERE id = ?"
APPROVAL = f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?"
# What a waiting MCP call polls: one primary-key read.
APPROVAL_STATUS = "SELECT status, decided_by, reason FROM approvals WHERE id = ?"
APPROVALS_NEWEST = f"SELECT {_APPROVAL_COLUMNS} FROM approvals ORDER BY id DESC LIMIT ?"
APPROVALS_BY_STATUS = (f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE status = ?"
                       " ORDER BY id DESC LIMIT ?")
# The first decision wins: a second finds it decided and changes nothing.
DECIDE_APPROVAL = ("UPDATE approvals SET status = ?, decided_at = ?, decided_by = ?, reason = ?"
                   " WHERE id = ? AND status = 'pending'")
EXPIRED_APPROVALS = ("SELECT id, on_timeout, expires_at FROM approvals WHERE status = 'pending'"
                     " AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY id")
# A run that ended (its CLI exited or was killed): its calls still waiting are withdrawn.
PENDING_TOOL_APPROVALS = ("SELECT id FROM approvals WHERE agent = ? AND status = 'pending'"
                          " AND kind = 'tool' ORDER BY id")
PENDING_TASK_APPROVALS = ("SELECT id FROM approvals WHERE task_id = ? AND status = 'pending'"
                          " AND kind = 'task'")
# A task of an approve_before type waits for its decision (sent pending in the same
# transaction); the decision moves it on, guarded by the state it waits in.
HOLD_TASK = "UPDATE tasks SET status = 'awaiting_approval' WHERE id = ? AND status = 'pending'"
APPROVE_TASK = ("UPDATE tasks SET status = 'pending' WHERE id = ? AND status = 'awaiting_approval'"
                " RETURNING recipient")
DENY_TASK = ("UPDATE tasks SET status = 'cancelled', completed_at = ?, error = ?"
             " WHERE id = ? AND status = 'awaiting_approval' RETURNING recipient")
SET_SENT_FROM = "UPDATE tasks SET sent_from = ? WHERE id = ?"
