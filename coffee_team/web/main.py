"""The web program's entry point: settings from the team file, password from the
environment, then serve until SIGTERM. Agents never depend on it: it only reads, and acts
through supervisord's ``coffee.*`` like the CLI does."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from ..errors import CoffeeError, TeamError
from ..parentwatch import die_with_parent
from ..team import load_team
from .server import Dashboard, make_server
from .snapshot import Snapshots


def fail(message: str) -> int:
    print(f"coffee-team web: {message}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m coffee_team.web")
    parser.add_argument("--team", default="data/team.yaml")
    args = parser.parse_args(argv)
    try:
        team = load_team(args.team)
    except TeamError as exc:
        return fail(str(exc))
    web = team.settings.web
    if web is None:
        return fail(f"{team.path}: team.web is not set (port, username, password_env)")
    password = os.environ.get(web.password_env)
    if not password:
        return fail(f"team.web.password_env: the environment variable {web.password_env} is "
                    f"not set; export it before starting supervisord")
    if os.environ.get("SUPERVISOR_ENABLED"):
        die_with_parent()  # an orphan would keep the port from the next supervisord's web
    from ..queue import MessageQueue
    try:
        queue = MessageQueue.from_team(team)
    except CoffeeError as exc:
        return fail(f"{team.database_url}: {exc}")
    snapshots = Snapshots(team, queue)
    app = Dashboard(team, snapshots, web.username, password)
    try:
        server = make_server(app, web.host, web.port)
    except OSError as exc:
        return fail(f"cannot listen on {web.host}:{web.port}: {exc.strerror or exc}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"coffee-team web: serving http://{web.host}:{server.server_address[1]}/",
          file=sys.stderr, flush=True)
    try:
        # a long poll interval: idle, the program wakes only when someone connects
        server.serve_forever(poll_interval=5)
    finally:
        server.server_close()
        snapshots.close()
    return 0
