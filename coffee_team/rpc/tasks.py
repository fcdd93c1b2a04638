"""``coffee.*`` over tasks: sendMessage, getQueueStats, listTasks, getTask, and the controls
cancelTask, retryTask, pauseAgent, resumeAgent.

A mixin of CoffeeNamespaceRPCInterface (which provides ``team``, ``_queue_``, ``_agent``,
``_update`` and ``_fault``), kept apart so interface.py stays about the team and its
processes. Each method is one short read or write transaction, as every coffee.* method must
be inside supervisord's single thread; an unknown id is a BAD_ARGUMENTS fault, a transition the
task's state forbids a FAILED fault.
"""
from __future__ import annotations

import json
from typing import Any

from supervisor.xmlrpc import Faults, RPCError

from coffee_team.rpc.values import check_id, check_limit, kind_of, rpc_method, short


def task_struct(task: dict) -> dict:
    """A queue task dict as coffee.* returns it: content and result as JSON text (an XML-RPC
    struct cannot hold every JSON value, e.g. null or a bare string)."""
    task["content_json"] = json.dumps(task.pop("content"))
    result = task.pop("result")
    if result is not None:
        task["result_json"] = json.dumps(result)
    return task


class TasksRPC:
    team: Any
    _queue_: Any
    _agent: Any

    @rpc_method
    def sendMessage(self, sender, recipient, type, content, priority=5, dedupe_key="", delay=0,
                    after=(), on_dependency_failure="fail"):
        """ Enqueue one task (same routing, dedupe and backpressure as MessageQueue.send)

        @param string sender     Who sends it (1-100 characters)
        @param string recipient  An agent name, 'all' (broadcast), or '' to route by type
        @param string type       The task type (1-100 characters)
        @param struct content    A struct/array, or a string holding a JSON document (max 1 MB)
        @param int priority      0 (most urgent) to 9; default 5
        @param string dedupe_key Optional: a live task with the same key is not duplicated
        @param double delay      Optional: seconds (0 to 30 days) before it may be claimed
        @param array after       Optional: task ids; it waits until each completed
        @param string on_dependency_failure  Optional: fail (default) or run, when one of
                                 those fails or is cancelled
        @return int id           The task id (the first one for a broadcast)
        """
        for value, what in ((sender, "sender"), (recipient, "recipient"), (type, "type"),
                            (dedupe_key, "dedupe_key")):
            if not isinstance(value, str):
                raise RPCError(Faults.BAD_ARGUMENTS, f"{what} must be a string, got {kind_of(value)}")
        if recipient and recipient != "all":
            self._agent(recipient)
        from coffee_team.queue.content import load_json_text
        if isinstance(content, str):  # the queue checks either form the same way
            content = load_json_text(content, "content string")
        elif not isinstance(content, (dict, list, int, float, bool)):
            raise RPCError(Faults.BAD_ARGUMENTS,
                           f"content must be a struct, an array or a JSON string, got {kind_of(content)}")
        if not isinstance(after, (list, tuple)):
            raise RPCError(Faults.BAD_ARGUMENTS, f"after must be an array of task ids, got "
                                                 f"{kind_of(after)}")
        return self._queue_().send(sender, recipient or None, type, content, priority=priority,
                                   dedupe_key=dedupe_key or None, delay=delay, after=list(after),
                                   on_dependency_failure=on_dependency_failure)

    @rpc_method
    def getQueueStats(self):
        """ Return task counts per agent

        @return struct stats  {agent: {pending, in_progress, completed, failed, cancelled,
                              oldest_pending_age_s (left out when nothing is pending)}}
        """
        from coffee_team.taskstate import STATES
        stats = self._queue_().stats()
        empty = dict.fromkeys(STATES, 0)
        return {name: stats.get(name, dict(empty)) for name in (*self.team.names, *stats)}

    @rpc_method
    def listTasks(self, filter={}):
        """ List tasks, newest first

        Task structs hold id, sender, recipient, type, priority, status, attempts, created_at,
        completed_at, claimed_by, claimed_at, lease_expires_at, dedupe_key, error (each left
        out when unset), content_json and result_json (the JSON text of content / result).

        @param struct filter  Optional keys: status (waiting, awaiting_approval, pending, in_progress,
                              completed, failed, cancelled),
                              agent (the recipient), limit (1-1000, default 100)
        @return array tasks   An array of task structs
        """
        from coffee_team.taskstate import STATES
        if not isinstance(filter, dict):
            raise RPCError(Faults.BAD_ARGUMENTS, f"filter must be a struct, got {kind_of(filter)}")
        unknown = sorted(set(filter) - {"status", "agent", "limit"})
        if unknown:
            raise RPCError(Faults.BAD_ARGUMENTS, f"unknown filter key(s) "
                                                 f"{', '.join(map(short, unknown))} "
                                                 f"(allowed: status, agent, limit)")
        status = filter.get("status") or None
        if status is not None and status not in STATES:
            raise RPCError(Faults.BAD_ARGUMENTS, f"status must be one of "
                                                 f"{', '.join(STATES)}, got {short(status)}")
        agent = filter.get("agent") or None
        if agent is not None:
            self._agent(agent)
        limit = check_limit(filter.get("limit", 100))
        return [task_struct(task)
                for task in self._queue_().list_tasks(status=status, agent=agent, limit=limit)]

    @rpc_method
    def getTask(self, id):
        """ Return one task: the listTasks fields plus failures, run_after (when it may be
        claimed), escalated_at, errors (one {attempt, at, error} per failed attempt),
        waiting_on, parents and children (structs: id, status, recipient, type, resolved,
        on_dependency_failure)

        @param int id        The task id
        @return struct task  The task
        """
        queue, task_id = self._queue_(), check_id(id, "id")
        return task_struct({**queue.get_task(task_id), **queue.dependencies(task_id)})

    @rpc_method
    def cancelTask(self, id):
        """ Cancel a task awaiting approval, pending or in progress at once (its agent stops
        the handler when its lease renewal fails; a late completion is ignored)

        @param int id            The task id
        @return string previous  The state it was in (awaiting_approval, pending or
                                 in_progress)
        """
        return self._queue_().cancel_task(check_id(id, "id"))

    @rpc_method
    def retryTask(self, id):
        """ Put a failed, cancelled or delayed pending task back to pending now, attempts
        reset

        @param int id            The task id
        @return string previous  The state it was in (failed, cancelled or pending)
        """
        return self._queue_().retry_task(check_id(id, "id"))

    @rpc_method
    def pauseAgent(self, name, reason=""):
        """ Stop an agent claiming new tasks (its current one finishes); kept in the database
        until resumeAgent, across restarts of the agent and of supervisord

        @param string name      The agent name
        @param string reason    Optional: shown by getTeamStatus as paused_reason
        @return boolean result  Always True unless error
        """
        if not isinstance(reason, str):
            raise RPCError(Faults.BAD_ARGUMENTS, "reason must be a string")
        self._queue_().pause_agent(self._agent(name), reason=reason)
        return True

    @rpc_method
    def resumeAgent(self, name):
        """ Let a paused agent claim tasks again (it is woken at once)

        @param string name      The agent name
        @return boolean result  True if it was paused, False if it was not
        """
        return self._queue_().resume_agent(self._agent(name))
