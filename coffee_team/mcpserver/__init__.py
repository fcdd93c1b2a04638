"""coffee-team's MCP server (``coffee-team mcp``, ``python -m coffee_team.mcpserver``): a
process of its own, over stdio, on the official ``mcp`` SDK (the optional extra ``[mcp]``).

A person's client (Claude Code with ``.mcp.json``) gets tools over the same functions the
command line uses (tools.py); a running llm agent's CLI gets it through the ``--mcp-config``
coffee-team writes for each run (llm/mcpconfig.py): it reads the team, sends tasks as its
running task, and asks a person about its tool calls (approve.py). Only this package imports
the SDK; agents, supervisord and the other programs never load it. Named ``mcpserver``, not
``mcp``, so that it never stands in for the SDK's own package.
"""
