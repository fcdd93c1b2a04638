"""The statements of the review and merge queue (merges.py), apart from sql.py's hot path:
written with ``?`` placeholders like those and run through ``backend.execute``/``fetchdicts``
(a merge is seconds of git; translating a statement per call costs nothing next to it).

Every state change is one UPDATE that names the state it expects (``AND state = ?``), so of
two processes moving the same item only one sees its row come back.
"""
from __future__ import annotations

from coffee_team.taskstate import MERGE_LIVE

ITEM_COLUMNS = ("id, created_at, updated_at, state, author, host, branch, target, base, head,"
                " task_id, reviewer, decided_by, comments, merged_head, reason, output,"
                " attempts, not_before")

INSERT_ITEM = (
    "INSERT INTO merge_items (created_at, updated_at, state, author, host, branch, target,"
    " base, head, task_id, reviewer, attempts, not_before)"
    " VALUES (?, ?, 'waiting_review', ?, ?, ?, ?, ?, ?, ?, ?, 0, 0) RETURNING id")
# A review's verdict: approved, or failed with the reviewer's comments as the reason.
DECIDE = ("UPDATE merge_items SET state = ?, updated_at = ?, decided_by = ?, comments = ?,"
          " reason = ? WHERE id = ? AND state = ? RETURNING id")
# The oldest approved item of this host that is due, whose target has no merge under way;
# it becomes 'checking' in the same statement. The unique index merge_items_checking refuses
# a second 'checking' item of one target even if two transactions raced past NOT EXISTS.
BEGIN = (
    "UPDATE merge_items SET state = 'checking', updated_at = ?, attempts = attempts + 1"
    " WHERE id = (SELECT id FROM merge_items AS next WHERE next.state = 'approved'"
    " AND next.host = ? AND next.not_before <= ? AND NOT EXISTS (SELECT 1 FROM merge_items"
    " AS busy WHERE busy.state = 'checking' AND busy.host = next.host"
    " AND busy.target = next.target) ORDER BY next.id LIMIT 1) AND state = 'approved'"
    f" RETURNING {ITEM_COLUMNS}")
FINISH = ("UPDATE merge_items SET state = ?, updated_at = ?, merged_head = ?, reason = ?,"
          " output = ?, not_before = ? WHERE id = ? AND state = ? RETURNING id")
ANY_DUE = ("SELECT 1 FROM merge_items WHERE state = 'approved' AND host = ? AND not_before <= ?"
           " LIMIT 1")
# At a merger's start: what its predecessor left 'checking' is merged again from the start.
RELEASE_HOST = ("UPDATE merge_items SET state = 'approved', updated_at = ?"
                " WHERE host = ? AND state = 'checking' RETURNING id")
AUTHOR = "SELECT author FROM merge_items WHERE id = ?"
ITEM = f"SELECT {ITEM_COLUMNS} FROM merge_items WHERE id = ?"
NEWEST_ITEMS = f"SELECT {ITEM_COLUMNS} FROM merge_items ORDER BY id DESC LIMIT ?"
NEWEST_ITEMS_IN = (f"SELECT {ITEM_COLUMNS} FROM merge_items WHERE state = ?"
                   " ORDER BY id DESC LIMIT ?")
LIVE_OF_AUTHOR = ("SELECT COUNT(*) FROM merge_items WHERE author = ? AND state IN ({})"
                  .format(", ".join(f"'{s}'" for s in MERGE_LIVE)))
