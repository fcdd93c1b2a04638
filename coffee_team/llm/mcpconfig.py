"""coffee-team's MCP server as an llm agent's CLI gets it: the ``--mcp-config`` file written
for each run, and the options that name it. No import of the MCP SDK here: the agent only
checks that it is installed (the server runs in a process of its own, started by the CLI).

The file (``data/run/mcp/<agent>.json``, private) starts ``python -m coffee_team.mcpserver``
with what the run is (``COFFEE_AGENT``, ``COFFEE_TASK_ID``, ``COFFEE_WORKSPACE``, the task's
trace context): a CLI hands its servers only a few variables of its own environment, so
everything the server needs is in the file. Claude Code then offers the server's tools to
the model (a mid-run ``send_task`` is recorded as sent from the running task) and, for an
agent whose calls may wait for a person, asks the server's ``approve`` tool
(``--permission-prompt-tool``) about every call its own settings neither allow nor deny.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

SERVER = "coffee"
PROMPT_TOOL = f"mcp__{SERVER}__approve"
MODULE = "coffee_team.mcpserver"
# What the server takes from the agent's own environment besides what the file names.
PASSED_ON = ("PYTHONPATH", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER",
             "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
             "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_RESOURCE_ATTRIBUTES")


def sdk_installed() -> bool:
    """Is the MCP SDK importable here (without importing it)?"""
    from ..extras import installed
    return installed("mcp")


def server_entry(team: Any, env: dict[str, str], python: Optional[str] = None) -> dict:
    """One ``mcpServers`` entry: this interpreter running the server for ``team``."""
    return {"type": "stdio", "command": python or sys.executable,
            "args": ["-m", MODULE, "--team", str(Path(team.path).resolve())], "env": env}


def config_path(team: Any, agent: str) -> Path:
    return team.run_dir / "mcp" / f"{agent}.json"


def write_config(team: Any, agent: str, task_id: Optional[int], workspace: str,
                 trace: Optional[str] = None) -> Path:
    """The agent's ``--mcp-config`` file for one run (replaced atomically, mode 0600)."""
    env = {"COFFEE_AGENT": agent, "COFFEE_TASK_ID": "" if task_id is None else str(task_id),
           "COFFEE_WORKSPACE": str(workspace)}
    if trace:
        env["COFFEE_TRACEPARENT"] = trace
    env.update({k: os.environ[k] for k in PASSED_ON if os.environ.get(k)})
    path = config_path(team, agent)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"mcpServers": {SERVER: server_entry(team, env)}}, f, indent=2)
    os.replace(tmp, path)
    return path


def cli_args(path: Path, asks: bool) -> list[str]:
    """The options that give Claude Code the server: its tools allowed (else each call of
    them would ask), and the approve tool as its permission prompt when a person decides.
    ``--opt=value``: ``--mcp-config`` and ``--allowedTools`` take several values, and a
    prompt given as the last argument must not be read as one of them."""
    args = [f"--mcp-config={path}", f"--allowedTools=mcp__{SERVER}"]
    if asks:
        args.append(f"--permission-prompt-tool={PROMPT_TOOL}")
    return args


def team_problems(team: Any) -> list[str]:
    """An agent whose calls may wait for a person needs the MCP server: one line each."""
    from ..extras import missing
    found = (missing("mcp", f"{team.path}: agents.{spec.name}: a person approving its tool "
                            f"calls (auto_approve: false; or set it to true)")
             for spec in team.agents if spec.approvals is not None)
    return [line for line in found if line]
