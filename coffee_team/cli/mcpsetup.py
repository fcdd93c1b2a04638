"""``coffee-team mcp``: coffee-team's MCP server over stdio (a process of its own: the command
line hands over to ``python -m coffee_team.mcpserver``), and ``mcp install``, which gives a
project's Claude Code the server (``.mcp.json``) and the orchestrator subagent."""
from __future__ import annotations

import importlib.util
import os
import sys

import click

from .base import Context, UserError, main, pass_ctx, refused


@main.group(invoke_without_command=True)
@click.pass_context
def mcp(click_ctx: click.Context) -> None:
    """Serve coffee-team's MCP server over stdio (the client starts it: see `mcp install`)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from ..llm.mcpconfig import INSTALL_HINT, MODULE
    if importlib.util.find_spec("mcp") is None:
        raise UserError(f"the MCP server needs the mcp package: {INSTALL_HINT}")
    ctx: Context = click_ctx.obj
    team = ctx.team  # a bad team file is one line here, exit 2
    # the server is a process package of its own: this process becomes it
    os.execv(sys.executable, [sys.executable, "-m", MODULE, "--team", str(team.path)])


@mcp.command("install")
@click.option("--force", is_flag=True, help="Replace .claude/agents/orchestrator.md too.")
@pass_ctx
def mcp_install(ctx: Context, force: bool) -> None:
    """Add the server to the project's .mcp.json and write the orchestrator subagent
    (.claude/agents/orchestrator.md) that uses its tools."""
    from ..llm.mcpconfig import INSTALL_HINT
    from ..ops.claude import install
    with refused():
        for line in install(ctx.team, force):
            click.echo(line)
    if importlib.util.find_spec("mcp") is None:
        click.echo(f"note: the server needs the mcp package: {INSTALL_HINT}")
