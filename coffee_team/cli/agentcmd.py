"""``coffee-team agent ...``: the agent's own process (``run``) and what Kubernetes runs
beside it: its probes (``probe``) and the priority groups' init container (``wait-ready``).

A probe runs every few seconds in every agent's pod, so it imports little: click, the team
file and the heartbeat file's reader; no database, no lifecycle commands. ``wait-ready``
reads the other pods' agents from the database (their instance rows)."""
from __future__ import annotations

import sys
import time

import click

from .. import liveness
from ..liveness import ready_to_claim
from .base import Context, UserError, main, pass_ctx, require_agents

WAIT_POLL = 1.0  # seconds between reads of the instance rows while wait-ready waits


@main.group()
def agent() -> None:
    """Agent processes (what supervisord or Kubernetes runs)."""


@agent.command("run")
@click.argument("name")
@pass_ctx
def agent_run(ctx: Context, name: str) -> None:
    """Run agent NAME in the foreground (the program command of each agent)."""
    import os
    # The same process supervisord runs (python -m coffee_team ... agent run), without the
    # CLI in memory: the agent runtime is its own layer.
    argv = [sys.executable, "-m", "coffee_team", "--team", ctx.team_path, "agent", "run", name]
    os.execv(sys.executable, argv)


def open_instances(ctx: Context):
    """The team's queue for reading instance rows (not created: a probe never makes one)."""
    team = ctx.team
    if not team.is_postgres:
        sys.modules.setdefault("psycopg2", None)  # peewee would import it just to probe
    from ..queue import MessageQueue
    return MessageQueue.from_team(team, create=False)


@agent.command("probe")
@click.argument("name")
@click.option("--started", "kind", flag_value=liveness.STARTED,
              help="Exit 0 once this pod's process wrote its first heartbeat (startup probe).")
@click.option("--ready", "kind", flag_value=liveness.READY,
              help="Exit 0 while it is ready to claim work (readiness probe).")
@pass_ctx
def agent_probe(ctx: Context, name: str, kind: str | None) -> None:
    """Exit 0 unless agent NAME's process in this pod is hung by the team's rule: no
    heartbeat for twice heartbeat_stale_after (liveness probe; a long task beats). Reads the
    heartbeat file the agent writes in the pod, as the watchdog does: no database."""
    from ..heartbeat import read_heartbeat
    kind = kind or liveness.LIVE
    team = ctx.team
    require_agents(team, name)
    row, here = file_instance(read_heartbeat(team.status_dir, name), team.host)
    ok, why = liveness.probe_verdict(kind, row, here, time.time(),
                                     team.settings.heartbeat_stale_after)
    click.echo(f"{name} {kind}: {'yes' if ok else 'no'}: {why}", err=not ok)
    raise SystemExit(0 if ok else 1)


def file_instance(beat: dict, host: str) -> tuple[dict | None, bool]:
    """A heartbeat file as probe_verdict's row (None: no file, or the beat of an instance
    still starting: no ``started_at``), and whether its process is the one running here: its
    PID still a process that started before it stamped ``started_at`` (not a PID reused by a
    later container; /proc's start times are good to about a second)."""
    from ..heartbeat import last_beat
    from ..proctable import started_of
    pid, started = beat.get("pid"), beat.get("started_at")
    if not isinstance(pid, int) or isinstance(started, bool) or \
            not isinstance(started, (int, float)):
        return None, False
    since = started_of(pid)
    state, waiting = beat.get("state"), beat.get("waiting_for")
    return ({"host": host, "pid": pid, "heartbeat": last_beat(beat), "state": state,
             "waiting_for": waiting, "ready": ready_to_claim(state, waiting)},
            since is not None and since <= started + 1.0)


def ready_agents(rows: dict, now: float, stale_after: float) -> set[str]:
    """Agents whose instance is ready to claim with a fresh heartbeat (readiness's rule)."""
    return {name for name, row in rows.items()
            if liveness.probe_verdict(liveness.READY, row, True, now, stale_after)[0]}


@agent.command("wait-ready")
@click.option("--before", "before", type=int, required=True, metavar="PRIORITY",
              help="Wait for every agent with a lower priority number than this.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Give up after this many seconds (exit 1); default: wait for ever.")
@pass_ctx
def agent_wait_ready(ctx: Context, before: int, timeout: float | None) -> None:
    """Wait until every agent of an earlier priority group is ready, read from the database
    (a Kubernetes init container of the group PRIORITY)."""
    from ..heartbeat import instances_of
    from ..restarts import waiting_before
    team = ctx.team
    priorities = {a.name: a.priority for a in team.agents}
    stale_after = team.settings.heartbeat_stale_after
    deadline = None if timeout is None else time.monotonic() + timeout
    shown, queue = None, None
    try:
        while True:
            try:
                queue = queue or open_instances(ctx)
                rows = instances_of(team, queue)
                waiting = waiting_before(priorities, before, ready_agents(rows, time.time(),
                                                                          stale_after))
                said = f"waiting for {', '.join(waiting)} (priority < {before})"
            except Exception as exc:  # a database not up yet: wait for it too
                from ..errors import describe_error
                waiting, said = ["the database"], f"waiting for the database: " \
                                                  f"{describe_error(exc)}"
                if queue is not None:
                    queue.close()
                    queue = None
            if not waiting:
                click.echo(f"ready: every agent with priority < {before}")
                return
            if said != shown:
                click.echo(said)
                shown = said
            if deadline is not None and time.monotonic() >= deadline:
                raise UserError(f"timed out after {timeout:g}s {said}")
            time.sleep(WAIT_POLL if deadline is None
                       else max(0.0, min(WAIT_POLL, deadline - time.monotonic())))
    finally:
        if queue is not None:
            queue.close()
