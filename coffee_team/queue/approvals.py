"""A person's approvals: requests, their decisions (who, when, why) and what a decision does.

A request is one row of ``approvals`` and one silent WARNING notification (delivered to the
``notify`` targets), written in one transaction. The first decision wins and stays on the
row; a request past its ``expires_at`` is decided by the timeout as its ``on_timeout`` says
(decided_by ``timeout``), by whoever looks first (the waiting call, a listing, a decision);
one whose asker went away (a run that ended, a task cancelled) is withdrawn (``cancelled``).
Rows are never deleted.

What a decision does depends on the request's kind, inside the decision's transaction
(``APPROVAL_EFFECTS``): a ``tool`` call is answered by the MCP server that waits for the row
(nothing to do here); a ``task`` of an ``approve_before`` type leaves ``awaiting_approval``
(pending, or cancelled with the reason). Another kind (a review of a merge item) adds its
effect there.

ApprovalsMixin is mixed into MessageQueue (core.py); ``ApprovalsNeeds`` lists what it uses.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterable, Optional, Protocol

from coffee_team.errors import ApprovalDecided, ApprovalNotFound, ContentError
from coffee_team.queue import sql_approvals as sql
from coffee_team.queue.sql import ACK_NOTIFICATION, ADD_PENDING, INSERT_NOTIFICATION
from coffee_team.queue.content import check_name, encode_json
from coffee_team.queue.db import SqlBackend
from coffee_team.taskstate import initial_state

_MAX_SUBJECT = 300
_MAX_REASON = 1000


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _approval(row: dict) -> dict:
    row["request"] = json.loads(row["request"] or "{}")
    return row


def _one_line(text: Any, limit: int) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


class ApprovalsNeeds(Protocol):
    """What ApprovalsMixin uses from the rest of MessageQueue: its state and wake-ups
    (core.py)."""

    backend: SqlBackend  # the database, in its dialect (core.py sets it, and the rest)
    clock: Callable[[], float]
    _wake: Any  # wakes waiters after commit (wake.WakeSockets / PgWake), or None
    _tx_wake: Optional[Callable[[SqlBackend, Iterable[str]], None]]  # NOTIFY, or None
    approve_before: dict[str, tuple[str, ...]]


class ApprovalsMixin:
    """Needs ApprovalsNeeds from the rest of MessageQueue."""

    # -- asking ---------------------------------------------------------------------------
    def request_approval(self, kind: str, agent: str, subject: str, request: Any = None, *,
                         task_id: Optional[int] = None, timeout: Optional[float] = None,
                         on_timeout: str = "deny") -> int:
        """Ask a person; returns the request's id. ``timeout`` seconds without a decision
        decide it as ``on_timeout`` says (deny or allow); None waits until someone decides."""
        with self.backend.write_transaction():
            return self._ask(kind, agent, subject, request, task_id, timeout, on_timeout)

    def _ask(self, kind: str, agent: str, subject: str, request: Any, task_id: Optional[int],
             timeout: Optional[float], on_timeout: str) -> int:
        """request_approval inside the caller's write transaction (a send holding a task)."""
        check_name(kind, "approval kind")
        check_name(agent, "agent")
        if on_timeout not in ("deny", "allow"):
            raise ContentError(f"on_timeout must be deny or allow, got {on_timeout!r}")
        now, run = self.clock(), self.backend.execute
        subject = _one_line(subject, _MAX_SUBJECT) or kind
        expires = None if timeout is None else now + float(timeout)
        (approval_id,) = run(sql.INSERT_APPROVAL, (
            kind, agent, task_id, subject, encode_json(request or {}, "approval request"), now,
            expires, on_timeout)).fetchone()
        after = ("" if expires is None else
                 f" Without a decision by {_when(expires)} it is "
                 f"{'approved' if on_timeout == 'allow' else 'denied'}.")
        where = f" (task #{task_id})" if task_id is not None else ""
        (notification_id,) = run(INSERT_NOTIFICATION, (
            now, "WARNING", agent, f"approval #{approval_id}: {agent} asks: {subject}",
            f"{agent}{where} waits for a person: {subject}. Answer with `coffee-team approve "
            f"{approval_id}` or `coffee-team deny {approval_id} --reason TEXT` (or the "
            f"dashboard).{after}", False, False)).fetchone()
        run(sql.SET_APPROVAL_NOTIFICATION, (notification_id, approval_id))
        return approval_id

    def _hold_for_approval(self, task_ids: list[int], rows: list[tuple]) -> list[int]:
        """Inside a send's write transaction: each new task whose type its recipient's
        ``approve_before`` names waits for a person instead of being pending. Returns the
        ids held."""
        held = []
        for task_id, (sender, recipient, task_type, *_rest) in zip(task_ids, rows):
            if initial_state(recipient, task_type, self.approve_before) == "pending":
                continue
            if self.backend.execute(sql.HOLD_TASK, (task_id,)).rowcount:
                self._ask("task", recipient, f"task #{task_id} {task_type} from {sender}",
                          {"task_id": task_id, "type": task_type, "sender": sender},
                          task_id, None, "deny")
                held.append(task_id)
        return held

    # -- reading --------------------------------------------------------------------------
    def approval(self, approval_id: int) -> dict:
        rows = self.backend.fetchdicts(sql.APPROVAL, (approval_id,))
        if not rows:
            raise ApprovalNotFound(f"no approval with id {approval_id}")
        return _approval(rows[0])

    def approval_status(self, approval_id: int) -> tuple[str, Optional[str], Optional[str]]:
        """(status, decided_by, reason): what a waiting call polls (one primary-key read)."""
        row = self.backend.fetchone(sql.APPROVAL_STATUS, (approval_id,))
        if row is None:
            raise ApprovalNotFound(f"no approval with id {approval_id}")
        return row[0], row[1], row[2]

    def awaits_person(self, agent: str) -> bool:
        """Does a tool call of ``agent``'s run wait for a person now? (its stall rule)"""
        return self.backend.fetchone(sql.PENDING_TOOL_APPROVALS, (agent,)) is not None

    def list_approvals(self, status: Optional[str] = None, limit: int = 100,
                       expire: bool = True) -> list[dict]:
        """Newest first; the ones past their time are decided by it first, so a listing never
        shows a request as waiting that nobody can answer any more (``expire=False``: a
        reader that writes nothing, the dashboard, leaves those out of what is pending)."""
        now = self.clock()
        if expire:
            self.expire_approvals()
        if status is None:
            rows = self.backend.fetchdicts(sql.APPROVALS_NEWEST, (limit,))
        else:
            rows = self.backend.fetchdicts(sql.APPROVALS_BY_STATUS, (status, limit))
        return [_approval(row) for row in rows if expire or row["status"] != "pending"
                or row["expires_at"] is None or row["expires_at"] > now]

    # -- deciding -------------------------------------------------------------------------
    def decide_approval(self, approval_id: int, approve: bool, by: str,
                        reason: str = "") -> dict:
        """A person's decision; the approval as it now is. ApprovalDecided when it was
        decided before (by a person, its timeout or its withdrawal): the first one stands."""
        check_name(by, "who decides")
        reason = _one_line(reason, _MAX_REASON)
        woken: set[str] = set()
        with self.backend.write_transaction():
            self._expire(woken)
            row = self.approval(approval_id)
            if row["status"] != "pending":
                raise ApprovalDecided(f"approval {approval_id} was already {row['status']}"
                                      f" by {row['decided_by']} at {_when(row['decided_at'])}"
                                      + (f": {row['reason']}" if row["reason"] else ""))
            self._settle(row, "approved" if approve else "denied", by, reason, woken)
        self._wake_after(woken)
        return self.approval(approval_id)

    def expire_approvals(self) -> list[int]:
        """Decide every request past its time as its on_timeout says; their ids."""
        woken: set[str] = set()
        now = self.clock()
        if not self.backend.fetchone(sql.EXPIRED_APPROVALS, (now,)):
            return []  # the usual case: a read, no write lock
        with self.backend.write_transaction():
            expired = self._expire(woken)
        self._wake_after(woken)
        return expired

    def withdraw_approvals(self, agent: str, why: str) -> list[int]:
        """The run of ``agent`` ended: its tool calls still waiting are withdrawn (their
        MCP server went with the CLI, or no longer waits). Their ids."""
        if not self.backend.fetchone(sql.PENDING_TOOL_APPROVALS, (agent,)):
            return []
        with self.backend.write_transaction():
            ids = [i for (i,) in self.backend.execute(sql.PENDING_TOOL_APPROVALS,
                                                  (agent,)).fetchall()]
            for approval_id in ids:
                self._settle(self.approval(approval_id), "cancelled", "coffee-team", why, set())
        return ids

    def cancel_approval(self, approval_id: int, why: str) -> bool:
        """Withdraw one request still waiting (its asker gave up); False if it was decided."""
        with self.backend.write_transaction():
            row = self.approval(approval_id)
            if row["status"] != "pending":
                return False
            self._settle(row, "cancelled", "coffee-team", why, set())
        return True

    def _withdraw_task_approval(self, task_id: int, why: str) -> None:
        """Inside a write transaction: the task no longer waits (cancelled, failed)."""
        pending = self.backend.execute(sql.PENDING_TASK_APPROVALS, (task_id,)).fetchall()
        for (approval_id,) in pending:
            self._settle(self.approval(approval_id), "cancelled", "coffee-team", why, set())

    def _expire(self, woken: set[str]) -> list[int]:
        now, expired = self.clock(), []
        for approval_id, on_timeout, expires_at in self.backend.execute(
                sql.EXPIRED_APPROVALS, (now,)).fetchall():
            status = "approved" if on_timeout == "allow" else "denied"
            row = self.approval(approval_id)
            waited = max(0.0, expires_at - row["created_at"])
            self._settle(row, status, "timeout",
                         f"no decision within {waited:.0f} s ({status} as on_timeout says)",
                         woken)
            expired.append(approval_id)
        return expired

    def _settle(self, row: dict, status: str, by: str, reason: str, woken: set[str]) -> None:
        """Record the decision (guarded: only a pending request), acknowledge its notification
        and apply what it does for its kind."""
        now, run = self.clock(), self.backend.execute
        if not run(sql.DECIDE_APPROVAL, (status, now, by, reason, row["id"])).rowcount:
            return
        if row["notification_id"] is not None:
            run(ACK_NOTIFICATION, (True, row["notification_id"], False))
        effect = APPROVAL_EFFECTS.get(row["kind"])
        if effect is not None and status != "cancelled":
            getattr(self, effect)(row, status == "approved", by, reason, woken)

    def _decide_task(self, row: dict, approved: bool, by: str, reason: str,
                     woken: set[str]) -> None:
        """A held task goes on (pending: its recipient is woken) or is cancelled, the
        reason as its error. A task no longer held (cancelled meanwhile) is left alone. The
        depth bound counted it from its send (taskstate.QUEUED_STATES): a denial lowers it."""
        task_id, run = row["task_id"], self.backend.execute
        if approved:
            moved = run(sql.APPROVE_TASK, (task_id,)).fetchone()
            if moved is not None:
                woken.add(moved[0])
                if self._tx_wake:
                    self._tx_wake(self.backend, {moved[0]})
            return
        denied = run(sql.DENY_TASK, (self.clock(), f"denied by {by}" + (
            f": {reason}" if reason else ""), task_id)).fetchone()
        if denied is not None:
            run(ADD_PENDING, (denied[0], -1)).fetchone()

    def _wake_after(self, recipients: set[str]) -> None:
        if recipients and self._wake:
            self._wake.notify(recipients)


# kind → the ApprovalsMixin (or MessageQueue) method a decision of that kind runs, inside
# its transaction: (row, approved, by, reason, woken recipients). A tool call's is its MCP
# server's, which polls the row; a review's is the merge item's verdict (merges.py).
APPROVAL_EFFECTS: dict[str, str] = {"task": "_decide_task", "review": "_decide_review_approval"}
