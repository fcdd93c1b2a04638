"""The permission prompt: Claude Code's ``--permission-prompt-tool`` as coffee-team answers it.

Claude Code calls the tool with ``{tool_name, input, tool_use_id}`` for each call its own
settings neither allow nor deny, and reads the text it returns as JSON:
``{"behavior": "allow", "updatedInput": {...}}`` or ``{"behavior": "deny", "message":
"..."}``. The agent's ``approvals`` rules (llm/permissions.py) let a call run at once, or
store a request (queue/approvals.py: a row and one silent notification) and wait for its
decision, polling the row a few times a second, so a person's answer (the command line,
the dashboard, XML-RPC, the MCP server) reaches the CLI within a second. Past the agent's
``approvals.timeout`` the request is decided as ``on_timeout`` says. A call the CLI gives up
on (the run stopped) withdraws its request.
"""
from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable

from ..llm import permissions
from ..status import human_duration
from .tools import Desk

POLL_SECONDS = 0.25
MAX_STORED_TEXT = 2000  # longer strings of a call's input are stored cut (a Write's content)

Thread = Callable[..., Awaitable[Any]]  # runs a blocking function off the event loop
Sleep = Callable[[float], Awaitable[None]]


def allow(tool_input: Any) -> str:
    return json.dumps({"behavior": "allow", "updatedInput": tool_input})


def deny(message: str) -> str:
    return json.dumps({"behavior": "deny", "message": message})


def stored(value: Any, depth: int = 0) -> Any:
    """A call's input as kept for a person to read: long texts cut, the shape kept."""
    if isinstance(value, str) and len(value) > MAX_STORED_TEXT:
        return value[:MAX_STORED_TEXT] + f"… [{len(value) - MAX_STORED_TEXT} more characters]"
    if isinstance(value, dict) and depth < 20:
        return {k: stored(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list) and depth < 20:
        return [stored(v, depth + 1) for v in value[:200]]
    return value


async def ask(desk: Desk, tool_name: str, tool_input: Any, tool_use_id: Any,
              thread: Thread, sleep: Sleep, workspace: str | None = None) -> str:
    """The prompt tool's answer to one call (JSON text)."""
    if desk.agent is None:
        return deny("coffee-team's approve tool answers a running agent's CLI only")
    spec = desk.team.agent(desk.agent)
    rules = spec.approvals
    if rules is None:  # an agent that auto-approves asks nobody: Claude Code decides alone
        return deny(f"{desk.agent} asks no person (auto_approve is true): not allowed here")
    workspace = workspace or os.environ.get("COFFEE_WORKSPACE") or os.getcwd()
    decision = permissions.decide(tool_name, tool_input, rules.ask_rules, rules.allow_rules,
                                  workspace)
    if not decision.asks:
        return allow(tool_input)
    subject = permissions.summary(tool_name, tool_input)
    request = {"tool_name": tool_name, "input": stored(tool_input), "why": decision.why,
               "workspace": workspace}
    if tool_use_id:
        request["tool_use_id"] = str(tool_use_id)
    approval_id = await thread(desk.queue.request_approval, "tool", desk.agent, subject,
                               request, task_id=desk.task_id, timeout=rules.timeout,
                               on_timeout=rules.on_timeout)
    deadline = desk.clock() + rules.timeout
    try:
        while True:
            status, by, reason = await thread(desk.queue.approval_status, approval_id)
            if status != "pending":
                break
            if desk.clock() >= deadline:
                await thread(desk.queue.expire_approvals)
                continue
            await sleep(POLL_SECONDS)
    except BaseException:  # cancelled by the CLI (the run stopped): nobody waits any more
        await _withdraw(desk, approval_id, thread)
        raise
    return answer(approval_id, status, by, reason, tool_input, rules.timeout)


def answer(approval_id: int, status: str, by: str | None, reason: str | None,
           tool_input: Any, timeout: float) -> str:
    """The decision as Claude Code reads it; a denial says who and why, for the model."""
    if status == "approved":
        return allow(tool_input)
    if by == "timeout":
        return deny(f"No person answered approval #{approval_id} within "
                    f"{human_duration(timeout, long=True)}: denied. Do without this call, or "
                    f"stop and say what you need.")
    if status == "cancelled":
        return deny(f"approval #{approval_id} was withdrawn: {reason or 'the run ended'}")
    return deny(f"A person ({by}) denied this call (approval #{approval_id})"
                + (f": {reason}" if reason else "") + ". Do not retry it as it was.")


async def _withdraw(desk: Desk, approval_id: int, thread: Thread) -> None:
    import anyio
    with anyio.CancelScope(shield=True):
        try:
            await thread(desk.queue.cancel_approval, approval_id,
                         "the CLI stopped waiting (its run ended)")
        except Exception:  # the agent withdraws what is left when its run ends anyway
            pass
