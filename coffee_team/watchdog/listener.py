"""The watchdog event listener: ``[eventlistener:watchdog]`` in the generated config.

- launches the team in priority order when supervisord reaches RUNNING (at its start when
  it finds supervisord's boot under way: policy.is_boot), each group once the previous one
  is ready (launch.py; supervisor alone would spawn every program at once);
- restarts crashed agents after ``restart_backoff × 2ⁿ`` and gives up after
  ``max_restart_attempts`` with one silent CRITICAL notification (supervisor alone respawns
  instantly forever);
- requeues a dead agent's tasks at once; checks heartbeats and CPU/RSS of each process tree;
- re-reads the team file on SIGHUP (``coffee-team apply`` sends it through
  ``supervisor.signalProcess``): the handler only sets a flag, the loop reloads within a
  second, and a team file that does not validate keeps the old team (logged, and a
  ``team_reload_failed`` event). Editing the file alone changes nothing until it is applied;
- beside it (main.py starts them): notifications handed to ``team.notify`` targets
  (coffee_team.notify) and the merge queue's merges (coffee_team.merge.merger), each a thread.

Restart state lives in the database: killing the listener or supervisord keeps pending
backoffs and counts. The loop keeps it in memory too (``known_states``) and never waits on the
database (main.py hands it a dbworker.PatientQueue): a database that does not answer (a
partition) delays no restart; what the loop writes meanwhile is written when it answers. Time spans are monotonic; wall-clock steps: clocksteps.py. stdin/stdout,
the RPC proxy and the queue are injected (superlance style); logging goes to stderr only,
because stdout is the protocol. The listener never stops itself.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from supervisor.xmlrpc import Faults

from coffee_team import otel
from coffee_team import events as kinds
from coffee_team.heartbeat import HeartbeatFiles, ReadyInbox
from coffee_team import restarts
from coffee_team.watchdog import policy
from coffee_team.watchdog.checks import HealthChecks
from coffee_team.watchdog.clocksteps import ClockSteps
from coffee_team.watchdog.health import TreeSampler
from coffee_team.watchdog.launch import Launch
from coffee_team.watchdog.protocol import Event, ListenerProtocol, MalformedEvent
from coffee_team.watchdog.work import WorkOverTime

MAX_IDLE_WAIT = 1.0    # wake at least this often so a due restart is at most ~1 s late
CLEANUP_EVERY = 3600.0  # seconds between removals of finished tasks older than the retention
# the timers re-read every restart state at least this often (restarts.restart_states_due)
RESTART_STATES_REFRESH = 30.0
GONE = ("EXITED", "STOPPED", "FATAL", "BACKOFF")
# A start refused for good: the agent already runs, or is no program of this supervisord.
FINAL_FAULTS = (Faults.ALREADY_STARTED, Faults.BAD_NAME)


class Watchdog(Launch, HealthChecks, ClockSteps, WorkOverTime):
    def __init__(self, team, protocol: ListenerProtocol, rpc: Any, queue: Any,
                 clock: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic,
                 launch_only: tuple[str, ...] = (),
                 load_team: Callable[[], Any] | None = None,
                 ready_inbox: Callable[[], Any] | None = None):
        self.protocol = protocol
        self.rpc = rpc
        self.queue = queue
        self.use_clocks(clock, mono)
        self.launch_only = launch_only
        self.load_team = load_team
        self.ready_inbox = ready_inbox or (lambda: ReadyInbox(self.team.run_dir))
        self.reload_requested = False
        self.sampler = TreeSampler()
        self.heartbeat_files = HeartbeatFiles()
        self.heartbeat_seen: dict[str, str] = {}
        self.heartbeat_next_look: dict[str, float | None] = {}
        self.beats: dict[str, policy.BeatSeen] = {}
        # restart states as last read and since saved; read_at None: read them at the next tick
        self.known_states: dict[str, restarts.RestartState] = {}
        self.states_read_at: float | None = None
        self.over_limit: dict[str, int] = {}
        self.memory_restart: set[str] = set()
        self.uncounted: set[str] = set()  # stopped as hung while waiting for the database
        self.use_team(team)
        self.next_health_check = mono() + team.settings.health_check_interval
        self.next_cleanup = mono()
        self.disk_full_at: float | None = None  # last health check that found the disk full (mono)
        self.disk_is_full = False
        self.file_trouble: str | None = None    # the database file problem being reported
        from coffee_team.queue.db import database_errors  # peewee's, once a queue is open
        self.db_errors = database_errors()
        self.db_away = False  # the database did not answer: said once, until it does again

    def use_team(self, team) -> None:
        """Work with ``team`` from now on (at start, and when the team file is reloaded)."""
        self.team = team
        s = team.settings
        self.policy = restarts.RestartPolicy(base_delay=s.restart_backoff,
                                           max_attempts=s.max_restart_attempts,
                                           reset_after=s.restart_reset_after,
                                           max_delay=s.restart_backoff_max)
        self.names = set(team.names)
        for memory in (self.heartbeat_seen, self.heartbeat_next_look, self.over_limit,
                       self.known_states, self.beats, self.unshifted):
            for name in set(memory) - self.names:
                del memory[name]
        self.heartbeat_files.forget(self.names)
        self.memory_restart &= self.names
        self.states_read_at = None
        self.use_work(team)

    def request_reload(self, *_signal_args: Any) -> None:
        """SIGHUP handler: only a flag, so a signal never lands in the middle of a decision."""
        self.reload_requested = True

    def reload_if_requested(self) -> None:
        if not self.reload_requested or self.load_team is None:
            return
        self.reload_requested = False
        try:
            team = self.load_team()
        except Exception as exc:  # a bad file keeps the team that works
            self.log(f"team file not reloaded (keeping {len(self.names)} agents): {exc}")
            self.event(None, kinds.TEAM_RELOAD_FAILED, error=str(exc))
            return
        added, removed = sorted(set(team.names) - self.names), sorted(self.names - set(team.names))
        self.use_team(team)
        self.queue.adopt_team(team)
        self.log(f"team reloaded: {len(self.names)} agents (added {added or '-'}, "
                 f"removed {removed or '-'})")
        self.event(None, kinds.TEAM_RELOADED, agents=sorted(self.names))

    def log(self, message: str) -> None:
        self.protocol.log(message)

    # --- restart state (the database is the source of truth) ------------------------------
    def state(self, name: str) -> restarts.RestartState:
        """The agent's restart state from the database; while it does not answer, as the
        watchdog last knew it (what it saved since is in known_states)."""
        try:
            row = self.queue.restart_state(name)
        except self.db_errors as exc:
            self.database_away(exc)
            return self.known_states.get(name, restarts.RestartState())
        return restarts.RestartState.from_dict(row)

    def states(self) -> dict[str, restarts.RestartState]:
        """Every agent's restart state in one query; the timers remember it (known_states).
        While the database does not answer: the ones known (read again at the next tick)."""
        read_at = self.mono()
        try:
            rows = self.queue.restart_states(sorted(self.names))
        except self.db_errors as exc:
            self.database_away(exc)
            self.states_read_at = None
            return {name: self.known_states.get(name, restarts.RestartState())
                    for name in self.names}
        self.database_back()
        states = {name: restarts.RestartState.from_dict(row) for name, row in rows.items()}
        self.known_states, self.states_read_at = dict(states), read_at
        return states

    def database_away(self, exc: BaseException) -> None:
        if not self.db_away:
            self.db_away = True
            self.log(f"database unavailable ({type(exc).__name__}: {str(exc).strip()[:200]}); "
                     f"restarts go on from the restart state in memory, writes wait for it")

    def database_back(self) -> None:
        if self.db_away:
            self.db_away = False
            self.log("database answers again")

    def save(self, name: str, state: restarts.RestartState) -> None:
        self.queue.save_restart_state(name, **state.to_dict())
        self.known_states[name] = state
        self.unshifted.pop(name, None)  # stamped by the clock of now (watch_clock)

    def event(self, name: str | None, kind: str, **detail: Any) -> None:
        self.queue.record_event(name, kind, **detail)
        otel.lifecycle(name, kind, detail)  # restarts, give-ups, health: spans when tracing

    # --- launch (launch.py) ----------------------------------------------------------------
    def _start(self, name: str, kind: str, **detail: Any) -> Exception | None:
        """startProcess(name, wait=False), logged; the failure, or None once it is started."""
        failure = self._spawn(name)
        self._record_start(name, failure, kind, **detail)
        return failure

    def _spawn(self, name: str) -> Exception | None:
        try:
            self.rpc.supervisor.startProcess(name, False)
        except Exception as exc:  # ALREADY_STARTED, SPAWN_ERROR…: the caller carries on
            return exc
        return None

    def _record_start(self, name: str, failure: Exception | None, kind: str,
                      **detail: Any) -> None:
        if failure is not None:
            self.log(f"start {name} failed: {failure}")
            self.event(name, kinds.START_FAILED, error=str(failure))
        else:
            self.log(f"{kind} {name}")
            self.event(name, kind, **detail)

    # --- process state events --------------------------------------------------------------
    def on_process_state(self, event: Event) -> None:
        payload = event.payload_headers
        name = payload.get("processname", "")
        if name not in self.names or payload.get("groupname", name) != name:
            return
        new_state = event.eventname.removeprefix("PROCESS_STATE_")
        pid = int(payload.get("pid", 0) or 0)
        now = self.clock()
        if new_state == "RUNNING":
            self.save(name, restarts.on_running(self.state(name), now))
            self.event(name, kinds.RUNNING, pid=pid)
            return
        if new_state not in GONE:
            return
        if new_state != "BACKOFF":
            self.requeue(name)
        if new_state == "EXITED":
            expected = payload.get("expected") == "1"
            self.event(name, kinds.EXITED, expected=expected, from_state=payload.get("from_state"),
                       pid=pid)
            if policy.is_crash(payload.get("from_state", ""), expected, False):
                self.crashed(name, now, reason="exited unexpectedly")
        elif new_state == "STOPPED":
            self.event(name, kinds.STOPPED)
            self.after_stop(name, now)
        elif new_state == "FATAL":
            state, decision = restarts.on_fatal(self.state(name), now, self.policy)
            self.save(name, state)
            if decision.kind == restarts.GIVE_UP:
                self.give_up(name, "could not start (supervisor FATAL: startretries exhausted)")
        else:
            self.event(name, kinds.BACKOFF)  # early exit: supervisor retries up to startretries

    def requeue(self, name: str) -> None:
        # A fresh instance requeues its own orphans at start; don't touch a live one's work
        # (here, or on another host sharing the database: unless_running).
        try:
            if self.rpc.supervisor.getProcessInfo(name)["statename"] in ("RUNNING", "STARTING"):
                return
            count = self.queue.requeue_agent(name, unless_running=True)
        except Exception as exc:  # the crash itself must still be handled; leases are the net
            self.log(f"requeue of {name} failed: {type(exc).__name__}: {exc}")
            return
        if count:
            self.log(f"requeued {count} task(s) of {name}")
            self.event(name, kinds.REQUEUED, count=count)

    def after_stop(self, name: str, now: float) -> None:
        """A stop we asked for ourselves (hung agent, memory limit) continues here."""
        counted = name not in self.uncounted  # stopped while waiting for the database
        self.uncounted.discard(name)
        transition = restarts.on_stopped(self.state(name), now, self.policy, counted)
        if transition is not None:
            self.decided(name, *transition, reason="hung (heartbeat stopped)")
        elif name in self.memory_restart:  # over memory_limit_mb, or its trend (work.py)
            self.memory_restart.discard(name)
            self._start(name, kinds.RESTARTED, reason=kinds.MEMORY_LIMIT)

    def crashed(self, name: str, now: float, reason: str) -> None:
        self.decided(name, *restarts.on_exit(self.state(name), now, self.policy), reason=reason)

    def decided(self, name: str, state: restarts.RestartState, decision: restarts.Decision,
                reason: str) -> None:
        self.save(name, state)
        self.event(name, kinds.CRASH, reason=reason, attempt=decision.attempt)
        if decision.kind == restarts.RESTART:
            self.log(f"{name} {reason}; restart {decision.attempt} in {decision.delay:g}s")
            self.event(name, kinds.RESTART_SCHEDULED, delay=decision.delay, due_at=decision.due_at,
                       attempt=decision.attempt)
        elif decision.kind == restarts.GIVE_UP:
            self.give_up(name, f"{reason}; reached max restarts ({self.policy.max_attempts})")

    def give_up(self, name: str, why: str) -> None:
        self.log(f"🚨 {name} given up: {why}")
        self.event(name, kinds.GIVEN_UP, reason=why)
        self.queue.notify("CRITICAL", name, f"{name} given up", f"{name}: {why} - NOT restarting")
        if name != "project_manager" and "project_manager" in self.names:
            try:
                self.queue.send("watchdog", "project_manager", "agent_failed",
                                {"agent": name, "reason": why}, priority=1)
            except Exception as exc:  # e.g. project_manager's queue is full: the notification stands
                self.log(f"agent_failed message not sent: {exc}")

    # --- timers ----------------------------------------------------------------------------
    def restart_due(self) -> None:
        now = self.clock()
        since_read = None if self.states_read_at is None else self.mono() - self.states_read_at
        if not restarts.restart_states_due(since_read, self.known_states, now,
                                           RESTART_STATES_REFRESH):
            return
        states = self.states()
        for name in restarts.due_restarts(states, now):
            due_at = states[name].next_restart_at
            self.save(name, restarts.on_restart_issued(states[name]))
            failure = self._start(name, kinds.RESTARTED, attempt=states[name].attempts,
                                  late_by=round(now - due_at, 3))
            if failure is not None and getattr(failure, "faultCode", None) not in FINAL_FAULTS:
                # supervisord did not answer: try again shortly rather than leave it dead
                self.save(name, restarts.on_restart_unanswered(states[name], now + MAX_IDLE_WAIT))

    def seconds_to_next_timer(self) -> float:
        now = self.clock()
        waits = [self.next_health_check - self.mono(), MAX_IDLE_WAIT]
        for wait in (restarts.next_wakeup(self.known_states, now), self.schedule_wakeup(now)):
            if wait is not None:
                waits.append(wait)
        return max(0.0, min(waits))

    def cleanup(self) -> None:
        self.next_cleanup = self.mono() + CLEANUP_EVERY
        removed = self.queue.cleanup(self.team.settings.cleanup_interval_hours * 3600)
        if removed:
            self.log(f"cleanup: removed {removed} finished task(s)")

    def database_file_usable(self) -> bool:
        """False while the database at the path is not the one opened (renamed, deleted,
        replaced: identity.py): the timers write nothing; one line per episode."""
        try:
            problem = self.queue.check_file()
        except self.db_errors as exc:  # the worker waits on the database (PatientQueue)
            self.database_away(exc)
            return True
        text = None if problem is None else str(problem)
        if text != self.file_trouble:
            self.log(f"{text}; restarts, schedules and health checks wait" if problem
                     else "database file back")
            self.file_trouble = text
        return problem is None

    def on_timer(self) -> None:
        self.watch_clock()
        self.reload_if_requested()
        if not self.database_file_usable():
            return
        self.restart_due()  # never waits on the database
        self._guarded("schedules", self.send_due_slots)
        if restarts.is_due(self.next_health_check, self.mono(),
                           self.team.settings.health_check_interval):
            self._guarded("health check", self.health_check)
        if self.mono() >= self.next_cleanup:
            self._guarded("cleanup", self.cleanup)

    # --- the protocol loop -----------------------------------------------------------------
    def handle(self, event: Event) -> None:
        self.watch_clock()
        if event.eventname == "SUPERVISOR_STATE_CHANGE_RUNNING" and not self.launched:
            self.launch_team()  # not again when it was launched at start (policy.is_boot)
        elif event.eventname.startswith("PROCESS_STATE_"):
            self.on_process_state(event)

    def _guarded(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except self.db_errors as exc:  # a database away is said once per episode
            if not self.db_away:
                self.log(f"error in {what}: {type(exc).__name__}: {exc}")
            self.database_away(exc)
        except Exception as exc:  # an RPC hiccup must not kill the watchdog
            self.log(f"error in {what}: {type(exc).__name__}: {exc}")

    def run(self, launch: bool = False, already_ready: bool = False) -> int:
        """Serve supervisord's events until it closes our stdin. ``launch``: supervisord
        reported RUNNING before we could work (see startup.py), so launch the team now."""
        if not already_ready:
            self.protocol.ready()
        self._guarded("clock", self.bring_back_future_tasks)
        if launch:
            self._guarded("launch", self.launch_team)
        while True:
            self._guarded("timers", self.on_timer)
            try:
                timeout = self.seconds_to_next_timer()
            except Exception as exc:  # e.g. database is locked: fall back to the idle cadence
                self.log(f"error computing the next timer: {type(exc).__name__}: {exc}")
                timeout = MAX_IDLE_WAIT
            try:
                event = self.protocol.read_event(timeout=timeout)
            except EOFError:
                self.log("stdin closed (supervisord is shutting down); exiting")
                return 0
            except MalformedEvent as exc:
                self.log(f"malformed event ignored: {exc}")
                self.protocol.fail()
                self.protocol.ready()
                continue
            if event is None:
                continue  # still READY: a timeout is not an answer to supervisord
            self._guarded(event.eventname, lambda: self.handle(event))
            self.protocol.ok()
            self.protocol.ready()
