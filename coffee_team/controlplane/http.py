"""The control plane's port: ``GET /healthz`` for its probes (no password: it says only
whether the loop goes round), and with ``team.web`` the dashboard and ``/metrics`` behind its
password, as the web program serves them (coffee_team.dashboard), the agents' status read
from their instance rows instead of supervisord. The dashboard's buttons act through
supervisord, which a cluster has not: they answer so."""
from __future__ import annotations

from typing import Any, Callable

from coffee_team import status
from coffee_team.dashboard.httpd import GuardedHandler, GuardedServer

HEALTHY_WITHIN = 30.0  # seconds: a loop silent longer is unhealthy (the kubelet restarts it)


def cluster_status(team: Any, queue: Any) -> dict:
    """What the dashboard and /metrics show of the agents: from the database (on SQLite,
    one host's team, from the heartbeat files its agents write instead of rows)."""
    from coffee_team.heartbeat import instances_of
    return status.from_instances(team, instances_of(team, queue),
                                 status.queue_columns(queue, team),
                                 now=queue.clock())


def make_server(team: Any, open_queue: Callable[[], Any],
                health: Callable[[float], tuple[bool, str]], host: str, port: int,
                password: str | None) -> tuple[GuardedServer, Callable[[], None]]:
    """(the server, what closes it) on host:port; the dashboard only with team.web."""
    def healthz(handler: GuardedHandler) -> None:
        ok, text = health(HEALTHY_WITHIN)
        handler.send_plain(200 if ok else 503, text + "\n")

    web = team.settings.web
    if web is None or password is None:
        class Health(GuardedHandler):
            server_version = "coffee-team-control-plane"

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    return healthz(self)
                self.send_plain(404, "the dashboard needs team.web in the team file\n")

            do_HEAD = do_GET
        return GuardedServer((host, port), Health, name="control-plane"), lambda: None

    from coffee_team.dashboard import server
    from coffee_team.dashboard.snapshot import Snapshots
    queue = open_queue()
    snapshots = Snapshots(team, queue, fetch_status=lambda: cluster_status(team, queue))
    app = server.Dashboard(team, snapshots, web.username, password)

    class Handler(server.Handler):
        server_version = "coffee-team-control-plane"

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                return healthz(self)
            super().do_GET()

        do_HEAD = do_GET

    Handler.app = app
    try:
        return GuardedServer((host, port), Handler, name="control-plane"), snapshots.close
    except BaseException:
        snapshots.close()
        raise
