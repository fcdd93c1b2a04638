"""Lifecycle commands: gen-config, start, stop, restart, status, logs, doctor."""
from __future__ import annotations

import json
import time

import click

from .. import layout
from ..errors import TeamError
from ..ops import lifecycle as ops
from ..team import WEB_PROGRAM
from .base import (Context, Interrupted, UserError, config_team, echo_json, main, parse_agents,
                   pass_ctx, refused)
from .waiting import waiting


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

def queue_opener(ctx: Context, create: bool = False):
    """The team's queue for ops/; ``create`` (start): made where none ever was (a boot makes
    it anyway), never where one was (queue/files.py); else None where none ever was."""
    from .data import open_queue
    return lambda: open_queue(ctx, create=create, none_if_new=True)


@main.command()
@click.option("--agents", help="Comma-separated agents to start (default: the whole team).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait with no agent coming up (RUNNING).")
@pass_ctx
def start(ctx: Context, agents: str | None, timeout: float) -> None:
    """Boot supervisord if needed, start agents in priority order, wait, print the status."""
    team = config_team(ctx)
    names = parse_agents(team, agents) or team.names
    before = _supervisord_pid(ctx)
    try:
        with refused():
            other = ops.start(team, ctx.endpoint, ctx.rpc, queue_opener(ctx, create=True),
                              names, launch=parse_agents(team, agents), timeout=timeout,
                              waiting=waiting)
        if other is not None:  # another start runs the team: that is what was asked
            click.echo(other)
            return
        _print_status(ctx, as_json=False)
    except KeyboardInterrupt:
        raise Interrupted(_left_by_start(ctx, before)) from None


def _supervisord_pid(ctx: Context) -> int | None:
    """The team's supervisord's PID if one lives (answering or not)."""
    from ..ops import probe
    pid = probe.own_pid(ctx.team, ctx.endpoint)
    return pid if probe.process_kind(pid) in (probe.SUPERVISORD, probe.STOPPED) else None


def _left_by_start(ctx: Context, before: int | None) -> str:
    """What an interrupted start leaves: nothing, a supervisord it booted (which goes on
    launching the team), or the one that ran before with some agents started."""
    pid, deadline = _supervisord_pid(ctx), time.monotonic() + 2
    sock = ctx.team.run_dir / "supervisor.sock"
    while pid is None and before is None and sock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # a supervisord binds its socket, then writes its pidfile
        pid = _supervisord_pid(ctx)
    if pid is None:
        return "nothing was started"
    if pid != before:
        return (f"supervisord PID {pid} was started and goes on starting the team; "
                f"`coffee-team status` shows it, `coffee-team stop` stops it")
    return (f"supervisord PID {pid} runs as before; agents started so far keep running "
            f"(`coffee-team status`), `coffee-team start` starts the rest")


@main.command()
@click.option("--agents", help="Comma-separated agents to stop (default: the team and supervisord).")
@pass_ctx
def stop(ctx: Context, agents: str | None) -> None:
    """Stop agents, or with no --agents the whole team and supervisord."""
    names = parse_agents(ctx.team, agents)
    try:
        with refused():
            if names:
                ops.stop_agents(ctx.rpc, queue_opener(ctx), names)
                for name in names:
                    click.echo(f"{name}: stopped")
                return
            pid = ops.shutdown(ctx.team, ctx.rpc, waiting)
    except KeyboardInterrupt:
        pid = _supervisord_pid(ctx)
        raise Interrupted(
            "no supervisord runs" if pid is None else
            f"supervisord PID {pid} still runs (what it was asked to stop goes on stopping); "
            f"`coffee-team status` shows the team, `coffee-team stop` again stops it") from None
    click.echo(f"team stopped (supervisord PID {pid} exited)")


@main.command()
@click.argument("agent")
@pass_ctx
def restart(ctx: Context, agent: str) -> None:
    """Stop (if running) and start one agent (clears a give-up), or the web program."""
    if agent == WEB_PROGRAM and ctx.team.settings.web_program:
        with refused():
            ops.restart_web(ctx.team, ctx.rpc, waiting)
        click.echo(f"{WEB_PROGRAM}: restarted")
        return
    (name,) = parse_agents(ctx.team, agent)
    with refused():
        ops.restart_agent(ctx.team, ctx.rpc, queue_opener(ctx), name, waiting)
    click.echo(f"{name}: restarted")


# --- status ----------------------------------------------------------------------------------

# How long `status` waits for supervisord's answer (a stopped or overloaded one: exit 4)
STATUS_WAIT = 10.0


def _team_status(ctx: Context, bound: float = STATUS_WAIT) -> dict:
    """ops.team_status: coffee.getTeamStatus, else supervisor.* and the queue (imported only
    then: status does not need it otherwise); each call given up after ``bound`` seconds."""
    def open_queue():
        from ..queue import MessageQueue
        return MessageQueue.from_team(ctx.team, create=False)
    return ops.team_status(ctx.team, lambda method, *args: ctx.rpc(method, *args,
                                                                   timeout=bound), open_queue)


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
@click.option("--timeout", default=None, type=click.FloatRange(min=0.1),
              help=f"Seconds to wait for supervisord's answer (default {STATUS_WAIT:g}; "
                   f"with --hosts, for each host, default 5); one that lives but does not "
                   f"answer in time exits 4.")
@click.option("--k8s", is_flag=True, help="The agents of a cluster, from the database: the pod "
                                          "holding each, heartbeat, task, restarts.")
@pass_ctx
def status_cmd(ctx: Context, as_json: bool, watch: bool, interval: float,
               hosts_option: str | None, timeout: float | None, k8s: bool) -> None:
    """Show every agent's state, PID, uptime, CPU, RAM, heartbeat, restarts and give-ups."""
    from .. import status
    host_list = None if k8s else _status_hosts(ctx, hosts_option)
    if k8s:
        from . import cluster
        render, fetch = cluster.render, lambda: cluster.collect(ctx)
    elif not host_list:
        render = status.render
        fetch = lambda: _team_status(ctx, timeout or STATUS_WAIT)  # noqa: E731
    else:
        from . import hosts
        render = hosts.render

        def fetch():
            data = hosts.collect(host_list, timeout=timeout or 5.0)
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
