"""Lifecycle commands: gen-config, start, stop, restart, status, logs, doctor, agent run."""
from __future__ import annotations

import json
import os
import time

import click

from .. import client, layout
from ..errors import SupervisorDown, TeamError
from ..team import WEB_PROGRAM
from .base import Context, UserError, config_team, echo_json, main, parse_agents, pass_ctx
from .starting import WATCHDOG, HelperFailed, wait_running, why_not_started


# --- config ----------------------------------------------------------------------------------

@main.command("gen-config")
@click.option("--check", is_flag=True, help="Exit 1 if the generated config on disk is stale.")
@pass_ctx
def gen_config(ctx: Context, check: bool) -> None:
    """Regenerate supervisord.conf.d/ from the team file."""
    team = config_team(ctx)
    if check:
        diff = layout.diff_config(team)
        if not diff.clean:
            files = ", ".join([*diff.changed, *(f"{n} (no longer in the team)" for n in diff.stale)])
            raise UserError(f"{team.conf_dir}: stale generated config: {files}; "
                            f"run `coffee-team gen-config`")
        click.echo(f"{team.conf_dir}: up to date ({len(team.agents)} agents)")
        return
    layout.ensure_data_dirs(team)
    diff = layout.write_config(team)
    if diff.clean:
        click.echo(f"{team.conf_dir}: already up to date")
    for name in diff.changed:
        click.echo(f"wrote {team.conf_dir / name}")
    for name in diff.stale:
        click.echo(f"removed {team.conf_dir / name}")


# --- lifecycle -------------------------------------------------------------------------------

def forget_restarts(ctx: Context, names: tuple[str, ...], give_ups: bool) -> None:
    """A human start/restart clears a give-up; a human stop cancels a pending backoff restart."""
    from .apply import reset_restarts
    from .. import restarts
    from .data import open_queue
    rule = restarts.on_cleared if give_ups else restarts.on_stop_requested
    with open_queue(ctx, create=True) as queue:
        reset_restarts(queue, names, rule)


def loaded_processes(ctx: Context, names: tuple[str, ...]) -> dict[str, dict]:
    """supervisord's process infos by name, if it knows every one of ``names``; an agent it
    does not know was added to the team file after it started: say how to apply that."""
    infos = {i["name"]: i for i in ctx.rpc("supervisor.getAllProcessInfo")}
    missing = [name for name in names if name not in infos]
    if missing:
        raise UserError(f"{', '.join(missing)}: in the team file but not in the running "
                        f"supervisord (the team file changed since it started); apply the "
                        f"change with `coffee-team apply`", exit_code=2)
    return infos


def start_in_priority_order(ctx: Context, names: tuple[str, ...]) -> None:
    from .. import restarts
    team = ctx.team
    infos = loaded_processes(ctx, names)
    watchdog = infos.get(WATCHDOG)
    if watchdog is not None and client.start_failures({WATCHDOG: watchdog}, (), (WATCHDOG,)):
        # agents started now would run, but nothing would restart one that crashes
        raise UserError(f"{WATCHDOG} is {watchdog['statename']}: "
                        f"{why_not_started(ctx, watchdog)}; mend it, then `coffee-team stop` "
                        f"and `coffee-team start`")
    forget_restarts(ctx, names, give_ups=True)
    todo = [team.agent(n) for n in names
            if infos.get(n, {}).get("statename") not in ("RUNNING", "STARTING")]
    for group in restarts.launch_groups({a.name: a.priority for a in todo}):
        for name in group:
            ctx.rpc("supervisor.startProcess", name, False)
        wait_running(ctx, group, timeout=team.settings.start_seconds + 30)


@main.command()
@click.option("--agents", help="Comma-separated agents to start (default: the whole team).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for RUNNING.")
@pass_ctx
def start(ctx: Context, agents: str | None, timeout: float) -> None:
    """Boot supervisord if needed, start agents in priority order, wait, print the status."""
    team = config_team(ctx)
    names = parse_agents(team, agents) or team.names
    diff = layout.diff_config(team)
    if not diff.clean:
        raise UserError(f"{team.conf_dir}: generated config is stale "
                        f"({', '.join(diff.changed + diff.stale)}); run `coffee-team gen-config`")
    layout.ensure_data_dirs(team)
    endpoint = ctx.endpoint
    if not client.is_running(endpoint):
        _require_password_env(team)
        forget_restarts(ctx, names, give_ups=True)
        try:
            client.boot(team, endpoint, launch=parse_agents(team, agents))
        except SupervisorDown as exc:
            raise UserError(str(exc)) from None
        helpers = (WATCHDOG,) + ((WEB_PROGRAM,) if team.settings.web is not None else ())
        try:
            wait_running(ctx, names, timeout, helpers=helpers)
        except HelperFailed as exc:
            _shutdown(ctx)  # so the next `start` boots on the mended config
            raise UserError(f"{exc.message}; supervisord stopped again") from None
    else:
        start_in_priority_order(ctx, names)
    _print_status(ctx, as_json=False)


def _require_password_env(team) -> None:
    servers = (("http", team.settings.http, "the web program reads the XML-RPC password from it"),
               ("web", team.settings.web, "the dashboard reads its password from it"))
    for key, server, why in servers:
        if server is not None and not os.environ.get(server.password_env):
            raise UserError(f"{team.path}: team.{key}.password_env: the environment variable "
                            f"{server.password_env} is not set; export it before "
                            f"`coffee-team start` ({why})", exit_code=2)


@main.command()
@click.option("--agents", help="Comma-separated agents to stop (default: the team and supervisord).")
@pass_ctx
def stop(ctx: Context, agents: str | None) -> None:
    """Stop agents, or with no --agents the whole team and supervisord."""
    names = parse_agents(ctx.team, agents)
    if names:
        infos = loaded_processes(ctx, names)
        forget_restarts(ctx, names, give_ups=False)
        for name in names:
            if infos[name]["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
                ctx.rpc("supervisor.stopProcess", name, True)
            click.echo(f"{name}: stopped")
        return
    pid = _shutdown(ctx)
    click.echo(f"team stopped (supervisord PID {pid} exited)")


def _shutdown(ctx: Context) -> int:
    """Stop every program and supervisord; its PID once it exited."""
    pid = ctx.rpc("supervisor.getPID")
    # Signal every agent at once: supervisord's own shutdown stops one group per loop pass
    # (about a second each), which takes minutes for a large team.
    ctx.rpc("supervisor.stopAllProcesses", False)
    ctx.rpc("supervisor.shutdown")
    if not _wait_gone(pid, timeout=ctx.team.settings.stop_wait_seconds + 15):
        raise UserError(f"supervisord (PID {pid}) still running after shutdown request")
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    import psutil
    try:
        psutil.Process(pid).wait(timeout)
        return True
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False


@main.command()
@click.argument("agent")
@pass_ctx
def restart(ctx: Context, agent: str) -> None:
    """Stop (if running) and start one agent (clears a give-up), or the web program."""
    if agent == WEB_PROGRAM and ctx.team.settings.web_program:
        return _restart_web(ctx)
    (name,) = parse_agents(ctx.team, agent)
    info = loaded_processes(ctx, (name,))[name]
    forget_restarts(ctx, (name,), give_ups=True)
    if info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
        ctx.rpc("supervisor.stopProcess", name, True)
    ctx.rpc("supervisor.startProcess", name, False)
    wait_running(ctx, (name,), timeout=ctx.team.settings.start_seconds + 30)
    click.echo(f"{name}: restarted")


def _restart_web(ctx: Context) -> None:
    """The web program reads the team file, its ports and passwords when it starts; one the
    running supervisord does not know yet (web or http added since it started) is added."""
    infos = {i["name"]: i for i in ctx.rpc("supervisor.getAllProcessInfo")}
    if WEB_PROGRAM not in infos:
        added = ctx.rpc("supervisor.reloadConfig")[0][0]
        if WEB_PROGRAM not in added:
            raise UserError(f"supervisord does not know the web program; run `coffee-team "
                            f"gen-config` and try again")
        ctx.rpc("supervisor.addProcessGroup", WEB_PROGRAM)  # autostart: it starts now
    else:
        if infos[WEB_PROGRAM]["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            ctx.rpc("supervisor.stopProcess", WEB_PROGRAM, True)
        ctx.rpc("supervisor.startProcess", WEB_PROGRAM, False)
    wait_running(ctx, (WEB_PROGRAM,), timeout=30)
    click.echo(f"{WEB_PROGRAM}: restarted")


# --- status ----------------------------------------------------------------------------------

def _team_status(ctx: Context) -> dict:
    """coffee.getTeamStatus when supervisord serves it; otherwise (a supervisord started from
    an older config, or a coffee.* that fails) supervisor.* + the queue. The processes are
    always shown; trouble with the database is one line under them."""
    import xmlrpc.client

    from .. import status
    try:
        data = ctx.rpc("coffee.getTeamStatus")
    except xmlrpc.client.Fault:
        infos = ctx.rpc("supervisor.getAllProcessInfo")
        pid = ctx.rpc("supervisor.getPID")
        data = status.with_database(ctx.team, infos, pid, lambda: _queue_columns(ctx))
    else:
        for agent in data["agents"]:  # XML-RPC leaves out what is unset
            for key in ("heartbeat_age_seconds", "next_restart_at", "restart_attempt",
                        "given_up_at"):
                agent.setdefault(key, None)
    for program in data.get("programs", ()):
        if program["description"].startswith(client.EXITED_TOO_QUICKLY):
            # the program ran and said why it stopped: its last line beats "see the log"
            program["description"] = why_not_started(ctx, {"name": program["name"]})
    return data


def _queue_columns(ctx: Context) -> dict:
    from .. import status
    from ..queue import MessageQueue
    with MessageQueue.from_team(ctx.team) as queue:
        return status.queue_columns(queue, ctx.team)


def _print_status(ctx: Context, as_json: bool) -> None:
    from .. import status
    data = _team_status(ctx)
    if as_json:
        echo_json(data)
    else:
        click.echo(status.render(data))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with --watch: "
                                                       "one JSON object per line).")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl+C.")
@click.option("-n", "--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between refreshes with --watch.")
@click.option("--hosts", "hosts_option", default=None, metavar="URL[,URL...]",
              help="One table over several hosts' supervisords (unix:// or http:// URLs, "
                   "optionally name=URL); default: the team file's hosts: list, if any.")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for each host with --hosts.")
@pass_ctx
def status_cmd(ctx: Context, as_json: bool, watch: bool, interval: float,
               hosts_option: str | None, timeout: float) -> None:
    """Show every agent's state, PID, uptime, CPU, RAM, heartbeat, restarts and give-ups."""
    from .. import status
    host_list = _status_hosts(ctx, hosts_option)
    if not host_list:
        render, fetch = status.render, lambda: _team_status(ctx)
    else:
        from . import hosts
        render = hosts.render

        def fetch():
            data = hosts.collect(host_list, timeout=timeout)
            if not data["hosts_reachable"] and not watch:
                (click.echo(json.dumps(data, indent=2, sort_keys=True)) if as_json
                 else click.echo(hosts.render(data)))
                raise UserError("no host reachable", exit_code=3)
            return data
    if not watch:
        data = fetch()
        click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else render(data))
        return
    try:
        while True:
            data = fetch()
            if as_json:
                click.echo(json.dumps(data, sort_keys=True))
            else:
                stamp = time.strftime("%H:%M:%S")
                # home the cursor and clear the screen: one screen, redrawn in place
                click.echo("\x1b[H\x1b[2J" + render(data) +
                           f"\n\n{stamp}, every {interval:g}s; Ctrl+C to quit", nl=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


def _status_hosts(ctx: Context, hosts_option: str | None):
    """Hosts for a multi-host status: --hosts, else the team file's hosts: (if it has one)."""
    if hosts_option:
        from . import hosts  # a thread pool and more: only for a multi-host status
        try:
            return hosts.parse_hosts_option(hosts_option)
        except TeamError as exc:
            raise UserError(str(exc), exit_code=2) from None
    return ctx.team.hosts


@main.command("logs")
@click.argument("agent")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until Ctrl+C.")
@click.option("--bytes", "length", default=16384, show_default=True,
              type=click.IntRange(min=1, max=2**30), help="How much of the end of the log to show.")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between polls with -f.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {agent, offset, overflow, text} objects (one per line with -f).")
@pass_ctx
def logs(ctx: Context, agent: str, follow: bool, length: int, interval: float,
         as_json: bool) -> None:
    """Show AGENT's log (stdout and stderr) through supervisor's XML-RPC log API."""
    import xmlrpc.client
    (name,) = parse_agents(ctx.team, agent)
    try:
        text, offset, overflow = ctx.rpc("supervisor.tailProcessStdoutLog", name, 0, length)
    except xmlrpc.client.Fault as exc:
        raise UserError(f"{name}: cannot read the log: {exc.faultString}") from None

    def emit(chunk: str, overflow: bool) -> None:
        if as_json:
            click.echo(json.dumps({"agent": name, "offset": offset, "overflow": overflow,
                                   "text": chunk}, sort_keys=True))
        elif chunk:
            click.echo(chunk, nl=False)

    emit(text, overflow)
    if not follow:
        return
    try:
        while True:
            time.sleep(interval)
            try:
                text, offset, overflow = ctx.rpc("supervisor.tailProcessStdoutLog", name,
                                                 offset, 65536)
            except xmlrpc.client.Fault as exc:
                raise UserError(f"{name}: cannot read the log: {exc.faultString}") from None
            if text:
                emit(text, overflow)
    except KeyboardInterrupt:
        pass


@main.command()
@pass_ctx
def doctor(ctx: Context) -> None:
    """Run the startup checks; one line per check, exit 1 on any failure."""
    from .doctor import run_checks
    results = run_checks(ctx.team_path, ctx.conf)
    for ok, name, detail in results:
        click.echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not all(ok for ok, _, _ in results):
        raise SystemExit(1)


# --- agent runtime ---------------------------------------------------------------------------

@main.group()
def agent() -> None:
    """Agent processes (what supervisord runs)."""


@agent.command("run")
@click.argument("name")
@pass_ctx
def agent_run(ctx: Context, name: str) -> None:
    """Run agent NAME in the foreground (the program command of each agent)."""
    import os
    import sys
    # The same process supervisord runs (python -m coffee_team ... agent run), without the
    # CLI in memory: the agent runtime is its own layer.
    argv = [sys.executable, "-m", "coffee_team", "--team", ctx.team_path, "agent", "run", name]
    os.execv(sys.executable, argv)

