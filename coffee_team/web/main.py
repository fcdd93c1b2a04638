"""The web program's entry point: settings from the team file, passwords from the
environment, then serve until SIGTERM. Agents never depend on it: it only reads, and acts
through supervisord's ``coffee.*`` like the CLI does.

It serves what the team file asks for, each on its own port with ``httpd``'s limits: the
dashboard (``team.web``) and XML-RPC over HTTP (``team.http``, passed on to supervisord's
unix socket by ``rpcproxy``). SIGHUP re-reads the team file, as the watchdog does
(``coffee-team apply`` sends it): the dashboard then shows the applied team. Ports and
credentials are read at start only (``coffee-team restart web``).
"""
from __future__ import annotations

import argparse
import os
import queue as queues
import signal
import sys
import threading
import time
from typing import Any

from ..errors import CoffeeError, DatabaseMissing, TeamError
from ..parentwatch import die_with_parent
from ..team import HttpSettings, Team, load_team

HUP, TERM = "reload", "stop"
# Seconds the dashboard waits for a database not made yet: on a boot by supervisord alone the
# watchdog makes it (it only, docs/reliability.md row 1), often after this program started
# (~1 s on a busy machine). Past that it exits as before, so a database that never comes
# (a wrong team.database_path) shows in status instead of a dashboard waiting for good.
DATABASE_WAIT = 20.0
DATABASE_POLL = 0.2


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} coffee-team web: {message}", file=sys.stderr,
          flush=True)


def fail(message: str) -> int:
    print(f"coffee-team web: {message}", file=sys.stderr, flush=True)
    return 2


def password_of(server: HttpSettings, where: str) -> str:
    password = os.environ.get(server.password_env)
    if not password:
        raise TeamError(f"{where}.password_env: the environment variable {server.password_env} "
                        f"is not set; export it before starting supervisord")
    return password


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m coffee_team.web")
    parser.add_argument("--team", default="data/team.yaml")
    args = parser.parse_args(argv)
    # A reload asked for while starting is kept, not ignored: `apply` may have changed the file
    # since it was read below (serve() reloads once it runs).
    signals: queues.Queue[str] = queues.Queue()
    signal.signal(signal.SIGHUP, lambda *_: signals.put(HUP))
    try:
        team = load_team(args.team)
        web, http = team.settings.web, team.settings.http
        if web is None and http is None:
            return fail(f"{team.path}: neither team.web nor team.http is set")
        passwords = {name: password_of(server, f"team.{name}")
                     for name, server in (("web", web), ("http", http)) if server is not None}
    except TeamError as exc:
        return fail(str(exc))
    if os.environ.get("SUPERVISOR_ENABLED"):
        # an orphan would keep the ports from the next supervisord's web; supervisord may
        # have died while we started (a slow start-up on a loaded machine): SIGTERM now
        die_with_parent(starter=team.supervisord_pidfile)
    servers, closers, dashboard = [], [], None
    try:
        if http is not None:  # served at once: it needs no database (the dashboard may wait)
            servers.append(start_serving(rpc_server(team, http, passwords["http"])))
        if web is not None:
            dashboard, server, close = dashboard_server(team, web, passwords["web"])
            servers.append(start_serving(server))
            closers.append(close)
    except (CoffeeError, OSError) as exc:
        for server in servers:
            server.server_close()
        for close in closers:
            close()
        return fail(str(exc) if isinstance(exc, CoffeeError)
                    else f"cannot listen on {exc.strerror or exc}")
    return serve(servers, closers, dashboard, args.team, signals)


def rpc_server(team: Team, http: HttpSettings, password: str):
    from .rpcproxy import Gateway, make_rpc_server
    # a call may wait for a graceful stop and a start (stopProcess, restartAgent)
    timeout = team.settings.stop_wait_seconds + team.settings.start_seconds + 60
    gateway = Gateway(http.username, password, str(team.run_dir / "supervisor.sock"), timeout)
    return _listen(make_rpc_server, gateway, http)


def dashboard_server(team: Team, web: HttpSettings, password: str):
    from ..dashboard.server import Dashboard, make_server
    from ..dashboard.snapshot import Snapshots
    try:
        queue = open_queue(team)
    except CoffeeError as exc:
        text = str(exc)
        raise CoffeeError(text if text.startswith(team.database_url)
                          else f"{team.database_url}: {text}") from None
    snapshots = Snapshots(team, queue)
    app = Dashboard(team, snapshots, web.username, password)
    try:
        server = _listen(make_server, app, web)
    except BaseException:
        snapshots.close()
        raise
    return app, server, snapshots.close


def open_queue(team: Team, wait: float = DATABASE_WAIT, clock=time.monotonic,
               sleep=time.sleep) -> Any:
    """The team's queue, never making the database: one still missing is waited for up to
    ``wait`` seconds (said once in the log), then DatabaseMissing as before."""
    from ..queue import MessageQueue
    deadline = None
    while True:
        try:
            queue = MessageQueue.from_team(team, create=False)
        except DatabaseMissing as exc:
            now = clock()
            if deadline is None:
                deadline = now + wait
                say(f"waiting up to {wait:g} s for the database (the watchdog makes it as the "
                    f"team starts): {exc}")
            if now >= deadline:
                raise
            sleep(DATABASE_POLL)
            continue
        if deadline is not None:
            say("database found: starting the dashboard")
        return queue


def _listen(make: Any, app: Any, where: HttpSettings):
    # head_timeout unset: the server's own default (httpd.HEAD_TIMEOUT)
    options = {} if where.head_timeout is None else {"head_timeout": where.head_timeout}
    try:
        return make(app, where.host, where.port, **options)
    except OSError as exc:
        raise OSError(exc.errno, f"{where.host}:{where.port}: {exc.strerror or exc}") from None


def start_serving(server: Any) -> Any:
    # a long poll interval: idle, the program wakes only when someone connects
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 5},
                     name=f"coffee-{server.name}", daemon=True).start()
    host, port = server.server_address[:2]
    say(f"serving {'XML-RPC at' if server.name == 'http' else 'the dashboard at'} "
        f"http://{host}:{port}/{'RPC2' if server.name == 'http' else ''}")
    return server


def serve(servers: list, closers: list, dashboard: Any, team_path: str,
          signals: queues.Queue[str]) -> int:
    """Until SIGTERM, the servers (serving already) follow SIGHUP; then they are closed."""
    signal.signal(signal.SIGTERM, lambda *_: signals.put(TERM))
    try:
        while (what := _next_signal(signals)) != TERM:
            if what == HUP:
                reload_team(dashboard, team_path)
    finally:
        # No server.shutdown(): it waits for the serving loop's next poll, up to 5 s per
        # server one after the other, and stops nothing more than closing does (the serving
        # and handler threads are daemons, and the program exits next).
        for server in servers:
            server.server_close()
        for close in closers:
            close()
    return 0


def _next_signal(signals: queues.Queue[str]) -> str:
    # a timeout so the main thread runs Python code often enough to see a signal at once
    while True:
        try:
            return signals.get(timeout=1.0)
        except queues.Empty:
            continue


def reload_team(dashboard: Any, team_path: str) -> None:
    """SIGHUP: the dashboard follows the team file (a file that does not load changes
    nothing); the XML-RPC gateway does not depend on the agents."""
    try:
        team = load_team(team_path)
    except TeamError as exc:
        say(f"team file not reloaded (keeping the team shown): {exc}")
        return
    if dashboard is None:
        say("team file re-read (no dashboard to update)")
        return
    before = set(dashboard.team.names)
    dashboard.use_team(team)
    added, removed = sorted(set(team.names) - before), sorted(before - set(team.names))
    say(f"team reloaded: {len(team.names)} agents (added {added or '-'}, "
        f"removed {removed or '-'})")
