"""``coffee-team status --k8s`` (the agents of a cluster, read from the database: which pod
holds each agent, its heartbeat, task and restarts) and ``coffee-team control-plane``."""
from __future__ import annotations

import time
from typing import Any

import click

from .. import liveness
from .base import Context, main, pass_ctx


def collect(ctx: Context, now: float | None = None) -> dict[str, Any]:
    """Every agent of the team with its instance row (None: never started), as JSON."""
    from .agentcmd import open_instances
    from ..heartbeat import instances_of
    team = ctx.team
    with open_instances(ctx) as queue:
        rows = instances_of(team, queue)
    now = time.time() if now is None else now
    stale_after = team.settings.heartbeat_stale_after
    agents = []
    for spec in sorted(team.agents, key=lambda a: (a.priority, a.name)):
        row = rows.get(spec.name) or {}
        beat = row.get("heartbeat")
        agents.append({
            "name": spec.name, "priority": spec.priority, "pod": row.get("host"),
            "pid": row.get("pid"), "state": row.get("state"), "ready": bool(row.get("ready")),
            "heartbeat": beat, "heartbeat_age_s": None if beat is None else round(now - beat, 1),
            "heartbeat_status": liveness.heartbeat_status(beat, now, stale_after)
            if row and row.get("state") != liveness.STOPPED else None,
            "task_id": row.get("task_id"), "task_type": row.get("task_type"),
            "waiting_for": row.get("waiting_for"), "restarts": row.get("restarts", 0)})
    return {"now": now, "stale_after": stale_after, "agents": agents}


def render(data: dict[str, Any]) -> str:
    from ..status import human_duration
    head = ("AGENT", "POD", "PID", "STATE", "READY", "HEARTBEAT", "TASK", "RESTARTS")
    lines = [head]
    for a in data["agents"]:
        if a["pod"] is None:
            lines.append((a["name"], "-", "-", "never started", "-", "-", "-", "0"))
            continue
        beat = "-" if a["heartbeat"] is None else \
            f"{human_duration(max(0.0, a['heartbeat_age_s']))} ago"
        if a["heartbeat_status"] in (liveness.STALE, liveness.HUNG):
            beat += f" {a['heartbeat_status'].upper()}"
        task = f"#{a['task_id']} {a['task_type'] or ''}".strip() if a["task_id"] else "-"
        state = a["state"] + (f" (waiting for {a['waiting_for']})" if a["waiting_for"] else "")
        lines.append((a["name"], a["pod"], str(a["pid"]), state,
                      "yes" if a["ready"] else "no", beat, task, str(a["restarts"])))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines]
    out.append(f"(heartbeat STALE after {data['stale_after']:g}s, HUNG after twice that)")
    return "\n".join(out)


@main.command("control-plane")
@pass_ctx
def control_plane(ctx: Context) -> None:
    """Run the team's cluster duties without supervisord (a Kubernetes Deployment): requeue a
    dead agent's work, escalation, notifications, cleanup, schedules, the dashboard,
    /metrics and /healthz (port: COFFEE_CONTROL_PLANE_PORT, default 8080)."""
    import os
    import sys
    _ = ctx.team  # a bad team file is one line here, exit 2
    os.execv(sys.executable, [sys.executable, "-m", "coffee_team.controlplane",
                              "--team", ctx.team_path])
