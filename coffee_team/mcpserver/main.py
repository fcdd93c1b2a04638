"""The MCP server's entry: the SDK checked, the team loaded, then stdio until the client
closes it. Who the server is for comes from its environment: a running agent's CLI starts it
with ``COFFEE_AGENT``, ``COFFEE_TASK_ID``, ``COFFEE_WORKSPACE`` (llm/mcpconfig.py); a
person's client with none of them."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import TeamError
from ..extras import missing


def fail(message: str, code: int = 2) -> int:
    print(f"coffee-team mcp: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m coffee_team.mcpserver")
    parser.add_argument("--team", default=os.environ.get("COFFEE_TEAM", "data/team.yaml"))
    args = parser.parse_args(argv)
    absent = missing("mcp", "the MCP server")
    if absent:
        return fail(absent, 1)
    from ..team import load_team
    try:
        team = load_team(args.team)
    except TeamError as exc:
        return fail(str(exc))
    agent = os.environ.get("COFFEE_AGENT") or None
    if agent is not None and agent not in team.names:
        return fail(f"COFFEE_AGENT={agent!r} is not an agent of {team.path}")
    task = os.environ.get("COFFEE_TASK_ID", "")
    from .server import build
    from .tools import Desk
    desk = Desk(team, agent=agent, task_id=int(task) if task.isdigit() else None,
                trace=os.environ.get("COFFEE_TRACEPARENT") or None)
    try:
        build(desk, os.environ.get("COFFEE_WORKSPACE") or None).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        desk.close()
    return 0
