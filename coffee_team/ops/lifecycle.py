"""Starting, stopping and restarting agents, and the team's status, for the command line and
the MCP server alike.

``rpc(method, *args)`` calls supervisord; ``open_queue()`` is a context manager giving the
team's queue (opened only when an action needs it). A person's start or restart clears a
give-up and a person's stop cancels a pending backoff restart (``restarts.on_cleared`` /
``on_stop_requested``, the same rules ``coffee.restartAgent`` and ``apply`` apply).
"""
from __future__ import annotations

import os
from typing import Any, Callable, ContextManager, Iterable

from .. import client, diskspace, layout, restarts
from ..errors import ActionRefused, SupervisorDown, TeamError
from ..team import WEB_PROGRAM, Team
from ..team.snapshot import write_snapshot
from . import probe
from .starting import (WATCHDOG, HelperFailed, Waiting, no_waiting, only_one_start,
                       wait_running, why_not_started)

Rpc = Callable[..., Any]
QueueOpener = Callable[[], ContextManager[Any]]
ACTIVE = ("RUNNING", "STARTING", "BACKOFF")


def runnable(team: Team) -> Team:
    """The team, if supervisord can run it from this path, its notify targets are usable,
    its llm agents' role files and workspaces exist, its interpreter imports coffee_team and
    the extras it needs are installed; else ActionRefused (exit 2): gen-config, start, apply."""
    from .. import notify
    from ..extras import missing
    from ..llm import mcpconfig
    from ..llm.workspace import team_problems
    from ..team.interpreter import problem
    try:
        layout.check_project_path(team)
        notify.check_targets(team)
    except TeamError as exc:
        raise ActionRefused(str(exc), 2) from None
    problems = team_problems(team) + mcpconfig.team_problems(team)
    if problems:
        raise ActionRefused(problems[0], 2)
    bad = problem(team) or (team.is_postgres and missing(
        "postgres", f"{team.path}: team.database_path (PostgreSQL)")) or None
    if bad:
        raise ActionRefused(bad, 2)
    return team


# --- status ------------------------------------------------------------------------------

def team_status(team: Team, rpc: Rpc, open_queue: QueueOpener) -> dict:
    """coffee.getTeamStatus when supervisord serves it; otherwise (a supervisord started from
    an older config, or a coffee.* that fails) supervisor.* + the queue. The processes are
    always shown; trouble with the database is one line under them."""
    import xmlrpc.client

    from .. import status

    def columns() -> dict:
        with open_queue() as queue:
            return status.queue_columns(queue, team)
    try:
        data = rpc("coffee.getTeamStatus")
    except xmlrpc.client.Fault:
        infos = rpc("supervisor.getAllProcessInfo")
        pid = rpc("supervisor.getPID")
        data = status.with_database(team, infos, pid, columns)
    else:
        for agent in data["agents"]:  # XML-RPC leaves out what is unset
            for key in ("heartbeat_age_seconds", "next_restart_at", "restart_attempt",
                        "given_up_at", "last_failure"):
                agent.setdefault(key, None)
    for program in data.get("programs", ()):
        if program["description"].startswith(client.EXITED_TOO_QUICKLY):
            # the program ran and said why it stopped: its last line beats "see the log"
            program["description"] = why_not_started(rpc, {"name": program["name"]})
    return data


# --- start, stop, restart ------------------------------------------------------------------

def reset_restarts(queue: Any, names: Iterable[str],
                   rule: Callable[[restarts.RestartState], restarts.RestartState]) -> None:
    """Apply a person's decision (``restarts.on_cleared``/``on_stop_requested``) to each agent."""
    for name in names:
        state = restarts.RestartState.from_dict(queue.restart_state(name))
        queue.save_restart_state(name, **rule(state).to_dict())


def forget_restarts(open_queue: QueueOpener, names: Iterable[str], give_ups: bool) -> None:
    """A person's start/restart clears a give-up; a person's stop cancels a pending backoff
    restart."""
    rule = restarts.on_cleared if give_ups else restarts.on_stop_requested
    with open_queue() as queue:
        if queue is not None:  # None: no database yet, no restart state in it
            reset_restarts(queue, names, rule)


def loaded_processes(rpc: Rpc, names: Iterable[str]) -> dict[str, dict]:
    """supervisord's process infos by name, if it knows every one of ``names``; an agent it
    does not know was added to the team file after it started: say how to apply that."""
    infos = {i["name"]: i for i in rpc("supervisor.getAllProcessInfo")}
    missing = [name for name in names if name not in infos]
    if missing:
        raise ActionRefused(f"{', '.join(missing)}: in the team file but not in the running "
                            f"supervisord (the team file changed since it started); apply the "
                            f"change with `coffee-team apply`", 2)
    return infos


def start_in_priority_order(team: Team, rpc: Rpc, open_queue: QueueOpener,
                            names: tuple[str, ...], waiting: Waiting = no_waiting) -> None:
    """Start those of ``names`` not running, group by group in priority order, each group
    RUNNING before the next."""
    infos = loaded_processes(rpc, names)
    watchdog = infos.get(WATCHDOG)
    if watchdog is not None and client.start_failures({WATCHDOG: watchdog}, (), (WATCHDOG,)):
        # agents started now would run, but nothing would restart one that crashes
        raise ActionRefused(f"{WATCHDOG} is {watchdog['statename']}: "
                            f"{why_not_started(rpc, watchdog)}; mend it, then `coffee-team "
                            f"stop` and `coffee-team start`")
    forget_restarts(open_queue, names, give_ups=True)
    todo = [team.agent(n) for n in names
            if infos.get(n, {}).get("statename") not in ("RUNNING", "STARTING")]
    for group in restarts.launch_groups({a.name: a.priority for a in todo}):
        for name in group:
            rpc("supervisor.startProcess", name, False)
        wait_running(team, rpc, tuple(group), timeout=team.settings.start_seconds + 30,
                     waiting=waiting)


def start(team: Team, endpoint: client.Endpoint, rpc: Rpc, open_queue: QueueOpener,
          names: tuple[str, ...], launch: tuple[str, ...] = (), timeout: float = 60.0,
          waiting: Waiting = no_waiting, answer_within: float = 5.0) -> str | None:
    """Boot supervisord if it is not running (launching ``launch``, or the whole team), else
    start ``names`` in priority order; either way wait until they run. A watchdog or web
    program that cannot start stops supervisord again, so the next start reads the mended
    config. One start at a time: a start that finds another one under way returns a line
    saying so once that one's supervisord lives (None otherwise). A supervisord that lives
    but does not answer within ``answer_within`` is refused (exit 4), never booted twice."""
    full = diskspace.problems(team, advice="free some space there, then `coffee-team start`")
    if full:  # else SQLite says only "disk I/O error"
        raise ActionRefused(full[0])
    diff = layout.diff_config(team)
    if not diff.clean:
        raise ActionRefused(f"{team.conf_dir}: generated config is stale "
                            f"({', '.join(diff.changed + diff.stale)}); run "
                            f"`coffee-team gen-config`")
    layout.ensure_data_dirs(team)
    write_snapshot(team.path)  # fresh for the agents this start launches (team/snapshot.py)
    with only_one_start(team, waiting) as other:
        if other is not None:
            return other
        with waiting(lambda: f"supervisord{pid_text(team, endpoint)} to answer"):
            verdict = probe.judge(probe.settled(
                team, endpoint, answer_within,
                ask=lambda: client.is_running(endpoint, timeout=answer_within)))
        if verdict.state == "not_answering":
            raise ActionRefused(verdict.line, probe.NOT_ANSWERING)
        if verdict.state == "running":
            start_in_priority_order(team, rpc, open_queue, names, waiting)
            return None
        require_password_env(team)
        forget_restarts(open_queue, names, give_ups=True)
        try:
            with waiting(lambda: f"supervisord{pid_text(team, endpoint)} to boot and answer"):
                client.boot(team, endpoint, launch=launch)
        except SupervisorDown as exc:
            raise ActionRefused(str(exc)) from None
        helpers = (WATCHDOG,) + ((WEB_PROGRAM,) if team.settings.web is not None else ())
        try:
            wait_running(team, rpc, names, timeout, helpers=helpers, waiting=waiting,
                         booted=True)
        except HelperFailed as exc:
            shutdown(team, rpc, waiting)  # so the next `start` boots on the mended config
            raise ActionRefused(f"{exc}; supervisord stopped again") from None
    return None


def pid_text(team: Team, endpoint: client.Endpoint) -> str:
    """" (PID N)" when the team's pidfile names one, for a line saying what we wait for."""
    pid = probe.own_pid(team, endpoint)
    return f" (PID {pid})" if pid else ""


def require_password_env(team: Team) -> None:
    servers = (("http", team.settings.http, "the web program reads the XML-RPC password from it"),
               ("web", team.settings.web, "the dashboard reads its password from it"))
    for key, server, why in servers:
        if server is not None and not os.environ.get(server.password_env):
            raise ActionRefused(f"{team.path}: team.{key}.password_env: the environment "
                                f"variable {server.password_env} is not set; export it before "
                                f"`coffee-team start` ({why})", 2)


def stop_agents(rpc: Rpc, open_queue: QueueOpener, names: tuple[str, ...]) -> None:
    """Stop each of ``names`` (gracefully: its current task finishes or goes back)."""
    infos = loaded_processes(rpc, names)
    forget_restarts(open_queue, names, give_ups=False)
    for name in names:
        if infos[name]["statename"] in ACTIVE:
            rpc("supervisor.stopProcess", name, True)


def shutdown(team: Team, rpc: Rpc, waiting: Waiting = no_waiting) -> int:
    """Stop every program and supervisord; its PID once it exited."""
    pid = rpc("supervisor.getPID")
    # Signal every agent at once: supervisord's own shutdown stops one group per loop pass
    # (about a second each), which takes minutes for a large team.
    rpc("supervisor.stopAllProcesses", False)
    rpc("supervisor.shutdown")
    with waiting(f"supervisord (PID {pid}) to stop its programs and exit"):
        gone = _wait_gone(pid, timeout=team.settings.stop_wait_seconds + 15)
    if not gone:
        raise ActionRefused(f"supervisord (PID {pid}) still running after shutdown request")
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    # Not psutil's wait(): supervisord daemonized, so only PID 1 reaps it, and a container's
    # init may leave it a zombie for seconds (or for good): exited is gone (probe.NONE, as is
    # a PID since taken by another program).
    import time
    deadline = time.monotonic() + timeout
    while probe.process_kind(pid) not in (probe.NONE, probe.OTHER):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def restart_agent(team: Team, rpc: Rpc, open_queue: QueueOpener, name: str,
                  waiting: Waiting = no_waiting) -> None:
    """Stop (if running) and start one agent, clearing a give-up; wait until it runs."""
    info = loaded_processes(rpc, (name,))[name]
    forget_restarts(open_queue, (name,), give_ups=True)
    if info["statename"] in ACTIVE:
        rpc("supervisor.stopProcess", name, True)
    rpc("supervisor.startProcess", name, False)
    wait_running(team, rpc, (name,), timeout=team.settings.start_seconds + 30, waiting=waiting)


def restart_web(team: Team, rpc: Rpc, waiting: Waiting = no_waiting) -> None:
    """The web program reads the team file, its ports and passwords when it starts; one the
    running supervisord does not know yet (web or http added since it started) is added."""
    infos = {i["name"]: i for i in rpc("supervisor.getAllProcessInfo")}
    if WEB_PROGRAM not in infos:
        added = rpc("supervisor.reloadConfig")[0][0]
        if WEB_PROGRAM not in added:
            raise ActionRefused("supervisord does not know the web program; run `coffee-team "
                                "gen-config` and try again")
        rpc("supervisor.addProcessGroup", WEB_PROGRAM)  # autostart: it starts now
    else:
        if infos[WEB_PROGRAM]["statename"] in ACTIVE:
            rpc("supervisor.stopProcess", WEB_PROGRAM, True)
        rpc("supervisor.startProcess", WEB_PROGRAM, False)
    wait_running(team, rpc, (WEB_PROGRAM,), timeout=30, waiting=waiting)
