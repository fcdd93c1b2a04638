"""``coffee.*`` over the journal: restart history, events, notifications, metrics.

A mixin of CoffeeNamespaceRPCInterface (which provides ``_queue_`` and ``_agent``), kept apart
so rpcinterface.py stays about the team and its processes. Every method is one or two short
reads (ackNotification one short write).
"""
from __future__ import annotations

from typing import Any

from supervisor.xmlrpc import Faults, RPCError

from coffee_team import events as kinds
from coffee_team.rpc.values import MAX_LIMIT, check_days, check_id, check_limit, rpc_method


class JournalRPC:
    _queue_: Any
    _agent: Any

    @rpc_method
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

    @rpc_method
    def getEvents(self, since_id=0, limit=100):
        """ Return journal events with an id above since_id, oldest first

        @param int since_id  Last id already seen (0 for the beginning)
        @param int limit     At most this many (1-1000, default 100)
        @return array events An array of {id, ts, agent, kind, detail} structs
        """
        return self._queue_().events(since_id=check_id(since_id, "since_id"), limit=check_limit(limit))

    @rpc_method
    def getNotifications(self, since_id=0, limit=MAX_LIMIT):
        """ Return notifications with an id above since_id, oldest first

        @param int since_id  Last id already seen (0 for the beginning)
        @param int limit     At most this many (1-1000, default 1000)
        @return array notifications  {id, created_at, level, agent, title, message, sound,
                                      acknowledged} structs
        """
        return self._queue_().notifications(since_id=check_id(since_id, "since_id"),
                                            limit=check_limit(limit))

    @rpc_method
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

    @rpc_method
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
