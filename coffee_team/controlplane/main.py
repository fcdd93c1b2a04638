"""``python -m coffee_team.controlplane --team PATH`` (``coffee-team control-plane``): the
team file (with COFFEE_DATABASE_URL), the database (waited for: on Kubernetes it may start
after us), then three threads beside the loop, each with its own database connection:
notification deliveries (coffee_team.notify), the HTTP port (http.py) and the loop itself
(duties.py) on the main thread. SIGTERM ends it within a second."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from coffee_team.controlplane.duties import ControlPlane
from coffee_team.controlplane.http import make_server

PORT_ENV, DEFAULT_PORT = "COFFEE_CONTROL_PLANE_PORT", 8080
HOST = "0.0.0.0"  # inside its pod: the Service and the kubelet's probes reach it there


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} control-plane: {message}", file=sys.stderr,
          flush=True)


def open_patiently(open_queue, stop: threading.Event):
    """The queue, once the database answers (None if stopped meanwhile); one line per wait."""
    from coffee_team import retry
    from coffee_team.errors import describe_error
    said = None
    for delay in retry.delays(0.5, 10.0):
        try:
            return open_queue()
        except Exception as exc:
            text = describe_error(exc)
            if text != said:
                say(f"waiting for the database: {text}")
                said = text
        if stop.wait(delay):
            return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="coffee-team control-plane")
    parser.add_argument("--team", default="data/team.yaml")
    args = parser.parse_args(argv)
    from coffee_team.errors import TeamError
    from coffee_team.team import load_team
    try:
        team = load_team(args.team)
        port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
        web = team.settings.web
        password = os.environ.get(web.password_env) if web is not None else None
        if web is not None and not password:
            raise TeamError(f"team.web.password_env: the environment variable "
                            f"{web.password_env} is not set (a key of the Secret)")
    except (TeamError, ValueError) as exc:
        print(f"coffee-team control-plane: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from coffee_team.notify import Deliverer
    from coffee_team.queue import MessageQueue

    def open_queue():
        return MessageQueue.from_team(team, create=True)  # the watchdog's part on Kubernetes

    queue = open_patiently(open_queue, stop)
    if queue is None:
        return 0
    plane = ControlPlane(team, queue, say)
    try:
        server, close = make_server(team, open_queue, plane.health, HOST, port, password)
    except OSError as exc:
        say(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}")
        queue.close()
        return 1
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                     name="control-plane-http", daemon=True).start()
    delivery_queue = open_queue()
    delivery_queue.backend.close()  # its thread opens its own connection
    deliverer = Deliverer(delivery_queue, lambda: team.settings.notify, say)
    deliverer.start()
    say(f"serving /healthz{', the dashboard and /metrics' if web else ''} on "
        f"http://{HOST}:{server.server_address[1]}/ for {len(team.names)} agents "
        f"({'PostgreSQL' if team.is_postgres else 'SQLite'})")
    try:
        plane.run(stop.wait)
    finally:
        say("stopping")
        server.shutdown()
        server.server_close()
        close()
        deliverer.stop()
        queue.close()
    return 0
