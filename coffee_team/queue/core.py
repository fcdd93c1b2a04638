"""MessageQueue: a durable task queue shared by the agents of a team.

Tasks live in one SQL table (see models.Task).  Every write is one short
transaction; claims are a single ``UPDATE ... RETURNING`` so two agents can
never get the same task.  Priorities are ints 0..9, lower is more urgent;
equal priorities are served first-in first-out.  Backpressure reads the
per-recipient counter in models.QueueDepth, kept in the same transactions.

Idle agents block in ``wait()`` on a unix datagram socket (coffee_team.queue.wake)
that ``send()`` pokes after commit, so hand-over takes milliseconds without
polling.  On PostgreSQL they LISTEN instead and every write transaction that
adds pending work NOTIFYs the recipients' channels (delivered at commit), so
agents on other hosts wake just as fast.
"""
from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence, Union

from coffee_team.queue.approvals import ApprovalsMixin
from coffee_team.queue.content import read_stored, too_deep_message
from coffee_team.queue.completion import CompletionMixin
from coffee_team.queue.control import ControlMixin
from coffee_team.queue.delivery import DeliveryMixin
from coffee_team.queue.dependencies import DependencyMixin
from coffee_team.queue.enqueue import EnqueueMixin
from coffee_team.queue.factory import backend_for, open_database
from coffee_team.queue.failures import FailureMixin
from coffee_team.queue.instances import InstancesMixin
from coffee_team.queue.files import FileProblem
from coffee_team.queue.journal import JournalMixin
from coffee_team.queue.merges import MergesMixin
from coffee_team.queue.migrate import migrate
from coffee_team.queue.reporting import ReportingMixin
from coffee_team.queue.schedules import ScheduleMixin
from coffee_team.queue import sql_control
from coffee_team.queue.usage import UsageMixin
from coffee_team.queue.wake import drain
from coffee_team import retry
from coffee_team.taskstate import RetryPolicy


@dataclass(frozen=True)
class ClaimedTask:
    """A task as claim returns it."""
    id: int
    sender: str
    recipient: str
    type: str
    content: Any
    priority: int
    attempts: int
    created_at: float
    lease_expires_at: float
    traceparent: Optional[str] = None  # the sender's trace context (otel.py), if traced


# The options a reloaded team file changes on an open queue (the database, wake-ups and the
# restart state's host stay what the process opened).
LIVE_OPTIONS = ("agents", "handles", "max_queue_size", "retry", "escalate_after", "lease_seconds",
                "approve_before")


class CoreNeeds(Protocol):
    """What MessageQueue's own methods (below) use of its mixed-in parts: failing a claimed
    task no handler could read (completion.py, enqueue.py), and saying so of every task failed
    for good (failures.py)."""

    def _finish_locked(self, params: tuple, now: float, released: Optional[list] = None
                       ) -> bool: ...
    def _wake_recipients(self, rows: list[tuple]) -> None: ...
    def _failed_for_good(self, agent: str, task_id: int, task_type: str,
                         error: Optional[str], now: float) -> None: ...


def _jitter() -> float:
    """random.random(), imported on the first retry backoff: not at every agent's start."""
    import random
    return random.random()


class MessageQueue(CompletionMixin, EnqueueMixin, JournalMixin, ReportingMixin, ControlMixin,
                   DeliveryMixin, UsageMixin, DependencyMixin, ScheduleMixin, ApprovalsMixin,
                   FailureMixin, MergesMixin, InstancesMixin):
    """The queue's state (set here) over one backend, and its parts: claims, requeues,
    waits and leases here; sending (enqueue.py), completing (completion.py), task control
    (control.py), the journal (journal.py), reports (reporting.py), notification deliveries
    (delivery.py), LLM usage (usage.py), dependencies between tasks (dependencies.py),
    schedule slots (schedules.py), a person's approvals (approvals.py), tasks failed for good
    (failures.py), the review and merge queue (merges.py), which process holds each agent
    (instances.py). Each part's ``...Needs`` protocol
    lists all it uses of the state and of the other parts (tests/unit/test_queue_structure.py
    holds them to it)."""

    def __init__(
        self,
        database: Union[str, Any],  # a URL or path, or what factory.open_database() returned
        *,
        agents: Sequence[str] = (),
        handles: Optional[Mapping[str, Sequence[str]]] = None,
        max_queue_size: int = 1000,
        max_attempts: int = 3,
        lease_seconds: float = 300.0,
        wake_dir: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        retry: Optional[Mapping[str, RetryPolicy]] = None,
        escalate_after: Optional[float] = None,
        jitter: Optional[Callable[[], float]] = None,
        host: str = "",
        approve_before: Optional[Mapping[str, Sequence[str]]] = None,
        create: bool = True,
    ):
        # create: a missing SQLite file may be made where none ever was (files.may_create);
        # the team's processes but the watchdog, and the CLI but init/start, pass False
        self.db = (open_database(database, create=create)
                   if isinstance(database, (str, os.PathLike)) else database)
        self.backend = backend_for(self.db)
        self.host = host  # whose restart state (journal) this queue keeps
        migrate(self.db, host)
        self.backend.remember()  # the file and id opened: check_file() compares
        self.agents = tuple(agents)
        self.handles = {k: tuple(v) for k, v in (handles or {}).items()}
        self.max_queue_size = max_queue_size
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.retry = dict(retry or {})  # recipient -> RetryPolicy; none means no retries
        self.escalate_after = escalate_after
        self.jitter = jitter or _jitter  # 0..1 per backoff; tests inject a constant
        # recipient -> task types a person approves before they may be claimed
        self.approve_before = {k: tuple(v) for k, v in (approve_before or {}).items()}
        # After commit, and inside a write transaction (PostgreSQL's NOTIFY): backend.wake()
        self._wake, self._tx_wake = self.backend.wake(wake_dir)
        self._sql = self.backend.prepared  # the sql module's statements, translated once
        self._folded = self.backend.folded  # read on every call: an attribute of our own

    @classmethod
    def from_team(cls, team, **overrides) -> "MessageQueue":
        """Queue for a team.Team: its ``database_url`` and ``queue_options()`` (the one
        team → queue mapping lives with the team file; ``overrides`` win)."""
        return cls(team.database_url, **team.queue_options(**overrides))

    def adopt_team(self, team) -> None:
        """Route, limit and retry by a reloaded team (same database)."""
        options = team.queue_options()
        for name in LIVE_OPTIONS:
            setattr(self, name, options[name])

    def close(self) -> None:
        if self._wake:
            self._wake.close()
        self.backend.close()

    def check_file(self) -> Optional[FileProblem]:
        """Is the database at the path still the one this queue opened (identity.py)? None
        when it is; else the problem, which callers say in one line while they write nothing
        until it is gone (the same file back at the path). Never follows another file. The
        WAL (which keeps the path's name) goes into the file opened, and is emptied: a renamed
        file is whole under its new name, and nothing of it can be read into another."""
        problem = self.backend.file_problem()
        if problem is not None:
            self.backend.checkpoint()
        return problem

    def __enter__(self) -> "MessageQueue":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- consume ---------------------------------------------------------
    def claim(self, agent: str, limit: int = 1) -> list[ClaimedTask]:
        """Atomically take up to ``limit`` tasks for ``agent``, most urgent first.

        Tasks whose lease expired are re-claimable; once they used up
        max_attempts they are marked failed instead (never silently dropped).
        """
        return self._tasks_from(self._claim_rows(agent, limit), agent, limit)

    def _tasks_from(self, rows: list[tuple], agent: str, limit: int) -> list[ClaimedTask]:
        """Claimed rows as tasks, most urgent first; if every row was unreadable (each is
        failed by _claimed_tasks), the next ones are claimed instead."""
        tasks = self._claimed_tasks(rows, agent)
        if rows and not tasks:
            return self.claim(agent, limit)
        if len(tasks) > 1:
            tasks.sort(key=lambda t: (t.priority, t.id))
        return tasks

    def _claim_rows(self, agent: str, limit: int, *, ready_tried: bool = False) -> list[tuple]:
        now, backend = self.clock(), self.backend
        if self._folded and not ready_tried:  # row locks only: claim, no read first
            rows = backend.run(self._claim_ready(limit), self._ready_params(agent, limit, now)
                               ).fetchall()
            if rows:
                return rows
        # SQLite reads first, outside the write lock (a writer that finds it taken sleeps
        # >= 1 ms): an idle agent takes no lock, and the lease release runs only if a lease
        # had expired.  A lease that expires just after this read is released by the next
        # claim instead.
        pending, expired, paused = self._work_available(agent, now)
        if paused or not (pending or expired):
            return []
        if not (expired or self._folded):
            # one statement, its own transaction: SQLite takes the write lock as it starts
            return backend.run(self._claim(limit), (
                agent, now, now + self.lease_seconds, agent, now, limit)).fetchall()
        with backend.write_transaction():
            return self._release_and_claim(agent, limit, now, expired)

    def _claim(self, limit: int) -> str:
        """sql.CLAIM, in the backend's form for one task when that is all (sql_sqlite)."""
        return self._sql.CLAIM_ONE if limit == 1 else self._sql.CLAIM

    def _claim_ready(self, limit: int) -> str:
        """sql.CLAIM_READY, likewise."""
        return self._sql.CLAIM_READY_ONE if limit == 1 else self._sql.CLAIM_READY

    def _ready_params(self, agent: str, limit: int, now: float) -> tuple:
        """sql.CLAIM_READY's parameters."""
        return (agent, now, now + self.lease_seconds, agent, now, agent, now, agent, now, limit)

    def _release_and_claim(self, agent: str, limit: int, now: float, expired: bool) -> list:
        """Inside a write transaction: expired leases released (if any), then sql.CLAIM."""
        backend, max_attempts = self.backend, self.max_attempts
        if expired:
            released = backend.run(self._sql.RELEASE_EXPIRED, (
                max_attempts, max_attempts, max_attempts, now, max_attempts, agent, now)
            ).fetchall()
            for status, task_id, task_type, error in released:
                if status == "failed":
                    self._failed_for_good(agent, task_id, task_type, error, now)
            # Claims leave queue_depth alone (an upper bound); releases raise it.
            back = sum(1 for row in released if row[0] == "pending")
            if back:
                backend.run(self._sql.ADD_PENDING, (agent, back)).fetchone()
        return backend.run(self._claim(limit), (
            agent, now, now + self.lease_seconds, agent, now, limit)).fetchall()

    def _claim_locked(self, agent: str, limit: int, now: float) -> list[tuple]:
        """claim()'s rows inside the caller's write transaction (complete_and_claim)."""
        rows = self.backend.run(self._claim_ready(limit), self._ready_params(agent, limit, now)
                                ).fetchall()
        if rows:
            return rows
        _, expired, paused = self._work_available(agent, now)
        return self._release_and_claim(agent, limit, now, True) if expired and not paused else []

    def _claimed_tasks(self, rows: list[tuple], agent: str) -> list[ClaimedTask]:
        """sql.CLAIM's rows (ClaimedTask's fields in order) with the content decoded. A content
        no handler could read (nested too deep, stored by an older version) fails its task
        here, with the reason, instead of crashing every agent that claims it."""
        tasks = []
        for (task_id, sender, recipient, task_type, content, priority, attempts, created_at,
             lease_expires_at, trace) in rows:
            value, readable = read_stored(content)
            if not readable:
                self._fail_unread(task_id, agent, task_type,
                                  f"{too_deep_message('content')}; not run")
                continue
            tasks.append(ClaimedTask(task_id, sender, recipient, task_type, value, priority,
                                     attempts, created_at, lease_expires_at, trace))
        return tasks

    def _fail_unread(self, task_id: int, agent: str, task_type: str, error: str) -> None:
        now, released = self.clock(), []
        with self.backend.write_transaction():
            if self._finish_locked(("failed", now, None, error, task_id, agent), now, released):
                self._failed_for_good(agent, task_id, task_type, error, now)
        self._wake_recipients(released)  # tasks sent after it, with on_dependency_failure

    def requeue_agent(self, agent: str, unless_running: bool = False) -> int:
        """Put ``agent``'s in-progress tasks back to pending (after a crash).

        Tasks that already used max_attempts fail instead, so a task that
        kills its agent every time cannot cause an endless restart loop.

        ``unless_running`` (for whoever reaps a dead instance): on PostgreSQL, do nothing
        while an instance of the agent runs, on any host (it holds the agent's advisory lock:
        the dead one was a standby, or the new holder took over and requeued them itself).
        The check holds the lock for the transaction, so no instance can take over halfway.
        """
        now = self.clock()
        with self.backend.write_transaction():
            if unless_running and self.backend.instance_running(agent):
                return 0
            for task_id, recipient, task_type, error in self.backend.run(
                    self._sql.FAIL_HELD, (now, agent, self.max_attempts)).fetchall():
                self._failed_for_good(recipient, task_id, task_type, error, now)
            requeued = self.backend.run(self._sql.REQUEUE_HELD, (agent,)).fetchall()
            counts: dict[str, int] = {}
            for (recipient,) in requeued:
                counts[recipient] = counts.get(recipient, 0) + 1
            for recipient in sorted(counts):
                self.backend.run(self._sql.ADD_PENDING, (recipient, counts[recipient])).fetchone()
            if counts and self._tx_wake:
                self._tx_wake(self.backend, counts)
        if requeued and self._wake:
            self._wake.notify(counts)
        return len(requeued)

    def has_work(self, agent: str) -> bool:
        """Due pending tasks, or held ones whose lease expired, for an agent not paused."""
        pending, expired, paused = self._work_available(agent, self.clock())
        return bool((pending or expired) and not paused)

    def _work_available(self, agent: str, now: float) -> tuple:
        """sql.WORK_AVAILABLE: (due pending tasks, expired leases held, paused) for ``agent``."""
        return self.backend.run(self._sql.WORK_AVAILABLE, (
            agent, now, agent, now, agent, now)).fetchone()

    def _until_due(self, agent: str) -> float:
        """Seconds until ``agent``'s earliest not-yet-due pending task comes due (inf if none):
        a wake-up socket hears of new sends, but nobody sends when a delay runs out."""
        due = self.backend.run(self._sql.NEXT_DUE, (agent,)).fetchone()[0]
        return float("inf") if due is None else max(0.0, due - self.clock())

    def _until_resumed(self, agent: str) -> float:
        """Seconds until ``agent``'s pause ends by itself (inf: paused until resumed)."""
        row = self.backend.fetchone(sql_control.PAUSE_END, (agent,))
        return float("inf") if row is None or row[0] is None else max(0.0, row[0] - self.clock())

    def wait(self, agent: str, timeout: float) -> bool:
        """Block until ``agent`` may have work (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + max(0.0, timeout)
        listener = self._wake.listener(agent) if self._wake else None
        if listener is not None:
            listener = self._drained(agent, listener)  # bound before the check: none is lost
            if self.has_work(agent):
                return True
            remaining = deadline - time.monotonic()
            until_due = self._until_due(agent)
            if until_due > 0:
                remaining = min(remaining, until_due)
            else:  # due work, yet no work for us: paused, so wait for resume or its end
                remaining = min(remaining, self._until_resumed(agent))
            if remaining > 0 and select.select([listener], [], [], remaining)[0]:
                self._drained(agent, listener)
                return True
            return self.has_work(agent)  # e.g. a lease expired meanwhile
        for delay in retry.delays(0.01, 1.0):  # no wake-up channel: poll, ever less often
            if self.has_work(agent):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
        raise AssertionError("unreachable: retry.delays is endless")

    def _drained(self, agent: str, listener):
        """``listener`` emptied of wake-ups; a LISTEN connection the server closed meanwhile
        is replaced once, transparently (the caller re-checks the database anyway)."""
        try:
            drain(listener)
            return listener
        except Exception:
            if not getattr(listener, "closed", False):
                raise
        listener = self._wake.listener(agent)  # sees the closed one and connects anew
        drain(listener)
        return listener

    # -- leases of running tasks -----------------------------------------
    def renew_lease(self, task_id: int, agent: str, seconds: float) -> bool:
        """Extend a running task's lease to ``seconds`` from now. False when the task is no
        longer in progress for ``agent`` (cancelled, requeued, finished): stop working on it."""
        with self.backend.write_transaction():
            row = self.backend.run(self._sql.RENEW_LEASE,
                                  (self.clock() + seconds, task_id, agent)).fetchone()
        return row is not None

    def holds_task(self, task_id: int, agent: str) -> bool:
        """renew_lease's cheap read-only check: is the task still in progress for ``agent``?"""
        return self.backend.run(self._sql.HOLDS_TASK, (task_id, agent)).fetchone() is not None
