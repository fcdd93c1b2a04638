"""The agent runtime: ``coffee-team agent run NAME`` is every program's command.

The main loop: periodic run → claim one task → run it → mark it → otherwise wait on the
queue, in one wait that ends when work comes, the next periodic run or heartbeat is due, or a
signal arrives: an idle agent wakes once per heartbeat interval. While a task runs, a heartbeat
thread (pulse.py) beats, also while a handler runs for hours, renews the running task's lease
and asks the loop to stop a handler whose task was cancelled or stalled (execution.py runs
tasks). SIGTERM stops claiming, lets the current task finish until the grace period runs out,
then requeues it. Whatever this process held in progress is requeued on the way out, so
nothing it claimed is ever lost.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time

from .. import events as kinds
from .. import retry
from ..retry import DB_RETRY_MAX
from ..errors import (AgentAlreadyRunningError, DatabaseUnavailable, HandlerError, TeamError,
                     describe_error)
from .execution import TaskExecution, make_runner
from ..handlers import Interrupted
from ..heartbeat import announce_ready, write_heartbeat
from ..layout import ensure_data_dirs
from ..liveness import IDLE, STOPPED, STOPPING, WORKING, database_wait
from ..output import log
from .pulse import Activity, Pulse
from ..parentwatch import ParentWatch, die_with_parent, trim_heap
from .locks import AgentLock, PgAgentLock, take_patiently
from .standby import Standby, StandbyEnded
from .startbeat import StartupBeat
from ..team import Team

IDLE_WAIT_CAP = 1.0  # seconds; bounds how late a dead parent is noticed without PDEATHSIG
FILE_CHECK_EVERY = 1.0  # seconds between checks that the database file is still the one open
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# Idle after start-up or work, at most this often (seconds), the C heap's freed pages go back:
# a trim and the page faults after it cost 110-175 us of CPU, as much as a task's queue calls.
TRIM_EVERY = 30.0


class Agent(TaskExecution):
    def __init__(self, team: Team, name: str, queue=None, clock=time.time, mono=time.monotonic):
        self.team = team
        self.spec = team.agent(name)
        self.name = name
        self.clock = clock  # wall: what is stamped (heartbeats, the database)
        self.mono = mono    # monotonic: what is due when (periodic runs, heartbeats, stalls)
        self.queue = queue
        self.runner = make_runner(team, self.spec)
        self.started_at = clock()
        self.activity = Activity(clock, mono)
        self.pending_abort: tuple[int | None, str, str] | None = None  # set by the pulse thread
        self.counts = {"tasks_completed": 0, "tasks_failed": 0, "tasks_requeued": 0,
                       "tasks_cancelled": 0, "tasks_deferred": 0, "periodic_runs": 0}
        # an llm agent's budget check, made before each claim (None: nothing to check)
        self.before_claim = getattr(self.runner, "before_claim", None)
        self.next_periodic = 0.0
        self.claimed_next: list = []  # claimed with the last completion (complete_and_claim)
        self.stopping = False
        self.parent = ParentWatch()
        self.supervised = bool(os.environ.get("SUPERVISOR_ENABLED"))
        # Without PDEATHSIG only polling notices that supervisord died; run_agent lifts the cap
        # when the kernel will signal it instead.
        self.wait_cap: float | None = IDLE_WAIT_CAP if self.supervised else None
        self.pulse: Pulse | None = None  # run() starts it
        from ..queue.db import database_errors  # not at import: main() may block psycopg2 first
        self.db_errors = database_errors()
        self.in_database = False
        self.trouble: set[str] = set()  # what is failing now, so each episode is logged once
        self.file_checked_at = 0.0
        self.row = None
        if team.is_postgres:  # agent_instances, for other hosts and pods (instance.py)
            from .instance import InstanceRow
            self.row = InstanceRow(self)

    # --- signals -------------------------------------------------------------------------
    def _on_stop_signal(self, signum, frame) -> None:
        parent_gone = self.supervised and not self.parent.parent_alive()
        first = not self.stopping
        self.stopping = True
        if self.in_database:
            return  # never cut a transaction in half: durable() stops at its next safe point
        if self.activity.state != WORKING or parent_gone:
            # Idle (or orphaned): leave the wait at once instead of at its next timeout.
            raise Interrupted("stop", "parent died" if parent_gone else "stop requested")
        if first:
            grace = max(1.0, self.team.settings.stop_wait_seconds - 2.0)
            remaining = signal.getitimer(signal.ITIMER_REAL)[0]
            if remaining == 0 or remaining > grace:
                signal.signal(signal.SIGALRM, self._abandon)
                signal.setitimer(signal.ITIMER_REAL, grace)

    def _abandon(self, signum, frame) -> None:
        if not self.in_database:  # otherwise the loop ends right after the write
            raise Interrupted("stop", "grace period over")

    def abort(self, task_id: int | None, reason: str, message: str) -> None:
        """From the pulse thread: stop the handler of ``task_id`` (if it still runs) by raising
        Interrupted(reason) in the main thread, which owns the handler and the outcome."""
        task = self.activity.task
        if self.activity.state != WORKING or task is None or task["id"] != task_id \
                or self.pending_abort is not None:
            return
        self.pending_abort = (task_id, reason, message)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)  # before the log,
        log(self.name, f"task {task_id}: {message}; stopping its handler")  # which may fail

    def _on_abort_signal(self, signum, frame) -> None:
        pending, task = self.pending_abort, self.activity.task
        if pending is None or self.in_database or self.activity.state != WORKING \
                or task is None or task["id"] != pending[0]:
            return  # the task ended meanwhile: its outcome is already decided
        raise Interrupted(pending[1], pending[2])

    # --- status ----------------------------------------------------------------------------
    def write_status(self) -> bool:
        """Write the heartbeat file and row; False if the file could not be (tried again soon)."""
        now = self.clock()
        activity = self.activity.fields()
        waiting = self.waiting_for()
        if self.stopping and activity["state"] != STOPPED:
            activity["state"] = STOPPING
        status = {"agent": self.name, "pid": os.getpid(), **activity,
                  "started_at": self.started_at, "last_heartbeat": now,
                  "trouble": sorted(self.trouble), "waiting_for": waiting,
                  "waiting_since": self.activity.db_since_wall if waiting == "database" else None,
                  **self.counts}
        try:  # the file; on PostgreSQL also the row, on its own thread (instance.py)
            (write_heartbeat if self.row is None else self.row.write)(
                self.team.status_dir, self.name, status)
        except OSError as exc:  # an unwritable status dir must not stop the work
            if exc.errno in DISK_FULL:
                self.problem("disk", f"waiting for disk: cannot write the heartbeat file in "
                                     f"{self.team.status_dir}: {exc.strerror}")
            else:
                self.problem("status", f"cannot write the heartbeat file in "
                                       f"{self.team.status_dir}: {exc.strerror or exc}")
            return False
        self.recovered("status")
        self.recovered("disk")
        return True

    def waiting_for(self) -> str | None:
        """What the agent waits for, as the heartbeat says it: "disk", "database" or None
        (the database also while a call of the main loop takes DB_WAIT_SHOWN or longer)."""
        waiting = database_wait(self.activity.db_since, "database" in self.trouble, self.mono())
        return "disk" if "disk" in self.trouble else "database" if waiting else None

    def problem(self, what: str, message: str) -> None:
        if what not in self.trouble:
            self.trouble.add(what)
            log(self.name, f"{message}; retrying")

    def recovered(self, what: str) -> None:
        if what in self.trouble:
            self.trouble.discard(what)
            log(self.name, f"{what} recovered")

    def durable(self, operation, *args, interruptible: bool = False, grace: float = 0.0,
                **kwargs):
        """Run a queue operation, retrying with backoff while the database is unusable
        (locked by another process, read-only, missing) instead of crashing the agent.

        Unless ``interruptible``, a stop signal waits for the operation to finish: raising
        from a signal handler mid-transaction would leave the transaction open. ``grace``:
        the seconds the operation takes by design (an idle wait), not waiting for the database.
        """
        try:
            for delay in retry.delays(0.1, DB_RETRY_MAX):
                self.in_database = not interruptible
                self.activity.database_call(True, grace)  # the heartbeat: no hang, a wait
                try:
                    self.check_database_file()
                    result = operation(*args, **kwargs)
                except self.db_errors as exc:
                    self.problem("database", f"database unavailable: {describe_error(exc)}")
                    self.in_database = False
                    if self.stopping:
                        raise Interrupted("stop", "stop requested while the database was unusable")
                    self.activity.tick()  # still alive: waiting for the database is not a hang
                    self.idle_beat()  # the heartbeat says it waits for the database
                    time.sleep(delay)
                    continue
                finally:
                    self.in_database = False
                self.recovered("database")
                return result
        finally:
            self.activity.database_call(False)

    def check_database_file(self) -> None:
        """Never work in a database that is no longer the one at its path (renamed, deleted
        or replaced: identity.py): DatabaseUnavailable until the same file is back, so
        durable() waits, claims nothing and writes nothing; said once per episode."""
        now = time.monotonic()
        if self.queue is None or \
                ("database" not in self.trouble and now - self.file_checked_at < FILE_CHECK_EVERY):
            return
        self.file_checked_at = now
        problem = self.queue.check_file()
        if problem is not None:
            raise DatabaseUnavailable(str(problem))

    def idle_beat(self) -> float:
        """The main loop's heartbeat while no task runs (the pulse thread's while one does);
        the seconds until the next one is due."""
        if self.pulse is None or self.activity.state == WORKING:
            return IDLE_WAIT_CAP
        return self.pulse.idle_beat(self.mono())

    def warn_stall(self, task: dict, silent_for: float, action: str) -> None:
        """One WARNING per stall (from the pulse thread, on its own connection)."""
        what = f"task #{task['id']}" if task["id"] is not None else "its periodic run"
        title = f"⚠️ {self.name} stalled: no output from {what} for {silent_for:.0f}s"
        log(self.name, title)
        self.queue.notify("WARNING", self.name, title,
                          f"{title} (stall_after {self.spec.stall_after:g}s, on_stall {action})")
        self.queue.record_event(self.name, kinds.STALLED, task_id=task["id"],
                                silent_for=round(silent_for, 1), action=action)

    def loop(self) -> None:
        self.next_periodic, worked, trimmed_at = self.mono(), True, float("-inf")
        while not self.stopping:
            self.activity.tick()
            if self.supervised and not self.parent.parent_alive():
                log(self.name, "supervisord is gone; exiting")
                return  # a task claimed with the last completion is requeued by _shutdown
            tasks, self.claimed_next = self.claimed_next, []
            if not tasks and self.mono() >= self.next_periodic:
                self.periodic()
                self.next_periodic, worked = self.mono() + self.spec.check_interval, True
                continue
            if not tasks and self.before_claim is not None:
                self.durable(self.before_claim)
            if not tasks:
                tasks = self.durable(self.queue.claim, self.name, 1)
            if tasks and self.stopping:
                break  # the stop came during the claim: _shutdown requeues the task
            if tasks:
                self.process(tasks[0])
                worked = True
                continue
            if worked and self.mono() >= trimmed_at + TRIM_EVERY:  # freed pages back (~0.2 MB)
                trim_heap()
                worked, trimmed_at = False, self.mono()
            self.activity.state = IDLE
            timeout = min(self.next_periodic - self.mono(), self.idle_beat())
            if self.wait_cap is not None:
                timeout = min(timeout, self.wait_cap)
            self.durable(self.queue.wait, self.name, max(0.0, timeout), interruptible=True,
                         grace=max(0.0, timeout))

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_abort_signal)
        s, spec = self.team.settings, self.spec
        pulse = self.pulse = Pulse(
            self, heartbeat_interval=s.heartbeat_interval, lease_seconds=self.queue.lease_seconds,
            # the loop ticks at least every heartbeat interval, or after a database wait of at
            # most the busy timeout: silence past stale_after means it is stuck
            loop_limit=s.heartbeat_stale_after, stall_after=spec.stall_after,
            on_stall=spec.on_stall)
        self.activity.state = IDLE
        self.idle_beat()
        if pulse.last_beat is not None:  # the first heartbeat: the boot's next group may start
            announce_ready(self.team.run_dir, self.name)
        pulse.start()
        if spec.memory_limit_mb:  # imported only by an agent that has a limit
            from .memguard import MemoryGuard
            self.memory_guard = MemoryGuard(self, spec.memory_limit_mb)
            self.memory_guard.start()
        try:
            self.loop()
        except Interrupted as exc:
            log(self.name, f"stopping: {exc}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_IGN)
            self.runner.kill()
            pulse.stop()
            if self.memory_guard is not None:
                self.memory_guard.stop()
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        self.activity.end(STOPPED)
        try:
            requeued = self.queue.requeue_agent(self.name)
        except self.db_errors as exc:  # the next instance (or the watchdog) requeues them
            log(self.name, f"could not requeue unfinished tasks: {exc}")
            requeued = 0
        if requeued:
            self.counts["tasks_requeued"] += requeued
            log(self.name, f"requeued {requeued} unfinished task(s)")
        self.write_status()  # and the row, "stopped": the next instance is no restart


def agent_lock(team: Team, name: str):
    """The singleton lock and the instance it took over from (None, or a singleton.Holder).

    On one host a file lock. On PostgreSQL an advisory lock, which holds across every host
    sharing the database: under supervisord an instance that finds the agent running on
    another host waits as a standby (standby.py) and takes over when that instance dies;
    by hand, or against an instance on this same host, it is refused.  Losing the lock's
    connection is survived by re-taking the lock (PgAgentLock's keeper thread); if another
    instance got it meanwhile this process exits at once, leaving the queue to the new holder.
    """
    if not getattr(team, "is_postgres", False):
        return AgentLock(team.lock_path(name)), None
    lock = PgAgentLock(team.database_url, name, host=team.host,
                       log=lambda message: log(name, message))
    with StartupBeat(team, name):  # the database may not answer: alive, not ready
        holder = take_patiently(lock, lambda message: log(name, message))
    if holder is None:
        return lock, None
    if lock.is_here(holder) or not os.environ.get("SUPERVISOR_ENABLED"):
        lock.release()
        raise AgentAlreadyRunningError(lock.refusal(holder))
    return lock, Standby(team, lock, holder).wait()


def run_agent(team: Team, name: str) -> int:
    """Entry point of ``coffee-team agent run``: lock, open the queue, loop, clean up."""
    from ..queue import MessageQueue

    spec = team.agent(name)
    signalled = bool(os.environ.get("SUPERVISOR_ENABLED")) and die_with_parent(  # or SIGTERM
        signal.SIGTERM, starter=team.supervisord_pidfile)  # now: it died while we started
    try:
        ensure_data_dirs(team)
    except OSError as exc:  # e.g. the status dir replaced by a file: heartbeats say so, work goes on
        log(spec.name, f"cannot prepare the data directories: {describe_error(exc)}")
    try:
        lock, predecessor = agent_lock(team, spec.name)
    except StandbyEnded as exc:  # stopped while standby: it held nothing
        log(spec.name, f"standby ended: {exc}")
        return 0
    with lock:
        agent = Agent(team, spec.name)
        if signalled:  # a dead parent sends SIGTERM: no need to poll for it
            agent.wait_cap = None
        with StartupBeat(team, spec.name):
            queue = agent.queue = agent.durable(MessageQueue.from_team, team, create=False)
        try:
            # Holding the lock proves no other instance runs: whatever is still in progress
            # under our name was orphaned by a predecessor that died.
            with StartupBeat(team, spec.name):
                orphans = agent.durable(queue.requeue_agent, spec.name)
            if hasattr(agent.runner, "attach"):  # an llm agent: role text, workspace, session
                agent.runner.attach(queue, agent.durable, agent.clock)
            if hasattr(agent.runner, "adopt_orphans"):  # a command's leftovers: ours to end
                agent.runner.adopt_orphans()
            log(spec.name, f"started (PID {os.getpid()}, priority {spec.priority}"
                           f"{f', requeued {orphans} orphaned task(s)' if orphans else ''})")
            if predecessor is not None:
                agent.durable(queue.record_event, spec.name, kinds.TOOK_OVER,
                              host=team.host, from_host=predecessor.host,
                              from_pid=predecessor.pid, requeued=orphans)
            return agent.run()
        finally:
            queue.close()


def main(team_path: str, name: str) -> int:
    """``coffee-team --team PATH agent run NAME`` without the CLI's imports (the agents' RSS).

    User errors are one line on stderr: exit 2 for a bad team file or name, 1 if the agent
    already runs.
    """
    from ..team.snapshot import load_team  # the compiled team while fresh, else the YAML
    try:
        team = load_team(team_path, check_schedules=False)  # the watchdog evaluates them
        team.agent(name)
    except TeamError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if not team.database_url.startswith("postgres"):
        # peewee imports psycopg2 just to probe for it: ~10 MB in every agent that never needs it
        sys.modules.setdefault("psycopg2", None)
    try:
        return run_agent(team, name)
    except TeamError as exc:  # e.g. an llm agent's worktree cannot be made
        print(f"Error: {team.path}: {exc}", file=sys.stderr)
        return 2
    except AgentAlreadyRunningError as exc:
        print(f"Error: AgentAlreadyRunningError: {exc}", file=sys.stderr)
        return 1
    except HandlerError as exc:  # e.g. the team file names a handler that does not import
        print(f"Error: {team.path}: agents.{name}.handler: {exc}", file=sys.stderr)
        return 2
