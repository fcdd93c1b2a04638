"""The dashboard's buttons: each a ``coffee.*`` call to supervisord, answered in one sentence.

Pure mapping plus one call seam (``call(method, *args)``), so the messages and the status
codes are tested without a server. Faults become HTTP codes: an unknown agent, task or
notification 404; a state that forbids the action (retry a completed task) 409; supervisord
not answering 503.
"""
from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass
from typing import Any, Callable

from ..client import Faults
from ..errors import SupervisorDown

# supervisor.xmlrpc.Faults codes (not imported: that module drags in supervisor's server)


@dataclass(frozen=True)
class Answer:
    code: int
    message: str


def _agent_message(action: str, name: str, result: Any) -> str:
    if action == "restart":
        return f"{name}: restart requested (stopping if needed, then starting)"
    if action == "pause":
        return f"{name} paused: it finishes its current task and claims nothing new"
    return f"{name} resumed" if result else f"{name} was not paused"


def _task_message(action: str, task_id: int, previous: Any) -> str:
    if action == "cancel":
        return f"task {task_id} cancelled (it was {previous})"
    return f"task {task_id} is pending again (it was {previous})"


def _approval_message(approval_id: int, row: Any) -> str:
    status = row.get("status") if isinstance(row, dict) else None
    return f"approval {approval_id} {status}: {row.get('agent')} {row.get('subject')}" \
        if status else f"approval {approval_id} decided"


def _ack_message(notification_id: int, acknowledged: Any) -> str:
    return (f"notification {notification_id} acknowledged" if acknowledged
            else f"notification {notification_id} was already acknowledged")


# (kind, action) → (coffee.* method, message builder)
ACTIONS: dict[tuple[str, str], tuple[str, Callable[..., str]]] = {
    ("agents", "restart"): ("coffee.restartAgent", lambda n, r: _agent_message("restart", n, r)),
    ("agents", "pause"): ("coffee.pauseAgent", lambda n, r: _agent_message("pause", n, r)),
    ("agents", "resume"): ("coffee.resumeAgent", lambda n, r: _agent_message("resume", n, r)),
    ("tasks", "cancel"): ("coffee.cancelTask", lambda i, r: _task_message("cancel", i, r)),
    ("tasks", "retry"): ("coffee.retryTask", lambda i, r: _task_message("retry", i, r)),
    ("notifications", "ack"): ("coffee.ackNotification", _ack_message),
    # the decision, who decides and why follow the id (Dashboard.act)
    ("approvals", "approve"): ("coffee.decideApproval", _approval_message),
    ("approvals", "deny"): ("coffee.decideApproval", _approval_message),
}


def perform(kind: str, action: str, target: str, agent_names: tuple[str, ...],
            call: Callable[..., Any], extra: tuple = ()) -> Answer:
    """Run one action on ``target`` (an agent name or a numeric id) through ``call``, with
    ``extra`` arguments after the target (an approval's decision, who decides, why)."""
    if (kind, action) not in ACTIONS:
        return Answer(404, f"no action {action!r} on {kind}")
    method, message = ACTIONS[kind, action]
    if kind == "agents":
        if target not in agent_names:
            return Answer(404, f"unknown agent {target[:60]!r}")
        key: Any = target
    else:
        if not target.isdigit() or len(target) > 12:
            return Answer(404, f"no {kind[:-1]} with id {target[:20]!r}")
        key = int(target)
    try:
        return Answer(200, message(key, call(method, key, *extra)))
    except SupervisorDown as exc:
        return Answer(503, str(exc))
    except xmlrpc.client.Fault as exc:
        return _fault_answer(exc)


LOG_FIRST = 16 * 1024   # bytes of a log's end shown when it is opened
LOG_MAX = 64 * 1024     # bytes at most per read (following it reads what was added)


@dataclass(frozen=True)
class LogChunk:
    code: int
    data: dict[str, Any]


def read_log(name: str, offset: int, length: int, agent_names: tuple[str, ...],
             call: Callable[..., Any]) -> LogChunk:
    """An agent's log from ``offset`` (0: its last ``length`` bytes), as supervisor's
    ``tailProcessStdoutLog`` reads it: ``{agent, text, offset, overflow}``; ``offset`` is where
    the next read (following the log) starts; ``overflow`` that more was written than read."""
    if name not in agent_names:
        return LogChunk(404, {"error": f"unknown agent {name[:60]!r}"})
    length = max(0, min(length, LOG_MAX))
    try:
        text, offset, overflow = call("supervisor.tailProcessStdoutLog", name, offset, length)
    except SupervisorDown as exc:
        return LogChunk(503, {"error": str(exc)})
    except xmlrpc.client.Fault as exc:
        answer = _fault_answer(exc)
        code = 404 if exc.faultCode == Faults.NO_FILE else answer.code
        return LogChunk(code, {"error": f"{name}: cannot read the log: {answer.message}"})
    return LogChunk(200, {"agent": name, "text": text, "offset": offset,
                          "overflow": bool(overflow)})


def _fault_answer(fault: xmlrpc.client.Fault) -> Answer:
    text = fault.faultString.split(":", 1)[-1].strip() or fault.faultString
    if fault.faultCode == Faults.BAD_NAME or (fault.faultCode == Faults.BAD_ARGUMENTS
                                              and text.startswith("no ")):
        return Answer(404, text)
    if fault.faultCode == Faults.FAILED:
        return Answer(409, text)
    return Answer(400, text)
