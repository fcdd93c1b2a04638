"""What the MCP server's tools do: the same functions the command line calls (ops/, the
queue, supervisord's XML-RPC), returning JSON-able values. No MCP SDK here (server.py wires
these to it), so they are called and tested like any library function.

A ``Desk`` serves one client: a person's (every tool) or a running agent's (``agent`` set,
from its ``--mcp-config``: it reads, sends tasks as its running task, and asks a person
about its tool calls, but decides nothing and starts or stops nothing).
"""
from __future__ import annotations

import contextlib
import getpass
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import client
from ..clock import parse_duration
from ..errors import ActionRefused, CoffeeError, UnknownAgentError
from ..ops import lifecycle, records
from ..taskstate import STATES, check_delay
from ..team import Team

MAX_LIST = 200
DECISIONS = ("approve", "deny")


class Refused(Exception):
    """A tool call that cannot be done: its one line goes back to the client as the error."""


@dataclass
class Desk:
    team: Team
    agent: Optional[str] = None          # the running agent this server was started for
    task_id: Optional[int] = None        # ... and its running task
    trace: Optional[str] = None          # ... whose trace context a send continues
    person: str = field(default_factory=getpass.getuser)
    clock: Callable[[], float] = time.time
    _queue: Any = None

    # --- plumbing -----------------------------------------------------------------------
    @property
    def queue(self) -> Any:
        if self._queue is None:
            from ..queue import MessageQueue
            self._queue = MessageQueue.from_team(self.team, clock=self.clock, create=False)
        return self._queue

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()

    def rpc(self, method: str, *args: Any) -> Any:
        return client.call(client.endpoint_for(self.team), method, *args, timeout=60)

    def open_queue(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext(self.queue)

    def agent_name(self, name: str) -> str:
        try:
            return self.team.require(name)[0]
        except UnknownAgentError as exc:
            raise Refused(str(exc)) from None

    def names(self, agents: Optional[list[str]]) -> tuple[str, ...]:
        return tuple(self.agent_name(a) for a in agents) if agents else self.team.names

    # --- reading --------------------------------------------------------------------------
    def team_status(self, detail: bool = False) -> Any:
        from .. import status
        data = lifecycle.team_status(self.team, self.rpc, self.open_queue)
        return data if detail else status.render(data)

    def agent_history(self, agent: str, limit: int = 20, log_bytes: int = 3000) -> dict:
        """Why it crashed: its crashes, exits and restarts, its restart state, the end of
        its log."""
        name = self.agent_name(agent)
        data = records.history(self.queue, name, max(1, min(limit, MAX_LIST)))
        data["restart_state"] = self.queue.restart_state(name)
        try:
            data["log_tail"] = records.log_tail(self.rpc, name, max(1, log_bytes))[0]
        except (ActionRefused, CoffeeError) as exc:  # the journal is there without supervisord
            data["log_tail"] = f"(log not available: {exc})"
        return data

    def logs_tail(self, agent: str, max_bytes: int = 8000) -> str:
        return records.log_tail(self.rpc, self.agent_name(agent), max(1, max_bytes))[0]

    def task_show(self, task_id: int) -> dict:
        return self.queue.get_task(task_id)

    # Lists come back inside an object: one JSON document a client reads as a whole (the SDK
    # would make a bare list into one content block per item).
    def task_list(self, status: Optional[str] = None, agent: Optional[str] = None,
                  limit: int = 20) -> dict:
        if status is not None and status not in STATES:
            raise Refused(f"status: one of {', '.join(STATES)}, got {status!r}")
        return {"tasks": self.queue.list_tasks(status=status,
                                               agent=self.agent_name(agent) if agent else None,
                                               limit=max(1, min(limit, MAX_LIST)))}

    def costs(self, by: str = "agent", since: str = "7d") -> dict:
        from ..queue.usage import COST_GROUPS
        if by not in COST_GROUPS:
            raise Refused(f"by: one of {', '.join(COST_GROUPS)}, got {by!r}")
        return self.queue.costs(self.clock() - records.since_seconds(since, "since"), by)

    def approvals_list(self, status: Optional[str] = "pending", limit: int = 50) -> dict:
        return {"approvals": self.queue.list_approvals(status or None,
                                                       max(1, min(limit, MAX_LIST)))}

    def merges_list(self, state: Optional[str] = None, limit: int = 50) -> dict:
        """The review and merge queue, newest first (without the checks' output)."""
        from ..taskstate import MERGE_STATES
        if state is not None and state not in MERGE_STATES:
            raise Refused(f"state: one of {', '.join(MERGE_STATES)}, got {state!r}")
        items = self.queue.merge_items(state=state, limit=max(1, min(limit, MAX_LIST)))
        return {"merges": [{k: v for k, v in item.items() if k != "output"} for item in items]}

    # --- sending --------------------------------------------------------------------------
    def send_task(self, recipient: str, type: str, content: Any = None, priority: int = 5,
                  delay: Optional[str] = None, dedupe_key: Optional[str] = None) -> dict:
        """One task (recipient an agent, 'all', or '' to route by type); from a running
        agent it is sent as the agent, from its running task."""
        try:
            seconds = check_delay(parse_duration(delay)) if delay else 0.0
        except ValueError as exc:
            raise Refused(f"delay: {exc}") from None
        message = dict(sender=self.agent or "mcp", recipient=recipient or None, type=type,
                       content=content, priority=priority, dedupe_key=dedupe_key, delay=seconds)
        if recipient == "all":
            ids = self.queue.send_many([message])
        else:
            ids = [self.queue.send(**message, sent_from=self.task_id, trace_parent=self.trace)]
        return {"ids": ids, "sender": message["sender"], "sent_from": self.task_id}

    # --- a person's actions -----------------------------------------------------------------
    def task_cancel(self, task_id: int) -> dict:
        return {"id": task_id, "status": "cancelled", "was": self.queue.cancel_task(task_id)}

    def task_retry(self, task_id: int) -> dict:
        return {"id": task_id, "status": "pending", "was": self.queue.retry_task(task_id)}

    def pause_agent(self, agent: str, reason: str = "") -> dict:
        name = self.agent_name(agent)
        self.queue.pause_agent(name, reason=reason)
        return {"agent": name, "paused": True, "reason": reason}

    def resume_agent(self, agent: str, raise_usd: Optional[float] = None,
                     raise_tokens: Optional[int] = None, no_budget_today: bool = False) -> dict:
        raising = records.budget_raise(raise_usd, raise_tokens, no_budget_today)
        return records.resume(self.team, self.queue, self.agent_name(agent), raising,
                              self.clock())

    def start_agents(self, agents: Optional[list[str]] = None) -> dict:
        names = self.names(agents)
        endpoint = client.endpoint_for(self.team)
        other = lifecycle.start(self.team, endpoint, self.rpc, self.open_queue, names,
                                launch=names if agents else ())
        if other is not None:  # another start (the command line's) runs the team already
            return {"started": [], "already_starting": other}
        return {"started": list(names)}

    def stop_agents(self, agents: list[str]) -> dict:
        if not agents:
            raise Refused("agents: name the agents to stop (the whole team stops with "
                          "`coffee-team stop`)")
        names = self.names(agents)
        lifecycle.stop_agents(self.rpc, self.open_queue, names)
        return {"stopped": list(names)}

    def restart_agent(self, agent: str) -> dict:
        name = self.agent_name(agent)
        lifecycle.restart_agent(self.team, self.rpc, self.open_queue, name)
        return {"restarted": name}

    def approval_decide(self, approval_id: int, decision: str, reason: str = "",
                        by: Optional[str] = None) -> dict:
        if decision not in DECISIONS:
            raise Refused(f"decision: approve or deny, got {decision!r}")
        return self.queue.decide_approval(approval_id, decision == "approve",
                                          by or f"{self.person} (mcp)", reason)


# The tools a client gets, by name: a person's desk has them all but the permission prompt;
# a running agent's reads, sends and asks.
READING = ("team_status", "agent_history", "logs_tail", "task_show", "task_list", "costs",
           "approvals_list", "merges_list")
PERSON_TOOLS = READING + ("send_task", "task_cancel", "task_retry", "pause_agent",
                          "resume_agent", "start_agents", "stop_agents", "restart_agent",
                          "approval_decide")
AGENT_TOOLS = READING + ("send_task",)
