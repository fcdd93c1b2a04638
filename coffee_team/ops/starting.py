"""Waiting for programs to start, and saying in one line why one did not (start, restart),
for the command line and the MCP server alike."""
from __future__ import annotations

import os
from typing import Any, Callable

from .. import client
from ..errors import ActionRefused
from ..team import Team

WATCHDOG = "watchdog"


class HelperFailed(ActionRefused):
    """The watchdog or the web program cannot start: nothing launches the agents (or the
    dashboard is down), and only a new supervisord reads a mended config or environment."""


def wait_running(team: Team, rpc: Callable[..., Any], names: tuple[str, ...], timeout: float,
                 helpers: tuple[str, ...] = ()) -> None:
    """Wait for ``names`` (agents) and ``helpers`` (the watchdog, the web program) to run;
    the first that fails, or cannot be spawned at all, is one line naming it and why."""
    infos = client.wait_start(lambda: rpc("supervisor.getAllProcessInfo"), names, timeout,
                              helpers=helpers)
    failed = client.start_failures(infos, names, helpers)
    if failed:
        info = infos[failed[0]]
        error = HelperFailed if failed[0] in helpers else ActionRefused
        raise error(f"{failed[0]} failed to start ({info['statename']}): "
                    f"{why_not_started(rpc, info)}; see {log_of(team, failed[0])}")
    waiting = [f"{n} ({i['statename']})" for n, i in infos.items() if i["statename"] != "RUNNING"]
    if waiting:
        raise ActionRefused(f"timed out after {timeout:g}s waiting for {', '.join(waiting)}; "
                            f"see {log_of(team, WATCHDOG)} (it launches the agents)")


def log_of(team: Team, name: str) -> str:
    return os.path.relpath(team.log_dir / f"{name}.log")


def why_not_started(rpc: Callable[..., Any], info: dict) -> str:
    """supervisord's reason (a spawn error, e.g. "can't find command"), else the last line the
    program wrote (its traceback's last line, or its own one-line error)."""
    import xmlrpc.client
    if client.spawn_error(info):
        return client.spawn_error(info)
    for tail in ("supervisor.tailProcessStdoutLog", "supervisor.tailProcessStderrLog"):
        try:
            text = rpc(tail, info["name"], 0, 4096)[0]
        except xmlrpc.client.Fault:  # no such log (the watchdog's stdout is the protocol)
            continue
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return info.get("description") or "no output"
