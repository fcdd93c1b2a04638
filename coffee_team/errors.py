"""Every error a user can cause, in one place (as huey's ``exceptions.py``).

Each one's ``str()`` is one line meant for the person who caused it: what went wrong, where,
and how to fix it. Callers at the edges (CLI, XML-RPC, the agent's main) turn a
``CoffeeError`` into an exit code or a fault and never show a traceback for one.
"""
from __future__ import annotations


def first_line(text: str) -> str:
    """The first line of ``text`` that is not blank, without surrounding spaces ("" if none)."""
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else ""


def error_line(exc: BaseException) -> str:
    """An error's message as one line: its first line, or its type's name when it has none.
    For errors whose message says what happened (ours, a fault, a YAML problem)."""
    return first_line(str(exc)) or type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message`` (``Type`` alone without one): any error as one line
    for a log, a status line or a fault."""
    line = first_line(str(exc))
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class CoffeeError(Exception):
    """Base of every coffee-team error meant for a person; ``str()`` is one line."""


class TeamError(CoffeeError):
    """A user error in the team file."""


class UnknownAgentError(TeamError):
    """A name that is not an agent of the team."""


class KubernetesError(CoffeeError):
    """A team or an option ``gen-k8s`` cannot render (a SQLite queue, a bad image name)."""


class SupervisorDown(CoffeeError):
    """supervisord does not answer at the URL we tried."""


class SupervisorNotAnswering(SupervisorDown):
    """Something accepted the connection (supervisord's socket is there) but no answer came
    within the call's timeout: a supervisord that is stopped (SIGSTOP) or overloaded, not one
    that is gone. The command line says which PID and exits 4 (``ops.probe``)."""

    def __init__(self, message: str, waited: float = 0.0):
        super().__init__(message)
        self.waited = waited


class AgentAlreadyRunningError(CoffeeError):
    """Another process holds this agent's lock; ``str()`` names its PID and start time."""


class HandlerError(CoffeeError):
    """The handler failed; ``str()`` is stored as the task's error."""


class PermanentError(HandlerError):
    """A failure no retry can fix (a prompt template naming a field the task lacks, output
    that cannot be read after a clean exit): the task fails at once, whatever its
    ``retry:`` policy says."""


class QueueError(CoffeeError):
    """Base of every user-facing queue error."""


class ContentError(QueueError):
    """A task, result or notification is malformed; nothing was written."""


class UnstorableResult(ContentError):
    """A task's result cannot be stored (not JSON, too large, too deep): the task fails with
    this reason; its follow-ups are not sent."""


class QueueFullError(QueueError):
    """A recipient already has max_queue_size pending tasks (backpressure)."""


class RoutingError(QueueError, ValueError):
    """A task cannot be routed."""


class UnroutableError(RoutingError):
    """No (known) agent can receive the task."""


class DatabaseUrlError(QueueError, ValueError):
    """The database URL or path cannot be used."""


class SchemaTooNew(QueueError):
    """The database was written by a newer coffee-team; refuse rather than corrupt it."""


class DependencyError(ContentError):
    """``after`` names a task that does not exist, or one whose chain includes the task sent
    (a cycle): refused at send, nothing written."""


class TaskNotFound(QueueError):
    """No task has that id (never existed, or removed by cleanup)."""


class TaskStateError(QueueError):
    """The task's state does not allow the action (e.g. retry a completed task)."""


class DatabaseUnavailable(QueueError):
    """The database cannot be used right now (cannot be opened, or its file was deleted);
    said at once instead of waiting, by code that must not block (inside supervisord)."""


class DatabaseMissing(DatabaseUnavailable):
    """No database at the team's path, and this command or process may not make one (only
    ``init``, ``start`` and the watchdog do, on a project without history: files.py)."""


class DatabaseMismatch(DatabaseUnavailable):
    """The database at the path is not the one its leftovers belong to (a WAL of another
    file beside it): opening it would let SQLite take that WAL up, or delete it."""


class ApprovalNotFound(QueueError):
    """No approval request has that id."""


class ApprovalDecided(QueueError):
    """The approval was decided already (by a person, its timeout, or its withdrawal): the
    first decision stands; ``str()`` says by whom, when and why."""


class ActionRefused(CoffeeError):
    """A person's action that cannot be done as asked (an agent not loaded, one that failed
    to start, a resume past a budget without saying how far): ``exit_code`` is the command
    line's (2 for the input, 1 for the team's state)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
