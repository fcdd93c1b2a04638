"""The team's status: supervisor's process table joined with tree CPU/RSS and heartbeats."""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from . import diskspace
from .clock import utc_day
from .errors import describe_error
from .heartbeat import HeartbeatFiles, last_beat
from .liveness import STANDBY, standby_text
from .proctable import ProcessTable
from .team import Team


def restart_columns(states: dict[str, dict[str, Any]],
                    max_attempts: int | None = None) -> dict[str, dict[str, Any]]:
    """The watchdog's restart bookkeeping as status columns, from ``queue.restart_states()``:
    what is coming (``next_restart_at``, ``restart_attempt`` of ``max_restart_attempts``) and
    when it stopped trying (``given_up_at``: the give-up is recorded with the last crash)."""
    columns = {}
    for name, state in states.items():
        attempts, given_up = int(state["attempts"] or 0), bool(state["given_up"])
        pending = state["next_restart_at"] is not None and not given_up
        columns[name] = {"restarts": attempts, "given_up": given_up,
                         "next_restart_at": state["next_restart_at"],
                         "restart_attempt": attempts if pending else None,
                         "given_up_at": state["last_crash_at"] if given_up else None,
                         "max_restart_attempts": max_attempts}
    return columns


def with_database(team: Team, infos: list[dict], supervisord_pid: int,
                  columns: Callable[[], dict[str, dict[str, Any]]],
                  now: float | None = None) -> dict:
    """``collect`` with the columns kept in the database (``columns()``, see queue_columns);
    the processes are shown whatever the database does, its trouble as one ``database`` line
    instead of those columns."""
    try:
        extra, trouble = columns(), ""
    except Exception as exc:
        extra, trouble = {}, describe_error(exc)
    data = collect(team, infos, supervisord_pid, extra=extra, now=now)
    if trouble:
        data["database"] = trouble
    return data


def queue_columns(queue: Any, team: Team) -> dict[str, dict[str, Any]]:
    """Status columns kept in the database: restarts (restart_columns), pauses, what each
    agent's CLI runs cost today (UTC), and its tasks that failed for good (the last one,
    and how many in the last 24 h)."""
    names = team.names
    columns = restart_columns(queue.restart_states(names), team.settings.max_restart_attempts)
    pauses = queue.pauses()
    spend = queue.spend_by_agent(utc_day(queue.clock()))
    failures = queue.recent_failures()
    for name in names:
        usd, tokens = spend.get(name, (0.0, 0))
        columns[name].update(cost_today_usd=usd, tokens_today=tokens)
        columns[name].update(failures.get(name, {"last_failure": None, "failed_24h": 0}))
        pause = pauses.get(name)
        columns[name]["paused"] = pause is not None
        if pause is not None:
            columns[name].update(paused_reason=pause["reason"],
                                 paused_until=pause["paused_until"])
    return columns


def collect(team: Team, infos: list[dict[str, Any]], supervisord_pid: int,
            extra: dict[str, dict[str, Any]] | None = None, now: float | None = None,
            beats: HeartbeatFiles | None = None) -> dict:
    """Build the ``status --json`` object from ``supervisor.getAllProcessInfo()``; a caller
    that comes back (supervisord) passes its ``beats`` so unchanged heartbeats are not parsed
    again."""
    now = time.time() if now is None else now
    by_name = {info["name"]: info for info in infos}
    table = ProcessTable.read()  # every agent tree's CPU and RSS from one pass
    beats = HeartbeatFiles() if beats is None else beats
    status_dir = team.status_dir
    runs = schedule_runs(team, now)
    agents = []
    for spec in sorted(team.agents, key=lambda a: (a.priority, a.name)):
        info = by_name.get(spec.name, {})
        state = info.get("statename", "UNKNOWN")
        pid = info.get("pid", 0) or 0
        running = state == "RUNNING" and pid > 0
        cpu, rss = table.tree_usage(pid, now) if running else (0.0, 0.0)
        proc = table.procs.get(pid) if running else None
        beat = beats.read(status_dir, spec.name)
        last = last_beat(beat)
        row = {
            "name": spec.name, "state": state, "pid": pid, "priority": spec.priority,
            "uptime_seconds": uptime(now, proc.started if proc else info["start"])
            if running else 0,
            "cpu_percent": cpu, "rss_mb": rss,
            "heartbeat_age_seconds": None if last is None else round(max(0.0, now - last), 1),
            # past heartbeat_stale_after (a running agent): the watchdog finds it stale too
            "heartbeat_stale": running and heartbeat_stale(last, now,
                                                           team.settings.heartbeat_stale_after),
            # "database" or "disk" while the agent waits for it (since: the database's wait)
            "waiting_for": beat.get("waiting_for") if running else None,
            "waiting_since": beat.get("waiting_since") if running else None,
            "last_heartbeat": last, "current_task": beat.get("current_task"),
            # what the agent does (heartbeat "state"), distinct from supervisor's "state"
            "agent_state": beat.get("state") if running else None,
            # a standby: where the agent runs instead ({host, pid, holder})
            "standby_for": beat.get("standby_for") if running else None,
            "task_started_at": beat.get("task_started_at"),
            "last_output_at": beat.get("last_output_at"),
            "progress": beat.get("progress"),  # the current step ("Bash: pytest -q")
            "description": info.get("description", ""),
        }
        row["activity"] = activity_text(row, now)  # "working on #42 for 1h 12m"
        if spec.name in runs:  # the next slot of each schedule entry, and the earliest
            row["schedule"] = runs[spec.name]
            row["next_run"] = min((e["next_run"] for e in runs[spec.name]
                                   if e["next_run"] is not None), default=None)
        row.update((extra or {}).get(spec.name, {}))
        agents.append(row)
    started = table.procs.get(supervisord_pid)
    data = {
        "uptime_seconds": uptime(now, started.started) if started else 0.0,
        "agents_running": sum(1 for a in agents if is_active(a)),
        "agents_standby": sum(1 for a in agents if is_standby(a)),
        "agents_total": len(agents),
        "supervisord_pid": supervisord_pid,
        "agents": agents,
        "programs": program_rows(team, infos),
    }
    disk = diskspace.problems(team)
    if disk:
        data["disk"] = disk
    return data


def from_instances(team: Team, rows: dict[str, dict[str, Any]],
                   extra: dict[str, dict[str, Any]] | None = None,
                   now: float | None = None) -> dict:
    """The ``status --json`` object of a team without supervisord (Kubernetes): each agent's
    process from its ``agent_instances`` row (queue/instances.py): RUNNING while its
    heartbeat is not hung, else STOPPED (or UNKNOWN: never started); its pod as ``host``.
    CPU and memory are the pods' (kubectl top), not read here."""
    from .liveness import HUNG, STOPPED, heartbeat_status
    now = time.time() if now is None else now
    stale_after = team.settings.heartbeat_stale_after
    agents = []
    for spec in sorted(team.agents, key=lambda a: (a.priority, a.name)):
        row = rows.get(spec.name)
        beat = row and row["heartbeat"]
        live = bool(row) and row["state"] != STOPPED and \
            heartbeat_status(beat if beat else row["started_at"], now, stale_after) != HUNG
        task = row and row["task_id"] and {"id": row["task_id"], "type": row["task_type"],
                                           "started_at": row["task_started_at"] or now}
        agent = {
            "name": spec.name, "state": "RUNNING" if live else "STOPPED" if row else "UNKNOWN",
            "pid": row["pid"] if row else 0, "priority": spec.priority,
            "host": row["host"] if row else None,
            "uptime_seconds": uptime(now, row["started_at"]) if live else 0,
            "cpu_percent": 0.0, "rss_mb": 0.0,
            "heartbeat_age_seconds": None if not beat else round(max(0.0, now - beat), 1),
            "last_heartbeat": beat or None, "current_task": task or None,
            "agent_state": row["state"] if live else None, "ready": bool(row and row["ready"]),
            "description": f"pod {row['host']}" if row else "never started"}
        agent.update((extra or {}).get(spec.name, {}))
        agent["restarts"] = row["restarts"] if row else 0  # the pod's, not the watchdog's
        agent["activity"] = activity_text(agent, now)
        agents.append(agent)
    return {"uptime_seconds": 0.0, "agents_running": sum(a["state"] == "RUNNING" for a in agents),
            "agents_standby": 0, "agents_total": len(agents), "supervisord_pid": 0,
            "agents": agents, "programs": []}


def program_rows(team: Team, infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """supervisord's programs that are not agents (the watchdog, the web dashboard): without
    the watchdog nothing launches or restarts an agent, so its state is always shown."""
    names = set(team.names)
    return [{"name": info["name"], "state": info.get("statename", "UNKNOWN"),
             "pid": info.get("pid", 0) or 0,
             # spawnerr says why supervisord could not run it (a missing command)
             "description": info.get("spawnerr") or info.get("description", "")}
            for info in sorted(infos, key=lambda i: i["name"]) if info["name"] not in names]


def uptime(now: float, started: float) -> float:
    """Seconds since ``started``, never negative. A start time from the process table moves
    with the wall clock (the kernel's boot time does); supervisord's own (``info["start"]``,
    the fallback off Linux) does not: after the clock went back it lies in the future."""
    return round(max(0.0, now - started), 1)


def schedule_runs(team: Team, now: float) -> dict[str, list[dict[str, Any]]]:
    """rules.cron.next_runs for a team with schedules; cronsim is imported only then."""
    if not any(agent.schedule for agent in team.agents):
        return {}
    from .rules.cron import next_runs
    return next_runs(team.agents, team.settings.timezone, now)


def is_standby(agent: dict[str, Any]) -> bool:
    """RUNNING for supervisord, but waiting for the agent's instance on another host."""
    return agent.get("state") == "RUNNING" and agent.get("agent_state") == STANDBY


def is_active(agent: dict[str, Any]) -> bool:
    """RUNNING and running the agent (not a standby): what 'agents running' counts."""
    return agent.get("state") == "RUNNING" and not is_standby(agent)


def human_duration(seconds: float, long: bool = False) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if long:
        parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
        words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
        return " ".join(words) if words else f"{int(seconds)} seconds"
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {int(seconds) % 60}s"


def time_left(deadline: float, now: float) -> str:
    """'48m left', '1h 12m left', '45s left' until a task's timeout; 'at its time limit' once
    there (the timeout is firing)."""
    left = deadline - now
    if left < 1:
        return "at its time limit"
    if left < 60:
        return f"{int(left)}s left"
    if left < 3600:
        return f"{int(left // 60)}m left"
    return f"{human_duration(left)} left"


def activity_text(agent: dict[str, Any], now: float) -> str:
    """'working on #42 for 1h 12m, 48m left: Bash: pytest -q': how long, the time left when
    the task has a limit, how long it has been silent (past a minute), its current step."""
    task, state = agent.get("current_task"), agent.get("agent_state")
    if state == STANDBY:
        return standby_text(agent.get("standby_for"))
    if state != "working" or not isinstance(task, dict):
        return state or ""
    what = f"#{task['id']}" if task.get("id") is not None else f"a {task.get('type')} run"
    text = f"working on {what} for {human_duration(max(0.0, now - task['started_at']))}"
    if task.get("deadline") is not None:
        text += f", {time_left(task['deadline'], now)}"
    quiet = now - (agent.get("last_output_at") or now)
    text += f", no output for {human_duration(quiet)}" if quiet >= 60 else ""
    return text + (f": {agent['progress']}" if agent.get("progress") else "")


def heartbeat_stale(last: float | None, now: float, stale_after: float) -> bool:
    """Is a heartbeat written at ``last`` (None: none) older than ``stale_after`` at ``now``?
    A heartbeat from the future (another host's clock ahead) is not stale."""
    return last is not None and now - last > stale_after


def heartbeat_text(agent: dict[str, Any], now: float) -> str:
    """'heartbeat 412s ago STALE, waiting for database since 10:31:02 (1m 40s)': the age,
    marked past heartbeat_stale_after, and what the agent waits for; "" without a heartbeat."""
    age = agent.get("heartbeat_age_seconds")
    if age is None:
        return ""
    text = f"heartbeat {age:.0f}s ago" + (" STALE" if agent.get("heartbeat_stale") else "")
    waiting, since = agent.get("waiting_for"), agent.get("waiting_since")
    if waiting:
        text += f", waiting for {waiting}"
        if isinstance(since, (int, float)) and not isinstance(since, bool):
            text += (f" since {time.strftime('%H:%M:%S', time.localtime(since))}"
                     f" ({human_duration(max(0.0, now - since))})")
    return text


def future(agent: dict, now: float) -> str | None:
    """What the watchdog will do (or gave up doing) for a stopped agent, or None."""
    if agent.get("given_up"):
        at = agent.get("given_up_at")
        when = f" at {time.strftime('%H:%M', time.localtime(at))}" if at else ""
        return (f"GIVEN UP{when} after {agent.get('restarts', 0)} restarts"
                f" \u2014 coffee-team restart {agent['name']}")
    if agent.get("next_restart_at") is not None and agent.get("restart_attempt"):
        wait = max(0, math.ceil(agent["next_restart_at"] - now))
        limit = agent.get("max_restart_attempts")
        attempt = f"{agent['restart_attempt']}/{limit}" if limit else f"{agent['restart_attempt']}"
        return f"BACKOFF, restart in {wait}s (attempt {attempt})"
    return None


def failure_text(agent: dict[str, Any], now: float) -> str:
    """"last failed #12 4m ago: timed out after 600s, 3 failed in 24h" while the last 24 h
    had a failure; "" otherwise."""
    last, count = agent.get("last_failure"), agent.get("failed_24h") or 0
    if not count or not isinstance(last, dict):
        return ""
    error = " ".join(str(last.get("error") or "").split())
    error = error if len(error) <= 80 else error[:79] + "…"
    ago = human_duration(max(0.0, now - last["at"]))
    return f"last failed #{last['task_id']} {ago} ago: {error}, {count} failed in 24h"


def render(status: dict) -> str:
    """The seed's status format."""
    now = status.get("now") or time.time()
    lines = ["Orchestrator Status:",
             f"  Uptime: {human_duration(status['uptime_seconds'], long=True)}",
             f"  Agents Running: {status['agents_running']}/{status['agents_total']}"
             + (f" ({status['agents_standby']} standby)" if status.get("agents_standby") else ""),
             "", "Agent Health:"]
    for a in status["agents"]:
        if a["state"] == "RUNNING":
            detail = (f"PID {a['pid']}, uptime {human_duration(a['uptime_seconds'])}, "
                      f"CPU {a['cpu_percent']}%, RAM {a['rss_mb']:.0f}MB")
            beat = heartbeat_text(a, now)
            detail += f", {beat}" if beat else ""
            detail += f", {a['activity']}" if a.get("activity") else ""
        else:
            detail = a["description"] or "not running"
        coming = future(a, now) if a["state"] != "RUNNING" else None
        if a.get("cost_today_usd") or a.get("tokens_today"):
            detail += f", today ${a['cost_today_usd']:.2f} {a['tokens_today']:,} tokens"
        if a.get("restarts") and coming is None:
            detail += f", restarts {a['restarts']}"
        paused = " PAUSED" if a.get("paused") else ""
        if a.get("paused_reason"):
            detail += f", paused: {a['paused_reason']}"
        failed = failure_text(a, now)
        detail += f", {failed}" if failed else ""
        lines.append(f"  {a['name']}: {coming or a['state']}{paused} ({detail})")
    down = [p for p in status.get("programs", ()) if p["state"] != "RUNNING"]
    if down:
        lines += ["", "Programs:"]
        lines += [f"  {p['name']}: {p['state']} ({p['description'] or 'not running'})"
                  for p in down]
    if status.get("database"):  # the processes above are shown whatever the database does
        lines.append(f"  Database: {status['database']}")
    lines += [f"  Disk: {line}" for line in status.get("disk", ())]
    return "\n".join(lines)
