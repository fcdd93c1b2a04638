"""``coffee-team mcp``: coffee-team's MCP server over stdio (a process of its own: the command
line hands over to ``python -m coffee_team.mcpserver``), and ``mcp install``, which gives a
project's Claude Code the server (``.mcp.json``) and the orchestrator subagent."""
from __future__ import annotations

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
    from ..extras import missing
    from ..llm.mcpconfig import MODULE
    absent = missing("mcp", "the MCP server")
    if absent:
        raise UserError(absent)
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
    from ..extras import missing
    from ..ops.claude import install
    with refused():
        for line in install(ctx.team, force):
            click.echo(line)
    absent = missing("mcp", "the server")
    if absent:
        click.echo(f"note: {absent}")
