"""The MCP client side of the fake Claude Code (tests/fake_llm_cli.py), with the SDK's own
client, as Claude Code does it. Written from Claude Code's documentation:

- ``--mcp-config FILE``: ``{"mcpServers": {NAME: {"command", "args", "env"}}}``; each server
  is started over stdio (an ``initialize`` handshake) and its tools are ``mcp__NAME__TOOL``;
- a tool call the model makes is run when ``--allowedTools`` allows it (``mcp__NAME`` allows
  every tool of that server); otherwise, in print mode, ``--permission-prompt-tool
  mcp__NAME__TOOL`` is asked with ``{tool_name, input, tool_use_id}`` and its text answer
  is read as JSON: ``{"behavior": "allow", "updatedInput": {...}}`` runs the call with that
  input, ``{"behavior": "deny", "message": "..."}`` refuses it and the model reads the
  message; without a prompt tool the call is refused.

Only the fake imports this, and only for a run whose prompt asks for such calls.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import anyio
from mcp import Client, StdioServerParameters

NOT_GRANTED = "Claude requested permissions to use {tool}, but you haven't granted it yet."


def servers(config_files: list[str]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for path in config_files:
        with open(path, encoding="utf-8") as f:
            found.update(json.load(f).get("mcpServers", {}))
    return found


def allowed(tool: str, allowed_tools: list[str]) -> bool:
    names = [n.strip() for value in allowed_tools for n in value.replace(",", " ").split()]
    return any(tool == n or (n.startswith("mcp__") and n.count("__") == 1
                             and tool.startswith(n + "__")) for n in names)


class Servers:
    """The configured servers, each connected on first use and closed at the end."""

    def __init__(self, config: dict[str, dict], stack: Any):
        self.config, self.stack, self.clients = config, stack, {}

    async def call(self, qualified: str, arguments: dict) -> tuple[str, bool]:
        _, server, tool = qualified.split("__", 2)
        if server not in self.clients:
            entry = self.config[server]
            params = StdioServerParameters(command=entry["command"], args=entry.get("args", []),
                                           env=entry.get("env") or None)
            self.clients[server] = await self.stack.enter_async_context(
                Client(params, mode="legacy"))
        result = await self.clients[server].call_tool(tool, arguments)
        return "".join(getattr(block, "text", "") for block in result.content), result.is_error


async def run_calls(calls: list[tuple[str, dict]], config_files: list[str],
                    allowed_tools: list[str], prompt_tool: str | None,
                    emit: Callable[[dict], None], session: str) -> list[dict]:
    """Make each tool call as the model would, asking the prompt tool where Claude Code
    would; one record per call: what was asked, the answer, when it came."""
    from contextlib import AsyncExitStack
    records = []
    async with AsyncExitStack() as stack:
        mcp = Servers(servers(config_files), stack)
        for k, (tool, tool_input) in enumerate(calls):
            use_id = f"toolu_mcp_{k}"
            emit({"type": "assistant", "session_id": session, "parent_tool_use_id": None,
                  "message": {"id": f"msg_mcp_{k}", "type": "message", "role": "assistant",
                              "model": "claude-fake", "stop_reason": None,
                              "usage": {"input_tokens": 1, "output_tokens": 1},
                              "content": [{"type": "tool_use", "id": use_id, "name": tool,
                                           "input": tool_input}]}})
            record: dict = {"tool": tool, "input": tool_input, "asked_at": time.time()}
            if allowed(tool, allowed_tools):
                record["behavior"] = "allow"
            elif prompt_tool:
                text, failed = await mcp.call(prompt_tool, {"tool_name": tool,
                                                            "input": tool_input,
                                                            "tool_use_id": use_id})
                answer = json.loads(text) if not failed else {"behavior": "deny",
                                                              "message": text}
                record.update(behavior=answer["behavior"], message=answer.get("message"),
                              updated_input=answer.get("updatedInput"))
                tool_input = answer.get("updatedInput", tool_input)
            else:
                record.update(behavior="deny", message=NOT_GRANTED.format(tool=tool))
            record["answered_at"] = time.time()
            content, is_error = "ok", False
            if record["behavior"] != "allow":
                content, is_error = record["message"], True
            elif tool.startswith("mcp__"):
                content, is_error = await mcp.call(tool, tool_input)
                record["result"] = content
            emit({"type": "user", "session_id": session, "parent_tool_use_id": None,
                  "message": {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": use_id, "content": content,
                       "is_error": is_error}]}})
            records.append(record)
    return records


def run(calls: list[tuple[str, dict]], config_files: list[str], allowed_tools: list[str],
        prompt_tool: str | None, emit: Callable[[dict], None], session: str) -> list[dict]:
    return anyio.run(run_calls, calls, config_files, allowed_tools, prompt_tool, emit, session)
