"""The ``coffee.*`` XML-RPC namespace, served by supervisord itself next to ``supervisor.*``.

Registered by the generated config::

    [rpcinterface:coffee]
    supervisor.rpcinterface_factory=coffee_team.rpcinterface:make_coffee_rpcinterface
    team=%(here)s/../data/team.yaml

Every method runs inside supervisord's single-threaded select loop, so none may block: the
queue database is opened once per interface with a 200 ms busy timeout, each call is one or a
few short SQLite statements, and ``restartAgent`` waits for a stop through supervisor's
deferred-callback mechanism (``NOT_DONE_YET``) instead of sleeping.

Bad input never escapes as a traceback (which supervisor would answer with HTTP 500): it
becomes an XML-RPC Fault with supervisor's fault codes (``Faults.BAD_ARGUMENTS``,
``Faults.BAD_NAME``, ``Faults.INCORRECT_PARAMETERS``, ``Faults.FAILED``…) and a one-line
message. Return values are XML-RPC safe: no ``None`` (the key is left out, or ``''`` inside
an array), no integer outside ±2³¹, times as epoch floats, strings without XML-illegal
control characters.
"""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from supervisor import events
from supervisor.http import NOT_DONE_YET
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import RUNNING_STATES, STOPPED_STATES, SupervisorStates
from supervisor.xmlrpc import Faults, RPCError

from coffee_team import events as kinds
from coffee_team.errors import UnknownAgentError
from coffee_team.rpccosts import CostsRPC
from coffee_team.rpctasks import TaskControlRPC, task_struct
from coffee_team.rpcvalues import (MAX_CONTENT_DEPTH, MAX_DAYS, MAX_LIMIT, check_days, check_id,
                                   check_limit, kind_of, nesting_depth, short)
from coffee_team.rpcvalues import rpc_method as _rpc
from coffee_team.watchdog import policy

API_VERSION = "1.0"
BUSY_TIMEOUT_MS = 200


# Leaving RUNNING by any door: crashed, stopped (perhaps SIGKILLed after stopwaitsecs), died
# while starting.
REQUEUE_ON = (events.ProcessStateExitedEvent, events.ProcessStateStoppedEvent,
              events.ProcessStateBackoffEvent)


class CoffeeNamespaceRPCInterface(TaskControlRPC, CostsRPC):
    """``coffee.*``: the team's queue, journal and status for automation."""

    def __init__(self, supervisord, team_path: str):
        self.supervisord = supervisord
        self.team_path = team_path
        self.team = None
        self.team_error = ""
        self._queue = None
        self._stopping = False
        self._supervisor = SupervisorNamespaceRPCInterface(supervisord)
        try:
            from coffee_team.team import load_team
            self.team = load_team(team_path)
        except Exception as exc:  # keep supervisord (and supervisor.*) serving
            self.team_error = str(exc)
        if self.team is not None:
            events.subscribe(events.ProcessStateEvent, self._on_process_state)
            events.subscribe(events.SupervisorStoppingEvent, self._on_supervisor_stopping)

    def _on_supervisor_stopping(self, event) -> None:
        """Close the database before supervisord shuts down or reloads: a reload closes every
        descriptor of the old generation, and SQLite must not lose its files (and locks) from
        under an open connection. Agents and the watchdog requeue their own work meanwhile."""
        self._stopping = True
        queue, self._queue = self._queue, None
        if queue is not None:
            try:
                queue.close()
            except Exception as exc:  # must never break supervisord's shutdown
                self.supervisord.options.logger.warn(f"coffee: closing the queue: {exc}")

    def _on_process_state(self, event) -> None:
        """Requeue a dead agent's tasks the moment supervisord reaps it.

        This runs inside supervisord's loop right when the exit is seen; the watchdog hears of
        it only on a later pass (up to seconds later), and its requeue stays as the fallback.
        No new instance can start before this returns, so nothing live is requeued.
        """
        if self._stopping or not isinstance(event, REQUEUE_ON):
            return
        name = "?"
        try:
            name, group = event.process.config.name, event.process.group
            if name not in self.team.names or group is None or group.config.name != name:
                return
            queue = self._queue_()
            count = queue.requeue_agent(name)
            if count:
                queue.record_event(name, kinds.REQUEUED, count=count, by="supervisord")
        except Exception as exc:  # must never break supervisord's state machine
            self.supervisord.options.logger.warn(f"coffee: requeue of {name} failed: {exc}")

    # --- seams and plumbing ----------------------------------------------------------------

    def _now(self) -> float:
        return time.time()

    def _update(self, text: str) -> None:
        self.update_text = text
        mood = self.supervisord.options.mood
        if isinstance(mood, int) and mood < SupervisorStates.RUNNING:
            raise RPCError(Faults.SHUTDOWN_STATE)
        if self.team is None:
            raise RPCError(Faults.FAILED, f"coffee.* unavailable: {self.team_error}")

    def _log(self, message: str) -> None:
        try:
            self.supervisord.options.logger.warn(f"coffee rpc: {message}")
        except Exception:
            pass

    def _queue_(self):
        """The MessageQueue, opened on first use (after supervisord daemonized)."""
        if self._stopping:
            raise RPCError(Faults.SHUTDOWN_STATE, "supervisord is shutting down")
        if self._queue is None:
            from coffee_team.queue.db import open_database
            from coffee_team.queue import MessageQueue
            team = self.team
            database = open_database(team.database_url, busy_timeout_ms=BUSY_TIMEOUT_MS)
            self._queue = MessageQueue(
                database, agents=team.names,
                handles={a.name: tuple(a.handles) for a in team.agents},
                max_queue_size=team.settings.max_queue_size,
                wake_dir=team.wake_dir, clock=self._now)
        return self._queue

    def _fault(self, method: str, exc: Exception) -> RPCError:
        from coffee_team.errors import ContentError, TaskNotFound, TaskStateError
        from coffee_team.queue import QueueFullError, UnroutableError
        if isinstance(exc, TaskNotFound):
            return RPCError(Faults.BAD_ARGUMENTS, str(exc))
        if isinstance(exc, TaskStateError):
            return RPCError(Faults.FAILED, str(exc))
        if isinstance(exc, UnroutableError):
            return RPCError(Faults.BAD_NAME, str(exc))
        if isinstance(exc, QueueFullError):
            return RPCError(Faults.FAILED, f"queue full: {exc}")
        if isinstance(exc, ContentError):
            return RPCError(Faults.BAD_ARGUMENTS, str(exc))
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "locked" in text or "busy" in text:
            return RPCError(Faults.FAILED, f"database busy ({text}); retry the call")
        self._log(f"{method} failed: {type(exc).__name__}: {text}")
        return RPCError(Faults.FAILED, f"{type(exc).__name__}: {text}")

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
        never wrote a heartbeat), last_heartbeat, current_task (struct: id, type, started_at;
        left out when idle), agent_state (idle, working, stopping... from the heartbeat),
        task_started_at, last_output_at (left out when idle), activity (e.g. "working on #42
        for 1h 12m"), restarts (crash restarts
        counted by the watchdog), given_up,
        next_restart_at (left out unless a backoff restart is pending), description,
        cost_today_usd and tokens_today (input + output) of its CLI runs this UTC day.

        @return struct status  uptime_seconds, agents_running, agents_total,
                               supervisord_pid, now, agents (array of structs)
        """
        from coffee_team import status
        now = self._now()
        infos = self._supervisor.getAllProcessInfo()
        pid = self.supervisord.options.get_pid()
        extras = self._extras()
        data = status.collect(self.team, infos, pid, extra=extras, now=now)
        data["now"] = now
        return data

    def _extras(self) -> dict[str, dict[str, Any]]:
        from coffee_team.status import queue_columns
        return queue_columns(self._queue_(), self.team.names)

    @_rpc
    def sendMessage(self, sender, recipient, type, content, priority=5, dedupe_key="", delay=0):
        """ Enqueue one task (same routing, dedupe and backpressure as MessageQueue.send)

        @param string sender     Who sends it (1-100 characters)
        @param string recipient  An agent name, 'all' (broadcast), or '' to route by type
        @param string type       The task type (1-100 characters)
        @param struct content    A struct/array, or a string holding a JSON document (max 1 MB)
        @param int priority      0 (most urgent) to 9; default 5
        @param string dedupe_key Optional: a live task with the same key is not duplicated
        @param double delay      Optional: seconds (0 to 30 days) before it may be claimed
        @return int id           The task id (the first one for a broadcast)
        """
        for value, what in ((sender, "sender"), (recipient, "recipient"), (type, "type"),
                            (dedupe_key, "dedupe_key")):
            if not isinstance(value, str):
                raise RPCError(Faults.BAD_ARGUMENTS, f"{what} must be a string, got {kind_of(value)}")
        if recipient and recipient != "all":
            self._agent(recipient)
        from coffee_team.queue import MAX_CONTENT_BYTES
        if isinstance(content, str):
            if len(content) > MAX_CONTENT_BYTES:
                raise RPCError(Faults.BAD_ARGUMENTS, f"content is {len(content)} characters; "
                                                     f"the limit is {MAX_CONTENT_BYTES}")
            try:
                content = json.loads(content)
            except (ValueError, RecursionError) as exc:
                raise RPCError(Faults.BAD_ARGUMENTS,
                               f"content string is not valid JSON: {exc}") from None
        elif not isinstance(content, (dict, list, int, float, bool)):
            raise RPCError(Faults.BAD_ARGUMENTS,
                           f"content must be a struct, an array or a JSON string, got {kind_of(content)}")
        if nesting_depth(content, MAX_CONTENT_DEPTH) > MAX_CONTENT_DEPTH:
            raise RPCError(Faults.BAD_ARGUMENTS,
                           f"content is nested more than {MAX_CONTENT_DEPTH} levels deep")
        return self._queue_().send(sender, recipient or None, type, content, priority=priority,
                                   dedupe_key=dedupe_key or None, delay=delay)

    @_rpc
    def getQueueStats(self):
        """ Return task counts per agent

        @return struct stats  {agent: {pending, in_progress, completed, failed, cancelled,
                              oldest_pending_age_s (left out when nothing is pending)}}
        """
        from coffee_team.taskstate import STATES
        stats = self._queue_().stats()
        empty = dict.fromkeys(STATES, 0)
        return {name: stats.get(name, dict(empty)) for name in (*self.team.names, *stats)}

    @_rpc
    def listTasks(self, filter={}):
        """ List tasks, newest first

        Task structs hold id, sender, recipient, type, priority, status, attempts, created_at,
        completed_at, claimed_by, claimed_at, lease_expires_at, dedupe_key, error (each left
        out when unset), content_json and result_json (the JSON text of content / result).

        @param struct filter  Optional keys: status (pending, in_progress, completed, failed,
                              cancelled),
                              agent (the recipient), limit (1-1000, default 100)
        @return array tasks   An array of task structs
        """
        from coffee_team.queue.models import TASK_STATUSES
        if not isinstance(filter, dict):
            raise RPCError(Faults.BAD_ARGUMENTS, f"filter must be a struct, got {kind_of(filter)}")
        unknown = sorted(set(filter) - {"status", "agent", "limit"})
        if unknown:
            raise RPCError(Faults.BAD_ARGUMENTS, f"unknown filter key(s) "
                                                 f"{', '.join(map(short, unknown))} "
                                                 f"(allowed: status, agent, limit)")
        status = filter.get("status") or None
        if status is not None and status not in TASK_STATUSES:
            raise RPCError(Faults.BAD_ARGUMENTS, f"status must be one of "
                                                 f"{', '.join(TASK_STATUSES)}, got {short(status)}")
        agent = filter.get("agent") or None
        if agent is not None:
            self._agent(agent)
        limit = check_limit(filter.get("limit", 100))
        return [task_struct(task)
                for task in self._queue_().list_tasks(status=status, agent=agent, limit=limit)]

    @_rpc
    def getRestartHistory(self, agent, limit=50):
        """ Return an agent's restart state and its recent lifecycle events, newest first

        @param string agent  The agent name
        @param int limit     At most this many events (1-1000, default 50)
        @return struct history  agent, restarts, given_up, next_restart_at (left out unless
                                pending), last_crash_at, running_since, events (array of
                                {id, ts, agent, kind, detail})
        """
        name = self._agent(agent)
        limit = check_limit(limit)
        queue = self._queue_()
        events = queue.recent_events(name, kinds.RESTART_HISTORY, limit)
        state = queue.restart_state(name)
        return {"agent": name, "restarts": state["attempts"], "given_up": state["given_up"],
                "next_restart_at": state["next_restart_at"],
                "last_crash_at": state["last_crash_at"],
                "running_since": state["running_since"], "events": events}

    @_rpc
    def getEvents(self, since_id=0, limit=100):
        """ Return journal events with an id above since_id, oldest first

        @param int since_id  Last id already seen (0 for the beginning)
        @param int limit     At most this many (1-1000, default 100)
        @return array events An array of {id, ts, agent, kind, detail} structs
        """
        return self._queue_().events(since_id=check_id(since_id, "since_id"), limit=check_limit(limit))

    @_rpc
    def getNotifications(self, since_id=0, limit=MAX_LIMIT):
        """ Return notifications with an id above since_id, oldest first

        @param int since_id  Last id already seen (0 for the beginning)
        @param int limit     At most this many (1-1000, default 1000)
        @return array notifications  {id, created_at, level, agent, title, message, sound,
                                      acknowledged} structs
        """
        return self._queue_().notifications(since_id=check_id(since_id, "since_id"),
                                            limit=check_limit(limit))

    @_rpc
    def ackNotification(self, id):
        """ Acknowledge one notification

        @param int id          The notification id
        @return boolean result True if acknowledged now, False if it already was
        """
        queue = self._queue_()
        notification_id = check_id(id, "id")
        if queue.ack_notification(notification_id):
            return True
        if not queue.notification_exists(notification_id):
            raise RPCError(Faults.BAD_ARGUMENTS, f"no notification with id {notification_id}")
        return False

    @_rpc
    def getMetrics(self, days=7):
        """ Return task timing over the last days

        @param double days   Window in days (0 < days <= 3650, default 7)
        @return struct metrics  days, bottlenecks (the 10 slowest task types: task_type,
                                count, avg_ms, max_ms), agents (agent, count, avg_ms) and
                                states ({state: tasks created in the window})
        """
        days = check_days(days)
        queue = self._queue_()
        return {"days": days, "bottlenecks": queue.bottlenecks(days),
                "agents": queue.agent_performance(days), "states": queue.state_counts(days)}

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
        state = policy.RestartState.from_dict(queue.restart_state(name))
        queue.save_restart_state(name, **policy.on_cleared(state).to_dict())
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
for _mixin in (TaskControlRPC, CostsRPC):
    for _name, _method in vars(_mixin).items():
        if not _name.startswith("_") and callable(_method):
            setattr(CoffeeNamespaceRPCInterface, _name, _method)


def _state_name(state: int) -> str:
    from supervisor.states import getProcessStateDescription
    return getProcessStateDescription(state) or str(state)


_signal_wakeup = None  # this process's SignalWakeup dispatcher, replaced at each (re)load


def _wake_on_signals() -> None:
    """Make a SIGCHLD end supervisord's poll() at once.

    supervisord reaps children only when poll() returns, and a signal alone does not end it
    (PEP 475 retries the call), so a death whose pipes closed just before the child became a
    zombie is reaped up to a second late. Python's wakeup fd turns every signal into a byte on
    a pipe whose read end sits in supervisord's socket map, so poll() returns and it reaps.
    A reload (SIGHUP) closes our descriptors and builds the interfaces again: the stale
    dispatcher is dropped from the map (only if the slot is still ours) and a new pipe made.
    """
    global _signal_wakeup
    from supervisor.medusa import asyncore_25 as asyncore

    stale = _signal_wakeup
    if stale is not None and asyncore.socket_map.get(stale.fd) is stale:
        del asyncore.socket_map[stale.fd]
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    class SignalWakeup(asyncore.file_dispatcher):
        fd = read_end

        def writable(self):
            return False

        def handle_read(self):
            try:
                os.read(read_end, 4096)
            except OSError:
                pass

    _signal_wakeup = SignalWakeup(read_end)
    signal.set_wakeup_fd(write_end)


def make_coffee_rpcinterface(supervisord, **config):
    """Factory named by ``[rpcinterface:coffee]``; ``team=`` is the team file's path."""
    team_path = config.get("team")
    if not team_path:
        raise ValueError("[rpcinterface:coffee] needs team=PATH (the team file)")
    _wake_on_signals()
    return CoffeeNamespaceRPCInterface(supervisord, team_path)
