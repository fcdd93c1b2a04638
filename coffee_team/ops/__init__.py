"""What a person does to a team, written once for every door it comes through: the command
line (``coffee-team``) and the MCP server (``coffee-team mcp``) call these same functions.

``lifecycle`` starts, stops and restarts agents and reads the team's status; ``records``
reads an agent's history and log, resumes an agent past its budget, and reads costs. Each
takes ``rpc(method, *args)`` (supervisord's XML-RPC) and an open queue from its caller, and
says what went wrong as an ``errors.ActionRefused`` (one line, with the exit code the command
line uses).
"""
