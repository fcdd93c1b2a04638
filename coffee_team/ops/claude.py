"""Claude Code's files for a project that runs coffee-team: the ``coffee`` server in
``.mcp.json`` (its other servers kept) and the orchestrator subagent,
``.claude/agents/orchestrator.md``, in the form of the spec's own definition, using the
server's tools. Written by ``coffee-team mcp install``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ActionRefused
from ..llm.mcpconfig import SERVER, server_entry
from ..team import Team

ORCHESTRATOR = Path(__file__).with_name("orchestrator.md")


def mcp_json(team: Team, existing: Any) -> dict:
    """``.mcp.json`` with the ``coffee`` server (this interpreter, this team file) set and
    every other server as it was."""
    document = dict(existing) if isinstance(existing, dict) else {}
    servers = document.get("mcpServers")
    servers = dict(servers) if isinstance(servers, dict) else {}
    entry = server_entry(team, {})
    entry.pop("env")
    servers[SERVER] = entry
    document["mcpServers"] = servers
    return document


def install(team: Team, force: bool = False) -> list[str]:
    """Write both files; one line per file saying what happened."""
    done = []
    config = team.root / ".mcp.json"
    try:
        existing = json.loads(config.read_text(encoding="utf-8")) if config.exists() else {}
    except (OSError, ValueError) as exc:
        raise ActionRefused(f"{config}: not a JSON document ({exc}); fix or remove it first",
                            2) from None
    config.write_text(json.dumps(mcp_json(team, existing), indent=2) + "\n", encoding="utf-8")
    done.append(f"wrote {config} (server {SERVER!r}: {team.path})")
    agent = team.root / ".claude" / "agents" / "orchestrator.md"
    if agent.exists() and not force:
        done.append(f"kept {agent} (it exists; --force replaces it)")
    else:
        agent.parent.mkdir(parents=True, exist_ok=True)
        agent.write_text(ORCHESTRATOR.read_text(encoding="utf-8"), encoding="utf-8")
        done.append(f"wrote {agent}")
    return done
