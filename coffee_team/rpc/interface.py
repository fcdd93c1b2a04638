"""The ``coffee.*`` XML-RPC namespace, served by supervisord itself next to ``supervisor.*``.

Registered by the generated config::

    [rpcinterface:coffee]
    supervisor.rpcinterface_factory=coffee_team.rpc.interface:make_coffee_rpcinterface
    team=%(here)s/../data/team.yaml

Every method runs inside supervisord's single-threaded select loop, so none may block. The
rule: nothing here waits on the database for more than a fraction of a second. The queue is
opened once per interface (rpcqueue.py) with a 200 ms busy timeout, which on PostgreSQL is
also the statement and lock timeout, next to a connect timeout and TCP keepalives; each call
is one or a few short statements. What cannot be done at once is left to others or fails
fast: a requeue on reap that meets a lock is left to the watchdog (which requeues too), a call
that meets one is a FAILED fault ("retry the call"), and ``getTeamStatus`` shows the processes
with one ``database`` line instead of the restart columns. ``restartAgent`` waits for a stop
through supervisor's deferred-callback mechanism (``NOT_DONE_YET``) instead of sleeping.

Bad input never escapes as a traceback (which supervisor would answer with HTTP 500): it
becomes an XML-RPC Fault with supervisor's fault codes (``Faults.BAD_ARGUMENTS``,
``Faults.BAD_NAME``, ``Faults.INCORRECT_PARAMETERS``, ``Faults.FAILED``…) and a one-line
message. Return values are XML-RPC safe: no ``None`` (the key is left out, or ``''`` inside
an array), no integer outside ±2³¹, times as epoch floats, strings without XML-illegal
control characters.
"""
from __future__ import annotations

import time
from typing import Any

from supervisor import events
from supervisor.http import NOT_DONE_YET
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import RUNNING_STATES, STOPPED_STATES, SupervisorStates
from supervisor.xmlrpc import Faults, RPCError

from coffee_team import events as kinds
from coffee_team.errors import UnknownAgentError
from coffee_team.heartbeat import HeartbeatFiles
from coffee_team.rpc.approvals import ApprovalsRPC
from coffee_team.rpc.costs import CostsRPC
from coffee_team.rpc.journal import JournalRPC
from coffee_team.rpc.queue import RpcQueue, one_line
from coffee_team.rpc.signals import wake_on_signals
from coffee_team.rpc.tasks import TasksRPC
from coffee_team.rpc.values import expected_fault, kind_of
from coffee_team.rpc.values import rpc_method as _rpc
from coffee_team import restarts

API_VERSION = "1.0"


# Leaving RUNNING by any door: crashed, stopped (perhaps SIGKILLed after stopwaitsecs), died
# while starting.
REQUEUE_ON = (events.ProcessStateExitedEvent, events.ProcessStateStoppedEvent,
              events.ProcessStateBackoffEvent)


class CoffeeNamespaceRPCInterface(TasksRPC, JournalRPC, CostsRPC, ApprovalsRPC):
    """``coffee.*``: the team's queue, journal and status for automation."""

    def __init__(self, supervisord, team_path: str):
        self.supervisord = supervisord
        self.team_path = team_path
        self.team = None
        self.team_text = ""  # the file as loaded: `coffee-team apply` diffs the new one with it
        self.team_error = ""
        self._db: RpcQueue | None = None
        self._heartbeats = HeartbeatFiles()  # getTeamStatus parses only heartbeats that changed
        self._stopping = False
        self._subscribed = False
        self._supervisor = SupervisorNamespaceRPCInterface(supervisord)
        try:
            self._load_team()
        except Exception as exc:  # keep supervisord (and supervisor.*) serving
            self.team_error = str(exc)

    def _load_team(self) -> None:
        """Read and validate the team file; on success use it from now on (the queue is
        reopened on next use, with the new agents and routing)."""
        from coffee_team.team import parse_team_text, read_team_text
        text = read_team_text(self.team_path)
        team = parse_team_text(text, self.team_path)
        self.team, self.team_text, self.team_error = team, text, ""
        self._heartbeats.forget(team.names)
        old, self._db = self._db, RpcQueue(team, lambda: self._now(), self._log)
        if old is not None:
            old.close()
        if not self._subscribed:
            events.subscribe(events.ProcessStateEvent, self._on_process_state)
            events.subscribe(events.SupervisorStoppingEvent, self._on_supervisor_stopping)
            events.subscribe(events.Tick5Event, self._on_tick)
            self._subscribed = True

    def _on_tick(self, event) -> None:
        """Every 5 s, even without calls: take up a replaced database file (so no process of
        the team keeps the old one open) and report a deleted one (rpcqueue.py)."""
        if self._stopping or self._db is None or self._db.queue is None:
            return
        try:
            self._db.get()
        except Exception:  # said in the log once per episode; calls get the fault
            pass

    def _on_supervisor_stopping(self, event) -> None:
        """Close the database before supervisord shuts down or reloads: a reload closes every
        descriptor of the old generation, and SQLite must not lose its files (and locks) from
        under an open connection. Agents and the watchdog requeue their own work meanwhile."""
        self._stopping = True
        if self._db is not None:
            try:
                self._db.close()
            except Exception as exc:  # must never break supervisord's shutdown
                self.supervisord.options.logger.warn(f"coffee: closing the queue: {exc}")

    def _on_process_state(self, event) -> None:
        """Requeue a dead agent's tasks the moment supervisord reaps it.

        This runs inside supervisord's loop right when the exit is seen; the watchdog hears of
        it only on a later pass (up to seconds later), and its requeue stays as the fallback.
        No new instance can start here before this returns, and on a shared PostgreSQL an
        instance running on another host (the one that died was its standby, or it took over)
        keeps its work (``unless_running``), so nothing live is requeued. A database that
        cannot do it at once (locked, unreachable) leaves it to the watchdog.
        """
        if self._stopping or not isinstance(event, REQUEUE_ON):
            return
        name = "?"
        try:
            name, group = event.process.config.name, event.process.group
            if name not in self.team.names or group is None or group.config.name != name:
                return
            queue = self._queue_()
            count = queue.requeue_agent(name, unless_running=True)
            if count:
                queue.record_event(name, kinds.REQUEUED, count=count, by="supervisord")
        except Exception as exc:  # must never break supervisord's state machine
            self.supervisord.options.logger.warn(f"coffee: requeue of {name} left to the "
                                                 f"watchdog: {one_line(exc)}")

    # --- seams and plumbing ----------------------------------------------------------------

    def _now(self) -> float:
        return time.time()

    def _update(self, text: str) -> None:
        self.update_text = text
        mood = self.supervisord.options.mood
        if isinstance(mood, int) and mood < SupervisorStates.RUNNING:
            raise RPCError(Faults.SHUTDOWN_STATE)
        if self.team is None and text != "reloadTeam":  # a fixed file can still be loaded
            raise RPCError(Faults.FAILED, f"coffee.* unavailable: {self.team_error}")

    def _log(self, message: str) -> None:
        try:
            self.supervisord.options.logger.warn(f"coffee rpc: {message}")
        except Exception:
            pass

    @property
    def _queue(self):
        """The open MessageQueue, if any."""
        return self._db.queue if self._db is not None else None

    def _queue_(self):
        """The MessageQueue, opened on first use (after supervisord daemonized)."""
        if self._stopping:
            raise RPCError(Faults.SHUTDOWN_STATE, "supervisord is shutting down")
        return self._db.get()

    def _fault(self, method: str, exc: Exception) -> RPCError:
        fault = expected_fault(exc)
        if fault is None:  # not the caller's doing, nor the database's: worth a log line
            fault = RPCError(Faults.FAILED, one_line(exc))
            self._log(f"{method} failed: {one_line(exc)}")
        return fault

    def _agent(self, name: Any) -> str:
        if not isinstance(name, str):
            raise RPCError(Faults.BAD_ARGUMENTS, f"agent name must be a string, got {kind_of(name)}")
        try:
            self.team.require(name)
        except UnknownAgentError as exc:
            raise RPCError(Faults.BAD_NAME, str(exc)) from None
        return name

    def _process(self, name: str):
        group = self.supervisord.process_groups.get(name)
        process = group.processes.get(name) if group is not None else None
        if process is None:
            raise RPCError(Faults.BAD_NAME, f"{name} is not a supervisord program "
                                            f"(regenerate the config and reread)")
        return process

    # --- methods ---------------------------------------------------------------------------

    @_rpc
    def getAPIVersion(self):
        """ Return the version of the coffee.* API

        @return string version id
        """
        return API_VERSION

    @_rpc
    def getTeamStatus(self):
        """ Return everything `coffee-team status --json` shows

        Agents are ordered by priority. Keys of an agent struct: name, state, pid, priority,
        uptime_seconds, cpu_percent, rss_mb, heartbeat_age_seconds (left out when the agent
        never wrote a heartbeat), heartbeat_stale (older than heartbeat_stale_after),
        waiting_for and waiting_since (database or disk, while it waits), last_heartbeat,
        current_task (struct: id, type, started_at;
        left out when idle), agent_state (idle, working, stopping, standby... from the
        heartbeat), standby_for (struct: host, pid, holder; only for a standby instance),
        task_started_at, last_output_at (left out when idle), activity (e.g. "working on #42
        for 1h 12m"), restarts (crash restarts
        counted by the watchdog), given_up,
        next_restart_at (left out unless a backoff restart is pending), description,
        cost_today_usd and tokens_today (input + output) of its CLI runs this UTC day,
        last_failure (struct: task_id, type, error, at; left out when no task of the agent
        ever failed for good) and failed_24h (tasks failed for good in the last 24 hours);
        for an agent with a schedule, next_run (the earliest) and schedule (array of structs:
        name, cron, type, timezone, catch_up, next_run).

        @return struct status  uptime_seconds, agents_running (standbys apart),
                               agents_standby, agents_total,
                               supervisord_pid, now, agents (array of structs),
                               programs (the watchdog and web: name, state, pid,
                               description)
        """
        from coffee_team import status
        now = self._now()
        infos = self._supervisor.getAllProcessInfo()
        pid = self.supervisord.options.get_pid()
        extras, trouble = self._extras()
        data = status.collect(self.team, infos, pid, extra=extras, now=now,
                              beats=self._heartbeats)
        data["now"] = now
        if trouble:
            data["database"] = trouble
        return data

    def _extras(self) -> tuple[dict[str, dict[str, Any]], str]:
        """The columns kept in the database, or none and one line saying why."""
        from coffee_team.status import queue_columns
        try:
            return queue_columns(self._queue_(), self.team), ""
        except Exception as exc:  # the processes are shown whatever the database does
            return {}, one_line(exc)

    @_rpc
    def getLoadedTeam(self):
        """ Return the team file as this supervisord loaded it (at start or reloadTeam)

        @return struct team  path, text (the file's text), agents (array of names)
        """
        return {"path": str(self.team_path), "text": self.team_text,
                "agents": list(self.team.names)}

    @_rpc
    def reloadTeam(self):
        """ Re-read the team file: coffee.* routes, requeues and reports by it from now on

        A file that does not validate changes nothing (fault 30 with the reason). Programs
        are not touched: `coffee-team apply` adds, removes and restarts them.

        @return array agents  The names of the agents now in the team
        """
        from coffee_team.errors import TeamError
        try:
            self._load_team()
        except TeamError as exc:
            raise RPCError(Faults.FAILED, str(exc)) from None
        return list(self.team.names)

    @_rpc
    def restartAgent(self, name):
        """ Clear an agent's give-up and (re)start it: stop first if it runs

        Returns once the stop finished and the start was issued (the agent then goes through
        STARTING; follow it with supervisor.getProcessInfo). Never blocks supervisord: the
        stop is awaited with a deferred callback.

        @param string name      The agent name
        @return boolean result  Always True unless error
        """
        name = self._agent(name)
        process = self._process(name)
        queue = self._queue_()
        state = restarts.RestartState.from_dict(queue.restart_state(name))
        queue.save_restart_state(name, **restarts.on_cleared(state).to_dict())
        queue.record_event(name, kinds.MANUAL_RESTART, source="xmlrpc",
                           from_state=_state_name(process.get_state()))
        if process.get_state() in RUNNING_STATES:
            self._supervisor.stopProcess(name, False)
        if process.get_state() in STOPPED_STATES:
            return self._start(name)
        deadline = self._now() + float(getattr(process.config, "stopwaitsecs", 10)) + 5

        def onwait():
            process.stop_report()
            if process.get_state() in STOPPED_STATES:
                return self._start(name)
            if self._now() > deadline:
                raise RPCError(Faults.FAILED, f"{name} did not stop in time; state "
                                              f"{_state_name(process.get_state())}")
            return NOT_DONE_YET

        onwait.delay = 0.05
        onwait.rpcinterface = self
        return onwait

    def _start(self, name: str) -> bool:
        try:
            self._supervisor.startProcess(name, False)
        except RPCError as exc:
            if exc.code != Faults.ALREADY_STARTED:
                raise
        return True


# supervisor publishes only what the class itself defines (system.listMethods and methodHelp
# read __class__.__dict__), so the mixins' methods are copied in.
for _mixin in (TasksRPC, JournalRPC, CostsRPC, ApprovalsRPC):
    for _name, _method in vars(_mixin).items():
        if not _name.startswith("_") and callable(_method):
            setattr(CoffeeNamespaceRPCInterface, _name, _method)


def _state_name(state: int) -> str:
    from supervisor.states import getProcessStateDescription
    return getProcessStateDescription(state) or str(state)


def make_coffee_rpcinterface(supervisord, **config):
    """Factory named by ``[rpcinterface:coffee]``; ``team=`` is the team file's path."""
    team_path = config.get("team")
    if not team_path:
        raise ValueError("[rpcinterface:coffee] needs team=PATH (the team file)")
    wake_on_signals()
    return CoffeeNamespaceRPCInterface(supervisord, team_path)
