"""``coffee.*`` task control: getTask, cancelTask, retryTask, pauseAgent, resumeAgent.

A mixin of CoffeeNamespaceRPCInterface (which provides ``_queue_``, ``_agent``, ``_update`` and
``_fault``), kept apart so rpcinterface.py stays about the team. Each method is one short
write transaction, as every coffee.* method must be inside supervisord's single thread; an
unknown id is a BAD_ARGUMENTS fault, a transition the task's state forbids a FAILED fault.
"""
from __future__ import annotations

import json
from typing import Any

from coffee_team.rpc.values import check_id, rpc_method


def task_struct(task: dict) -> dict:
    """A queue task dict as coffee.* returns it: content and result as JSON text (an XML-RPC
    struct cannot hold every JSON value, e.g. null or a bare string)."""
    task["content_json"] = json.dumps(task.pop("content"))
    result = task.pop("result")
    if result is not None:
        task["result_json"] = json.dumps(result)
    return task


class TaskControlRPC:
    _queue_: Any
    _agent: Any

    @rpc_method
    def getTask(self, id):
        """ Return one task: the listTasks fields plus failures, run_after (when it may be
        claimed), escalated_at and errors (one {attempt, at, error} per failed attempt)

        @param int id        The task id
        @return struct task  The task
        """
        return task_struct(self._queue_().get_task(check_id(id, "id")))

    @rpc_method
    def cancelTask(self, id):
        """ Cancel a pending or in-progress task at once (its agent stops the handler when
        its lease renewal fails; a late completion is ignored)

        @param int id            The task id
        @return string previous  The state it was in (pending or in_progress)
        """
        return self._queue_().cancel_task(check_id(id, "id"))

    @rpc_method
    def retryTask(self, id):
        """ Put a failed or cancelled task back to pending now, attempts reset

        @param int id            The task id
        @return string previous  The state it was in (failed or cancelled)
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
        from supervisor.xmlrpc import Faults, RPCError
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
