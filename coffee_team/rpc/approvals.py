"""``coffee.listApprovals`` and ``coffee.decideApproval``: requests waiting for a person and
their decisions, as ``coffee-team approvals`` / ``approve`` / ``deny`` make them.

A mixin of CoffeeNamespaceRPCInterface (which provides ``_queue_``), kept apart so
interface.py stays about the team. Each call is one or two short statements; the request's
JSON travels as text (``request_json``), as a task's content does.
"""
from __future__ import annotations

import json
from typing import Any

from supervisor.xmlrpc import Faults, RPCError

from coffee_team.rpc.values import check_id, check_limit, kind_of, rpc_method, short

DECISIONS = ("approve", "deny")


def approval_struct(row: dict) -> dict:
    row["request_json"] = json.dumps(row.pop("request"))
    return row


class ApprovalsRPC:
    _queue_: Any

    @rpc_method
    def listApprovals(self, status="pending", limit=100):
        """ List requests for a person's approval, newest first (those past their time are
        decided by it first)

        Approval structs hold id, kind (tool, task), agent, task_id, subject, status
        (pending, approved, denied, cancelled), created_at, expires_at, on_timeout,
        decided_at, decided_by, reason (each left out when unset) and request_json (what
        exactly is asked, as JSON text).

        @param string status  pending (default), approved, denied, cancelled, or '' for all
        @param int limit      1-1000, default 100
        @return array approvals  An array of approval structs
        """
        from coffee_team.taskstate import APPROVAL_STATES
        if not isinstance(status, str) or (status and status not in APPROVAL_STATES):
            raise RPCError(Faults.BAD_ARGUMENTS, f"status must be one of "
                                                 f"{', '.join(APPROVAL_STATES)} or '', "
                                                 f"got {short(status)}")
        return [approval_struct(row) for row in
                self._queue_().list_approvals(status or None, check_limit(limit))]

    @rpc_method
    def decideApproval(self, id, decision, by, reason=""):
        """ Decide a request waiting for a person: the first decision stands (who, when,
        why are kept); a waiting tool call hears of it within a second, a held task is
        pending (approve) or cancelled (deny) at once

        @param int id            The approval id
        @param string decision   approve or deny
        @param string by         Who decides (1-100 characters)
        @param string reason     Optional: why (a denied agent reads it)
        @return struct approval  The approval as it now is
        """
        if decision not in DECISIONS:
            raise RPCError(Faults.BAD_ARGUMENTS, f"decision must be approve or deny, got "
                                                 f"{short(decision)}")
        for value, what in ((by, "by"), (reason, "reason")):
            if not isinstance(value, str):
                raise RPCError(Faults.BAD_ARGUMENTS, f"{what} must be a string, got "
                                                     f"{kind_of(value)}")
        return approval_struct(self._queue_().decide_approval(
            check_id(id, "id"), decision == "approve", by, reason))
