"""The MCP server (the official ``mcp`` SDK, 2.x: ``MCPServer``): the Desk's tools, and for a
running agent's CLI the permission prompt (``approve``), over stdio.

Each tool is a Desk method (tools.py) run on a worker thread (the SDK's way with a plain
function: the database and supervisord calls block); what a person can get wrong comes back
as the tool's error in one line, never a traceback.
"""
from __future__ import annotations

import functools
import xmlrpc.client
from typing import Any, Callable, Optional

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..errors import CoffeeError, error_line
from . import approve
from .tools import AGENT_TOOLS, PERSON_TOOLS, Desk, Refused

INSTRUCTIONS = (
    "coffee-team runs a team of AI agents under supervisord. These tools read the team "
    "(status, an agent's crash history and log, tasks, costs, approvals waiting for a person, "
    "the merge queue) "
    "and act on it (send a task, cancel or retry one, pause, resume, start, stop, restart "
    "agents, approve or deny a request), exactly as the coffee-team command line does.")

DESCRIPTIONS = {
    "team_status": "Every agent: state, PID, uptime, CPU, memory, heartbeat, what it works "
                   "on, restarts, give-ups, pauses, cost today (detail=true: as JSON).",
    "agent_history": "Why an agent crashed: its crashes (with the reason), exits, restarts "
                     "and give-ups from the journal, its restart state, and the end of its "
                     "log.",
    "logs_tail": "The end of an agent's log (stdout and stderr), max_bytes of it.",
    "task_show": "One task: content, result, status, attempts, every error, timings, holder, "
                 "the task that sent it (sent_from).",
    "task_list": "Tasks newest first, by status (awaiting_approval, pending, in_progress, "
                 "completed, failed, cancelled) and/or recipient agent.",
    "costs": "What the llm agents' runs cost: by agent, type or day, since 7d, 24h, 30m...",
    "approvals_list": "Requests for a person's approval (status pending by default; approved, "
                      "denied, cancelled, or null for all), newest first.",
    "merges_list": "The review and merge queue newest first: each agent's commits waiting "
                   "for review, approved, checking, merged or failed (and why); state to "
                   "filter.",
    "send_task": "Send a task: recipient is an agent, 'all', or '' to route by type; content "
                 "any JSON; priority 0 (most urgent) to 9; delay like 30s, 5m, 2h.",
    "task_cancel": "Cancel a task that waits for approval, is pending or in progress.",
    "task_retry": "Put a failed or cancelled task back to pending, attempts reset.",
    "pause_agent": "The agent finishes its current task and claims nothing new.",
    "resume_agent": "The agent claims tasks again; past its daily budget say how far for "
                    "today: raise_usd, raise_tokens or no_budget_today.",
    "start_agents": "Start these agents (all if none named) in priority order, booting "
                    "supervisord if it is not running; clears a give-up.",
    "stop_agents": "Stop these agents gracefully (their current task finishes or goes back).",
    "restart_agent": "Stop (if running) and start one agent; clears a give-up.",
    "approval_decide": "Decide a request waiting for a person: decision approve or deny, "
                       "with a reason (the agent reads it); the first decision stands.",
}


def _tool(method: Callable[..., Any]) -> Callable[..., Any]:
    """A Desk method as a tool: errors a person can cause become the tool's one-line error."""
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (Refused, CoffeeError) as exc:
            raise ToolError(error_line(exc)) from None
        except xmlrpc.client.Fault as exc:
            raise ToolError(f"supervisord: {error_line(exc.faultString)}") from None
    return call


async def on_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` on a worker thread: the event loop keeps serving."""
    return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


def build(desk: Desk, workspace: Optional[str] = None) -> MCPServer:
    app = MCPServer("coffee-team", instructions=INSTRUCTIONS, log_level="WARNING")
    for name in AGENT_TOOLS if desk.agent else PERSON_TOOLS:
        app.add_tool(_tool(getattr(desk, name)), name=name, description=DESCRIPTIONS[name])
    if desk.agent is not None:
        async def approve_call(tool_name: str, input: dict, tool_use_id: Optional[str] = None
                               ) -> str:
            return await approve.ask(desk, tool_name, input, tool_use_id,
                                     on_thread, anyio.sleep,
                                     workspace)
        app.add_tool(approve_call, name="approve", structured_output=False,
                     description="Claude Code's permission prompt (--permission-prompt-tool): "
                                 "asks a person about a tool call when the agent's approval "
                                 "rules say so, and answers allow or deny as JSON.")
    return app
